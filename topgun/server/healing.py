"""Healing (anti-entropy): nothing stays stranded on a node that no longer owns it.

A node that was cut off, stalled or restarted may hold records for partitions it no longer
owns (some applied but never confirmed), and a backup may disagree with its owner (a
replication that timed out). Every turn, each node compares the Merkle roots of partitions it
holds but does not own with the current owner's (``AE_DIGESTS``: one small message per owner,
at most :data:`DIGESTS_PER_TURN` partitions), and for each partition whose roots differ pushes
its records to the owner in bounded chunks as migrations do (``AE_PUSH``, each acknowledged
before the next is built). The owner LWW-merges them, copies what changed to its backups
before acknowledging, and when the pusher is one of its backups, re-copies the partition to it
(migration), so both ends agree. Only the differences cost more than a digest: a healthy
rejoin moves nothing.

Only partitions whose local copy did not change since the previous turn are compared, so a
backup under a stream of writes does not mistake replication still in flight for a
disagreement. A stranded copy is kept (LWW makes it harmless) and compared again only when it
changes or its partition gets a new owner.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from topgun.core.errors import ProtocolError
from topgun.core.hashing import PARTITION_COUNT
from topgun.core.record_wire import encode_flat
from topgun.server.context import NodeContext
from topgun.server.membership import Membership
from topgun.server.migration import MIGRATION_CHUNK_RECORDS, Migrations
from topgun.server.partitions import PartitionService
from topgun.server.peer_link import PeerGone, PeerLink

DIGESTS_PER_TURN = 64

Digest = dict[str, int]


def _digest_from_wire(raw: object) -> Digest:
    if not isinstance(raw, dict) or len(raw) > 10_000:
        raise ProtocolError("a digest must be a map of map name to root hash")
    if not all(isinstance(k, str) and isinstance(v, int) for k, v in raw.items()):
        raise ProtocolError("a digest must be a map of map name to root hash")
    return dict(raw)


class Healing:
    def __init__(
        self,
        ctx: NodeContext,
        membership: Membership,
        partitions: PartitionService,
        migrations: Migrations,
    ) -> None:
        self.ctx = ctx
        self.membership = membership
        self.partitions = partitions
        self.migrations = migrations
        self.replication = migrations.replication
        self._previous: dict[int, Digest] = {}
        """Our digest of each held partition at the previous turn (quiet check)."""
        self._reconciled: dict[int, tuple[str, Digest]] = {}
        """partition → (owner, our digest) last found equal to, or pushed to, that owner."""
        self._cursor = 0
        membership.handlers.update(AE_DIGESTS=self._on_digests, AE_PUSH=self._on_push)
        membership.on_down.append(self._forget_owner)

    def digest(self, pid: int) -> Digest:
        store = self.ctx.store
        return {name: store.tree(pid, name).root() for name in store.partition_maps(pid)}

    def _forget_owner(self, node_id: str) -> None:
        self._reconciled = {p: r for p, r in self._reconciled.items() if r[0] != node_id}

    # ------------------------------------------------------------------ the holder's side

    async def turn(self) -> int:
        """One bounded round; returns how many records were pushed to owners."""
        t = self.partitions.table
        if t is None or not self.partitions.holds_lease():
            return 0
        me, store = self.ctx.node_id, self.ctx.store
        asks: dict[str, list[tuple[int, Digest]]] = defaultdict(list)
        scanned = digests = 0
        while scanned < PARTITION_COUNT and digests < DIGESTS_PER_TURN:
            p = self._cursor
            self._cursor = (self._cursor + 1) % t.partition_count
            scanned += 1
            owner = t.owners[p]
            if owner == me or store.partition_size(p) == 0:
                continue
            digests += 1
            dig = self.digest(p)  # the first one builds the partition's trees: yield after it
            await asyncio.sleep(0)
            quiet = self._previous.get(p) == dig
            self._previous[p] = dig
            if quiet and self._reconciled.get(p) != (owner, dig):
                asks[owner].append((p, dig))
        pushed = 0
        for owner, items in asks.items():
            pushed += await self._reconcile(owner, items)
        return pushed

    async def _reconcile(self, owner: str, items: list[tuple[int, Digest]]) -> int:
        link = self.membership.link_for(owner)
        if link is None:
            return 0
        timeout = self.ctx.config.request_timeout_s
        pushed = 0
        try:
            reply = await link.request(
                {"t": "AE_DIGESTS", "items": [[p, d] for p, d in items]}, timeout
            )
            differs, elsewhere = reply.get("differs"), reply.get("notOwner")
            differing = set(differs) if isinstance(differs, list) else set()
            not_owned = set(elsewhere) if isinstance(elsewhere, list) else set()
            for p, dig in items:
                if p in differing:
                    pushed += await self._push(link, p, timeout)
                if p not in not_owned:  # equal, or pushed: reconciled with this owner
                    self._reconciled[p] = (owner, dig)
        except (PeerGone, TimeoutError) as exc:
            self.ctx.log.info("anti-entropy with %s interrupted: %r", owner, exc)
        if pushed:
            self.ctx.metrics.repaired.inc(pushed)
            self.ctx.log.info("anti-entropy: %d records sent to %s", pushed, owner)
        return pushed

    async def _push(self, link: PeerLink, pid: int, timeout: float) -> int:  # noqa: ASYNC109
        records = self.ctx.store.partition_flats(pid)
        for start in range(0, max(len(records), 1), MIGRATION_CHUNK_RECORDS):
            chunk = records[start : start + MIGRATION_CHUNK_RECORDS]
            last = start + MIGRATION_CHUNK_RECORDS >= len(records)
            msg = {"t": "AE_PUSH", "pid": pid, "recs": encode_flat(chunk), "done": last}
            await link.request(msg, timeout)
        return len(records)

    # ------------------------------------------------------------------ the owner's side

    def _on_digests(self, link: PeerLink, msg: dict[str, Any]) -> None:
        """Answered in a task of its own that yields after each partition: the first digest
        of a partition builds its trees (at 1,000,000 keys ~3,700 records each), and 64 of
        them in one turn held the loop for 0.8-1.4 s on the loaded 2-core VM."""
        self.ctx.spawn(self._answer_digests(link, msg))

    async def _answer_digests(self, link: PeerLink, msg: dict[str, Any]) -> None:
        items = msg.get("items")
        differs: list[int] = []
        not_owner: list[int] = []
        for item in items[:DIGESTS_PER_TURN] if isinstance(items, list) else []:
            if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], int):
                continue
            p, t = item[0], self.partitions.table
            if t is None or not 0 <= p < t.partition_count or t.owners[p] != self.ctx.node_id:
                not_owner.append(p)
                continue
            try:
                theirs = _digest_from_wire(item[1])
            except ProtocolError as exc:
                self.ctx.log.warning("bad AE_DIGESTS from %s: %s", link.node_id, exc)
                return
            ours = self.digest(p)
            if any(ours.get(m, 0) != theirs.get(m, 0) for m in {*ours, *theirs}):
                differs.append(p)
            await asyncio.sleep(0)  # yield the loop between partitions, not a wait
        await link.reply(msg, {"t": "AE_DIFFERS", "differs": differs, "notOwner": not_owner})

    async def _on_push(self, link: PeerLink, msg: dict[str, Any]) -> None:
        ok = True
        try:
            flats, hashes, changed = self.replication.merge_records(msg.get("recs"))
            # what we learned must be on our backups before the holder may count it as done
            answer = await self.replication.pass_on(
                [flats[n] for n in changed], [hashes[n] for n in changed], link.node_id
            )
            ok = answer is not None
            t, pid = self.partitions.table, msg.get("pid")
            if (
                msg.get("done") is True and isinstance(pid, int) and t is not None
                and 0 <= pid < t.partition_count and link.node_id in t.backups[pid]
            ):  # fmt: skip
                self.migrations.resync([pid], link.node_id)
        except (ProtocolError, ValueError) as exc:
            self.ctx.log.warning("bad AE_PUSH from %s: %s", link.node_id, exc)
            ok = False
        await link.reply(msg, {"t": "AE_PUSH_ACK", "ok": ok})

    async def run(self, interval: float) -> None:
        while self.ctx.serving:
            await asyncio.sleep(interval)
            await self.turn()
