"""Partition assignment and the PARTITION_MAP payload (reference §2.2, §3.5)."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topgun.core.errors import ProtocolError
from topgun.core.hashing import PARTITION_COUNT, partition_id
from topgun.core.table import (
    NodeInfo,
    NodeStatus,
    PartitionChange,
    PartitionTable,
    build_table,
    diff,
    ideal_assignment,
)

ABC = ["node-a", "node-b", "node-c"]


def table_for(members: list[str], version: int = 1, generated_at: int = 0) -> PartitionTable:
    nodes = [NodeInfo(m, f"ws://127.0.0.1:{8000 + i}") for i, m in enumerate(members)]
    return build_table(version, nodes, ideal_assignment(members), generated_at)


@pytest.mark.parametrize(
    ("members", "key", "owner", "backup"),
    [
        (ABC, "key-0", "node-c", "node-a"),
        (ABC, "key-1", "node-c", "node-a"),
        (ABC, "test", "node-b", "node-c"),
        (ABC, "user:42", "node-a", "node-b"),
        (["node-a", "node-c"], "key-0", "node-c", "node-a"),
        (["node-a", "node-c"], "key-1", "node-a", "node-c"),
        (["node-a", "node-c"], "test", "node-a", "node-c"),
        (["node-a", "node-c"], "user:42", "node-a", "node-c"),
    ],
)
def test_reference_owner_examples(members: list[str], key: str, owner: str, backup: str) -> None:
    # §3.5; members given in any order are sorted first
    owners, backups = ideal_assignment(reversed(members))
    pid = partition_id(key)
    assert owners[pid] == owner
    assert backups[pid] == (backup,)
    table = table_for(members)
    assert table.owner_of_key(key) == owner
    assert table.replicas_of(pid) == (owner, backup)


def test_e2e_example() -> None:
    owners, _ = ideal_assignment(["e2e-node-c", "e2e-node-b", "e2e-node-a"])
    assert owners[partition_id("key-0")] == "e2e-node-c"


def test_single_node_has_no_backups() -> None:
    owners, backups = ideal_assignment(["solo"])
    assert set(owners) == {"solo"}
    assert all(b == () for b in backups)
    assert len(owners) == PARTITION_COUNT


def test_empty_cluster_rejected() -> None:
    with pytest.raises(ValueError):
        ideal_assignment([])


def test_duplicate_members_collapse() -> None:
    assert ideal_assignment(["b", "a", "b"]) == ideal_assignment(["a", "b"])


@settings(derandomize=True, max_examples=60, deadline=None)
@given(st.sets(st.text(alphabet="abcdefgh-0123", min_size=1, max_size=6), min_size=1, max_size=8))
def test_every_partition_assigned_once(members: set[str]) -> None:
    owners, backups = ideal_assignment(members)
    assert len(owners) == len(backups) == PARTITION_COUNT
    ordered = sorted(members)
    n = len(ordered)
    for p, (owner, bk) in enumerate(zip(owners, backups, strict=True)):
        assert owner == ordered[p % n]
        assert owner in members
        if n == 1:
            assert bk == ()
        else:
            assert len(bk) == 1
            assert bk[0] != owner
            assert bk[0] == ordered[(p + 1) % n]
    counts = Counter(owners)
    assert set(counts) == members
    assert max(counts.values()) - min(counts.values()) <= 1


@settings(derandomize=True, max_examples=30, deadline=None)
@given(
    st.sets(st.sampled_from([f"n{i}" for i in range(10)]), min_size=1, max_size=10),
    st.integers(1, 300),
    st.integers(0, 3),
)
def test_assignment_with_other_sizes(members: set[str], count: int, copies: int) -> None:
    owners, backups = ideal_assignment(members, partition_count=count, backup_count=copies)
    assert len(owners) == count
    for owner, bk in zip(owners, backups, strict=True):
        assert len(bk) == min(copies, len(members) - 1)
        assert owner not in bk
        assert len(set(bk)) == len(bk)


# --- table accessors ----------------------------------------------------------------------


def test_table_accessors() -> None:
    table = table_for(ABC, version=7)
    assert table.partition_count == PARTITION_COUNT
    assert table.node_ids() == ABC
    assert table.node("node-b") == NodeInfo("node-b", "ws://127.0.0.1:8001")
    assert table.node("nope") is None
    assert table.owner(0) == "node-a" and table.backups_of(0) == ("node-b",)
    parts = [table.partitions_of(n) for n in ABC]
    assert sorted(p for ps in parts for p in ps) == list(range(PARTITION_COUNT))
    assert [len(ps) for ps in parts] == [91, 90, 90]


def test_mismatched_owners_and_backups_rejected() -> None:
    with pytest.raises(ValueError):
        PartitionTable(1, (), ("a", "b"), ((),))


# --- wire ---------------------------------------------------------------------------------


def test_to_wire_shape() -> None:
    table = table_for(ABC, version=3, generated_at=1795705801176)
    wire = table.to_wire()
    assert wire["version"] == 3
    assert wire["partitionCount"] == 271
    assert type(wire["generatedAt"]) is float
    assert wire["generatedAt"] == 1795705801176
    assert wire["nodes"][0] == {
        "nodeId": "node-a",
        "endpoints": {"websocket": "ws://127.0.0.1:8000"},
        "status": "ACTIVE",
    }
    assert type(wire["nodes"][0]["status"]) is str
    assert [p["partitionId"] for p in wire["partitions"]] == list(range(271))
    assert wire["partitions"][0] == {
        "partitionId": 0,
        "ownerNodeId": "node-a",
        "backupNodeIds": ["node-b"],
    }


@settings(derandomize=True, max_examples=30, deadline=None)
@given(
    st.sets(st.text(alphabet="abcxyz-", min_size=1, max_size=5), min_size=1, max_size=5),
    st.integers(0, 2**40),
    st.integers(0, 2**50),
    st.sampled_from(list(NodeStatus)),
)
def test_wire_round_trip(members: set[str], version: int, generated: int, status) -> None:
    nodes = [NodeInfo(m, f"ws://{m}:1", status) for m in sorted(members)]
    table = build_table(version, nodes, ideal_assignment(members), generated)
    back = PartitionTable.from_wire(table.to_wire())
    assert back == table
    assert back.node(nodes[0].node_id) == nodes[0]


def test_from_wire_accepts_float_version_and_defaults() -> None:
    wire = table_for(ABC, version=2).to_wire()
    wire["version"] = 2.0
    del wire["generatedAt"]
    del wire["nodes"][0]["status"]
    del wire["nodes"][1]["endpoints"]
    for p in wire["partitions"]:
        del p["backupNodeIds"]
    table = PartitionTable.from_wire(wire)
    assert table.version == 2 and type(table.version) is int
    assert table.generated_at == 0
    assert table.nodes[0].status is NodeStatus.ACTIVE
    assert table.nodes[1].websocket == ""
    assert all(b == () for b in table.backups)


def test_from_wire_accepts_partitions_out_of_order() -> None:
    wire = table_for(ABC).to_wire()
    wire["partitions"].reverse()
    assert PartitionTable.from_wire(wire) == table_for(ABC)


def _valid() -> dict[str, Any]:
    return table_for(ABC, version=5, generated_at=10).to_wire()


def _mutate(fn) -> dict[str, Any]:
    wire = copy.deepcopy(_valid())
    fn(wire)
    return wire


BAD_PAYLOADS = {
    "not a dict": [1, 2],
    "missing version": _mutate(lambda w: w.pop("version")),
    "negative version": _mutate(lambda w: w.update(version=-1)),
    "bool version": _mutate(lambda w: w.update(version=True)),
    "fractional version": _mutate(lambda w: w.update(version=1.5)),
    "string version": _mutate(lambda w: w.update(version="5")),
    "missing partitions": _mutate(lambda w: w.pop("partitions")),
    "empty partitions": _mutate(lambda w: w.update(partitions=[])),
    "partitions not a list": _mutate(lambda w: w.update(partitions={"0": "node-a"})),
    "fewer partitions than partitionCount": _mutate(lambda w: w["partitions"].pop()),
    "partitionCount disagrees": _mutate(lambda w: w.update(partitionCount=100)),
    "repeated partition id": _mutate(lambda w: w["partitions"][1].update(partitionId=0)),
    "partition id out of range": _mutate(lambda w: w["partitions"][0].update(partitionId=271)),
    "negative partition id": _mutate(lambda w: w["partitions"][0].update(partitionId=-1)),
    "bool partition id": _mutate(lambda w: w["partitions"][1].update(partitionId=True)),
    "string partition id": _mutate(lambda w: w["partitions"][0].update(partitionId="0")),
    "partition entry not a dict": _mutate(lambda w: w["partitions"].__setitem__(0, 0)),
    "owner not a string": _mutate(lambda w: w["partitions"][0].update(ownerNodeId=None)),
    "backups not a list": _mutate(lambda w: w["partitions"][0].update(backupNodeIds="node-b")),
    "backup not a string": _mutate(lambda w: w["partitions"][0].update(backupNodeIds=[1])),
    "nodes not a list": _mutate(lambda w: w.update(nodes={"node-a": {}})),
    "missing nodes": _mutate(lambda w: w.pop("nodes")),
    "node entry not a dict": _mutate(lambda w: w["nodes"].__setitem__(0, "node-a")),
    "node without id": _mutate(lambda w: w["nodes"][0].pop("nodeId")),
    "bad status": _mutate(lambda w: w["nodes"][0].update(status="DEAD")),
    "unhashable status": _mutate(lambda w: w["nodes"][0].update(status=["ACTIVE"])),
    "string partitionCount": _mutate(lambda w: w.update(partitionCount="271")),
}


@pytest.mark.parametrize("name", list(BAD_PAYLOADS))
def test_from_wire_rejects(name: str) -> None:
    with pytest.raises(ProtocolError):
        PartitionTable.from_wire(BAD_PAYLOADS[name])


@pytest.mark.parametrize("generated", [float("nan"), float("inf"), -float("inf"), "x", None])
def test_from_wire_tolerates_bad_generated_at(generated: object) -> None:
    # generatedAt is informational: a bad one must not crash decoding (it used to raise
    # ValueError/OverflowError for NaN/inf), it reads as 0
    wire = _valid()
    wire["generatedAt"] = generated
    assert PartitionTable.from_wire(wire).generated_at == 0


def test_from_wire_partition_count_optional_and_float() -> None:
    wire = _valid()
    wire["partitionCount"] = 271.0
    assert PartitionTable.from_wire(wire).partition_count == 271
    del wire["partitionCount"]
    assert PartitionTable.from_wire(wire).partition_count == 271


# --- diff ---------------------------------------------------------------------------------


def test_diff_from_nothing_lists_every_partition() -> None:
    new = table_for(ABC)
    changes = diff(None, new)
    assert len(changes) == PARTITION_COUNT
    assert changes[0] == PartitionChange(0, None, "node-a")


def test_diff_identical_is_empty() -> None:
    assert diff(table_for(ABC), table_for(ABC, version=2)) == []


def test_diff_after_leave() -> None:
    old, new = table_for(ABC), table_for(["node-a", "node-c"], version=2)
    changes = diff(old, new)
    changed = {c.partition_id for c in changes}
    assert changed == {p for p in range(PARTITION_COUNT) if old.owner(p) != new.owner(p)}
    key1 = partition_id("key-1")
    assert PartitionChange(key1, "node-c", "node-a") in changes
    for c in changes:
        assert c.previous_owner == old.owner(c.partition_id)
        assert c.new_owner == new.owner(c.partition_id)
        assert c.previous_owner != c.new_owner


def test_diff_with_grown_table() -> None:
    small = build_table(1, [], ideal_assignment(["a"], partition_count=2))
    big = build_table(2, [], ideal_assignment(["a"], partition_count=4))
    assert diff(small, big) == [PartitionChange(2, None, "a"), PartitionChange(3, None, "a")]
