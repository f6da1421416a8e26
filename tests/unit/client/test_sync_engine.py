"""The sync engine driven with a fake transport and an injected clock."""

from __future__ import annotations

from typing import Any

import pytest

from topgun.client.router import PartitionRouter
from topgun.client.storage import MemoryStorage, SqliteStorage
from topgun.client.sync_engine import SyncEngine
from topgun.core.hlc import HLC
from topgun.core.messages import NOT_OWNER, NotOwnerHint, OpAck, OpBatch, OpRejected, OpResult
from topgun.core.records import LWWRecord
from topgun.core.table import NodeInfo, PartitionTable, build_table, ideal_assignment

IDS = ["node-a", "node-b", "node-c"]


def table(version: int = 1, ids: list[str] = IDS) -> PartitionTable:
    infos = [NodeInfo(i, f"ws://h:{n + 1}") for n, i in enumerate(ids)]
    return build_table(version, infos, ideal_assignment(ids))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Conn:
    def __init__(self, node: str) -> None:
        self.node = node

    def __repr__(self) -> str:
        return f"Conn({self.node})"


class FakeTransport:
    def __init__(self, nodes: list[str]) -> None:
        self.usable = list(nodes)
        self.conns = {n: Conn(n) for n in nodes}
        self.sent: list[tuple[str, OpBatch]] = []
        self.table_requests: list[str] = []
        self.failures: list[str] = []
        self.successes: list[str] = []

    def usable_nodes(self) -> list[str]:
        return list(self.usable)

    def send_batch(self, node_id: str, batch: OpBatch) -> object | None:
        self.sent.append((node_id, batch))
        return self.conns[node_id]

    def request_table(self, reason: str) -> None:
        self.table_requests.append(reason)

    def report_failure(self, node_id: str) -> None:
        self.failures.append(node_id)

    def report_success(self, node_id: str) -> None:
        self.successes.append(node_id)


def keys_owned_by(router: PartitionRouter, node: str, n: int, prefix: str = "k") -> list[str]:
    out = []
    i = 0
    while len(out) < n:
        k = f"{prefix}{i}"
        if router.route(k).owner == node:  # type: ignore[union-attr]
            out.append(k)
        i += 1
    return out


def make(
    nodes: list[str] = IDS, storage: Any = None, **kw: Any
) -> tuple[SyncEngine, FakeTransport, PartitionRouter, Clock, HLC]:
    clock = Clock()
    router = PartitionRouter(clock=clock)
    router.update_table(table())
    transport = FakeTransport(nodes)
    engine = SyncEngine(storage or MemoryStorage(), transport, router, clock=clock, **kw)
    return engine, transport, router, clock, HLC("c1", lambda: 1_700_000_000_000)


def put(engine: SyncEngine, hlc: HLC, key: str, value: Any = 1) -> int:
    return engine.record("m", key, "PUT", LWWRecord(value, hlc.now()))


def test_pending_ops_grouped_into_one_batch_per_owner() -> None:
    engine, transport, router, _, hlc = make()
    keys = [f"key-{i}" for i in range(40)]
    for k in keys:
        put(engine, hlc, k)
    assert engine.sync() == len({router.route(k).owner for k in keys})  # type: ignore[union-attr]
    for node, batch in transport.sent:
        assert all(router.route(op.key).owner == node for op in batch.ops)  # type: ignore[union-attr]
        ids = [int(op.id) for op in batch.ops]  # type: ignore[arg-type]
        assert ids == sorted(ids)
    assert sum(len(b.ops) for _, b in transport.sent) == 40
    assert engine.sync() == 0  # in flight: not sent twice
    assert router.metrics.direct_routes == 40


def test_acks_are_per_connection_and_numeric_never_by_string() -> None:
    """§6.4-B: node A's lastId '10' must not resolve op 9 sent to node B."""
    engine, transport, router, _, hlc = make()
    a_keys = keys_owned_by(router, "node-a", 1, "a")
    b_keys = keys_owned_by(router, "node-b", 9, "b")
    for k in b_keys:  # ids 1..9 to node-b
        put(engine, hlc, k)
    put(engine, hlc, a_keys[0])  # id 10 to node-a
    engine.sync()
    # a reference-style ack (lastId only) from node-a
    done = engine.on_ack(transport.conns["node-a"], OpAck("10"))
    assert done == [10]
    assert engine.pending_ids() == list(range(1, 10))
    # an ack from node-b's connection naming node-a's batch resolves nothing
    assert engine.on_ack(transport.conns["node-b"], OpAck("10")) == []
    assert engine.on_ack(transport.conns["node-b"], OpAck("9")) == list(range(1, 10))
    assert engine.pending_count() == 0


def test_results_resolve_exactly_the_listed_ops() -> None:
    engine, transport, _router, _, hlc = make(nodes=["node-a"])
    ids = [put(engine, hlc, f"x{i}") for i in range(3)]
    engine.sync()
    conn = transport.conns["node-a"]
    ack = OpAck(
        str(ids[-1]),
        (OpResult(str(ids[0]), True, "APPLIED"), OpResult(str(ids[2]), True, "APPLIED")),
    )
    assert engine.on_ack(conn, ack) == [ids[0], ids[2]]
    assert engine.pending_ids() == [ids[1]]  # not listed: back to pending, sent again
    transport.sent.clear()
    engine.sync()
    assert [op.id for _, b in transport.sent for op in b.ops] == [str(ids[1])]


def test_not_owner_rejection_refreshes_and_retries_with_backoff() -> None:
    engine, transport, router, clock, hlc = make()
    key = "key-1"
    op_id = put(engine, hlc, key)
    engine.sync()
    owner = router.route(key).owner  # type: ignore[union-attr]
    hint = NotOwnerHint(router.route(key).partition_id, "node-x", 2)  # type: ignore[union-attr]
    engine.on_rejected(transport.conns[owner], OpRejected(str(op_id), NOT_OWNER, None, hint))
    assert transport.table_requests and "NOT_OWNER" in transport.table_requests[0]
    assert router.metrics.not_owner_retries == 1
    transport.sent.clear()
    assert engine.sync() == 0  # backing off
    assert engine.next_wakeup() == pytest.approx(clock.now + 0.05)
    clock.now += 0.05
    assert engine.sync() == 1
    # a newer table makes the retry go at once, to the new owner
    engine.on_rejected(transport.conns[owner], OpRejected(str(op_id), NOT_OWNER, None, hint))
    router.update_table(table(2, ["node-b", "node-c"]))
    engine.on_table_changed()
    transport.sent.clear()
    assert engine.sync() == 1
    assert transport.sent[0][0] == router.route(key).owner  # type: ignore[union-attr]


def test_not_owner_result_is_retried_and_bounded_then_parked_not_dropped() -> None:
    engine, transport, _router, clock, hlc = make(not_owner_max_attempts=3)
    op_id = put(engine, hlc, "key-1")
    for _ in range(3):
        clock.now += 10
        assert engine.sync() == 1
        node, _batch = transport.sent[-1]
        result = OpResult(str(op_id), False, "APPLIED", NOT_OWNER)
        engine.on_ack(transport.conns[node], OpAck(str(op_id), (result,)))
    assert engine.parked() and "NOT_OWNER 3 times" in engine.parked()[0][1]
    clock.now += 100
    assert engine.sync() == 0  # parked: no hot loop
    assert engine.pending_count() == 1  # but never dropped
    engine.on_authenticated()
    assert engine.sync() == 1


def test_not_owner_deadline() -> None:
    engine, transport, _router, clock, hlc = make(not_owner_deadline_s=1.0)
    op_id = put(engine, hlc, "key-1")
    engine.sync()
    node = transport.sent[-1][0]
    engine.on_rejected(transport.conns[node], OpRejected(str(op_id), NOT_OWNER))
    clock.now += 2
    engine.sync()
    node = transport.sent[-1][0]
    engine.on_rejected(transport.conns[node], OpRejected(str(op_id), NOT_OWNER))
    assert engine.parked()


def test_other_rejections_are_final_and_reported() -> None:
    engine, transport, _, _, hlc = make()
    op_id = put(engine, hlc, "key-1")
    engine.sync()
    node = transport.sent[-1][0]
    engine.on_rejected(transport.conns[node], OpRejected(str(op_id), "Access Denied", 403))
    assert engine.pending_count() == 0
    assert list(engine.stats.rejections) == [(op_id, "Access Denied")]
    # a later lastId ack for that batch does not resurrect or double-count it
    assert engine.on_ack(transport.conns[node], OpAck(str(op_id))) == []


def test_in_flight_ops_resent_after_connection_loss() -> None:
    engine, transport, router, _, hlc = make()
    key = "key-1"
    put(engine, hlc, key)
    engine.sync()
    owner = router.route(key).owner  # type: ignore[union-attr]
    assert engine.on_connection_lost(transport.conns[owner]) == 1
    transport.usable.remove(owner)
    transport.sent.clear()
    engine.sync()
    backup = router.route(key).backups[0]  # type: ignore[union-attr]
    assert transport.sent[0][0] == backup
    assert router.metrics.fallback_routes == 1
    # a late ack from the dead connection does not resolve the re-sent op
    assert engine.on_ack(transport.conns[owner], OpAck("1")) == []
    assert engine.on_ack(transport.conns[backup], OpAck("1")) == [1]


def test_ack_timeout_resends_and_reports_failure() -> None:
    engine, transport, _, clock, hlc = make(ack_timeout_s=2.0)
    put(engine, hlc, "key-1")
    engine.sync()
    node = transport.sent[-1][0]
    assert engine.next_wakeup() == pytest.approx(clock.now + 2.0)
    clock.now += 1.9
    assert engine.tick() == 0
    clock.now += 0.2
    assert engine.tick() == 1
    assert transport.failures == [node]
    assert engine.sync() == 1


def test_nothing_sent_without_usable_nodes_offline_first() -> None:
    engine, _transport, _, _, hlc = make(nodes=[])
    put(engine, hlc, "k")
    assert engine.sync() == 0
    assert engine.pending_count() == 1


def test_single_server_mode_has_no_router() -> None:
    transport = FakeTransport(["server"])
    engine = SyncEngine(MemoryStorage(), transport, None)
    hlc = HLC("c", lambda: 1)
    for i in range(5):
        put(engine, hlc, f"k{i}")
    assert engine.sync() == 1
    assert engine.on_ack(transport.conns["server"], OpAck("5")) == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_restart_resends_what_was_never_acknowledged(kind: str, tmp_path: Any) -> None:
    def storage() -> Any:
        return MemoryStorage() if kind == "memory" else SqliteStorage(tmp_path / "s.db")

    shared = storage()
    engine, transport, _, _, hlc = make(nodes=["node-a"], storage=shared)
    engine.router = None
    ids = [put(engine, hlc, f"k{i}") for i in range(3)]
    engine.sync()
    conn = transport.conns["node-a"]
    engine.on_ack(conn, OpAck(str(ids[0]), (OpResult(str(ids[0]), True, "APPLIED"),)))
    if kind == "sqlite":
        shared.close()
        shared = storage()
    again, transport2, _, _, _ = make(nodes=["node-a"], storage=shared)
    again.router = None
    assert again.load() == 2
    again.sync()
    assert [op.id for op in transport2.sent[0][1].ops] == [str(ids[1]), str(ids[2])]


def test_an_ack_after_a_refusal_on_the_same_node_resolves_the_retry() -> None:
    """A refused batch leaves nothing behind: the retry to the same node, ending with the
    same op id, is what the next OP_ACK answers (seen against a failing-over cluster)."""
    engine, transport, _router, clock, hlc = make(nodes=["node-a"])
    op_id = put(engine, hlc, "key-1")
    engine.sync()
    conn = transport.conns["node-a"]
    engine.on_rejected(conn, OpRejected(str(op_id), NOT_OWNER, 409))
    engine.on_ack(conn, OpAck("0", (OpResult(str(op_id), False, "APPLIED", NOT_OWNER),)))
    clock.now += 1.0
    assert engine.sync() == 1  # the retry
    assert engine.on_ack(conn, OpAck(str(op_id), (OpResult(str(op_id), True, "APPLIED"),))) == [
        op_id
    ]
    assert engine.pending_count() == 0
    assert engine.next_wakeup() is None  # no stale batch left to time out
    assert transport.failures == []


def test_a_reference_ack_does_not_match_an_emptied_batch() -> None:
    engine, transport, _router, clock, hlc = make(nodes=["node-a"])
    op_id = put(engine, hlc, "key-1")
    engine.sync()
    conn = transport.conns["node-a"]
    engine.on_rejected(conn, OpRejected(str(op_id), NOT_OWNER, 409))
    clock.now += 1.0
    engine.sync()
    assert engine.on_ack(conn, OpAck(str(op_id))) == [op_id]  # lastId only
    assert engine.pending_count() == 0


@pytest.mark.parametrize(
    "error",
    [
        "OUTCOME_UNKNOWN",
        "REPLICATION_TIMEOUT",
        "WRITE_CONCERN_UNMET: requested PERSISTED, reached REPLICATED: backup b is gone",
    ],
)
def test_an_unknown_outcome_is_resent_never_reported_as_a_refusal(error: str) -> None:
    """The owner may have applied it: resending is harmless under LWW, dropping is not."""
    engine, transport, _router, clock, hlc = make()
    op_id = put(engine, hlc, "key-1")
    engine.sync()
    node = transport.sent[-1][0]
    engine.on_ack(
        transport.conns[node], OpAck("0", (OpResult(str(op_id), False, "APPLIED", error),))
    )
    assert engine.pending_ids() == [op_id] and not engine.stats.rejections
    assert not engine.parked() and not engine.refused()  # not counted as NOT_OWNER
    clock.now += 1.0
    assert engine.sync() == 1 and transport.sent[-1][0] == node  # same route: the owner
    engine.on_ack(
        transport.conns[node], OpAck(str(op_id), (OpResult(str(op_id), True, "APPLIED"),))
    )
    assert engine.pending_count() == 0


def test_cluster_minority_sends_the_op_to_another_node() -> None:
    engine, transport, router, clock, hlc = make()
    op_id = put(engine, hlc, "key-1")
    engine.sync()
    owner = router.route("key-1").owner  # type: ignore[union-attr]
    assert transport.sent[-1][0] == owner
    reason = "CLUSTER_MINORITY: this node is cut off from the majority: use another"
    engine.on_rejected(transport.conns[owner], OpRejected(str(op_id), reason, 400))
    assert engine.pending_ids() == [op_id] and not engine.stats.rejections
    assert any("CLUSTER_MINORITY" in r for r in transport.table_requests)
    last = owner
    for _ in range(20):  # never parked; never straight back to the node that just refused
        clock.now += 2.0
        assert engine.sync() == 1
        node = transport.sent[-1][0]
        assert node != last
        engine.on_rejected(transport.conns[node], OpRejected(str(op_id), reason, 400))
        last = node
    assert not engine.parked() and engine.pending_count() == 1
    # a NOT_OWNER naming the owner is followed again (it is the authority on where to go)
    clock.now += 2.0
    engine.sync()
    hint = NotOwnerHint(router.route("key-1").partition_id, owner, 2)  # type: ignore[union-attr]
    engine.on_rejected(
        transport.conns[transport.sent[-1][0]], OpRejected(str(op_id), NOT_OWNER, None, hint)
    )
    clock.now += 2.0
    engine.sync()
    assert transport.sent[-1][0] == owner
