"""The client against a real in-process 3-node topgun cluster (SPEC-048c end to end)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
import pytest

from tests.integration.client.conftest import run
from topgun import ClusterConfig, MemoryStorage, TopGunClient
from topgun.harness.nodes import start_nodes
from topgun.harness.waiting import wait_until

server = pytest.importorskip("topgun.server")

pytestmark = pytest.mark.timeout(90)

SECRET = "client-test-secret-0123456789abcdef012345"
FAST = {"heartbeat_interval_s": 0.1, "failure_timeout_s": 1.0, "shutdown_timeout_s": 3.0}


async def start_cluster(ids: list[str]) -> list[Any]:
    return await start_nodes(ids, jwt_secret=SECRET, cluster_secret=SECRET, **FAST)


def token() -> str:
    return jwt.encode({"sub": "test-user", "roles": ["USER"]}, SECRET, algorithm="HS256")


def test_direct_route_then_owner_killed_fallback_then_direct_again() -> None:
    async def main() -> None:
        nodes = await start_cluster(["node-a", "node-b", "node-c"])
        by_id = {n.node_id: n for n in nodes}
        client = TopGunClient(
            cluster=ClusterConfig(
                seeds=[n.client_url for n in nodes],
                ping_interval_s=0.5,
                reconnect_base_s=0.1,
                reconnect_max_s=1.0,
            ),
            storage=MemoryStorage(),
        )
        client.set_auth_token(token())
        try:
            await client.start(timeout=10)
            assert client.is_routing_active()
            table = client.get_partition_table()
            assert table is not None and table.partition_count == 271
            stats = client.get_cluster_stats()
            assert stats is not None and stats["partition_count"] == 271
            assert stats["node_count"] == 3
            await wait_until(
                lambda: (
                    set(client.get_connection_states()) == {"node-a", "node-b", "node-c"}
                    and set(client.get_connection_states().values()) == {"AUTHENTICATED"}
                ),
                within=5,
                what="one authenticated connection per node, reconciled to node ids",
            )
            m = client.get_map("test")
            m.set("key-1", {"value": 1})
            await client.flush(timeout=5)
            owner = table.owner_of_key("key-1")
            held = by_id[owner].inspect("test", "key-1")
            assert held["role"] == "owner"
            assert held["record"] is not None
            metrics = client.get_routing_metrics()
            assert metrics is not None and metrics["direct_routes"] == 1
            assert metrics["fallback_routes"] == 0

            kill = asyncio.create_task(by_id[owner].kill())
            deadline = time.monotonic() + 5
            while owner in client.usable_nodes():  # write as soon as the drop is seen
                assert time.monotonic() < deadline, "owner's connection drop not seen"
                await asyncio.sleep(0.001)
            before = client.get_routing_metrics()
            assert before is not None
            m.set("key-1", {"value": 2})
            await client.flush(timeout=2)  # acknowledged within 2 s, or FlushTimeout
            after = client.get_routing_metrics()
            assert after is not None
            if client.get_partition_table() is table:  # the old table held throughout
                assert after["fallback_routes"] >= before["fallback_routes"] + 1
            else:  # the new table may have come before the op was routed: direct is right
                assert after["total_routes"] >= before["total_routes"] + 1
            await kill

            survivors = [n for n in nodes if n.node_id != owner]
            await wait_until(
                lambda: (
                    client.get_partition_table().version  # type: ignore[union-attr]
                    > table.version
                    and owner not in client.get_partition_table().node_ids()
                ),  # type: ignore[union-attr]
                within=10,
                what="the client holds the table without the dead node",
            )
            new_table = client.get_partition_table()
            assert new_table is not None
            new_owner = new_table.owner_of_key("key-1")
            rec = next(n for n in survivors if n.node_id == new_owner).inspect("test", "key-1")
            assert rec["record"] is not None
            value = (
                rec["record"]["value"] if isinstance(rec["record"], dict) else rec["record"].value
            )
            assert value == {"value": 2}

            direct = client.get_routing_metrics()["direct_routes"]  # type: ignore[index]
            m.set("key-1", {"value": 3})
            await client.flush(timeout=2)
            assert client.get_routing_metrics()["direct_routes"] == direct + 1  # type: ignore[index]
            await asyncio.sleep(0)
        finally:
            await client.close()
            await asyncio.gather(*(n.kill() for n in nodes), return_exceptions=True)

    run(main(), timeout=60)
