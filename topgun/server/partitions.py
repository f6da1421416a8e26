"""Partitions: the table this node serves, the authority that plans it, and migration.

Authority: the smallest live, non-leaving node id among the members of the current table (or
among all live nodes before there is a table). It plans with the pure
:func:`topgun.core.rebalance.plan`, then *proposes* the table (``PROPOSE``) under its epoch
and ``max(seen version) + 1``; the table is committed, applied and broadcast (``TABLE`` with
the acks) only once a quorum of the voters (the nodes of the current table) accepted it
(:mod:`topgun.core.quorum`). A node without a quorum plans nothing; every node applies a
table only when its (epoch, version) is newer and its acks make a quorum, so the version is
strictly increasing cluster-wide and one version never names two tables.
A node becomes owner or backup of a partition only once it holds the data (``ready``), which
the owner makes true by migrating the partition to it (:mod:`migration`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from typing import Any

from topgun.core.errors import ProtocolError
from topgun.core.hashing import PARTITION_COUNT
from topgun.core.quorum import Acceptor, Proposal, committed, has_quorum, quorum_size
from topgun.core.rebalance import plan
from topgun.core.table import NodeInfo, NodeStatus, PartitionTable
from topgun.server.context import NodeContext
from topgun.server.membership import Membership, send_quiet
from topgun.server.peer_link import Member, PeerLink

MAX_ACKS = 1000


def _key_from_wire(raw: object) -> tuple[int, int]:
    if (
        not isinstance(raw, list) or len(raw) != 2
        or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in raw)
    ):  # fmt: skip
        raise ProtocolError("a table key must be [epoch, version]")
    return (raw[0], raw[1])


def _ids_from_wire(raw: object) -> tuple[str, ...]:
    if not isinstance(raw, list) or len(raw) > MAX_ACKS or not all(isinstance(a, str) for a in raw):
        raise ProtocolError("TABLE acks and voters must be lists of node ids")
    return tuple(raw)


def _epoch_from_wire(raw: object) -> int:
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
        raise ProtocolError("epoch must be a non-negative integer")
    return raw


class PartitionService:
    def __init__(self, ctx: NodeContext, membership: Membership) -> None:
        self.ctx = ctx
        self.membership = membership
        self.table: PartitionTable | None = None
        self.max_version = 0
        self.ready: set[tuple[int, str]] = set()
        self.synced: dict[int, set[str]] = {}
        self.copies_in_flight: Callable[[], int] = lambda: 0
        """How many partition copies are being sent from here (set by the migrations)."""
        self.table_changed = asyncio.Event()
        self._waiters: list[asyncio.Future[None]] = []
        self.on_table: list[Callable[[PartitionTable], None]] = []
        self.bootstrap_at = 0.0
        self.acks: tuple[str, ...] = ()
        self.acked_voters: tuple[str, ...] = ()
        """The voters that accepted the table we serve, and the voters it was counted against
        (both sent along, so a peer can check the table was committed)."""
        self.acceptor = Acceptor()
        self._my_epoch: int | None = None
        self._proposing = False
        self._replan = False
        membership.handlers.update(
            TABLE=self._on_table_msg, READY=self._on_ready, PROPOSE=self._on_propose,
        )  # fmt: skip
        membership.on_up.append(self._member_up)
        membership.on_down.append(self._member_down)
        membership.on_change.append(self.maybe_plan)
        membership.on_lease.append(self._lease_renewed)
        self._had_lease = False
        membership.heartbeat_extra = lambda: {"unsafe": self.unsafe_count()}
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

    def voters(self) -> list[str]:
        return self.table.node_ids() if self.table is not None else []

    def need(self, voters: int) -> int:
        return quorum_size(voters, self.ctx.config.min_cluster_size)

    def has_quorum(self) -> bool:
        """Whether the nodes we are linked to (and we) are a quorum of the current table."""
        if not self.ctx.serving:
            return False
        live = self.membership.live_ids()
        return has_quorum(self.voters(), live, self.ctx.config.min_cluster_size)

    def holds_lease(self, now: float | None = None) -> bool:
        """Whether a quorum confirmed us recently enough to acknowledge writes as owner."""
        if not self.has_quorum():
            return False
        voters = self.voters()
        return self.membership.lease.holds(
            time.monotonic() if now is None else now, self.ctx.node_id, voters,
            self.membership.live_ids(), self.need(len(voters)),
        )  # fmt: skip

    def _lease_renewed(self) -> None:
        """Plan as soon as the lease is (again) held, not on the next tick."""
        held, self._had_lease = self._had_lease, self.holds_lease()
        if self._had_lease and not held:
            self.maybe_plan()

    def unsafe_count(self) -> int:
        """Partitions we own whose backups are not all synced yet, plus copies in flight."""
        t = self.table
        if t is None:
            return PARTITION_COUNT
        me = self.ctx.node_id
        behind = sum(1 for p, synced in self.synced.items() if not {*t.backups[p]} - {me} <= synced)
        return behind + self.copies_in_flight()

    def is_safe(self) -> bool:
        """Every partition's owner and backups are live and every owner reports its backups
        synced (our own count, the others' from their last heartbeat)."""
        t = self.table
        if t is None or not self.has_quorum():
            return False
        live = set(self.membership.live_ids())
        if not set(t.node_ids()) <= live or not set(t.owners) <= live:
            return False
        status = self.membership.peer_status
        return self.unsafe_count() == 0 and all(
            status.get(n, {}).get("unsafe") == 0 for n in t.node_ids() if n != self.ctx.node_id
        )

    async def wait_newer(self, than: PartitionTable | None, timeout: float) -> None:  # noqa: ASYNC109
        """Return once a table other than ``than`` is served, or after ``timeout`` s."""
        if self.table is not than:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            pass
        finally:
            if fut in self._waiters:
                self._waiters.remove(fut)

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
                self.apply_table_msg(link.remote_extra, remote.node_id)
            except ProtocolError as exc:
                self.ctx.log.warning("bad table from %s: %s", remote.node_id, exc)
        if self.table is not None:
            self.ctx.spawn(send_quiet(link, self.table_msg()))
        self.maybe_plan()

    def _member_down(self, node_id: str) -> None:
        # Gone, or restarted (a new incarnation holds nothing our copies gave the old one):
        # either way neither its readiness nor its copies hold, whether or not a table follows.
        self.ready = {r for r in self.ready if r[1] != node_id}
        for synced in self.synced.values():
            synced.discard(node_id)

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
        if self._proposing:
            self._replan = True  # something changed while a proposal is out: plan again after
            return
        if not self._view_settled() or not self.has_quorum():
            return
        if self.table is not None and not self.holds_lease():
            return  # our view is not confirmed (we may have just woken from a stall)
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
        if old is not None and old.epoch == self._my_epoch == self.acceptor.epoch:
            epoch = old.epoch  # our term goes on
        else:
            epoch = max(self.acceptor.epoch, old.epoch if old else 0) + 1  # a new term
        version = max(self.max_version, self.acceptor.version) + 1
        table = PartitionTable(
            version, nodes, owners, backups, self.ctx.config.clock_ms(), epoch=epoch
        )
        self._proposing = True
        self.ctx.spawn(self._propose(table))

    async def _propose(self, table: PartitionTable) -> None:
        """Ask the voters to accept ``table``; commit it once a quorum did."""
        m, me = self.membership, self.ctx.node_id
        old = self.table
        try:
            base = old.key if old is not None else (0, 0)
            voters = set(old.node_ids() if old is not None else table.node_ids())
            dropped = sorted(set(old.node_ids()) - set(table.node_ids())) if old else []
            acks = []
            if self._accept(table, base):
                acks.append(me)
            msg = {
                "t": "PROPOSE", "table": table.to_wire(), "epoch": table.epoch,
                "base": list(base),
            }  # fmt: skip
            asks = [(n, link) for n in sorted(voters - {me}) if (link := m.link_for(n))]
            timeout = min(self.ctx.config.request_timeout_s, self.ctx.config.failure_timeout_s)
            replies = await asyncio.gather(
                *(link.request(dict(msg), timeout) for _, link in asks), return_exceptions=True
            )
            for (node, _), reply in zip(asks, replies, strict=True):
                if isinstance(reply, BaseException):
                    continue
                if reply.get("ok") is True:
                    acks.append(node)
                else:
                    self._learn(reply)
            need = self.need(len(voters))
            if len(voters & set(acks)) < need or self.table is not old:
                self.ctx.log.info(
                    "table e%d v%d not committed: %d of %d voters accepted (need %d)%s",
                    table.epoch, table.version, len(acks), len(voters), need,
                    f", dropping {dropped}" if dropped else "",
                )  # fmt: skip
                return
            self._my_epoch = table.epoch
            self.ctx.log.info(
                "publishing partition table e%d v%d for %s (acks %s)",
                table.epoch, table.version, table.node_ids(), sorted(acks),
            )  # fmt: skip
            self.apply_table(table, tuple(sorted(acks)), tuple(sorted(voters)), own=True)
            m.broadcast(self.table_msg())
        finally:
            self._proposing = False
            if self._replan:
                self._replan = False
                self.maybe_plan()

    def _learn(self, reply: dict[str, Any]) -> None:
        """A refusal tells us the voter's promises: propose above them next time."""
        epoch, version = reply.get("epoch"), reply.get("version")
        if isinstance(version, int) and not isinstance(version, bool):
            self.max_version = max(self.max_version, min(version, 2**62))
        if isinstance(epoch, int) and not isinstance(epoch, bool):
            self.acceptor.epoch = max(self.acceptor.epoch, min(epoch, 2**62))

    def _accept(self, table: PartitionTable, base: tuple[int, int]) -> bool:
        old = self.table
        dropped = frozenset(set(old.node_ids()) - set(table.node_ids())) if old else frozenset()
        alive = [n for n in self.membership.live_ids() if n not in self.membership.leaving]
        if self.ctx.state == "leaving":
            alive = [n for n in alive if n != self.ctx.node_id]
        current = old.key if old is not None else (0, 0)
        return self.acceptor.consider(Proposal(table.key, base, dropped), current, alive)

    async def _on_propose(self, link: PeerLink, msg: dict[str, Any]) -> None:
        ok = False
        try:
            epoch = _epoch_from_wire(msg.get("epoch"))
            table = dataclasses.replace(PartitionTable.from_wire(msg.get("table")), epoch=epoch)
            ok = self._accept(table, _key_from_wire(msg.get("base")))
        except ProtocolError as exc:
            self.ctx.log.warning("bad proposal from %s: %s", link.node_id, exc)
        await link.reply(msg, {
            "t": "PROPOSE_ACK", "ok": ok, "epoch": self.acceptor.epoch,
            "version": max(self.acceptor.version, self.max_version),
        })  # fmt: skip

    # ------------------------------------------------------------------ table

    def ready_wire(self, items: set[tuple[int, str]]) -> list[list[Any]]:
        return [[p, n, self.membership.incarnation_of(n)] for p, n in sorted(items)]

    def vouched(self) -> set[tuple[int, str]]:
        """The readiness this node can vouch for: as an owner, the backups its copies
        reached (kept current by every table it applies, see :meth:`apply_table`)."""
        return {(p, b) for p, synced in self.synced.items() for b in synced}

    def _accept_ready(self, raw: object, sender: str) -> bool:
        """Take the readiness ``sender`` vouches for, as the owner our table says it is of
        each partition and for replicas our table names. Nothing else: a node cut off for a
        while still holds claims that tables it missed made stale, and passing those around
        once let an authority hand a partition to a node before its copy arrived (found by
        the 2 | 3 split in hosts mode: a backup then missed the records of the cut)."""
        t = self.table
        if t is None or not isinstance(raw, list):
            return False
        added = False
        for item in raw[: PARTITION_COUNT * 16]:
            if not isinstance(item, list) or len(item) != 3:
                continue
            p, n, inc = item
            if (
                isinstance(p, int) and 0 <= p < t.partition_count and t.owners[p] == sender
                and isinstance(n, str) and (n == sender or n in t.backups[p])
                and inc is not None and inc == self.membership.incarnation_of(n)
                and (p, n) not in self.ready
            ):  # fmt: skip
                self.ready.add((p, n))
                added = True
        return added

    def table_msg(self) -> dict[str, Any]:
        assert self.table is not None
        return {
            "t": "TABLE", "table": self.table.to_wire(), "epoch": self.table.epoch,
            "acks": list(self.acks), "voters": list(self.acked_voters),
            "ready": self.ready_wire(self.vouched()),
        }  # fmt: skip

    def apply_table_msg(self, msg: dict[str, Any], sender: str) -> bool:
        """Apply a committed table a peer sent (TABLE, or a handshake's extra), then the
        readiness it vouches for, judged by the table we serve after it."""
        acks, voters = _ids_from_wire(msg.get("acks")), _ids_from_wire(msg.get("voters"))
        table = PartitionTable.from_wire(msg.get("table"))
        table = dataclasses.replace(table, epoch=_epoch_from_wire(msg.get("epoch")))
        applied = self.apply_table(table, acks, voters)
        self._accept_ready(msg.get("ready"), sender)
        return applied

    def restore(self, msg: object) -> None:
        """Serve the table this node last applied, as its data dir kept it (before start):
        it was committed then, so it needs no quorum now; newer tables replace it as usual."""
        if not isinstance(msg, dict):
            raise ProtocolError("a kept table must be a TABLE message")
        acks, voters = _ids_from_wire(msg.get("acks")), _ids_from_wire(msg.get("voters"))
        table = PartitionTable.from_wire(msg.get("table"))
        table = dataclasses.replace(table, epoch=_epoch_from_wire(msg.get("epoch")))
        self.apply_table(table, acks, voters, own=True)

    def _on_table_msg(self, link: PeerLink, msg: dict[str, Any]) -> None:
        self.apply_table_msg(msg, link.node_id)
        self.maybe_plan()

    def _on_ready(self, link: PeerLink, msg: dict[str, Any]) -> None:
        if self._accept_ready(msg.get("items"), link.node_id):
            self.maybe_plan()

    def apply_table(
        self,
        new: PartitionTable,
        acks: tuple[str, ...] = (),
        voters: tuple[str, ...] = (),
        *,
        own: bool = False,
    ) -> bool:
        """Serve ``new`` if it is newer, and (unless we committed it) a quorum accepted it."""
        old = self.table
        refused = self.ctx.metrics.tables_refused
        if old is not None and (new.key <= old.key or new.version <= old.version):
            if new.key == old.key and not new.same_contents(old):
                refused.labels(reason="forged").inc()
                self.ctx.log.warning("refused a table e%d v%d that differs from ours", *new.key)
            elif new.key < old.key:
                refused.labels(reason="stale").inc()
            return False
        known = set(new.node_ids()) | set(old.node_ids() if old is not None else voters)
        if not own and (
            not committed(acks, voters, self.ctx.config.min_cluster_size)
            or not set(voters) <= known  # voters are nodes of our table or of the new one
        ):
            refused.labels(reason="uncommitted").inc()
            self.ctx.log.warning("refused table e%d v%d: acks %s are no quorum", *new.key, acks)
            return False
        me = self.ctx.node_id
        self.table = new
        # A node holds current data of a partition only while it replicates it: once a table
        # leaves it out (a cut-off side, a moved replica), its copy goes stale, and it must be
        # migrated to again before it can own or back up that partition. Found by the 2 | 3
        # split: the minority's authority kept its side's readiness and handed ownership back
        # at once after the heal, to nodes that had missed the majority's writes.
        # Tables we missed may have left a replica out (it missed writes) or given the
        # partition to another owner meanwhile: what we knew of copies may be stale.
        missed = old is not None and new.version != old.version + 1
        if missed:
            self.ready = set()
        self.ready = {(p, n) for p, n in self.ready if n == new.owners[p] or n in new.backups[p]}
        self.acks, self.acked_voters = acks, voters
        self.acceptor.observe(new.key)
        self.max_version = max(self.max_version, new.version)
        self.ctx.metrics.table_version.set(new.version)
        for p in range(new.partition_count):
            if new.owners[p] == me:
                if missed or old is None or old.owners[p] != me or p not in self.synced:
                    self.synced[p] = set()
                else:
                    self.synced[p] &= set(new.backups[p])
            else:
                self.synced.pop(p, None)
        self.ctx.log.info("serving partition table e%d v%d", new.epoch, new.version)
        self.table_changed.set()
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        for listener in self.on_table:
            listener(new)
        return True
