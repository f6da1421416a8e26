"""Operations: the write path. Apply what this node owns, forward the rest, answer each op.

Owner: HLC drift check per op, LWW merge, one ``REPL`` per backup for the whole client
batch, await every live backup's ack, then the outcome. A non-owner forwards the ops (one
``FWD`` per owner) and reports what the owner confirmed; otherwise NOT_OWNER.

Every refusal means "not applied"; an answer that cannot say is its own code:

* ``CLUSTER_MINORITY``: this node is not part of a quorum (or, as owner, its lease lapsed):
  nothing was applied; the client should send the op to another node.
* ``OUTCOME_UNKNOWN``: the op was forwarded and the owner's answer never came (timeout, link
  lost after sending): it may have been applied. Resending is harmless (LWW).
* ``REPLICATION_TIMEOUT``: applied on the owner, but a backup did not confirm in time (or the
  lease lapsed meanwhile): also unknown, also resent.
* ``NOT_OWNER``: certainly not applied here (the op was never sent to the owner).

Write concern (:mod:`topgun.core.concern`): one call executes ops that ask for the same
level. ``APPLIED`` is answered once the owner merged the op (its backups still receive it);
``REPLICATED`` once every backup the table names confirmed; ``PERSISTED`` once the owner's
group commit and every named backup's (``REPL`` with ``sync``, answered ``disk: true``) are
fsynced. An owner without a data dir refuses ``PERSISTED`` before applying anything
(``PERSISTENCE_UNAVAILABLE``). A level not reached within the op's timeout is answered
``WRITE_CONCERN_UNMET`` with the level that was reached. Without a write concern the
owner waits for every live backup, as it always did.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import msgspec

from topgun.core.concern import (
    DURABLE,
    GONE,
    PERSISTENCE_UNAVAILABLE,
    UNMET,
    Concern,
    Level,
    achieved,
)
from topgun.core.errors import ClockSkewError, ProtocolError
from topgun.core.hashing import PARTITION_COUNT, fnv1a_utf16, partition_id
from topgun.core.hlc import Timestamp
from topgun.core.messages import ClientOp, NotOwnerHint
from topgun.core.record_wire import Flat, Triple
from topgun.core.table import PartitionTable
from topgun.server.context import NodeContext
from topgun.server.membership import Membership
from topgun.server.partitions import PartitionService
from topgun.server.peer_link import PeerGone, PeerLink
from topgun.server.queries import Origin, QueryService
from topgun.server.replication import Replication

FORWARD_RETRIES = 2
FAILOVER_WAIT_S = 1.0
UNREACHABLE = "owner unreachable"
CLUSTER_MINORITY = "CLUSTER_MINORITY"
OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"
REPLICATION_TIMEOUT = "REPLICATION_TIMEOUT"


class Outcome(msgspec.Struct, frozen=True, gc=False):
    """What happened to one op: applied (and replicated), or why not."""

    ok: bool
    error: str | None = None
    hint: NotOwnerHint | None = None
    level: str = "FIRE_AND_FORGET"
    """The highest level reached (a refusal reached none beyond the node receiving it)."""

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"ok": self.ok, "level": self.level}
        if self.error is not None:
            wire["error"] = self.error
        if self.hint is not None:
            wire["hint"] = self.hint.to_wire()
        return wire

    @classmethod
    def from_wire(cls, obj: object) -> Outcome:
        if not isinstance(obj, dict) or not isinstance(obj.get("ok"), bool):
            raise ProtocolError("bad op outcome")
        err = obj.get("error")
        level = obj.get("level")
        return cls(
            obj["ok"],
            err if isinstance(err, str) else None,
            NotOwnerHint.from_wire(obj.get("hint")),
            level if isinstance(level, str) else "FIRE_AND_FORGET",
        )


_APPLIED = Outcome(True, level="APPLIED")
_REPLICATED = Outcome(True, level="REPLICATED")
_TIMED_OUT = Outcome(False, REPLICATION_TIMEOUT, level="APPLIED")
DEFAULT = Concern()


def concern_to_wire(concern: Concern) -> list[Any]:
    """How a forwarded batch tells its owner what it asks for."""
    return [None if concern.level is None else concern.level.name, concern.timeout_ms]


def concern_from_wire(raw: object) -> Concern:
    if not isinstance(raw, list) or len(raw) != 2:
        return DEFAULT
    try:
        return Concern.of(raw[0], raw[1])
    except (ValueError, TypeError):
        return DEFAULT


class Operations:
    def __init__(
        self,
        ctx: NodeContext,
        membership: Membership,
        partitions: PartitionService,
        replication: Replication,
        queries: QueryService,
    ) -> None:
        self.ctx = ctx
        self.membership = membership
        self.partitions = partitions
        self.replication = replication
        self.queries = queries
        membership.handlers["FWD"] = self._on_fwd_msg

    def _not_owner(self, pid: int, message: str = "not the owner of this partition") -> Outcome:
        t = self.partitions.table
        hint = NotOwnerHint(pid, t.owners[pid] if t else None, t.version if t else 0, message)
        return Outcome(False, "NOT_OWNER", hint)

    @staticmethod
    def _minority(message: str) -> Outcome:
        return Outcome(False, f"{CLUSTER_MINORITY}: {message}")

    async def execute(
        self,
        ops: list[ClientOp],
        *,
        forwarded: bool = False,
        attempt: int = 0,
        origin: Origin | None = None,
        concern: Concern = DEFAULT,
    ) -> list[Outcome]:
        """Apply/forward a batch of ops that ask for the same ``concern``; one outcome per
        op, in order. ``origin`` (the writing client session) travels with forwarded ops to
        the change events of the owner."""
        t = self.partitions.table
        me = self.ctx.node_id
        out: list[Outcome | None] = [None] * len(ops)
        local: list[tuple[int, int]] = []  # (op index, key hash)
        remote: dict[str, list[int]] = defaultdict(list)
        serving = self.ctx.serving
        quorum = self.partitions.has_quorum()
        lease = quorum and self.partitions.holds_lease()
        for i, op in enumerate(ops):
            key_hash = fnv1a_utf16(op.key)  # once per op: the partition's, the tree's
            pid = key_hash % PARTITION_COUNT
            if op.record is None:
                out[i] = Outcome(False, f"UNSUPPORTED: opType {op.op_type} needs an LWW record")
            elif t is None or not serving:
                out[i] = self._not_owner(pid, "no partition table yet")
            elif not quorum:
                out[i] = self._minority("this node is cut off from the majority: use another")
            elif t.owners[pid] == me and not lease:
                out[i] = self._minority("the owner has no recent quorum (lease lapsed): retry")
            elif t.owners[pid] == me:
                local.append((i, key_hash))
            elif forwarded:
                out[i] = self._not_owner(pid)
            elif not self.ctx.config.forward_writes:
                out[i] = self._not_owner(pid, "this node does not forward writes")
            elif self.membership.link_for(t.owners[pid]) is not None:
                remote[t.owners[pid]].append(i)
            else:
                out[i] = self._not_owner(pid, UNREACHABLE)
        waits: list[Any] = []
        if local:
            assert t is not None
            waits.append(self._apply_local(ops, local, out, t, origin, concern=concern))
        for owner, idx in remote.items():
            waits.append(self._forward(owner, ops, idx, out, origin, concern=concern))
        if waits:
            await asyncio.gather(*waits)
        results = [o if o is not None else Outcome(False, "INTERNAL") for o in out]
        if (
            not forwarded and attempt < FORWARD_RETRIES and self.partitions.table is t
            and any(o.hint is not None and o.hint.message == UNREACHABLE for o in results)
        ):  # fmt: skip
            # the owner's link is gone: its failover table is usually milliseconds away; wait
            # for it (bounded) and retry on it rather than bounce the client
            await self.partitions.wait_newer(t, FAILOVER_WAIT_S)
        # A refusal caused by a table change while we forwarded: retry on the newer table.
        now_table = self.partitions.table
        retry = [
            i
            for i, o in enumerate(results)
            if o.error == "NOT_OWNER" and o.hint is not None and not forwarded
            and now_table is not None and now_table.version > (t.version if t else 0)
        ]  # fmt: skip
        if retry and attempt < FORWARD_RETRIES:
            again = await self.execute(
                [ops[i] for i in retry], attempt=attempt + 1, origin=origin, concern=concern
            )
            for i, o in zip(retry, again, strict=True):
                results[i] = o
        if attempt == 0:
            metrics = self.ctx.metrics
            rejected = sum(not o.ok for o in results)
            if rejected:
                metrics.ops_rejected.inc(rejected)
                codes = [(o.error or "").split(":", 1)[0] for o in results if not o.ok]
                metrics.ops_minority.inc(codes.count(CLUSTER_MINORITY))
                metrics.ops_unknown.inc(
                    codes.count(OUTCOME_UNKNOWN) + codes.count(REPLICATION_TIMEOUT)
                    + codes.count(UNMET)
                )  # fmt: skip
        return results

    async def _apply_local(
        self,
        ops: list[ClientOp],
        idx: list[tuple[int, int]],
        out: list[Outcome | None],
        t: PartitionTable,
        origin: Origin | None,
        *,
        concern: Concern,
    ) -> None:
        me = self.ctx.node_id
        hlc, store = self.ctx.hlc, self.ctx.store
        if concern.persisted and self.ctx.commit is None:
            refusal = Outcome(
                False, f"{PERSISTENCE_UNAVAILABLE}: node {me} keeps no store (start it with "
                "--data-dir or --storage postgres): nothing was applied",
            )  # fmt: skip
            for i, _ in idx:
                out[i] = refusal
            return
        per_backup: dict[str, list[int]] = defaultdict(list)
        to_backup: dict[str, list[Flat]] = defaultdict(list)  # the records for each backup
        applied: list[int] = []
        pids: list[int] = []  # each applied op's partition
        changed: list[Triple] = []
        watched: dict[str, bool] = {}  # map → whether a live query wants its changes
        backups = t.backups
        wall = self.ctx.config.clock_ms()
        limit = wall + hlc.max_drift_ms  # one reading of the clock for the batch
        newest: Timestamp | None = None  # the clock is folded past the batch's newest, once
        for i, key_hash in idx:
            op = ops[i]
            rec = op.record
            assert rec is not None
            ts = rec.timestamp
            millis, counter, node_id = ts
            if millis > limit:  # too far ahead: the clock words the refusal
                try:
                    hlc.check(ts, wall)
                except ClockSkewError as exc:
                    out[i] = Outcome(False, f"CLOCK_SKEW: {exc}")
                    continue
            if newest is None or ts > newest:
                newest = ts
            name = op.map_name
            flat = (name, op.key, rec.value, millis, counter, node_id, rec.ttl_ms)  # as sent on
            if store.merge_flat(flat, key_hash):
                wants = watched.get(name)
                if wants is None:
                    wants = watched[name] = self.queries.wants(name)
                if wants:
                    changed.append((name, op.key, rec))
            applied.append(i)
            pid = key_hash % PARTITION_COUNT
            pids.append(pid)
            for b in backups[pid]:
                if b != me:
                    per_backup[b].append(i)
                    to_backup[b].append(flat)
        if newest is not None:
            hlc.observe(newest)
        self.ctx.metrics.ops_applied.inc(len(applied))
        sync = concern.persisted
        acks = {b: self.replication.replicate(b, to_backup[b], sync=sync) for b in per_backup}
        if not concern.waits_for_backups:  # APPLIED: the backups get it in the background
            for i in applied:
                out[i] = _APPLIED
        elif concern.level is None:
            await self._default_answers(acks, per_backup, applied, out)
        else:
            await self._concern_answers(acks, [*zip(applied, pids, strict=True)], t, out, concern)
        if changed:
            self.queries.publish_changes(changed, origin)

    async def _concern_answers(
        self,
        acks: dict[str, asyncio.Future[int | None]],
        applied: list[tuple[int, int]],
        t: PartitionTable,
        out: list[Outcome | None],
        concern: Concern,
    ) -> None:
        """Wait (at most the op's timeout) for the level asked for; answer what was reached."""
        me = self.ctx.node_id
        sync = concern.persisted
        disk = self.ctx.commit.durable() if sync and self.ctx.commit is not None else None
        waits: list[asyncio.Future[Any]] = [*acks.values(), *([disk] if disk else [])]
        if waits:
            await asyncio.wait(waits, timeout=concern.timeout_s)
        answers = {b: f.result() if f.done() else None for b, f in acks.items()}
        durable = disk is not None and disk.done() and disk.exception() is None
        lease = not acks or self.partitions.holds_lease()
        for i, pid in applied:
            copies = {b: answers[b] for b in t.backups[pid] if b != me}
            level = achieved(durable, list(copies.values())) if lease else Level.APPLIED
            if concern.met(level):
                out[i] = Outcome(True, level=level.name)
            else:
                why = _why(concern, copies, lease, disk)
                out[i] = Outcome(False, concern.unmet(level, why), level=level.name)

    async def _default_answers(
        self,
        acks: dict[str, asyncio.Future[int | None]],
        per_backup: dict[str, list[int]],
        applied: list[int],
        out: list[Outcome | None],
    ) -> None:
        """No write concern: wait for every live backup (a gone one is skipped) and report
        the level reached."""
        failed: set[int] = set()
        replicated: set[int] = set()
        if acks:
            oks = await asyncio.gather(*acks.values())
            for ii, ok in zip(per_backup.values(), oks, strict=True):
                if ok is None:
                    failed.update(ii)
                elif ok:
                    replicated.update(ii)
        if per_backup and not self.partitions.holds_lease():
            failed.update(applied)  # we may have been superseded meanwhile: cannot vouch
        for i in applied:
            if i in failed:
                out[i] = _TIMED_OUT
            else:
                out[i] = _REPLICATED if i in replicated else _APPLIED

    async def _forward(
        self,
        owner: str,
        ops: list[ClientOp],
        idx: list[int],
        out: list[Outcome | None],
        origin: Origin | None,
        *,
        concern: Concern,
    ) -> None:
        link = self.membership.link_for(owner)
        self.ctx.metrics.ops_forwarded.inc(len(idx))
        if link is None or link.closed:
            for i in idx:  # never sent: certainly not applied
                out[i] = self._not_owner(partition_id(ops[i].key), UNREACHABLE)
            return
        try:
            msg: dict[str, Any] = {"t": "FWD", "ops": [ops[i].to_wire() for i in idx]}
            if origin is not None:
                msg["origin"] = origin.to_wire()
            timeout = self.ctx.config.request_timeout_s
            if concern is not DEFAULT:
                msg["wc"] = concern_to_wire(concern)
                timeout = max(timeout, concern.timeout_s + 1.0)  # the owner answers by then
            reply = await link.request(msg, timeout)
            results = reply.get("results")
            if not isinstance(results, list) or len(results) != len(idx):
                raise ProtocolError("bad FWD_RESP")
            for i, r in zip(idx, results, strict=True):
                out[i] = Outcome.from_wire(r)
        except (PeerGone, TimeoutError, ProtocolError) as exc:
            self.ctx.log.info("forward to %s: outcome unknown: %r", owner, exc)
            for i in idx:  # the owner may have applied it
                out[i] = Outcome(False, OUTCOME_UNKNOWN)

    def _on_fwd_msg(self, link: PeerLink, msg: dict[str, Any]) -> None:
        # not awaited by the link: a forwarded batch waits for its backups' acks
        self.ctx.spawn(self._on_fwd(link, msg))

    async def _on_fwd(self, link: PeerLink, msg: dict[str, Any]) -> None:
        raw = msg.get("ops")
        ops: list[ClientOp | None] = []
        for item in raw if isinstance(raw, list) else []:
            try:
                ops.append(ClientOp.from_wire(item))
            except ProtocolError:
                ops.append(None)
        valid = [op for op in ops if op is not None]
        origin = Origin.from_wire(msg.get("origin"))
        concern = concern_from_wire(msg.get("wc"))
        outcomes = iter(await self.execute(valid, forwarded=True, origin=origin, concern=concern))
        results = [
            next(outcomes).to_wire() if op is not None else Outcome(False, "INVALID_OP").to_wire()
            for op in ops
        ]
        await link.reply(msg, {"t": "FWD_RESP", "results": results})


def _why(
    concern: Concern,
    copies: dict[str, int | None],
    lease: bool,
    disk: asyncio.Future[None] | None,
) -> str:
    """Why an applied op fell short of its level, for the error the client reads."""
    if not lease:
        return "the owner's lease lapsed meanwhile"
    gone = sorted(b for b, a in copies.items() if a == GONE)
    if gone:
        return f"backup {gone[0]} is gone (the next partition table replaces it)"
    if any(a is None for a in copies.values()):
        return f"a backup did not confirm within {concern.timeout_ms:g} ms"
    if disk is not None and disk.done() and disk.exception() is not None:
        return str(disk.exception())
    shallow = sorted(b for b, a in copies.items() if a != DURABLE)
    if shallow:
        return f"backup {shallow[0]} has it in memory only (no data dir, or not yet on disk)"
    return f"not on the owner's disk within {concern.timeout_ms:g} ms"
