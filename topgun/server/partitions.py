"""Partitions: the table this node serves, the authority that plans it, and migration.

Authority: the smallest live, non-leaving node id among the members of the current table (or
among all live nodes before there is a table). It plans with the pure
:func:`topgun.core.rebalance.plan` and publishes ``max(seen version) + 1``; every node applies
a table only when its version is newer, so the version is strictly increasing cluster-wide.
A node becomes owner or backup of a partition only once it holds the data (``ready``), which
the owner makes true by migrating the partition to it.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from topgun.core.errors import ProtocolError
from topgun.core.hashing import PARTITION_COUNT
from topgun.core.rebalance import plan
from topgun.core.table import NodeInfo, NodeStatus, PartitionTable
from topgun.server.context import NodeContext
from topgun.server.membership import Membership, send_quiet
from topgun.server.peer_link import Member, PeerGone, PeerLink
from topgun.server.replication import Replication
from topgun.server.store import triples_to_wire

MIGRATION_CHUNK_RECORDS = 5000


class PartitionService:
    def __init__(self, ctx: NodeContext, membership: Membership, replication: Replication) -> None:
        self.ctx = ctx
        self.membership = membership
        self.replication = replication
        self.table: PartitionTable | None = None
        self.max_version = 0
        self.ready: set[tuple[int, str]] = set()
        self.synced: dict[int, set[str]] = {}
        self._migrating: set[tuple[int, str]] = set()
        self.table_changed = asyncio.Event()
        self.on_table: list[Callable[[PartitionTable], None]] = []
        self.bootstrap_at = 0.0
        membership.handlers.update(
            TABLE=self._on_table_msg, READY=self._on_ready, MIGRATE=self._on_migrate
        )
        membership.on_up.append(self._member_up)
        membership.on_down.append(self._member_down)
        membership.on_change.append(self.maybe_plan)
        membership.handshake_extra = lambda: self.table_msg() if self.table is not None else {}

    # ------------------------------------------------------------------ views

    def role_of(self, pid: int) -> str:
        t = self.table
        if t is not None:
            if t.owners[pid] == self.ctx.node_id:
                return "owner"
            if self.ctx.node_id in t.backups[pid]:
                return "backup"
        return "none"

    def holds_partitions(self) -> bool:
        t = self.table
        me = self.ctx.node_id
        if t is None or not self.membership.members:
            return False
        return any(o == me or me in b for o, b in zip(t.owners, t.backups, strict=True))

    # ------------------------------------------------------------------ membership events

    def _member_up(self, link: PeerLink, remote: Member, is_new: bool) -> None:
        if is_new:
            # A (re)joining node holds nothing we can vouch for: forget stale readiness.
            self.ready = {r for r in self.ready if r[1] != remote.node_id}
        if link.remote_extra.get("table") is not None:
            try:
                self._accept_ready(link.remote_extra.get("ready"))
                self.apply_table(PartitionTable.from_wire(link.remote_extra["table"]))
            except ProtocolError as exc:
                self.ctx.log.warning("bad table from %s: %s", remote.node_id, exc)
        if self.table is not None:
            self.ctx.spawn(send_quiet(link, self.table_msg()))
        self.maybe_plan()
        self.kick_migrations()

    def _member_down(self, node_id: str) -> None:
        self.ready = {r for r in self.ready if r[1] != node_id}
        self._migrating = {m for m in self._migrating if m[1] != node_id}

    # ------------------------------------------------------------------ authority

    def authority(self) -> str | None:
        live = [n for n in self.membership.live_ids() if n not in self.membership.leaving]
        if self.ctx.state == "leaving":
            live = [n for n in live if n != self.ctx.node_id]
        if not live:
            return None
        if self.table is not None:
            in_table = [n for n in live if self.table.node(n) is not None]
            if in_table:
                return min(in_table)
        return min(live)

    def _view_settled(self) -> bool:
        """Whether our member view can be trusted for planning: every node of the current
        table is either linked to us or reported by none of our peers (so it is gone). A node
        that just joined and is still meeting the others must not plan them out."""
        t = self.table
        if t is None:
            return True
        for n in t.node_ids():
            if n == self.ctx.node_id or n in self.membership.members:
                continue
            if self.membership.reported_by_peers(n):
                return False
        return True

    def maybe_plan(self) -> None:
        m = self.membership
        if self.ctx.state != "running" or self.authority() != self.ctx.node_id:
            return
        if not self._view_settled():
            return
        if self.table is None and not m.members and time.monotonic() < self.bootstrap_at:
            return  # give the configured peers a chance before founding a cluster alone
        live = [n for n in m.live_ids() if n not in m.leaving]
        draining = [n for n in m.leaving if n in m.members]
        assignment = plan(self.table, live, self.ready, draining=draining)
        holders = {n for o, b in zip(*assignment, strict=True) for n in (o, *b)}
        nodes = tuple(
            NodeInfo(n, m.url_of(n), NodeStatus.LEAVING if n in draining else NodeStatus.ACTIVE)
            for n in sorted({*live, *(d for d in draining if d in holders)})
        )
        old = self.table
        if old is not None and (old.owners, old.backups) == assignment and old.nodes == nodes:
            return
        owners, backups = assignment
        if old is None:
            self.ready |= {(p, n) for p in range(len(owners)) for n in (owners[p], *backups[p])}
        self.ready |= {(p, o) for p, o in enumerate(owners)}
        table = PartitionTable(
            self.max_version + 1, nodes, owners, backups, self.ctx.config.clock_ms()
        )
        self.ctx.log.info("publishing partition table v%d for %s", table.version, sorted(live))
        self.apply_table(table)
        m.broadcast(self.table_msg())

    # ------------------------------------------------------------------ table

    def _ready_wire(self, items: set[tuple[int, str]]) -> list[list[Any]]:
        return [[p, n, self.membership.incarnation_of(n)] for p, n in sorted(items)]

    def _accept_ready(self, raw: object) -> bool:
        if not isinstance(raw, list):
            return False
        added = False
        for item in raw[: PARTITION_COUNT * 16]:
            if not isinstance(item, list) or len(item) != 3:
                continue
            p, n, inc = item
            if (
                isinstance(p, int) and 0 <= p < PARTITION_COUNT and isinstance(n, str)
                and inc is not None and inc == self.membership.incarnation_of(n)
                and (p, n) not in self.ready
            ):  # fmt: skip
                self.ready.add((p, n))
                added = True
        return added

    def table_msg(self) -> dict[str, Any]:
        assert self.table is not None
        return {"t": "TABLE", "table": self.table.to_wire(), "ready": self._ready_wire(self.ready)}

    def _on_table_msg(self, link: PeerLink, msg: dict[str, Any]) -> None:
        self._accept_ready(msg.get("ready"))
        self.apply_table(PartitionTable.from_wire(msg.get("table")))
        self.maybe_plan()

    def _on_ready(self, link: PeerLink, msg: dict[str, Any]) -> None:
        if self._accept_ready(msg.get("items")):
            self.maybe_plan()

    def apply_table(self, new: PartitionTable) -> bool:
        old = self.table
        if old is not None and new.version <= old.version:
            return False
        me = self.ctx.node_id
        self.table = new
        self.max_version = max(self.max_version, new.version)
        self.ctx.metrics.table_version.set(new.version)
        for p in range(new.partition_count):
            if new.owners[p] == me:
                if old is None or old.owners[p] != me or p not in self.synced:
                    self.synced[p] = set()
                else:
                    self.synced[p] &= set(new.backups[p])
            else:
                self.synced.pop(p, None)
        self.ctx.log.info("serving partition table v%d", new.version)
        self.table_changed.set()
        for listener in self.on_table:
            listener(new)
        self.kick_migrations()
        return True

    # ------------------------------------------------------------------ migration

    def kick_migrations(self) -> None:
        t = self.table
        if t is None or not self.ctx.serving:
            return
        todo: dict[str, list[int]] = defaultdict(list)
        for p, synced in self.synced.items():
            for b in t.backups[p]:
                if (
                    b != self.ctx.node_id
                    and b not in synced
                    and (p, b) not in self._migrating
                    and self.membership.link_for(b) is not None
                ):
                    todo[b].append(p)
        for b, pids in todo.items():
            chunk: list[int] = []
            size = 0
            for p in pids:
                chunk.append(p)
                size += self.ctx.store.partition_size(p)
                if size >= MIGRATION_CHUNK_RECORDS or p == pids[-1]:
                    self._migrating.update((p, b) for p in chunk)
                    self.ctx.spawn(self.migrate(b, chunk))
                    chunk, size = [], 0

    async def migrate(self, target: str, pids: list[int]) -> None:
        m = self.membership
        try:
            link = m.link_for(target)
            incarnation = m.incarnation_of(target)
            if link is None:
                return
            store = self.ctx.store
            parts = [[p, triples_to_wire(store.partition_records(p))] for p in pids]
            await link.request({"t": "MIGRATE", "parts": parts}, self.ctx.config.request_timeout_s)
            t = self.table
            if m.incarnation_of(target) != incarnation or link.closed:
                return  # the target died (or restarted) meanwhile: its copy does not count
            done = {
                (p, target)
                for p in pids
                if t is not None and t.owners[p] == self.ctx.node_id and target in t.backups[p]
            }
            for p, b in done:
                self.synced.setdefault(p, set()).add(b)
            self.ctx.metrics.migrations.inc(len(done))
            if done:
                self.ready |= done
                m.broadcast({"t": "READY", "items": self._ready_wire(done)})
                self.maybe_plan()
        except (PeerGone, TimeoutError) as exc:
            self.ctx.log.info("migration to %s interrupted: %r", target, exc)
        finally:
            self._migrating.difference_update((p, target) for p in pids)

    async def _on_migrate(self, link: PeerLink, msg: dict[str, Any]) -> None:
        parts = msg.get("parts")
        ok = True
        if isinstance(parts, list):
            for part in parts:
                if isinstance(part, list) and len(part) == 2:
                    try:
                        self.replication.merge_records(part[1])
                    except (ProtocolError, ValueError):
                        ok = False
        await link.reply(msg, {"t": "MIGRATE_ACK", "ok": ok})
