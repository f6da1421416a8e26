"""Facade rules that need no network: HLC feeding (§6.4-G), config errors, offline writes."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from topgun import ClusterConfig, MemoryStorage, TopGunClient
from topgun.client.errors import ConfigError, NotConnectedError
from topgun.core.hlc import Timestamp
from topgun.core.messages import Pong, ServerBatchEvent, ServerEventPayload
from topgun.core.records import LWWRecord

NOW = 1_700_000_000_000


def client() -> tuple[TopGunClient, Any]:
    c = TopGunClient(
        cluster=ClusterConfig(seeds=["ws://127.0.0.1:1"]),
        storage=MemoryStorage(),
        node_id="c1",
        clock=lambda: NOW,
    )
    conn = SimpleNamespace(id="seed-0")
    c._conns["seed-0"] = conn  # type: ignore[assignment]
    return c, conn


def test_only_real_hlc_timestamps_reach_the_clock() -> None:
    c, conn = client()
    c.on_message(conn, Pong(123.0, 456.0))  # a plain-number timestamp is never fed
    assert c._hlc.now() == Timestamp(NOW, 0, "c1")
    bogus = ServerBatchEvent((), {"millis": "NaN"})
    c.on_message(conn, bogus)
    assert c._hlc.now() == Timestamp(NOW, 1, "c1")
    real = ServerBatchEvent((), {"millis": float(NOW + 5), "counter": 7, "nodeId": "srv"})
    c.on_message(conn, real)
    ts = c._hlc.now()
    assert ts.millis == NOW + 5 and ts.counter == 9


def test_server_events_merge_into_maps() -> None:
    c, conn = client()
    m = c.get_map("test")
    rec = LWWRecord({"v": 1}, Timestamp(NOW + 1, 0, "srv"))
    c.on_message(conn, ServerBatchEvent((ServerEventPayload("test", "k", "PUT", rec),)))
    assert m.get("k") == {"v": 1}


def test_offline_first_writes_before_start() -> None:
    c, _ = client()
    m = c.get_map("test")
    m.set("a", 1)
    m.remove("a")
    m.set("b", {"x": 2})
    assert m.get("a") is None and m.get("b") == {"x": 2}
    assert c.pending_count() == 3
    assert c.get_routing_metrics() == {
        "direct_routes": 0,
        "fallback_routes": 0,
        "partition_misses": 0,
        "total_routes": 0,
        "not_owner_retries": 0,
        "map_refreshes": 0,
    }
    assert c.get_cluster_stats()["map_version"] == 0  # type: ignore[index]


def test_configuration_errors_are_typed() -> None:
    with pytest.raises(ConfigError):
        TopGunClient()
    with pytest.raises(ConfigError):
        TopGunClient(server_url="ws://a:1", cluster=ClusterConfig(seeds=["ws://a:1"]))
    with pytest.raises(ConfigError):
        ClusterConfig(seeds=[])
    with pytest.raises(ConfigError):
        ClusterConfig(seeds="ws://a:1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        TopGunClient(server_url="http://a:1")


def test_flush_before_start_says_what_to_do() -> None:
    import asyncio

    c, _ = client()
    with pytest.raises(NotConnectedError, match="start"):
        asyncio.run(c.flush(timeout=0.1))
