"""Queries: one-shot answers gathered from every owner, and live-query change fan-out.

A query is answered by asking each member for the matches among the partitions it owns
(``QEXEC``) and LWW-merging the parts. Live queries: a node tells its peers which maps its
clients watch (``INTEREST``); an owner that merged a record of such a map sends it to them
(``CHANGES``), and each node turns it into ``QUERY_UPDATE`` s for its own clients.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from topgun.core.errors import ProtocolError
from topgun.core.messages import Query
from topgun.core.records import LWWRecord
from topgun.core.table import PartitionTable
from topgun.server import query as q
from topgun.server.context import NodeContext
from topgun.server.membership import Membership, send_quiet
from topgun.server.peer_link import Member, PeerGone, PeerLink
from topgun.server.store import Triple, triples_from_wire, triples_to_wire

INTEREST_MAX_MAPS = 10_000


class ChangeListener(Protocol):
    def on_changes(self, changed: list[Triple], now_ms: int) -> None: ...


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

    def local_query(self, map_name: str, query: Query) -> dict[str, LWWRecord]:
        t = self.table_of()
        pids = set(t.partitions_of(self.ctx.node_id)) if t is not None else None
        return q.select(
            self.ctx.store.map_records(map_name, pids), query, self.ctx.config.clock_ms()
        )

    async def run_query(self, map_name: str, query: Query) -> list[tuple[str, Any]]:
        """Ask every owner for its partitions' matches and merge them by LWW."""
        m = self.membership
        partials = [self.local_query(map_name, query)]
        links = [link for n in list(m.links) if (link := m.link_for(n)) is not None]

        async def ask(link: PeerLink) -> dict[str, LWWRecord]:
            try:
                reply = await link.request(
                    {"t": "QEXEC", "mapName": map_name, "query": query.to_wire()},
                    self.ctx.config.query_timeout_s,
                )
                rows = reply.get("rows")
                out: dict[str, LWWRecord] = {}
                for row in rows if isinstance(rows, list) else []:
                    if isinstance(row, list) and len(row) == 2 and isinstance(row[0], str):
                        out[row[0]] = LWWRecord.from_wire(row[1])
                return out
            except (PeerGone, TimeoutError, ProtocolError) as exc:
                self.ctx.log.info("query part from %s failed: %r", link.node_id, exc)
                return {}

        partials.extend(await asyncio.gather(*(ask(link) for link in links)))
        return q.finish(q.merge_partials(partials), query, self.ctx.config.clock_ms())

    async def _on_qexec(self, link: PeerLink, msg: dict[str, Any]) -> None:
        try:
            query = Query.from_wire(msg.get("query") or {})
            name = msg.get("mapName")
            if not isinstance(name, str):
                raise ProtocolError("mapName must be a string")
            rows = self.local_query(name, query)
            wire = [[k, r.to_wire()] for k, r in rows.items()]
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

    def publish_changes(self, changed: list[Triple]) -> None:
        """Tell live queries here and on interested nodes about records the owner merged."""
        self._deliver(changed)
        by_node: dict[str, list[Triple]] = defaultdict(list)
        for t in changed:
            for node_id in self._interest_remote.get(t[0], ()):
                by_node[node_id].append(t)
        for node_id, triples in by_node.items():
            link = self.membership.link_for(node_id)
            if link is not None:
                msg = {"t": "CHANGES", "recs": triples_to_wire(triples)}
                self.ctx.spawn(send_quiet(link, msg))

    def _on_changes_msg(self, link: PeerLink, msg: dict[str, Any]) -> None:
        self._deliver(triples_from_wire(msg.get("recs")))

    def _deliver(self, changed: list[Triple]) -> None:
        if not self._interest_local:
            return
        now = self.ctx.config.clock_ms()
        for listener in list(self.listeners()):
            listener.on_changes(changed, now)
