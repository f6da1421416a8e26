"""Write concern end to end: a client asking per client, per map and per write, against real
nodes keeping a data dir, and against a node without one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests.integration.client.conftest import run
from topgun import ClusterConfig, MemoryStorage, TopGunClient
from topgun.client import Level, WriteConcern
from topgun.client.errors import WriteRejected
from topgun.harness.nodes import start_nodes

pytestmark = pytest.mark.timeout(90)

SECRET = "client-test-secret-0123456789abcdef012345"
FAST = {"heartbeat_interval_s": 0.1, "failure_timeout_s": 1.0, "shutdown_timeout_s": 3.0}


def token() -> str:
    return jwt.encode({"sub": "test-user", "roles": ["USER"]}, SECRET, algorithm="HS256")


async def started(client: TopGunClient) -> TopGunClient:
    client.set_auth_token(token())
    await client.start(timeout=10)
    return client


def commits(node: Any) -> float:
    """The node's group commits so far (its own metric): PERSISTED must have caused some."""
    value = node.metrics.registry.get_sample_value("topgun_storage_commits_total")
    assert value is not None, f"{node.node_id} reports no topgun_storage_commits_total"
    return float(value)


def test_levels_asked_per_client_map_and_write_are_reported_by_flush(tmp_path: Path) -> None:
    async def main() -> None:
        nodes: list[Any] = []
        client: TopGunClient | None = None
        try:
            await start_nodes(
                ["node-a", "node-b", "node-c"], jwt_secret=SECRET, cluster_secret=SECRET,
                into=nodes, data_dir=str(tmp_path), **FAST,
            )  # fmt: skip
            before = sum(commits(n) for n in nodes)
            config = ClusterConfig(
                seeds=[n.client_url for n in nodes],
                write_concern=WriteConcern(Level.PERSISTED, 10.0),
            )
            client = await started(TopGunClient(cluster=config, storage=MemoryStorage()))
            durable = client.get_map("durable")
            for i in range(50):
                durable.set(f"k{i}", {"n": i})
            result = await client.flush(timeout=15)
            assert (len(result), result.level, result.shortfalls) == (50, Level.PERSISTED, ())
            assert sum(commits(n) for n in nodes) > before  # fsynced, as promised

            quick = client.get_map("quick", write_concern="APPLIED")
            quick.set("q", 1)
            durable.set("r", 1, write_concern="REPLICATED")
            durable.set("p", 1)
            mixed = await client.flush(timeout=15)
            assert mixed.level is Level.APPLIED  # the lowest: what every one of them is promised
            assert {w.key: w.level for w in mixed.writes} == {
                "q": Level.APPLIED,
                "r": Level.REPLICATED,
                "p": Level.PERSISTED,
            }
        finally:
            if client is not None:
                await client.close()
            await asyncio.gather(*(n.kill() for n in nodes), return_exceptions=True)

    run(main(), timeout=60)


def test_a_node_without_a_data_dir_refuses_persisted_and_serves_the_rest() -> None:
    async def main() -> None:
        nodes: list[Any] = []
        client: TopGunClient | None = None
        try:
            await start_nodes(["solo"], jwt_secret=SECRET, cluster_secret=SECRET, into=nodes)
            client = await started(
                TopGunClient(server_url=nodes[0].client_url, storage=MemoryStorage())
            )
            m = client.get_map("m")
            m.set("durable", 1, write_concern="PERSISTED")
            with pytest.raises(WriteRejected, match="PERSISTENCE_UNAVAILABLE") as refused:
                await client.flush(timeout=10)
            assert len(refused.value.rejections) == 1
            assert client.pending_count() == 0  # a refusal is final: not sent again
            m.set("plain", 2)
            result = await client.flush(timeout=10)
            assert result.level is not None and result.level >= Level.APPLIED
            assert nodes[0].inspect("m", "durable")["record"] is None  # nothing was applied
        finally:
            if client is not None:
                await client.close()
            await asyncio.gather(*(n.kill() for n in nodes), return_exceptions=True)

    run(main(), timeout=60)
