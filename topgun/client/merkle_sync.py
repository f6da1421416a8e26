"""The client half of Merkle sync (reference §2.9): bring each local map up to the server's.

On every authenticated connection (start, and every reconnect) and for every map the client
holds, :class:`MerkleSync` sends ``SYNC_INIT``; if the server's root differs from the local
tree's it walks down ``MERKLE_REQ_BUCKET`` only where bucket hashes differ and LWW-merges the
leaves' records. Our server answers for the whole map from any node, so one connection is
enough. One sync per map runs at a time; a sync that fails (connection lost, timeout, server
error such as a table change in progress) runs again :data:`RETRY_AFTER_S` later, or on the
next authenticated connection.

Each level's differing buckets are requested together (at most :data:`MAX_IN_FLIGHT` at a
time), so a sync costs about ``depth`` round trips rather than one per bucket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from topgun.core.merkle import DEPTH
from topgun.core.messages import ErrorMessage, Message
from topgun.core.sync_messages import (
    MerkleReqBucket,
    SyncInit,
    SyncResetRequired,
    SyncRespBuckets,
    SyncRespLeaf,
    SyncRespRoot,
)

if TYPE_CHECKING:
    from topgun.client.connection import NodeConnection
    from topgun.client.maps import TopGunMap
    from topgun.client.storage import Storage

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 32
RETRY_AFTER_S = 1.0
"""A failed sync (say, during a partition table change) runs again this long after."""
LAST_SYNC_META = "lastSyncTimestamp:"


def _sync_error_map(msg: ErrorMessage) -> str | None:
    """The map a server's "sync unavailable" ERROR (503) is about, else None."""
    d = msg.details
    if isinstance(d, dict) and d.get("code") == "SYNC_UNAVAILABLE":
        name = d.get("mapName")
        return name if isinstance(name, str) else None
    return None


class SyncFailed(Exception):
    """A sync run ended without a complete answer; it is run again later."""


Waiter = asyncio.Future[Message]


class MerkleSync:
    def __init__(
        self,
        maps: Callable[[], dict[str, TopGunMap]],
        storage: Storage,
        *,
        timeout_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._maps = maps
        self._storage = storage
        self._timeout = timeout_s
        self._clock = clock
        self._waiters: dict[tuple[int, str, str], Waiter] = {}  # (conn, map, path) → reply
        self._running: dict[str, asyncio.Task[None]] = {}
        self._failed: dict[str, float] = {}  # map → when its last run failed
        self.completed: dict[str, int] = {}
        """Map name → completed sync runs (observability and tests)."""
        self.listeners: list[Callable[[str], None]] = []

    # --- starting -----------------------------------------------------------------------

    def sync_all(self, conn: NodeConnection) -> None:
        """Sync every map the client holds over ``conn`` (skipping maps already syncing)."""
        for name in list(self._maps()):
            self.sync_map(conn, name)

    def sync_map(self, conn: NodeConnection, name: str) -> None:
        if name in self._running:
            return
        task = asyncio.get_running_loop().create_task(self._run(conn, name))
        self._running[name] = task

    async def idle(self, timeout: float) -> None:  # noqa: ASYNC109
        """Wait until no sync runs (each run is bounded by the request timeout)."""
        while self._running:
            await asyncio.wait(list(self._running.values()), timeout=timeout)

    def failed_maps(self) -> set[str]:
        return set(self._failed)

    def retry_failed(self, conn: NodeConnection) -> None:
        """Run again, over ``conn``, the failed syncs whose retry time has come."""
        now = self._clock()
        for name, failed_at in list(self._failed.items()):
            if now - failed_at >= RETRY_AFTER_S:
                self.sync_map(conn, name)

    def next_retry(self) -> float | None:
        return min(self._failed.values()) + RETRY_AFTER_S if self._failed else None

    async def close(self) -> None:
        tasks = list(self._running.values())
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        for w in self._waiters.values():
            if not w.done():
                w.cancel()
        self._waiters.clear()

    # --- replies ------------------------------------------------------------------------

    def on_message(self, conn: NodeConnection, msg: Message) -> bool:
        """Hand a sync reply to its waiting run; True when ``msg`` was one."""
        if isinstance(msg, SyncRespRoot | SyncResetRequired):
            slot = (id(conn), msg.map_name, "^")
        elif isinstance(msg, SyncRespBuckets | SyncRespLeaf):
            slot = (id(conn), msg.map_name, msg.path)
        elif isinstance(msg, ErrorMessage) and _sync_error_map(msg) is not None:
            name = _sync_error_map(msg)
            for key, w in list(self._waiters.items()):
                if key[0] == id(conn) and key[1] == name and not w.done():
                    w.set_exception(SyncFailed(msg.message))
            return True
        else:
            return False
        waiter = self._waiters.get(slot)
        if waiter is not None and not waiter.done():
            waiter.set_result(msg)
        return True

    def on_connection_lost(self, conn: NodeConnection) -> None:
        for key, w in list(self._waiters.items()):
            if key[0] == id(conn) and not w.done():
                w.set_exception(SyncFailed("connection lost during sync"))

    # --- one run ------------------------------------------------------------------------

    async def _run(self, conn: NodeConnection, name: str) -> None:
        try:
            merged = await self._sync(conn, name)
        except (SyncFailed, TimeoutError) as exc:
            self._failed[name] = self._clock()
            log.info("sync of %s over %s failed (will run again): %s", name, conn.id, exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            self._failed[name] = self._clock()
            log.exception("sync of %s failed", name)
        else:
            self._failed.pop(name, None)
            self.completed[name] = self.completed.get(name, 0) + 1
            log.debug("sync of %s over %s done: %d record(s) merged", name, conn.id, merged)
            for listener in list(self.listeners):
                listener(name)
        finally:
            self._running.pop(name, None)

    async def _ask(self, conn: NodeConnection, name: str, path: str, msg: Message) -> Message:
        slot = (id(conn), name, path)
        waiter: Waiter = asyncio.get_running_loop().create_future()
        self._waiters[slot] = waiter
        try:
            if not conn.send(msg):
                raise SyncFailed(f"{conn.id} is not authenticated")
            return await asyncio.wait_for(waiter, self._timeout)
        finally:
            self._waiters.pop(slot, None)

    async def _sync(self, conn: NodeConnection, name: str) -> int:
        handle = self._maps().get(name)
        if handle is None:
            return 0
        meta = LAST_SYNC_META + name
        last = self._storage.get_meta(meta)
        since = float(last) if isinstance(last, int | float) else 0.0
        reply = await self._ask(conn, name, "^", SyncInit(name, since))
        if isinstance(reply, SyncResetRequired):
            handle.reset()
            reply = await self._ask(conn, name, "^", SyncInit(name, 0.0))
        if not isinstance(reply, SyncRespRoot):
            raise SyncFailed(f"unexpected answer {type(reply).__name__} to SYNC_INIT")
        merged = 0
        if reply.root_hash != handle.tree.root():
            merged = await self._walk(conn, handle)
        self._storage.set_meta(meta, reply.timestamp.millis)
        return merged

    async def _walk(self, conn: NodeConnection, handle: TopGunMap) -> int:
        name, tree = handle.name, handle.tree
        paths = [""]
        merged = 0
        while paths:
            replies: list[Any] = []
            for start in range(0, len(paths), MAX_IN_FLIGHT):
                chunk = paths[start : start + MAX_IN_FLIGHT]
                replies.extend(
                    await asyncio.gather(
                        *(self._ask(conn, name, p, MerkleReqBucket(name, p)) for p in chunk)
                    )
                )
            paths = []
            for reply in replies:
                if isinstance(reply, SyncRespLeaf):
                    for key, record in reply.records:
                        merged += handle.merge(key, record)
                elif isinstance(reply, SyncRespBuckets) and len(reply.path) < DEPTH:
                    for digit, h in sorted(reply.buckets.items()):
                        child = reply.path + digit
                        if h != tree.hash_at(child):
                            paths.append(child)
        return merged
