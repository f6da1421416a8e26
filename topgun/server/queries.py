"""Queries: paged answers gathered from every owner, and live-query change fan-out.

A query page is answered by asking each member for its first ``limit + 1`` matches after the
cursor among the partitions it owns (``QEXEC``), LWW-merging the parts and cutting the page
(:mod:`paging`); a missing part fails the whole answer. Live queries: a node tells its peers
which maps its clients watch (``INTEREST``); an owner that merged a client's write of such a
map sends it to them (``CHANGES``, with the writer's :class:`Origin`), and each node turns it
into ``QUERY_UPDATE`` s and ``SERVER_EVENT`` / ``SERVER_BATCH_EVENT`` s for its own clients.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import msgspec

from topgun.core.errors import ProtocolError
from topgun.core.messages import Query
from topgun.core.record_wire import Triple, decode_records, encode_records
from topgun.core.records import LWWRecord
from topgun.core.table import PartitionTable
from topgun.server import paging
from topgun.server import query as q
from topgun.server.context import NodeContext
from topgun.server.membership import Membership, send_quiet
from topgun.server.peer_link import Member, PeerGone, PeerLink

INTEREST_MAX_MAPS = 10_000
EVAL_CHUNK = 2000
"""Records a query walks per turn of the event loop."""


class QueryFailed(Exception):
    """A part of a distributed answer is missing: the answer would be short, so it is none."""


class Origin(msgspec.Struct, frozen=True, gc=False):
    """Who wrote a change: the client session (so its own writes are not echoed back to it as
    events) and whether it came as one ``CLIENT_OP`` (``SERVER_EVENT``) or a batch."""

    node_id: str
    session_id: str
    single: bool = False

    def to_wire(self) -> list[Any]:
        return [self.node_id, self.session_id, self.single]

    @classmethod
    def from_wire(cls, raw: object) -> Origin | None:
        if (
            isinstance(raw, list) and len(raw) == 3 and isinstance(raw[0], str)
            and isinstance(raw[1], str) and isinstance(raw[2], bool)
        ):  # fmt: skip
            return cls(raw[0], raw[1], raw[2])
        return None


class ChangeListener(Protocol):
    def on_changes(self, changed: list[Triple], now_ms: int, origin: Origin | None) -> None: ...


class QueryService:
    def __init__(self, ctx: NodeContext, membership: Membership) -> None:
        self.ctx = ctx
        self.membership = membership
        self.table_of: Callable[[], PartitionTable | None] = lambda: None
        self.listeners: Callable[[], Iterable[ChangeListener]] = tuple
        self._interest_local: dict[str, int] = {}
        self._interest_remote: dict[str, set[str]] = {}
        membership.handlers.update(
            INTEREST=self._on_interest, CHANGES=self._on_changes_msg, QEXEC=self._on_qexec
        )
        membership.on_up.append(self._member_up)
        membership.on_down.append(self._member_down)

    def _member_up(self, link: PeerLink, remote: Member, is_new: bool) -> None:
        if self._interest_local:
            maps = sorted(self._interest_local)
            self.ctx.spawn(send_quiet(link, {"t": "INTEREST", "maps": maps, "on": True}))

    def _member_down(self, node_id: str) -> None:
        for nodes in self._interest_remote.values():
            nodes.discard(node_id)

    # ------------------------------------------------------------------ one-shot queries

    async def local_part(
        self, map_name: str, query: Query, after: tuple[Any, ...] | None
    ) -> list[tuple[str, LWWRecord]]:
        """This node's first ``limit + 1`` live matches after ``after`` among the partitions it
        owns, walked in chunks of :data:`EVAL_CHUNK` records with the loop free in between."""
        t = self.table_of()
        store = self.ctx.store
        pids = t.partitions_of(self.ctx.node_id) if t is not None else store.partition_ids()
        clock = self.ctx.config.clock_ms
        now = clock()
        top = paging.TopRows(query, after)

        def row(key: str) -> LWWRecord | None:
            rec = store.get(map_name, key)
            live = rec is not None and rec.is_live(now) and q.matches(key, rec.value, query)
            return rec if live else None

        keys = store.map_keys if query.sort else store.sorted_keys
        lists = (keys(map_name, pid) for pid in pids)  # copied only as the walk reaches them
        for _ in paging.offer_rows(top, lists, row, EVAL_CHUNK):
            await asyncio.sleep(0)  # yield the loop, not a wait
            now = clock()
        return top.rows()

    async def run_page(self, map_name: str, query: Query) -> paging.Page:
        """One page of the answer, gathered from every owner of the table (each on the same
        table version); raises :class:`QueryFailed` when any part is missing (a short answer
        would look complete)."""
        now = self.ctx.config.clock_ms()
        position = paging.decode_cursor(query, now)
        if not position.usable:
            return paging.Page([], False, None, position.status)
        t = self.table_of()
        links: list[PeerLink] = []
        for owner in sorted(set(t.owners) - {self.ctx.node_id}) if t is not None else ():
            link = self.membership.link_for(owner)
            if link is None:
                raise QueryFailed(f"owner {owner} is not reachable")
            links.append(link)
        wire_query = query.to_wire()
        wire_query.pop("cursor", None)
        after = None if position.after is None else query.cursor
        version = t.version if t is not None else 0

        async def ask(link: PeerLink) -> list[tuple[str, LWWRecord]]:
            msg = {"t": "QEXEC", "mapName": map_name, "query": wire_query, "version": version}
            if after is not None:
                msg["query"] = {**wire_query, "cursor": after}
            try:
                reply = await link.request(msg, self.ctx.config.query_timeout_s)
            except (PeerGone, TimeoutError) as exc:
                raise QueryFailed(f"{link.node_id} did not answer ({exc!r})") from exc
            rows = reply.get("rows")
            if reply.get("error") is not None or not isinstance(rows, list):
                raise QueryFailed(f"{link.node_id}: {reply.get('error') or 'bad answer'}")
            out = []
            try:
                for row in rows:
                    if not isinstance(row, list) or len(row) != 2 or not isinstance(row[0], str):
                        raise ProtocolError("a row must be [key, record]")
                    out.append((row[0], LWWRecord.from_wire(row[1])))
            except ProtocolError as exc:
                raise QueryFailed(f"{link.node_id}: {exc}") from exc
            return out

        parts = await asyncio.gather(
            self.local_part(map_name, query, position.after), *(ask(link) for link in links)
        )
        return paging.finish_page(parts, query, position, self.ctx.config.clock_ms())

    def _on_qexec(self, link: PeerLink, msg: dict[str, Any]) -> None:
        """Answered in a task of its own: the link keeps reading while a part is walked (an
        awaited handler holds the link's reader, so the peer's heartbeats and acks waiting
        behind it would look like silence: at 1,000,000 keys a part takes about 0.5 s)."""
        self.ctx.spawn(self._answer_qexec(link, msg))

    async def _answer_qexec(self, link: PeerLink, msg: dict[str, Any]) -> None:
        try:
            query = Query.from_wire(msg.get("query") or {})
            name = msg.get("mapName")
            if not isinstance(name, str):
                raise ProtocolError("mapName must be a string")
            position = paging.decode_cursor(query, self.ctx.config.clock_ms())
            if not position.usable:
                raise ProtocolError(f"cursor {position.status}")
            t = self.table_of()
            mine = t.version if t is not None else 0
            if msg.get("version", mine) != mine:
                raise ProtocolError(
                    f"partition table changing (v{msg.get('version')} asked, v{mine} here)"
                )
            rows = await self.local_part(name, query, position.after)
            wire = [[k, r.to_wire()] for k, r in rows]
            await link.reply(msg, {"t": "QRESP", "rows": wire})
        except ProtocolError as exc:
            await link.reply(msg, {"t": "QRESP", "rows": [], "error": str(exc)})

    # ------------------------------------------------------------------ live queries

    def wants(self, map_name: str) -> bool:
        """Whether a live query anywhere watches ``map_name`` (so changes must be published)."""
        return map_name in self._interest_local or bool(self._interest_remote.get(map_name))

    def add_interest(self, map_name: str) -> None:
        n = self._interest_local.get(map_name, 0)
        self._interest_local[map_name] = n + 1
        if n == 0:
            self.membership.broadcast({"t": "INTEREST", "maps": [map_name], "on": True})

    def remove_interest(self, map_name: str) -> None:
        n = self._interest_local.get(map_name, 0) - 1
        if n > 0:
            self._interest_local[map_name] = n
        elif map_name in self._interest_local:
            del self._interest_local[map_name]
            self.membership.broadcast({"t": "INTEREST", "maps": [map_name], "on": False})

    def _on_interest(self, link: PeerLink, msg: dict[str, Any]) -> None:
        maps = msg.get("maps")
        for name in maps[:INTEREST_MAX_MAPS] if isinstance(maps, list) else []:
            if isinstance(name, str):
                holders = self._interest_remote.setdefault(name, set())
                if msg.get("on"):
                    holders.add(link.node_id)
                else:
                    holders.discard(link.node_id)

    def publish_changes(self, changed: list[Triple], origin: Origin | None = None) -> None:
        """Tell live queries here and on interested nodes about records the owner merged.

        Only the owner's merge of a client write publishes (never replication or migration),
        so each change reaches each watching node once."""
        self._deliver(changed, origin)
        by_node: dict[str, list[Triple]] = defaultdict(list)
        for t in changed:
            for node_id in self._interest_remote.get(t[0], ()):
                by_node[node_id].append(t)
        for node_id, triples in by_node.items():
            link = self.membership.link_for(node_id)
            if link is not None:
                msg: dict[str, Any] = {"t": "CHANGES", "recs": encode_records(triples)}
                if origin is not None:
                    msg["origin"] = origin.to_wire()
                self.ctx.spawn(send_quiet(link, msg))

    def _on_changes_msg(self, link: PeerLink, msg: dict[str, Any]) -> None:
        self._deliver(decode_records(msg.get("recs")), Origin.from_wire(msg.get("origin")))

    def _deliver(self, changed: list[Triple], origin: Origin | None) -> None:
        if not self._interest_local:
            return
        now = self.ctx.config.clock_ms()
        for listener in list(self.listeners()):
            listener.on_changes(changed, now, origin)
