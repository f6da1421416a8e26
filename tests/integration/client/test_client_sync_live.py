"""Our client against a real in-process cluster: Merkle catch-up, live subscriptions and
paged queries (issue 10)."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from tests.integration.client.conftest import run
from topgun import ClusterConfig, MemoryStorage, TopGunClient
from topgun.client.subscriptions import Change
from topgun.harness.nodes import kill_nodes, start_nodes
from topgun.harness.waiting import wait_until

pytestmark = pytest.mark.timeout(90)

SECRET = "client-test-secret-0123456789abcdef012345"
FAST = {"heartbeat_interval_s": 0.1, "failure_timeout_s": 1.0, "shutdown_timeout_s": 3.0}


def token() -> str:
    return jwt.encode({"sub": "test-user", "roles": ["USER"]}, SECRET, algorithm="HS256")


def client_for(nodes: list[Any], storage: MemoryStorage | None = None) -> TopGunClient:
    c = TopGunClient(
        cluster=ClusterConfig(
            seeds=[n.client_url for n in nodes], reconnect_base_s=0.1, reconnect_max_s=0.5
        ),
        storage=storage or MemoryStorage(),
    )
    c.set_auth_token(token())
    return c


def test_offline_client_catches_up_and_live_subscriber_sees_other_writes() -> None:
    async def main() -> None:
        nodes = await start_nodes(
            ["node-a", "node-b", "node-c"], jwt_secret=SECRET, cluster_secret=SECRET, **FAST
        )
        writer = client_for(nodes)
        reader_storage = MemoryStorage()
        reader = client_for(nodes, reader_storage)
        try:
            await writer.start()
            users = writer.get_map("users")
            users.set("u:1", {"name": "Ada"})
            await writer.flush()
            # a client that was not there syncs the map on start
            await reader.start()
            local = reader.get_map("users")
            await wait_until(lambda: local.get("u:1") == {"name": "Ada"}, within=10)
            await reader.close()
            # written while the reader is offline (same storage: the same device later)
            for i in range(2, 40):
                users.set(f"u:{i}", {"name": f"n{i}"})
            users.remove("u:1")
            await writer.flush()
            reader = client_for(nodes, reader_storage)
            await reader.start()
            local = reader.get_map("users")
            await wait_until(lambda: len(local) == 38 and local.get("u:1") is None, within=10)
            assert local.record("u:1") is not None  # the tombstone arrived, not a gap
            # live: a subscriber sees another client's write, and so does its map
            seen: list[Change] = []
            sub = reader.subscribe("users", {"name": "Bob"}, on_change=seen.append)
            assert await sub.ready() == {}
            users.set("u:99", {"name": "Bob"})
            await writer.flush()
            await wait_until(lambda: sub.results == {"u:99": {"name": "Bob"}}, within=5)
            await wait_until(lambda: local.get("u:99") == {"name": "Bob"}, within=5)
            assert [c.kind for c in seen] == ["ENTER"]
            sub.close()
        finally:
            await writer.close()
            await reader.close()
            await kill_nodes(nodes)

    run(main(), timeout=60)


def test_subscription_survives_the_loss_of_its_node() -> None:
    async def main() -> None:
        nodes = await start_nodes(
            ["node-a", "node-b", "node-c"], jwt_secret=SECRET, cluster_secret=SECRET, **FAST
        )
        writer = client_for(nodes)
        reader = client_for(nodes)
        try:
            await writer.start()
            await reader.start()
            sub = reader.subscribe("live")
            await sub.ready()
            assert sub.conn is not None
            victim = next(n for n in nodes if n.node_id == sub.conn.id)
            await kill_nodes([victim])
            await wait_until(
                lambda: sub.conn is not None and sub.conn.id != victim.node_id, within=10
            )
            m = writer.get_map("live")
            m.set("after", 1)
            await writer.flush(timeout=10)
            await wait_until(lambda: sub.results.get("after") == 1, within=10)
        finally:
            await writer.close()
            await reader.close()
            await kill_nodes(nodes)

    run(main(), timeout=60)


def test_query_pages_transparently() -> None:
    async def main() -> None:
        nodes = await start_nodes(
            ["node-a", "node-b", "node-c"], jwt_secret=SECRET, cluster_secret=SECRET, **FAST
        )
        c = client_for(nodes)
        try:
            await c.start()
            m = c.get_map("big")
            for i in range(300):
                m.set(f"k{i:03d}", {"n": i})
            await c.flush()
            rows = await c.query("big", sort={"n": "asc"}, page_size=50)
            assert list(rows) == [f"k{i:03d}" for i in range(300)]
            first = [k async for k, _ in c.iter_query("big", sort={"n": "desc"}, limit=120,
                                                       page_size=50)]  # fmt: skip
            assert first == [f"k{i:03d}" for i in reversed(range(180, 300))]
        finally:
            await c.close()
            await kill_nodes(nodes)

    run(main(), timeout=60)
