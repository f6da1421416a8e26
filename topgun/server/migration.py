"""Migration: copying whole partitions from their owner to backups that lack them.

The owner knows per partition which backups hold a complete copy (``synced``); every table
change, link coming up or repair request starts copying the rest. Copies go one bounded
chunk at a time (:data:`MIGRATION_CHUNK_RECORDS`), each acknowledged before the next is built,
and count only if the target did not restart meanwhile; then the target is ``ready`` for
those partitions and the authority may make it owner.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from topgun.core.errors import ProtocolError
from topgun.core.hashing import PARTITION_COUNT, fnv1a_utf16
from topgun.core.record_wire import Flat, encode_flat
from topgun.core.table import PartitionTable
from topgun.server.context import NodeContext
from topgun.server.membership import Membership
from topgun.server.partitions import PartitionService
from topgun.server.peer_link import PeerGone, PeerLink
from topgun.server.replication import Replication

MIGRATION_CHUNK_RECORDS = 250
"""Records per migration or repair message: small enough that building, sending and merging
one never holds the loop long (a failover measured p50 150+ ms with 1000, 66-91 ms with 250)."""


class Migrations:
    def __init__(
        self,
        ctx: NodeContext,
        membership: Membership,
        partitions: PartitionService,
        replication: Replication,
    ) -> None:
        self.ctx = ctx
        self.membership = membership
        self.partitions = partitions
        self.replication = replication
        self.in_flight: set[tuple[int, str]] = set()
        """(partition, target) copies under way."""
        self._void: set[tuple[int, str]] = set()
        """Copies under way that will not count: since their records were read, the target
        missed a write, or a table left it out of the partition's backups."""
        partitions.copies_in_flight = lambda: len(self.in_flight)
        partitions.on_table.append(self._table_changed)
        membership.handlers["MIGRATE"] = self._on_migrate
        membership.on_up.append(lambda _link, _member, _new: self.kick())
        membership.on_down.append(self._member_down)
        replication.on_missed = self._missed

    def _member_down(self, node_id: str) -> None:
        self.in_flight = {m for m in self.in_flight if m[1] != node_id}

    def _missed(self, backup: str, flats: list[Flat]) -> None:
        self.resync({fnv1a_utf16(flat[1]) % PARTITION_COUNT for flat in flats}, backup)

    def _table_changed(self, t: PartitionTable) -> None:
        # A copy whose target stops being our backup of it misses the writes made meanwhile
        # (they are not replicated to it); a later table may name it again before the copy
        # lands, so the copy must not count then.
        me = self.ctx.node_id
        self._void.update(
            (p, b) for p, b in self.in_flight if t.owners[p] != me or b not in t.backups[p]
        )
        # What our copies made ready, said again under this table: an authority forgets
        # claims when it missed a table, and one that takes over knows only what it heard.
        vouched = self.partitions.vouched()
        if vouched:
            items = self.partitions.ready_wire(vouched)
            self.membership.broadcast({"t": "READY", "items": items})
        self.kick()

    def resync(self, pids: Iterable[int], backup: str) -> None:
        """``backup``'s copies of ``pids`` disagree with ours, or may: copy them to it again.
        A copy to it already in flight may predate what it missed, so it does not count."""
        synced = self.partitions.synced
        stale = False
        for p in pids:
            if (p, backup) in self.in_flight:
                self._void.add((p, backup))
            if backup in synced.get(p, ()):
                synced[p].discard(backup)
                stale = True
        if stale:
            self.kick()

    def kick(self) -> None:
        t = self.partitions.table
        if t is None or not self.ctx.serving:
            return
        todo: dict[str, list[int]] = defaultdict(list)
        for p, synced in self.partitions.synced.items():
            for b in t.backups[p]:
                if (
                    b != self.ctx.node_id
                    and b not in synced
                    and (p, b) not in self.in_flight
                    and self.membership.link_for(b) is not None
                ):
                    todo[b].append(p)
        for b, pids in todo.items():
            self.in_flight.update((p, b) for p in pids)
            self.ctx.spawn(self._stream(b, pids))

    async def _stream(self, target: str, pids: list[int]) -> None:
        """Copy ``pids`` to ``target`` one bounded chunk at a time, each acknowledged before
        the next is built, so a big handover never holds the event loop (heartbeats, writes)
        for more than one chunk's worth of records."""
        left = list(pids)
        try:
            while left:
                chunk: list[int] = []
                size = 0
                while left and (not chunk or size < MIGRATION_CHUNK_RECORDS):
                    p = left.pop(0)
                    chunk.append(p)
                    size += self.ctx.store.partition_size(p)
                if not await self.migrate(target, chunk):
                    return
        finally:
            self.in_flight.difference_update((p, target) for p in left)

    async def migrate(self, target: str, pids: list[int]) -> bool:
        """Send whole partitions to ``target``; False when the target is gone."""
        m = self.membership
        try:
            link = m.link_for(target)
            incarnation = m.incarnation_of(target)
            if link is None:
                return False
            store = self.ctx.store
            self._void.difference_update((p, target) for p in pids)  # read now: current
            parts = [[p, encode_flat(store.partition_flats(p))] for p in pids]
            reply = await link.request(
                {"t": "MIGRATE", "parts": parts}, self.ctx.config.request_timeout_s
            )
            t = self.partitions.table
            if m.incarnation_of(target) != incarnation or link.closed:
                return False  # the target died (or restarted) meanwhile: its copy does not count
            if reply.get("ok") is False:
                self.ctx.log.warning("migration to %s refused: %s", target, reply)
                return False  # not whole there (or not on its disk): copied again later
            done = {
                (p, target)
                for p in pids
                if t is not None and t.owners[p] == self.ctx.node_id and target in t.backups[p]
                and (p, target) not in self._void
            }  # fmt: skip
            for p, b in done:
                self.partitions.synced.setdefault(p, set()).add(b)
            self.ctx.metrics.migrations.inc(len(done))
            if done:
                self.partitions.ready |= done
                m.broadcast({"t": "READY", "items": self.partitions.ready_wire(done)})
                self.partitions.maybe_plan()
            return True
        except (PeerGone, TimeoutError) as exc:
            self.ctx.log.info("migration to %s interrupted: %r", target, exc)
            return False
        finally:
            self.in_flight.difference_update((p, target) for p in pids)
            self._void.difference_update((p, target) for p in pids)

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
        # a copy counts (ready, synced) once it is on our disk, when we keep one: a
        # partition handed to us is then never served from a copy a crash could take back
        if self.ctx.commit is not None and not await self.replication.on_disk():
            ok = False
        await link.reply(msg, {"t": "MIGRATE_ACK", "ok": ok})
