from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from topgun.client.router import PartitionRouter, RouteKind
from topgun.core.hashing import partition_id
from topgun.core.table import NodeInfo, PartitionTable, build_table, ideal_assignment

IDS = ["node-a", "node-b", "node-c"]


def table(version: int, ids: list[str] = IDS) -> PartitionTable:
    infos = [NodeInfo(i, f"ws://127.0.0.1:{9000 + n}") for n, i in enumerate(ids)]
    return build_table(version, infos, ideal_assignment(ids))


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_accepts_only_newer_tables() -> None:
    r = PartitionRouter()
    assert r.version == 0 and r.route("k") is None
    assert r.update_table(table(2))
    assert not r.update_table(table(1, ["node-a"]))
    assert not r.update_table(table(2, ["node-a"]))
    assert r.table is not None and len(r.table.nodes) == 3
    assert r.update_table(table(3, ["node-a"]))
    assert r.version == 3


def test_route_uses_the_key_hash_and_the_table() -> None:
    r = PartitionRouter()
    r.update_table(table(1))
    route = r.route("key-1")
    assert route is not None
    pid = partition_id("key-1")
    assert route.partition_id == pid
    assert route.owner == sorted(IDS)[pid % 3]
    assert route.backups == (sorted(IDS)[(pid % 3 + 1) % 3],)


def test_decisions_are_counted_once_each() -> None:
    r = PartitionRouter()
    d = r.decide("key-1", ["node-a"])
    assert d.kind is RouteKind.MISS and d.node_id == "node-a"
    r.update_table(table(1))
    owner = r.route("key-1").owner  # type: ignore[union-attr]
    backup = r.route("key-1").backups[0]  # type: ignore[union-attr]
    assert r.decide("key-1", IDS).kind is RouteKind.DIRECT
    d = r.decide("key-1", [n for n in IDS if n != owner])
    assert d.kind is RouteKind.FALLBACK and d.node_id == backup
    third = next(n for n in IDS if n not in (owner, backup))
    d = r.decide("key-1", [third])
    assert d.kind is RouteKind.FALLBACK and d.node_id == third
    d = r.decide("key-1", [])
    assert d.kind is RouteKind.FALLBACK and d.node_id is None
    d = r.decide("key-1", IDS, smart=False)
    assert d.kind is RouteKind.FALLBACK and d.node_id == IDS[0]
    r.count_not_owner_retry()
    r.count_map_refresh()
    assert r.get_metrics() == {
        "direct_routes": 1,
        "fallback_routes": 4,
        "partition_misses": 1,
        "total_routes": 6,
        "not_owner_retries": 1,
        "map_refreshes": 1,
    }


@given(st.lists(st.text(max_size=8), max_size=40), st.sets(st.sampled_from(IDS)))
def test_total_is_the_sum_of_kinds(keys: list[str], usable: set[str]) -> None:
    r = PartitionRouter()
    r.update_table(table(1))
    for k in keys:
        d = r.decide(k, sorted(usable))
        if d.kind is RouteKind.DIRECT:
            assert d.node_id == r.route(k).owner  # type: ignore[union-attr]
    m = r.get_metrics()
    assert m["total_routes"] == len(keys)
    assert m["direct_routes"] + m["fallback_routes"] + m["partition_misses"] == len(keys)


def test_staleness_and_stats() -> None:
    clock = Clock()
    r = PartitionRouter(max_staleness_s=60, clock=clock)
    assert r.is_stale()
    assert r.stats()["map_version"] == 0
    r.update_table(table(4))
    clock.now = 59
    assert not r.is_stale()
    clock.now = 61
    assert r.is_stale()
    assert not r.update_table(table(4))  # same version confirms the table is current
    assert not r.is_stale()
    stats = r.stats(lambda: 1_000_000)
    assert stats == {
        "map_version": 4,
        "partition_count": 271,
        "node_count": 3,
        "last_refresh": 1_000_000,
        "is_stale": False,
    }


def test_a_not_owner_redirect_is_followed_in_either_mode_and_counts_direct() -> None:
    r = PartitionRouter()
    r.update_table(table(1))
    owner = r.route("key-1").owner  # type: ignore[union-attr]
    other = next(i for i in IDS if i != owner)
    for smart in (True, False):
        d = r.decide("key-1", [other, owner], smart=smart, prefer=owner)
        assert (d.node_id, d.kind) == (owner, RouteKind.DIRECT)
    # a redirect to a node that is not usable falls back to the usual decision
    d = r.decide("key-1", [other], smart=False, prefer=owner)
    assert (d.node_id, d.kind) == (other, RouteKind.FALLBACK)
    assert r.get_metrics()["direct_routes"] == 2
    assert r.get_metrics()["total_routes"] == 3
