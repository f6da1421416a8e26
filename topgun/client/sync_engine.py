"""The sync engine: the op log, per-node batches, per-op acknowledgements and retries.

Transport-agnostic and synchronous: it is driven by the client (or by tests) through
``record`` / ``sync`` / ``on_ack`` / ``on_rejected`` / ``on_connection_lost`` / ``tick``, and
it talks to the network only through a :class:`Transport`. Time comes from an injected
monotonic clock (seconds).

Acknowledgements are matched per op and per connection, never by comparing id strings
across nodes (reference §6.4-B):

* an ``OP_ACK`` with ``results`` resolves exactly the listed ops of that connection's batch;
* an ``OP_ACK`` with only ``lastId`` (the reference server) resolves the ops of the in-flight
  batch *on that connection* whose last id is ``lastId`` and whose numeric id ≤ ``lastId``.

A ``NOT_OWNER`` refusal (``OP_REJECTED`` with ``error.code == 'NOT_OWNER'`` or a result
``{success: false, error: 'NOT_OWNER'}``) refreshes the table and retries the op with
backoff, a bounded number of attempts and a deadline; an op that exhausts them is *parked*
(kept in the log, never dropped) until a newer table or a re-authentication. Ops in flight
on a connection that died are sent again (LWW makes duplicates harmless).

Answers that are not refusals are retried, never reported as rejected: ``OUTCOME_UNKNOWN``,
``REPLICATION_TIMEOUT`` and ``WRITE_CONCERN_UNMET`` (the op may have been applied; resending
is idempotent under LWW) and ``CLUSTER_MINORITY`` (that node is cut off from the majority:
the retry goes to another node when there is one). They back off like NOT_OWNER but are
never parked. ``PERSISTENCE_UNAVAILABLE`` (PERSISTED asked of a node without a data dir) is
a refusal like any other: nothing was applied, and resending it would be refused again.

Write concern (:mod:`topgun.client.write_concern`): ops are batched by node *and* by the
concern they ask for, and the batch carries it (``writeConcern``/``timeout``), so no op is
sent under a level it did not ask for. A batch's ack is awaited for the concern's timeout
plus :data:`ACK_MARGIN_S` at least (the server answers by then). What a ``flush`` waits for
is a :class:`Receipt`: every op it covers ends in it, acknowledged (with the level the
server vouched for) or refused.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from topgun.client.router import PartitionRouter, RouteKind
from topgun.client.write_concern import AckedWrite, WriteConcern, level_named
from topgun.core.concern import UNMET, Level
from topgun.core.messages import (
    NOT_OWNER,
    OP_PUT,
    ClientOp,
    NotOwnerHint,
    OpAck,
    OpBatch,
    OpRejected,
)
from topgun.core.records import LWWRecord

MonotonicClock = Callable[[], float]
MAX_BATCH_OPS = 1000

MAX_REJECTIONS_KEPT = 1000
CLUSTER_MINORITY = "CLUSTER_MINORITY"
RETRY_CODES = frozenset({CLUSTER_MINORITY, "OUTCOME_UNKNOWN", "REPLICATION_TIMEOUT", UNMET})
"""Answers that do not say "not applied for good": the op is sent again."""
ACK_MARGIN_S = 2.0
"""Beyond a batch's write-concern timeout, how long its ack may take (a forwarded op's owner
answers within the timeout plus 1 s, and the receiving node then answers the client)."""


class Transport(Protocol):
    """What the engine needs from the connection layer."""

    def usable_nodes(self) -> list[str]:
        """Ids of connections that may carry ops now (authenticated, circuit allowing),
        in preference order."""

    def send_batch(self, node_id: str, batch: OpBatch) -> object | None:
        """Send on ``node_id``'s connection; return a token naming that connection object
        (acks arrive with it), or None if it could not be sent."""

    def request_table(self, reason: str) -> None:
        """Ask the cluster for its current partition table (may be debounced)."""

    def report_failure(self, node_id: str) -> None:
        """An in-flight batch on ``node_id`` was never acknowledged."""

    def report_success(self, node_id: str) -> None:
        """``node_id`` acknowledged a batch."""


@dataclass(slots=True)
class PendingOp:
    id: int
    map_name: str
    key: str
    op_type: str
    record: LWWRecord
    batch: InFlightBatch | None = None
    attempts: int = 0
    """NOT_OWNER refusals so far."""
    first_refusal: float | None = None
    not_before: float = 0.0
    parked: str | None = None
    last_route: RouteKind | None = None
    redirect: str | None = None
    """The owner named by the last NOT_OWNER refusal: where the retry goes, if usable."""
    avoid: str | None = None
    """A node that answered CLUSTER_MINORITY: the retry goes elsewhere when it can."""
    retries: int = 0
    """Unknown-outcome / minority answers so far (for the back-off)."""
    concern: WriteConcern | None = None
    """What the op asks the server to reach before answering (None: the server's default)."""
    last_answer: str | None = None
    """The last answer that made the op go again (for the reason a flush gives up)."""

    def to_client_op(self) -> ClientOp:
        return ClientOp(self.map_name, self.key, self.record, self.op_type, str(self.id))

    def acked(self, reported: str | None) -> AckedWrite:
        """The op as acknowledged, with the level the server vouched for."""
        asked = None if self.concern is None else self.concern.level
        said = level_named(reported)
        return AckedWrite(self.id, self.map_name, self.key, asked, asked if said is None else said)


@dataclass(slots=True)
class InFlightBatch:
    seq: int
    conn: object
    node_id: str
    op_ids: set[int]
    last_id: str
    sent_at: float
    deadline: float
    """When the ack is overdue and the batch is sent again."""


def _as_int(op_id: str) -> int | None:
    try:
        return int(op_id)
    except (TypeError, ValueError):
        return None


def is_not_owner_result(error: str | None) -> bool:
    return error is not None and error.strip().upper().startswith(NOT_OWNER)


@dataclass(slots=True)
class Receipt:
    """What became of the ops a flush waits for: each leaves ``waiting`` for ``acked`` or
    ``rejected``, whatever the bounded history of :class:`SyncStats` keeps."""

    waiting: set[int]
    acked: list[AckedWrite] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)


def retry_code(error: str | None) -> str | None:
    """The code of an answer that means "send it again" (see the module docstring)."""
    code = (error or "").strip().split(":", 1)[0].upper()
    return code if code in RETRY_CODES else None


@dataclass(slots=True)
class SyncStats:
    batches_sent: int = 0
    ops_sent: int = 0
    acks: int = 0
    resent_after_loss: int = 0
    ack_timeouts: int = 0
    rejections: deque[tuple[int, str]] = field(
        default_factory=lambda: deque(maxlen=MAX_REJECTIONS_KEPT)
    )
    """The most recent final refusals (op id, reason); bounded for long-lived clients."""


class SyncEngine:
    def __init__(
        self,
        storage: Any,
        transport: Transport,
        router: PartitionRouter | None,
        *,
        smart_routing: bool = True,
        clock: MonotonicClock = time.monotonic,
        ack_timeout_s: float = 5.0,
        not_owner_max_attempts: int = 8,
        not_owner_backoff_s: float = 0.05,
        not_owner_max_backoff_s: float = 1.0,
        not_owner_deadline_s: float = 15.0,
    ) -> None:
        self.storage = storage
        self.transport = transport
        self.router = router
        self.smart_routing = smart_routing
        self._clock = clock
        self.ack_timeout_s = ack_timeout_s
        self.not_owner_max_attempts = not_owner_max_attempts
        self.not_owner_backoff_s = not_owner_backoff_s
        self.not_owner_max_backoff_s = not_owner_max_backoff_s
        self.not_owner_deadline_s = not_owner_deadline_s
        self._ops: dict[int, PendingOp] = {}
        self._batches: dict[int, InFlightBatch] = {}
        self._seq = itertools.count(1)
        self.stats = SyncStats()
        self.listeners: list[Callable[[], None]] = []
        self._receipts: list[Receipt] = []

    # --- the op log ----------------------------------------------------------------------

    def load(self) -> int:
        """Take every never-acknowledged op from storage (a restart re-sends them)."""
        loaded = 0
        for op_id, entry in self.storage.pending_ops():
            if op_id in self._ops:
                continue
            try:
                record = LWWRecord.from_wire(entry["record"])
                op = PendingOp(
                    op_id, entry["mapName"], entry["key"], entry.get("opType") or OP_PUT, record,
                    concern=_concern_from_entry(entry),
                )  # fmt: skip
            except Exception:  # a corrupt entry must not block the others
                continue
            self._ops[op_id] = op
            loaded += 1
        return loaded

    def record(
        self,
        map_name: str,
        key: str,
        op_type: str,
        record: LWWRecord,
        concern: WriteConcern | None = None,
    ) -> int:
        """Log one op (kept until acknowledged or refused) asking for ``concern``."""
        entry: dict[str, Any] = {
            "mapName": map_name,
            "key": key,
            "opType": op_type,
            "record": record.to_wire(),
        }
        if concern is not None:  # as TopGun's op log words it: a restart asks for the same
            entry["writeConcern"] = concern.level.name
            if concern.timeout_s is not None:
                entry["timeout"] = concern.timeout_ms
        op_id = int(self.storage.append_op(entry))
        self._ops[op_id] = PendingOp(op_id, map_name, key, op_type, record, concern=concern)
        return op_id

    def pending_count(self) -> int:
        return len(self._ops)

    def pending_ids(self) -> list[int]:
        return list(self._ops)

    def pending_keys(self, map_name: str) -> set[str]:
        """Keys of ``map_name`` with a write not yet acknowledged."""
        return {op.key for op in self._ops.values() if op.map_name == map_name}

    def in_flight_count(self) -> int:
        return sum(1 for op in self._ops.values() if op.batch is not None)

    def in_flight_by_node(self) -> dict[str, list[int]]:
        """Op ids sent and awaiting their ack, by the node they were sent to."""
        out: dict[str, list[int]] = {}
        for batch in self._batches.values():
            out.setdefault(batch.node_id, []).extend(sorted(batch.op_ids))
        return out

    def busy_on(self, conn: object) -> bool:
        """Does ``conn`` carry a batch still waiting for its ack?"""
        return any(b.conn is conn for b in self._batches.values())

    def parked(self) -> list[tuple[int, str]]:
        return [(op.id, op.parked) for op in self._ops.values() if op.parked is not None]

    def refused(self) -> list[tuple[int, int]]:
        """(op id, NOT_OWNER refusals) of ops being retried or parked after refusals."""
        return [(op.id, op.attempts) for op in self._ops.values() if op.attempts]

    def op(self, op_id: int) -> PendingOp | None:
        return self._ops.get(op_id)

    def watch(self) -> Receipt:
        """A receipt for every op pending now; :meth:`unwatch` it when done."""
        receipt = Receipt(set(self._ops))
        self._receipts.append(receipt)
        return receipt

    def unwatch(self, receipt: Receipt) -> None:
        if receipt in self._receipts:
            self._receipts.remove(receipt)

    def retrying(self) -> list[tuple[int, str]]:
        """(op id, the answer that made it go again) of ops being sent again."""
        return [(op.id, op.last_answer) for op in self._ops.values() if op.last_answer]

    # --- sending -------------------------------------------------------------------------

    def sync(self) -> int:
        """Send every eligible pending op: one OP_BATCH per target node. Returns batches sent."""
        now = self._clock()
        eligible = [
            op
            for op in self._ops.values()
            if op.batch is None and op.parked is None and op.not_before <= now
        ]
        if not eligible:
            return 0
        usable = self.transport.usable_nodes()
        if not usable:
            return 0
        groups: dict[tuple[str, WriteConcern | None], list[PendingOp]] = {}
        for op in eligible:
            if self.router is None:
                target: str | None = usable[0]
            else:
                decision = self.router.decide(
                    op.key, usable, smart=self.smart_routing, prefer=op.redirect
                )
                target = decision.node_id
                op.last_route = decision.kind
            if target is not None and target == op.avoid:
                target = next((n for n in usable if n != op.avoid), target)
            if target is not None:
                groups.setdefault((target, op.concern), []).append(op)
        sent = 0
        for (node_id, concern), ops in groups.items():
            ops.sort(key=lambda o: o.id)
            wait = self.ack_timeout_s
            level: str | None = None
            timeout: int | None = None
            if concern is not None:
                level, timeout = concern.level.name, concern.timeout_ms
                wait = max(wait, concern.wait_s + ACK_MARGIN_S)
            for start in range(0, len(ops), MAX_BATCH_OPS):
                chunk = ops[start : start + MAX_BATCH_OPS]
                batch = OpBatch(tuple(op.to_client_op() for op in chunk), level, timeout)
                token = self.transport.send_batch(node_id, batch)
                if token is None:
                    continue
                inflight = InFlightBatch(
                    next(self._seq), token, node_id, {op.id for op in chunk}, str(chunk[-1].id),
                    now, now + wait,
                )  # fmt: skip
                self._batches[inflight.seq] = inflight
                for op in chunk:
                    op.batch = inflight
                sent += 1
                self.stats.batches_sent += 1
                self.stats.ops_sent += len(chunk)
        return sent

    # --- replies -------------------------------------------------------------------------

    def _batch_for_ack(self, conn: object, last_id: str) -> InFlightBatch | None:
        for batch in self._batches.values():  # insertion order = oldest first
            if batch.conn is conn and batch.last_id == last_id:
                return batch
        return None

    def on_ack(self, conn: object, ack: OpAck) -> list[int]:
        """Apply an OP_ACK that arrived on connection ``conn``; return the op ids resolved.

        With per-op ``results`` each op is matched by its id among the ops waiting on
        ``conn``; with ``lastId`` only (the reference server), the batch on ``conn`` that
        ended with that id is acknowledged up to it.
        """
        self.stats.acks += 1
        done: list[AckedWrite] = []
        if ack.results is not None:
            answered: dict[int, InFlightBatch] = {}
            for result in ack.results:
                op_id = _as_int(result.op_id)
                op = None if op_id is None else self._ops.get(op_id)
                if op is None or op.batch is None or op.batch.conn is not conn:
                    continue
                answered[op.batch.seq] = op.batch
                node_id = op.batch.node_id
                self._detach(op)
                if result.success:
                    done.append(op.acked(result.achieved_level))
                elif (code := retry_code(result.error)) is not None:
                    self._retry(op, code, node_id, result.error or code)
                elif is_not_owner_result(result.error):
                    self._not_owner(op, None)
                else:
                    self._reject(op, result.error or "rejected by the server")
            for batch in answered.values():  # ops the ack did not list go back to pending
                self._requeue(batch)
                self.transport.report_success(batch.node_id)
        else:
            acked = self._batch_for_ack(conn, ack.last_id)
            last = _as_int(ack.last_id)
            if acked is not None and last is not None:
                for op_id in sorted(acked.op_ids):
                    if op_id <= last and (op := self._ops.get(op_id)) is not None:
                        self._detach(op)
                        done.append(op.acked(ack.achieved_level))
                self._requeue(acked)
                self.transport.report_success(acked.node_id)
        self._resolve(done)
        return [w.op_id for w in done]

    def on_rejected(self, conn: object, rejected: OpRejected) -> None:
        op_id = _as_int(rejected.op_id)
        op = None if op_id is None else self._ops.get(op_id)
        if op is None:
            return
        if op.batch is not None and op.batch.conn is not conn:
            return  # a stale answer from a connection the op no longer waits on
        node_id = op.batch.node_id if op.batch is not None else None
        self._detach(op)
        if (code := retry_code(rejected.reason)) is not None:
            self._retry(op, code, node_id, rejected.reason)
        elif rejected.not_owner is not None or is_not_owner_result(rejected.reason):
            self._not_owner(op, rejected.not_owner)
        else:
            self._reject(op, rejected.reason)
        self._notify()

    def on_connection_lost(self, conn: object) -> int:
        """The connection died: its in-flight ops go back to pending. Returns how many."""
        requeued = 0
        for batch in [b for b in self._batches.values() if b.conn is conn]:
            requeued += self._requeue(batch)
        self.stats.resent_after_loss += requeued
        return requeued

    def on_table_changed(self) -> None:
        """A newer table arrived: refused ops are retried at once, parked ones revived."""
        for op in self._ops.values():
            if op.attempts or op.parked:
                op.not_before = 0.0
                if op.parked is not None:
                    op.parked, op.attempts, op.first_refusal = None, 0, None

    def on_authenticated(self) -> None:
        """A connection (re)authenticated: give parked ops another chance."""
        for op in self._ops.values():
            if op.parked is not None:
                op.parked, op.attempts, op.first_refusal, op.not_before = None, 0, None, 0.0

    def tick(self) -> int:
        """Resend batches whose ack is overdue; returns how many batches timed out."""
        now = self._clock()
        overdue = [b for b in self._batches.values() if now > b.deadline]
        for batch in overdue:
            self._requeue(batch)
            self.stats.ack_timeouts += 1
            self.transport.report_failure(batch.node_id)
        return len(overdue)

    def next_wakeup(self) -> float | None:
        """The monotonic time at which ``tick``/``sync`` next has something to do."""
        times = [b.deadline for b in self._batches.values()]
        times += [
            op.not_before
            for op in self._ops.values()
            if op.batch is None and op.parked is None and op.not_before > 0
        ]
        return min(times) if times else None

    # --- internals -----------------------------------------------------------------------

    def _detach(self, op: PendingOp) -> None:
        """The op's answer arrived: it leaves its batch, and an emptied batch is done (left
        behind, it would later match an ack meant for a newer batch with the same lastId,
        and time out against a healthy node)."""
        batch = op.batch
        if batch is not None:
            batch.op_ids.discard(op.id)
            op.batch = None
            if not batch.op_ids:
                self._batches.pop(batch.seq, None)

    def _requeue(self, batch: InFlightBatch) -> int:
        self._batches.pop(batch.seq, None)
        count = 0
        for op_id in batch.op_ids:
            op = self._ops.get(op_id)
            if op is not None and op.batch is batch:
                op.batch = None
                count += 1
        batch.op_ids.clear()
        return count

    def _not_owner(self, op: PendingOp, hint: NotOwnerHint | None) -> None:
        now = self._clock()
        op.attempts += 1
        op.redirect = hint.current_owner if hint is not None else None
        op.avoid = None  # the refusing node named (or will name) the owner: follow that
        if op.first_refusal is None:
            op.first_refusal = now
        if self.router is not None:
            self.router.count_not_owner_retry()
        if (
            op.attempts >= self.not_owner_max_attempts
            or now - op.first_refusal > self.not_owner_deadline_s
        ):
            op.parked = (
                f"op {op.id} ({op.map_name}/{op.key}) was refused NOT_OWNER {op.attempts} times "
                f"in {now - op.first_refusal:.1f}s; it stays queued and is retried when a newer "
                "partition table arrives or a connection re-authenticates"
            )
        else:
            delay = self.not_owner_backoff_s * (2 ** (op.attempts - 1))
            op.not_before = now + min(delay, self.not_owner_max_backoff_s)
        version = f" (server map version {hint.map_version})" if hint is not None else ""
        self.transport.request_table(f"NOT_OWNER for {op.key!r}{version}")

    def _retry(self, op: PendingOp, code: str, node_id: str | None, answer: str) -> None:
        """Send ``op`` again after a short back-off; after CLUSTER_MINORITY, elsewhere."""
        op.retries += 1
        op.last_answer = f"{answer} (from {node_id})" if node_id else answer
        op.avoid = node_id if code == CLUSTER_MINORITY else None
        delay = self.not_owner_backoff_s * (2 ** min(op.retries - 1, 16))
        op.not_before = self._clock() + min(delay, self.not_owner_max_backoff_s)
        if code == CLUSTER_MINORITY:
            self.transport.request_table(f"{code} from {node_id}")

    def _reject(self, op: PendingOp, reason: str) -> None:
        self._ops.pop(op.id, None)
        self.storage.mark_synced([op.id])
        self.stats.rejections.append((op.id, reason))
        for receipt in self._receipts:
            if op.id in receipt.waiting:
                receipt.waiting.discard(op.id)
                receipt.rejected.append((op.id, reason))

    def _resolve(self, done: list[AckedWrite]) -> None:
        if done:
            for w in done:
                self._ops.pop(w.op_id, None)
            self.storage.mark_synced([w.op_id for w in done])
            for receipt in self._receipts:
                for w in done:
                    if w.op_id in receipt.waiting:
                        receipt.waiting.discard(w.op_id)
                        receipt.acked.append(w)
        self._notify()

    def _notify(self) -> None:
        for listener in list(self.listeners):
            listener()


def _concern_from_entry(entry: dict[str, Any]) -> WriteConcern | None:
    """The concern an op-log entry asked for (``writeConcern``, ``timeout`` in ms)."""
    name = entry.get("writeConcern")
    if name is None:
        return None
    timeout = entry.get("timeout")
    return WriteConcern(Level[name], None if timeout is None else float(timeout) / 1000)
