"""The write path honours the write concern: each level answered when reached, not before, and
never reported as reached when it was not (fake peers, a real data dir where one is needed)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from test_server_units import SECRET, FakeLink, node_with, op

from topgun.core.concern import PERSISTENCE_UNAVAILABLE, UNMET, Concern, Level
from topgun.core.record_wire import encode_records
from topgun.harness.waiting import wait_until
from topgun.server import NodeConfig, ServerNode
from topgun.server.peer_link import PeerGone

pytestmark = pytest.mark.timeout(30)
KEY = "key-1"  # partition 236


def with_disk(node: ServerNode, data_dir: Path) -> ServerNode:
    """``node``'s services over a store in ``data_dir`` (its table and links kept)."""
    durable = ServerNode(
        NodeConfig(node_id=node.node_id, jwt_secret=SECRET, cluster_secret=SECRET,
                   min_cluster_size=1, data_dir=str(data_dir))
    )  # fmt: skip
    durable.state = "running"
    durable.membership.me = node.membership.me
    durable.partitions.table = node.partitions.table
    durable.membership.links = node.membership.links
    durable.membership.members = node.membership.members
    return durable


def test_applied_is_answered_before_the_backup_confirms() -> None:
    async def scenario() -> None:
        b = FakeLink("b")
        b.gate = asyncio.Event()
        node = node_with({236: "a"}, {236: ("b",)}, links={"b": b})
        [o] = await asyncio.wait_for(node.execute([op(KEY, 1)], concern=Concern(Level.APPLIED)), 1)
        assert o.ok and o.level == "APPLIED"
        await wait_until(lambda: b.requests, 2.0, "the backup still receives the record")
        b.gate.set()

    asyncio.run(scenario())


def test_replicated_is_not_claimed_when_a_backup_is_gone_or_silent() -> None:
    async def scenario() -> None:
        gone = node_with({236: "a"}, {236: ("b",)}, links={"b": FakeLink("b", PeerGone("b"))})
        [o] = await gone.execute([op(KEY, 1)], concern=Concern(Level.REPLICATED))
        assert not o.ok and o.level == "APPLIED"
        assert o.error is not None and o.error.startswith(f"{UNMET}: requested REPLICATED")
        assert "backup b is gone" in o.error
        slow = FakeLink("b")
        slow.gate = asyncio.Event()
        node = node_with({236: "a"}, {236: ("b",)}, links={"b": slow})
        [o] = await asyncio.wait_for(
            node.execute([op(KEY, 1)], concern=Concern(Level.REPLICATED, 100)), 2
        )
        assert not o.ok and o.level == "APPLIED" and "within 100 ms" in (o.error or "")
        slow.gate.set()
        [o] = await node.execute([op(KEY, 2)], concern=Concern(Level.REPLICATED))
        assert o.ok and o.level == "REPLICATED"

    asyncio.run(scenario())


def test_persisted_is_refused_before_applying_by_a_node_without_a_data_dir() -> None:
    async def scenario() -> None:
        b = FakeLink("b")
        node = node_with({236: "a"}, {236: ("b",)}, links={"b": b})
        [o] = await node.execute([op(KEY, 1)], concern=Concern(Level.PERSISTED))
        assert not o.ok and o.level == "FIRE_AND_FORGET"
        assert (o.error or "").startswith(f"{PERSISTENCE_UNAVAILABLE}: node a keeps no store")
        assert node.store.get("m", KEY) is None and b.requests == []

    asyncio.run(scenario())


def test_persisted_waits_for_the_owners_disk_and_every_backups(tmp_path: Path) -> None:
    def disk(answer: bool) -> Any:
        return lambda msg: {"ok": True, "disk": answer} if msg.get("sync") == 1 else {"ok": True}

    async def scenario() -> None:
        b = FakeLink("b", disk(True))
        node = with_disk(node_with({236: "a"}, {236: ("b",)}, links={"b": b}), tmp_path)
        try:
            [o] = await node.execute([op(KEY, 1)], concern=Concern(Level.PERSISTED))
            assert o.ok and o.level == "PERSISTED"
            assert b.requests[-1]["sync"] == 1
            assert node.metrics.registry.get_sample_value("topgun_storage_commits_total")  # fsynced
            b.reply = disk(False)  # a backup without a data dir
            [o] = await node.execute([op(KEY, 2)], concern=Concern(Level.PERSISTED))
            assert not o.ok and o.level == "REPLICATED"
            assert "backup b has it in memory only" in (o.error or "")
            [o] = await node.execute([op(KEY, 3)], concern=Concern(Level.REPLICATED))
            assert o.ok and o.level == "REPLICATED" and "sync" not in b.requests[-1]
        finally:
            await node.kill()

    asyncio.run(scenario())


def test_a_backup_answers_sync_only_with_the_records_on_its_disk(tmp_path: Path) -> None:
    async def scenario() -> None:
        replies: list[dict[str, Any]] = []
        x = FakeLink("x")

        async def reply(_msg: dict[str, Any], answer: dict[str, Any]) -> None:
            replies.append(answer)

        x.reply = reply  # type: ignore[method-assign, assignment]
        recs = encode_records([("m", KEY, op(KEY, 7).record)])  # type: ignore[list-item]
        memory = node_with({236: "x"}, {236: ("a",)}, links={"x": x})
        await memory.replication._on_repl(x, {"t": "REPL", "id": 1, "sync": 1, "recs": recs})  # type: ignore[arg-type]
        assert replies.pop() == {"t": "REPL_ACK", "ok": True, "disk": False}
        node = with_disk(node_with({236: "x"}, {236: ("a",)}, links={"x": x}), tmp_path)
        try:
            await node.replication._on_repl(x, {"t": "REPL", "id": 2, "sync": 1, "recs": recs})  # type: ignore[arg-type]
            assert replies.pop() == {"t": "REPL_ACK", "ok": True, "disk": True}
            assert node.ctx.commit is not None
            rows = (await asyncio.to_thread(node.ctx.commit.engine.load)).rows
            assert [(m, k) for _, m, k, _ in rows] == [("m", KEY)]
        finally:
            await node.kill()

    asyncio.run(scenario())


def test_a_forwarded_batch_carries_its_concern_to_the_owner() -> None:
    async def scenario() -> None:
        def answer(msg: dict[str, Any]) -> dict[str, Any]:
            return {"results": [{"ok": True, "level": "PERSISTED"} for _ in msg["ops"]]}

        owner = FakeLink("c", answer)
        node = node_with({236: "c"}, {}, links={"c": owner})
        [o] = await node.execute([op(KEY, 1)], concern=Concern(Level.PERSISTED, 700))
        assert o.ok and o.level == "PERSISTED"
        assert owner.requests[0]["wc"] == ["PERSISTED", 700.0]
        await node.execute([op(KEY, 2)])
        assert "wc" not in owner.requests[1]  # the default travels as it always did

    asyncio.run(scenario())
