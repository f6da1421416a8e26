"""The client against a fake cluster speaking the protocol (edge cases of §5, §6)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.integration.client.conftest import run
from tests.integration.client.fake_server import TOKEN, FakeCluster
from topgun import ClusterConfig, MemoryStorage, SqliteStorage, TopGunClient
from topgun.client import ClusterEvent, EventKind
from topgun.client.errors import AuthError, FlushTimeout, StartTimeout
from topgun.core.codec import encode
from topgun.core.messages import Auth, OpBatch, PartitionMapRequest, Ping, ShutdownPending
from topgun.harness.waiting import wait_until

pytestmark = pytest.mark.timeout(60)


def fast_config(seeds: list[str], **kw: object) -> ClusterConfig:
    opts: dict[str, object] = {
        "ping_interval_s": 0.2,
        "reconnect_base_s": 0.05,
        "reconnect_max_s": 0.5,
        "connect_timeout_s": 2.0,
    }
    opts.update(kw)
    return ClusterConfig(seeds=seeds, **opts)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def running(
    size: int = 3, endpoint_bug: bool = False, **client_kw: object
) -> AsyncIterator[tuple[FakeCluster, TopGunClient]]:
    """A started fake cluster of ``size`` nodes and a client signed in to it; both are
    closed on exit. ``client_kw`` overrides the fast test configuration."""
    cluster = await FakeCluster(size=size).start(endpoint_bug=endpoint_bug)
    try:
        client = TopGunClient(
            cluster=fast_config(cluster.seeds, **client_kw), storage=MemoryStorage()
        )
        try:
            client.set_auth_token(TOKEN)
            await client.start(timeout=5)
            yield cluster, client
        finally:
            await client.close()
    finally:
        await cluster.stop()


def test_start_routes_directly_and_every_connection_authenticates() -> None:
    async def main() -> None:
        async with running() as (cluster, client):
            assert client.is_routing_active()
            assert client.get_partition_table() is not None
            assert client.get_partition_table().partition_count == 271  # type: ignore[union-attr]
            await wait_until(
                lambda: set(client.get_connection_states().values()) == {"AUTHENTICATED"},
                what="all connections authenticated",
            )
            # seeds were reconciled with node ids by exact endpoint (§6.3)
            assert set(client.get_connection_states()) == set(cluster.nodes)
            m = client.get_map("test")
            m.set("key-1", {"value": 1})
            assert m.get("key-1") == {"value": 1}
            await client.flush(timeout=5)
            owner = cluster.table.owner_of_key("key-1")
            assert cluster.nodes[owner].store("test").record("key-1") is not None
            assert client.get_routing_metrics()["direct_routes"] == 1  # type: ignore[index]
            assert await client.query("test") == {"key-1": {"value": 1}}
            # §6.4-C: no node ever closed a connection for a message sent before AUTH_ACK
            assert all(n.closed_4001 == 0 for n in cluster.nodes.values())
            for node in cluster.nodes.values():
                for cid in {c for c, _ in node.received}:
                    first = [m for c, m in node.received if c == cid and not isinstance(m, Ping)]
                    assert isinstance(first[0], Auth)

    run(main())


def test_ops_are_grouped_into_one_batch_per_owner() -> None:
    async def main() -> None:
        async with running() as (cluster, client):
            await wait_until(lambda: len(client.usable_nodes()) == 3)
            m = client.get_map("test")
            keys = [f"k{i}" for i in range(30)]
            for k in keys:  # all written in one loop turn: one sync step sends them
                m.set(k, k)
            await client.flush(timeout=5)
            for node_id, node in cluster.nodes.items():
                batches = node.of_type(OpBatch)
                mine = {k for k in keys if cluster.table.owner_of_key(k) == node_id}
                sent = {op.key for b in batches for op in b.ops}  # type: ignore[attr-defined]
                assert sent == mine
                assert len(batches) == (1 if mine else 0)

    run(main())


def test_owner_killed_write_falls_back_then_direct_again() -> None:
    async def main() -> None:
        async with running() as (cluster, client):
            await wait_until(lambda: len(client.usable_nodes()) == 3)
            m = client.get_map("test")
            m.set("key-1", {"value": 1})
            await client.flush(timeout=5)
            owner = cluster.table.owner_of_key("key-1")
            await cluster.nodes[owner].kill()
            await wait_until(lambda: owner not in client.usable_nodes(), what="owner seen down")
            before = client.get_routing_metrics()
            assert before is not None
            m.set("key-1", {"value": 2})
            await client.flush(timeout=2)  # acknowledged within 2 s, or FlushTimeout
            after = client.get_routing_metrics()
            assert after is not None
            assert after["fallback_routes"] == before["fallback_routes"] + 1
            assert after["direct_routes"] == before["direct_routes"]
            backup = cluster.table.backups_of(cluster.partition_of("key-1"))[0]
            held = cluster.nodes[backup].store("test").record("key-1")
            assert held is not None and held.value == {"value": 2}
            # the cluster publishes a table without the dead node; writes go direct again
            survivors = [n for n in cluster.nodes if n != owner]
            cluster.publish(2, survivors)
            await cluster.push_table()
            await wait_until(lambda: client.get_cluster_stats()["map_version"] == 2)  # type: ignore[index]
            assert owner not in client.get_connection_states()
            new_owner = cluster.table.owner_of_key("key-1")
            m.set("key-1", {"value": 3})
            await client.flush(timeout=2)
            final = client.get_routing_metrics()
            assert final is not None
            assert final["direct_routes"] == after["direct_routes"] + 1
            held = cluster.nodes[new_owner].store("test").record("key-1")
            assert held is not None and held.value == {"value": 3}

    run(main())


def test_not_owner_refreshes_table_and_retries() -> None:
    async def main() -> None:
        async with running() as (cluster, client):
            await wait_until(lambda: len(client.usable_nodes()) == 3)
            key = "key-1"
            old_owner = cluster.table.owner_of_key(key)
            # the cluster moves ownership (version 2) but the client still holds version 1
            ids = list(cluster.nodes)
            rotated = ids[1:] + ids[:1]
            table = cluster.publish(2, ids)
            from topgun.core.table import NodeInfo, build_table

            perm = dict(zip(ids, rotated, strict=True))
            owners = tuple(perm[o] for o in table.owners)
            backups = tuple(tuple(perm[b] for b in bk) for bk in table.backups)
            infos = [NodeInfo(i, cluster.nodes[i].url) for i in ids]
            cluster.table = build_table(2, infos, (owners, backups))
            for node in cluster.nodes.values():
                node.not_owner = True
            refreshes = client.get_routing_metrics()["map_refreshes"]  # type: ignore[index]
            client.get_map("test").set(key, "v")
            await client.flush(timeout=3)
            metrics = client.get_routing_metrics()
            assert metrics is not None
            assert metrics["not_owner_retries"] >= 1
            assert metrics["map_refreshes"] > refreshes
            new_owner = cluster.table.owner_of_key(key)
            assert new_owner != old_owner
            assert cluster.nodes[new_owner].store("test").record(key) is not None
            assert cluster.nodes[old_owner].store("test").record(key) is None

    run(main())


def test_not_owner_in_results_is_retried_too() -> None:
    async def main() -> None:
        async with running(smart_routing=False, not_owner_max_attempts=3) as (cluster, client):
            await wait_until(lambda: len(client.usable_nodes()) == 3)
            first = client.usable_nodes()[0]
            node = cluster.nodes[first]
            node.not_owner = True
            node.results_not_owner = True
            key = next(f"k{i}" for i in range(100) if cluster.table.owner_of_key(f"k{i}") != first)
            client.get_map("test").set(key, 1)
            with pytest.raises(FlushTimeout, match="NOT_OWNER"):
                await client.flush(timeout=1.5)
            assert client.get_routing_metrics()["not_owner_retries"] >= 2  # type: ignore[index]
            node.not_owner = False  # the node learns to forward: the op goes through
            client._engine.on_authenticated()  # revive parked ops as a reconnect would
            await client.flush(timeout=3)

    run(main())


def test_reference_style_acks_only_resolve_that_connections_batch() -> None:
    """§6.4-B: lastId-only acks, per connection, numeric."""

    async def main() -> None:
        async with running() as (cluster, client):
            for node in cluster.nodes.values():
                node.reference_acks = True
            await wait_until(lambda: len(client.usable_nodes()) == 3)
            holder = cluster.table.owner_of_key("a-key")
            cluster.nodes[holder].hold_acks = True
            m = client.get_map("test")
            held_key = "a-key"
            others = [f"x{i}" for i in range(40) if cluster.table.owner_of_key(f"x{i}") != holder]
            m.set(held_key, 1)  # id 1, never acked
            for k in others:  # ids 2..n, including "10" > "9" string traps
                m.set(k, 2)
            await wait_until(lambda: client.pending_count() == 1, what="others acked")
            assert client._engine.pending_ids() == [1]
            cluster.nodes[holder].hold_acks = False
            client._engine.tick()  # nothing overdue yet: no change
            assert client.pending_count() == 1

    run(main())


def test_in_flight_ops_are_resent_when_their_connection_dies() -> None:
    async def main() -> None:
        async with running() as (cluster, client):
            await wait_until(lambda: len(client.usable_nodes()) == 3)
            owner = cluster.table.owner_of_key("key-9")
            cluster.nodes[owner].hold_acks = True
            client.get_map("test").set("key-9", "v")
            await wait_until(lambda: client._engine.in_flight_count() == 1)
            await cluster.nodes[owner].kill()
            await client.flush(timeout=2)
            backup = cluster.table.backups_of(cluster.partition_of("key-9"))[0]
            assert cluster.nodes[backup].store("test").record("key-9") is not None

    run(main())


def test_unusable_endpoints_never_tear_down_seed_connections() -> None:
    """§6.1: a table advertising ws://unknown:0 keeps the working seed connections."""

    async def main() -> None:
        async with running(endpoint_bug=True) as (_, client):
            await wait_until(lambda: len(client.usable_nodes()) == 3)
            assert set(client.get_connection_states()) == {"seed-0", "seed-1", "seed-2"}
            m = client.get_map("test")
            m.set("key-1", 1)
            await client.flush(timeout=3)
            metrics = client.get_routing_metrics()
            assert metrics is not None and metrics["fallback_routes"] == 1

    run(main())


def test_pong_reaches_liveness_and_connections_survive_silence() -> None:
    """§6.4-F: PONGs keep each connection alive; the client is never closed by its heartbeat."""

    async def main() -> None:
        async with running(ping_interval_s=0.05, liveness_timeout_s=0.3) as (_, client):
            await wait_until(lambda: all(c.pongs >= 5 for c in client._conns.values()), within=5)
            assert all(c.liveness_drops == 0 for c in client._conns.values())
            assert set(client.get_connection_states().values()) == {"AUTHENTICATED"}

    run(main())


def test_total_disconnect_recovers_and_sends_offline_writes() -> None:
    """§6.4-K and L: after every node went away the client reconnects and syncs."""

    async def main() -> None:
        async with running(size=1) as (cluster, client):
            port = int(cluster.seeds[0].rsplit(":", 1)[1])
            node = cluster.nodes["node-0"]
            await node.kill()
            await wait_until(lambda: client.usable_nodes() == [], what="disconnected")
            m = client.get_map("test")
            m.set("offline", 1)  # offline-first
            assert m.get("offline") == 1
            await wait_until(lambda: client._conns["node-0"].sm.attempts >= 3, within=5)
            await node.start(port)
            await client.flush(timeout=5)
            assert node.store("test").record("offline") is not None

    run(main())


def test_auth_fail_is_a_typed_error_and_a_new_token_recovers() -> None:
    async def main() -> None:
        cluster = await FakeCluster(size=2).start()
        client = TopGunClient(cluster=fast_config(cluster.seeds), storage=MemoryStorage())
        client.set_auth_token("bad")
        try:
            with pytest.raises(AuthError):
                await client.start(timeout=3)
            assert set(client.get_connection_states().values()) == {"FAILED"}
            client.set_auth_token(TOKEN)
            await client.start(timeout=3)
            assert client.is_routing_active()
        finally:
            await client.close()
            await cluster.stop()

    run(main())


def test_start_without_token_says_what_to_do() -> None:
    async def main() -> None:
        cluster = await FakeCluster(size=1).start()
        client = TopGunClient(cluster=fast_config(cluster.seeds))
        try:
            with pytest.raises(StartTimeout, match="set_auth_token"):
                await client.start(timeout=0.5)
        finally:
            await client.close()
            await cluster.stop()

    run(main())


def test_single_server_mode() -> None:
    async def main() -> None:
        cluster = await FakeCluster(size=1).start()
        node = cluster.nodes["node-0"]
        node.reference_acks = True
        node.batch_replies = True
        client = TopGunClient(server_url=node.url, storage=MemoryStorage())
        client.set_auth_token(TOKEN)
        try:
            client.get_map("m").set("a", 1)  # before start
            await client.start(timeout=3)
            client.get_map("m").set("b", 2)
            await client.flush(timeout=3)
            assert client.get_cluster_stats() is None
            assert client.get_routing_metrics() is None
            assert client.get_partition_table() is None
            assert not client.is_routing_active()
            assert not node.of_type(PartitionMapRequest)
            assert node.store("m").record("a") is not None
            assert node.store("m").record("b") is not None
            assert client.get_connection_states() == {"server": "AUTHENTICATED"}
        finally:
            await client.close()
            await cluster.stop()

    run(main())


def test_sqlite_restart_resends_unacknowledged_ops(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        cluster = await FakeCluster(size=1).start()
        node = cluster.nodes["node-0"]
        path = tmp_path / "client.db"
        first = TopGunClient(server_url=node.url, storage=SqliteStorage(path))
        first.get_map("m").set("never-acked", 1)  # written while offline, never sent
        await first.close()
        second = TopGunClient(server_url=node.url, storage=SqliteStorage(path))
        second.set_auth_token(TOKEN)
        try:
            assert second.get_map("m").get("never-acked") == 1
            await second.start(timeout=3)
            assert second.pending_count() == 1
            await second.flush(timeout=3)
            assert node.store("m").record("never-acked") is not None
        finally:
            await second.close()
        third = TopGunClient(server_url=node.url, storage=SqliteStorage(path))
        try:
            third._storage.open()
            assert third._engine.load() == 0  # acknowledged ops are not resent again
        finally:
            await third.close()
            await cluster.stop()

    run(main())


def test_shutdown_notice_routes_around_the_node_before_its_table_changes() -> None:
    """SHUTDOWN_PENDING from the owner: a write made at that moment goes by fallback to the
    backup, and listeners hear of it before anything else is handled."""

    async def main() -> None:
        events: list[ClusterEvent] = []
        async with running() as (cluster, client):
            await wait_until(lambda: len(client.usable_nodes()) == 3)
            owner = cluster.table.owner_of_key("key-1")
            m = client.get_map("test")

            def on_event(event: ClusterEvent) -> None:
                events.append(event)
                if event.kind is EventKind.NODE_LEAVING:
                    m.set("key-1", {"value": 2})
                    client.sync_now()

            client.add_listener(on_event)
            before = client.get_routing_metrics()
            assert before is not None
            for ws in list(cluster.nodes[owner].sockets):
                await ws.send(encode(ShutdownPending(5000)))
            await wait_until(lambda: any(e.kind is EventKind.NODE_LEAVING for e in events))
            assert owner not in client.usable_nodes()
            await client.flush(timeout=2)
            after = client.get_routing_metrics()
            assert after is not None
            assert after["fallback_routes"] == before["fallback_routes"] + 1
            backup = cluster.table.backups_of(cluster.partition_of("key-1"))[0]
            sent = [op.key for b in cluster.nodes[backup].of_type(OpBatch) for op in b.ops]  # type: ignore[attr-defined]
            assert sent == ["key-1"]
            held = cluster.nodes[owner].store("test").record("key-1")  # the backup forwarded it
            assert held is not None and held.value == {"value": 2}
            leaving = [e for e in events if e.kind is EventKind.NODE_LEAVING]
            assert [e.node_id for e in leaving] == [owner]

    run(main())


def test_connection_history_starts_disconnected_and_is_bounded() -> None:
    async def main() -> None:
        async with running() as (_, client):
            await wait_until(lambda: len(client.usable_nodes()) == 3)
            for history in client.get_connection_history().values():
                assert history == ["DISCONNECTED", "CONNECTING", "CONNECTED", "AUTHENTICATED"]

    run(main())
