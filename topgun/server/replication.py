"""Replication: copying an owner's merged records to its backups, and applying them there.

The owner sends one ``REPL`` per backup for a whole client batch and acks the client only
after every live backup confirmed (see :mod:`operations`). A backup that has meanwhile become
the owner passes the records on to its own backups before answering (one hop).

A ``REPL`` with ``sync`` (records of ``PERSISTED`` writes) is answered only once the records
are on the backup's disk, or known not to be: ``disk: true`` after its group commit,
``disk: false`` from a backup without a data dir (or whose disk failed). An answer is
:data:`~topgun.core.concern.GONE`, :data:`~topgun.core.concern.HELD`,
:data:`~topgun.core.concern.DURABLE`, or None when none came.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from topgun.core.concern import DURABLE, GONE, HELD
from topgun.core.errors import ClockSkewError, ProtocolError
from topgun.core.hashing import PARTITION_COUNT, fnv1a_utf16
from topgun.core.hlc import Timestamp
from topgun.core.record_wire import Flat, decode_flat, encode_flat
from topgun.core.table import PartitionTable
from topgun.server.context import NodeContext
from topgun.server.membership import Membership
from topgun.server.peer_link import PeerGone, PeerLink
from topgun.server.storage import StorageError

GROUP_MAX = 5000
"""Records at most in one ``REPL`` of a group commit (a frame of a few hundred KB)."""


@dataclass(slots=True)
class _Group:
    """The records of the batches bound for one backup in one turn, and their one answer."""

    done: asyncio.Future[int | None]
    flats: list[Flat] = field(default_factory=list)

    def unknown(self, _sender: object = None) -> None:
        """However the sending ended (failed, or cancelled before it began), no batch waits
        forever: the outcome is unknown."""
        if not self.done.done():
            self.done.set_result(None)


class Replication:
    def __init__(self, ctx: NodeContext, membership: Membership) -> None:
        self.ctx = ctx
        self.membership = membership
        self._groups: dict[tuple[str, bool], _Group] = {}
        self.table_of: Callable[[], PartitionTable | None] = lambda: None
        self.on_missed: Callable[[str, list[Flat]], None] = lambda _backup, _flats: None
        """Told of records a backup may lack (its ``REPL`` went unanswered or was refused,
        or its link was gone): its copies of their partitions are no longer known to be
        current, and only a new copy makes them so (set by :class:`Migrations`)."""
        membership.handlers["REPL"] = self._on_repl

    def merge_records(self, raw: object) -> tuple[list[Flat], list[int], list[int]]:
        """LWW-merge the records of a peer's blob (replication, migration, repair) into the
        store: the records, each one's key hash, and the positions of those that changed it."""
        flats = decode_flat(raw)
        hashes = [fnv1a_utf16(flat[1]) for flat in flats]
        return flats, hashes, self.merge(flats, hashes)

    def merge(self, flats: list[Flat], hashes: list[int]) -> list[int]:
        """LWW-merge records from a peer into the store (``hashes``: their keys'); the
        positions of those that changed it."""
        if not flats:
            return []
        merge = self.ctx.store.merge_flat
        changed = [
            n for n, (flat, h) in enumerate(zip(flats, hashes, strict=True)) if merge(flat, h)
        ]
        # the clock need only pass the newest of them (once, not per record); the owner
        # checked their drift, and a copy must hold what the owner holds whatever it is
        newest = max((flat[3], flat[4], flat[5]) for flat in flats)
        with contextlib.suppress(ClockSkewError):
            self.ctx.hlc.update(Timestamp(*newest))
        return changed

    def replicate(
        self, backup: str, flats: list[Flat], *, sync: bool = False
    ) -> asyncio.Future[int | None]:
        """The backup's answer to await (see the module docstring); ``sync``: the records
        must be on its disk before it answers.

        Batches replicated to one backup in the same or the next turn of the event loop
        travel in one ``REPL`` (a group commit, at most :data:`GROUP_MAX` records): fewer
        frames, wakeups and syscalls on both ends, and each batch waits for that one answer.
        Batches that wait for the backup's disk travel apart from those that do not.
        """
        group = self._groups.get((backup, sync))
        if group is None:
            group = _Group(asyncio.get_running_loop().create_future())
            self._groups[(backup, sync)] = group
            task = self.ctx.spawn(self._send_group(backup, sync, group))
            task.add_done_callback(group.unknown)
        group.flats.extend(flats)
        if len(group.flats) >= GROUP_MAX:
            self._close_group((backup, sync), group)
        return asyncio.shield(group.done)  # a future, not a coroutine: gather makes no task

    def _close_group(self, key: tuple[str, bool], group: _Group) -> None:
        if self._groups.get(key) is group:
            del self._groups[key]

    async def _send_group(self, backup: str, sync: bool, group: _Group) -> None:
        # A task's first step runs after the callbacks already queued, the turn's batches;
        # yielding once more lets the next turn's batches join too (one loop turn of latency
        # for fewer REPL frames and wakeups on both ends; not a wait for anything).
        await asyncio.sleep(0)
        self._close_group((backup, sync), group)
        msg: dict[str, Any] = {"t": "REPL", "recs": encode_flat(group.flats)}
        if sync:
            msg["sync"] = 1
        ok = await self._send_repl(backup, msg)
        if not ok:
            self.on_missed(backup, group.flats)
        group.done.set_result(ok)

    async def _send_repl(self, backup: str, msg: dict[str, Any]) -> int | None:
        link = self.membership.link_for(backup)
        if link is None:
            return GONE
        metrics = self.ctx.metrics
        started = time.perf_counter()
        metrics.replication_pending.inc()
        try:
            reply = await link.request(msg, self.ctx.config.request_timeout_s)
            metrics.replication_lag.set(time.perf_counter() - started)
            if not reply.get("ok", False):
                return None
            return DURABLE if reply.get("disk") is True else HELD
        except PeerGone:
            return GONE
        except TimeoutError:
            self.ctx.log.warning("replication to %s timed out", backup)
            return None
        finally:
            metrics.replication_pending.dec()

    async def _on_repl(self, link: PeerLink, msg: dict[str, Any]) -> None:
        try:
            flats, hashes, _ = self.merge_records(msg.get("recs"))
            self.ctx.metrics.ops_replicated.inc(len(flats))
            sync = msg.get("sync") == 1
            onward: int | None = DURABLE
            if not msg.get("hop"):
                onward = await self.pass_on(flats, hashes, link.node_id, sync=sync)
            reply: dict[str, Any] = {"t": "REPL_ACK", "ok": onward is not None}
            if sync:
                reply["disk"] = onward == DURABLE and await self.on_disk()
            await link.reply(msg, reply)
        except (ProtocolError, ValueError) as exc:
            await link.reply(msg, {"t": "REPL_ACK", "ok": False, "error": str(exc)})

    async def on_disk(self) -> bool:
        """Wait until what this node merged so far is on its disk; False without a data
        dir, or when its disk failed."""
        commit = self.ctx.commit
        if commit is None:
            return False
        try:
            await commit.durable()
        except StorageError:
            return False
        return True

    async def pass_on(
        self, flats: list[Flat], hashes: list[int], sender: str, *, sync: bool = False
    ) -> int | None:
        """Copy records replicated to us onward to our backups where we now own them.

        The sender replicated by the table it had; if ownership has meanwhile moved here
        (a promotion during failover or shutdown), our backups may have been filled by a
        migration that predates these records. Passing them on before acking makes the
        sender's client ack cover every current replica. One hop only (``hop``), so nodes
        whose tables briefly disagree cannot bounce records between them. Returns None if a
        backup did not answer, else :data:`DURABLE` when every one said the records are on
        its disk (asked with ``sync``) and :data:`HELD` otherwise.
        """
        t = self.table_of()
        if t is None:
            return DURABLE
        me = self.ctx.node_id
        owners, backups = t.owners, t.backups
        onward: dict[str, list[Flat]] = defaultdict(list)
        for flat, h in zip(flats, hashes, strict=True):
            pid = h % PARTITION_COUNT
            if owners[pid] == me:
                for b in backups[pid]:
                    if b not in (me, sender):
                        onward[b].append(flat)
        if not onward:
            return DURABLE
        oks = await asyncio.gather(
            *(
                self._send_repl(
                    b, {"t": "REPL", "hop": 1, "recs": encode_flat(recs), "sync": int(sync)}
                )
                for b, recs in onward.items()
            )
        )
        for (b, recs), ok in zip(onward.items(), oks, strict=True):
            if not ok:
                self.on_missed(b, recs)
        if any(ok is None for ok in oks):
            return None
        return DURABLE if all(ok == DURABLE for ok in oks) else HELD
