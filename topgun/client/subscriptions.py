"""Live queries: ``QUERY_SUB`` once, then the results kept current from ``QUERY_UPDATE`` s.

A :class:`Subscription` holds the current matching rows, calls its callbacks on every
change and can be iterated (``async for change in sub``). It belongs to the client, not to
a connection: when the connection it was registered on is lost, it is registered again on
the next authenticated one (failover), with a fresh initial answer that replaces the rows
(keys no longer present are reported as ``LEAVE``); an answer that is an error (the cluster
could not answer completely) keeps the rows and registers again a second later. While it is
registered the server also
sends the map's change events, which the client merges into the local map.

The initial answer is the query's first page (at most the server's page size, 1000 rows
here); for a complete one-shot read use :meth:`TopGunClient.query`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from topgun.core.messages import Query, QueryResp, QuerySub, QueryUnsub, QueryUpdate

if TYPE_CHECKING:
    from topgun.client.connection import NodeConnection

log = logging.getLogger(__name__)

MAX_QUEUED_CHANGES = 10_000
RETRY_AFTER_S = 1.0


@dataclass(frozen=True, slots=True)
class Change:
    """One change of a live result: ``kind`` is ENTER, UPDATE, LEAVE or REMOVE (``value``
    None for the last two)."""

    key: str
    value: Any
    kind: str


ChangeCallback = Callable[[Change], None]


class Subscription:
    def __init__(self, registry: Subscriptions, map_name: str, query: Query, query_id: str) -> None:
        self._registry = registry
        self.map_name = map_name
        self.query = query
        self.query_id = query_id
        self.results: dict[str, Any] = {}
        self.callbacks: list[ChangeCallback] = []
        self.conn: NodeConnection | None = None
        self.closed = False
        self.error: str | None = None
        self._ready = asyncio.Event()
        self._queue: asyncio.Queue[Change | None] = asyncio.Queue(MAX_QUEUED_CHANGES)

    async def ready(self, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
        """Wait for the initial answer; returns the rows (TimeoutError if none came)."""
        await asyncio.wait_for(self._ready.wait(), timeout)
        return dict(self.results)

    def close(self) -> None:
        """Stop the live query (``QUERY_UNSUB``); an iterator ends."""
        if not self.closed:
            self.closed = True
            self._registry.remove(self)
            self._put(None)

    def __aiter__(self) -> AsyncIterator[Change]:
        return self._changes()

    async def _changes(self) -> AsyncIterator[Change]:
        while True:
            change = await self._queue.get()
            if change is None:
                return
            yield change

    def _put(self, change: Change | None) -> None:
        try:
            self._queue.put_nowait(change)
        except asyncio.QueueFull:  # nobody iterates: keep the newest, drop the oldest
            self._queue.get_nowait()
            self._queue.put_nowait(change)

    def _emit(self, change: Change) -> None:
        if change.kind in ("LEAVE", "REMOVE"):
            self.results.pop(change.key, None)
        else:
            self.results[change.key] = change.value
        self._put(change)
        for cb in list(self.callbacks):
            try:
                cb(change)
            except Exception:  # a callback's bug must not break the client
                log.exception("subscription callback failed on %s", change)

    def _initial(self, resp: QueryResp) -> None:
        self.error = None
        rows = dict(resp.results)
        first = not self._ready.is_set()
        for key in [k for k in self.results if k not in rows]:
            self._emit(Change(key, None, "LEAVE"))
        for key, value in rows.items():
            if first or self.results.get(key) != value or key not in self.results:
                self._emit(Change(key, value, "ENTER" if key not in self.results else "UPDATE"))
        self._ready.set()


class Subscriptions:
    """Every live query of one client, and their (re-)registration on connections."""

    def __init__(
        self, usable: Callable[[], list[NodeConnection]], clock: Callable[[], float]
    ) -> None:
        self._usable = usable
        self._clock = clock
        self._subs: dict[str, Subscription] = {}
        self._retry_at: dict[str, float] = {}  # query id → when to register again

    def add(self, map_name: str, query: Query) -> Subscription:
        sub = Subscription(self, map_name, query, str(uuid.uuid4()))
        self._subs[sub.query_id] = sub
        self._register(sub)
        return sub

    def remove(self, sub: Subscription) -> None:
        self._subs.pop(sub.query_id, None)
        self._retry_at.pop(sub.query_id, None)
        if sub.conn is not None:
            sub.conn.send(QueryUnsub(sub.query_id))
            sub.conn = None

    def __len__(self) -> int:
        return len(self._subs)

    def _register(self, sub: Subscription) -> None:
        for conn in self._usable():
            if conn.send(QuerySub(sub.query_id, sub.map_name, sub.query)):
                sub.conn = conn
                return

    def reregister(self) -> None:
        """Register every live query that has no live connection (after a loss, or
        :data:`RETRY_AFTER_S` after an answer that was an error)."""
        now = self._clock()
        for sub in list(self._subs.values()):
            if self._retry_at.get(sub.query_id, 0.0) > now:
                continue
            if sub.conn is None or not sub.conn.is_authenticated:
                sub.conn = None
                self._retry_at.pop(sub.query_id, None)
                self._register(sub)

    def on_connection_lost(self, conn: NodeConnection) -> None:
        for sub in self._subs.values():
            if sub.conn is conn:
                sub.conn = None
        self.reregister()

    def on_resp(self, resp: QueryResp) -> bool:
        sub = self._subs.get(resp.query_id)
        if sub is None:
            return False
        if resp.error is None:
            sub._initial(resp)
            return True
        # no complete answer (say, a node of the cluster is failing): keep the rows, drop
        # this registration and register again a little later
        sub.error = resp.error
        log.info("live query on %s got no complete answer: %s", sub.map_name, resp.error)
        if sub.conn is not None:
            sub.conn.send(QueryUnsub(sub.query_id))
            sub.conn = None
        self._retry_at[sub.query_id] = self._clock() + RETRY_AFTER_S
        return True

    def on_update(self, update: QueryUpdate) -> None:
        sub = self._subs.get(update.query_id)
        if sub is None:
            return
        removed = update.change_type in ("LEAVE", "REMOVE")
        sub._emit(Change(update.key, None if removed else update.value, update.change_type))

    def close(self) -> None:
        for sub in list(self._subs.values()):
            sub.closed = True
            sub._put(None)
        self._subs.clear()
