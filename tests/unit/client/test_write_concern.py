"""Write concern on the client: chosen per client, map and write; batched by concern; the
level each ack vouched for reaches ``flush()``; UNMET is sent again, PERSISTENCE_UNAVAILABLE
is a refusal."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from tests.unit.client.test_sync_engine import make
from topgun import ClusterConfig, MemoryStorage, TopGunClient
from topgun.client import FlushResult, Level, WriteConcern
from topgun.client.errors import ConfigError, FlushTimeout, WriteRejected
from topgun.client.storage import SqliteStorage
from topgun.client.sync_engine import ACK_MARGIN_S, SyncEngine
from topgun.client.write_concern import AckedWrite
from topgun.core.hlc import HLC
from topgun.core.messages import OpAck, OpBatch, OpRejected, OpResult
from topgun.core.records import LWWRecord

PERSISTED = WriteConcern(Level.PERSISTED)
UNMET = "WRITE_CONCERN_UNMET: requested PERSISTED, reached REPLICATED: backup b is gone"
UNAVAILABLE = "PERSISTENCE_UNAVAILABLE: node a keeps no store (start it with --data-dir)"


def put(engine: SyncEngine, hlc: HLC, key: str, concern: WriteConcern | None = None) -> int:
    return engine.record("m", key, "PUT", LWWRecord(1, hlc.now()), concern)


def op_ids(batch: OpBatch) -> list[int]:
    return sorted(int(op.id or 0) for op in batch.ops)


def result(op_id: int, level: str, error: str | None = None) -> OpResult:
    return OpResult(str(op_id), error is None, level, error)


# --- the value ---------------------------------------------------------------------------


def test_a_write_concern_is_a_level_name_a_level_or_a_write_concern() -> None:
    assert WriteConcern.of(None) is None
    assert WriteConcern.of("persisted") == PERSISTED
    assert WriteConcern.of(Level.APPLIED) == WriteConcern(Level.APPLIED)
    assert WriteConcern.of(PERSISTED) is PERSISTED
    assert str(WriteConcern(Level.REPLICATED, 2.5)) == "REPLICATED within 2.5 s"
    assert WriteConcern(Level.MEMORY, 0.0004).timeout_ms == 1  # whole ms, never 0
    assert PERSISTED.timeout_ms == 5000  # the server's default, stated on the wire


@pytest.mark.parametrize(
    "bad", ["DURABLE", "", 3, object()], ids=["name", "empty", "int", "object"]
)
def test_an_unknown_write_concern_is_a_config_error(bad: Any) -> None:
    with pytest.raises(ConfigError):
        WriteConcern.of(bad)


@pytest.mark.parametrize("timeout", [0.0, -1.0, float("nan"), float("inf"), 3601.0])
def test_a_write_concern_timeout_is_positive_and_bounded(timeout: float) -> None:
    with pytest.raises(ConfigError):
        WriteConcern(Level.PERSISTED, timeout)


def test_cluster_config_takes_the_client_wide_write_concern() -> None:
    cfg = ClusterConfig(seeds=["ws://a:1"], write_concern="REPLICATED")
    assert cfg.write_concern == WriteConcern(Level.REPLICATED)
    with pytest.raises(ConfigError, match="unknown write concern"):
        ClusterConfig(seeds=["ws://a:1"], write_concern="ON_DISK")


def test_flush_result_level_is_the_lowest_vouched_for() -> None:
    def w(asked: Level | None, level: Level | None) -> AckedWrite:
        return AckedWrite(1, "m", "k", asked, level)

    assert FlushResult().level is None  # nothing flushed: nothing promised
    mixed = FlushResult((w(Level.PERSISTED, Level.PERSISTED), w(Level.APPLIED, Level.APPLIED)))
    assert mixed.level is Level.APPLIED and not mixed.shortfalls
    assert mixed.by_level() == {"PERSISTED": 1, "APPLIED": 1}
    unknown = FlushResult((w(None, None), w(Level.PERSISTED, Level.PERSISTED)))
    assert unknown.level is None and unknown.by_level() == {"unknown": 1, "PERSISTED": 1}
    short = FlushResult((w(Level.PERSISTED, Level.REPLICATED),))
    assert short.level is Level.REPLICATED and short.shortfalls == short.writes


# --- the engine --------------------------------------------------------------------------


def test_ops_asking_for_different_concerns_never_share_a_batch() -> None:
    engine, transport, _router, _clock, hlc = make(nodes=["node-a"])
    plain = put(engine, hlc, "k1")
    durable = [put(engine, hlc, f"d{i}", PERSISTED) for i in range(2)]
    quick = put(engine, hlc, "k2", WriteConcern(Level.APPLIED, 0.5))
    assert engine.sync() == 3
    batches = {(b.write_concern, b.timeout): op_ids(b) for _, b in transport.sent}
    assert batches == {
        (None, None): [plain],
        ("PERSISTED", 5000): durable,
        ("APPLIED", 500): [quick],
    }
    wire = next(b for _, b in transport.sent if b.write_concern == "PERSISTED").to_wire()
    assert wire["payload"]["writeConcern"] == "PERSISTED" and wire["payload"]["timeout"] == 5000


def test_a_batch_waits_for_its_concern_timeout_before_it_is_sent_again() -> None:
    engine, _transport, _router, clock, hlc = make(nodes=["node-a"], ack_timeout_s=1.0)
    put(engine, hlc, "k", WriteConcern(Level.PERSISTED, 10.0))
    engine.sync()
    assert engine.next_wakeup() == pytest.approx(clock.now + 10.0 + ACK_MARGIN_S)
    clock.now += 10.0
    assert engine.tick() == 0  # the server may still answer: it has 10 s
    clock.now += ACK_MARGIN_S + 0.01
    assert engine.tick() == 1


def test_unmet_is_sent_again_with_the_same_concern_and_named_when_flush_gives_up() -> None:
    engine, transport, _router, clock, hlc = make(nodes=["node-a"])
    op_id = put(engine, hlc, "k", PERSISTED)
    engine.sync()
    conn = transport.conns["node-a"]
    engine.on_ack(conn, OpAck("0", (result(op_id, "REPLICATED", UNMET),)))
    assert engine.pending_ids() == [op_id] and not engine.stats.rejections
    assert engine.retrying() == [(op_id, f"{UNMET} (from node-a)")]
    clock.now += 1.0
    assert engine.sync() == 1 and transport.sent[-1][1].write_concern == "PERSISTED"
    engine.on_ack(conn, OpAck(str(op_id), (result(op_id, "PERSISTED"),)))
    assert engine.pending_count() == 0


def test_persistence_unavailable_is_a_refusal_the_receipt_keeps() -> None:
    engine, transport, _router, _clock, hlc = make(nodes=["node-a"])
    op_id = put(engine, hlc, "k", PERSISTED)
    receipt = engine.watch()
    engine.sync()
    conn = transport.conns["node-a"]
    engine.on_rejected(conn, OpRejected(str(op_id), UNAVAILABLE, 501))
    engine.on_ack(conn, OpAck("0", (result(op_id, "FIRE_AND_FORGET", UNAVAILABLE),)))
    assert engine.pending_count() == 0  # not sent again: it would be refused again
    assert receipt.rejected == [(op_id, UNAVAILABLE)] and not receipt.waiting


def test_the_receipt_has_the_level_each_ack_vouched_for() -> None:
    engine, transport, _router, _clock, hlc = make(nodes=["node-a"])
    reported = put(engine, hlc, "a", PERSISTED)
    lower = put(engine, hlc, "b", PERSISTED)
    default = put(engine, hlc, "c")
    receipt = engine.watch()
    engine.sync()
    conn = transport.conns["node-a"]
    engine.on_ack(conn, OpAck("0", (result(reported, "PERSISTED"), result(lower, "REPLICATED"))))
    engine.on_ack(conn, OpAck(str(default)))  # a reference ack: lastId, no level
    levels = {w.op_id: (w.asked, w.level) for w in receipt.acked}
    assert levels == {
        reported: (Level.PERSISTED, Level.PERSISTED),
        lower: (Level.PERSISTED, Level.REPLICATED),  # the server broke its promise: shown
        default: (None, None),
    }
    engine.unwatch(receipt)
    put(engine, hlc, "d")
    assert receipt.waiting == set()  # an op logged after the receipt is not its business


def test_a_reference_ack_without_a_level_vouches_for_the_level_asked() -> None:
    engine, transport, _router, _clock, hlc = make(nodes=["node-a"])
    op_id = put(engine, hlc, "a", PERSISTED)
    receipt = engine.watch()
    engine.sync()
    engine.on_ack(transport.conns["node-a"], OpAck(str(op_id)))  # success: level reached
    assert [(w.asked, w.level) for w in receipt.acked] == [(Level.PERSISTED, Level.PERSISTED)]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_restart_sends_logged_ops_with_the_concern_they_asked_for(
    kind: str, tmp_path: Any
) -> None:
    storage = MemoryStorage() if kind == "memory" else SqliteStorage(tmp_path / "c.db")
    engine, _transport, _router, _clock, hlc = make(nodes=["node-a"], storage=storage)
    put(engine, hlc, "a", WriteConcern(Level.PERSISTED, 7.5))
    put(engine, hlc, "b", WriteConcern(Level.APPLIED))
    again, transport, _router, _clock, _hlc = make(nodes=["node-a"], storage=storage)
    assert again.load() == 2
    again.sync()
    sent = {b.write_concern: b.timeout for _, b in transport.sent}
    assert sent == {"PERSISTED": 7500, "APPLIED": 5000}


# --- the client ------------------------------------------------------------------------


def single_client(**options: Any) -> tuple[TopGunClient, list[OpBatch], Any]:
    """A single-server client whose one connection records what it sends."""
    c = TopGunClient(server_url="ws://127.0.0.1:1", storage=MemoryStorage(), options=options)
    sent: list[OpBatch] = []

    def send(message: OpBatch) -> bool:
        sent.append(message)
        return True

    conn = SimpleNamespace(
        id="server",
        state="AUTHENTICATED",
        is_authenticated=True,
        leaving=False,
        send=send,
    )
    c._conns["server"] = conn  # type: ignore[assignment]
    return c, sent, conn


def asked(c: TopGunClient) -> dict[str, Level | None]:
    ops = (c._engine.op(i) for i in c._engine.pending_ids())
    return {op.key: op.concern.level if op.concern else None for op in ops if op is not None}


def test_the_write_wins_over_the_map_and_the_map_over_the_client() -> None:
    c, _, _ = single_client(write_concern="REPLICATED")
    plain = c.get_map("plain")
    durable = c.get_map("durable", write_concern="PERSISTED")
    plain.set("p", 1)
    durable.set("d", 1)
    durable.set("quick", 1, write_concern="APPLIED")
    durable.remove("gone")
    assert asked(c) == {
        "p": Level.REPLICATED,
        "d": Level.PERSISTED,
        "quick": Level.APPLIED,
        "gone": Level.PERSISTED,
    }
    assert c.get_map("durable") is durable  # opened again without a concern: the same handle
    assert c.get_map("durable", write_concern=Level.PERSISTED) is durable
    with pytest.raises(ConfigError, match="open with write concern PERSISTED"):
        c.get_map("durable", write_concern="APPLIED")
    with pytest.raises(ConfigError):
        durable.set("x", 1, write_concern="SOMEWHERE")
    assert durable.get("x") is None  # a bad concern writes nothing


def test_without_any_concern_the_server_default_applies() -> None:
    c, _, _ = single_client()
    c.get_map("m").set("k", 1)
    assert asked(c) == {"k": None}


def flushing(c: TopGunClient, timeout: float = 5.0) -> asyncio.Task[FlushResult]:
    c._started = True
    c._changed = asyncio.Event()
    c._kick = asyncio.Event()
    return asyncio.get_running_loop().create_task(c.flush(timeout))


def test_flush_reports_every_write_and_the_lowest_level() -> None:
    async def main() -> None:
        c, sent, conn = single_client(write_concern="PERSISTED")
        m = c.get_map("m")
        m.set("a", 1)
        m.set("b", 2, write_concern="APPLIED")
        task = flushing(c)
        await asyncio.sleep(0)
        assert c.sync_now() == 2
        for batch in sent:
            level = batch.write_concern or "APPLIED"
            results = tuple(result(op_id, level) for op_id in op_ids(batch))
            c.on_message(conn, OpAck(results[-1].op_id, results))
        done = await asyncio.wait_for(task, 5)
        assert done.level is Level.APPLIED
        assert sorted((w.key, w.level) for w in done.writes) == [
            ("a", Level.PERSISTED),
            ("b", Level.APPLIED),
        ]

    asyncio.run(main())


def test_flush_raises_persistence_unavailable_as_a_refusal() -> None:
    async def main() -> None:
        c, sent, conn = single_client()
        c.get_map("m").set("a", 1, write_concern="PERSISTED")
        task = flushing(c)
        await asyncio.sleep(0)
        c.sync_now()
        c.on_message(conn, OpRejected(str(op_ids(sent[0])[0]), UNAVAILABLE, 501))
        with pytest.raises(WriteRejected, match="PERSISTENCE_UNAVAILABLE"):
            await asyncio.wait_for(task, 5)

    asyncio.run(main())


def test_a_flush_that_gives_up_on_unmet_says_so() -> None:
    async def main() -> None:
        c, sent, conn = single_client()
        c.get_map("m").set("a", 1, write_concern="PERSISTED")
        task = flushing(c, timeout=0.3)
        await asyncio.sleep(0)
        c.sync_now()
        op_id = op_ids(sent[0])[0]
        c.on_message(conn, OpAck("0", (result(op_id, "REPLICATED", UNMET),)))
        with pytest.raises(FlushTimeout, match="sent again after the answer WRITE_CONCERN_UNMET"):
            await asyncio.wait_for(task, 5)

    asyncio.run(main())
