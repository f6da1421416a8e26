"""The pure table planner: promotion, staged joins, safety and convergence."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from topgun.core.rebalance import is_ideal, plan
from topgun.core.table import NodeInfo, PartitionTable, ideal_assignment

P = 12  # a small partition count keeps the properties fast; the rules do not depend on it


def table(assignment, nodes, version=1) -> PartitionTable:  # type: ignore[no-untyped-def]
    owners, backups = assignment
    return PartitionTable(version, tuple(NodeInfo(n, f"ws://{n}") for n in nodes), owners, backups)


def all_ready(t: PartitionTable) -> set[tuple[int, str]]:
    return {(p, n) for p in range(t.partition_count) for n in t.replicas_of(p)}


def test_first_table_is_ideal() -> None:
    assert plan(None, ["b", "a"], set(), partition_count=P) == ideal_assignment(["a", "b"], P)


def test_dead_owner_is_replaced_by_its_backup_at_once() -> None:
    t = table(ideal_assignment(["a", "b", "c"], P), ["a", "b", "c"])
    owners, backups = plan(t, ["a", "b"], all_ready(t), partition_count=P)
    for p in range(P):
        if t.owners[p] == "c":
            assert owners[p] == t.backups[p][0]  # promoted: the data is already there
        else:  # kept, or moved to a replica that already held the data
            assert owners[p] in t.replicas_of(p)
        assert "c" not in backups[p] and len(backups[p]) >= 1
        assert owners[p] not in backups[p]


def test_join_stages_the_newcomer_as_backup_before_it_owns() -> None:
    t = table(ideal_assignment(["b", "c"], P), ["b", "c"])
    ready = all_ready(t)
    owners, backups = plan(t, ["a", "b", "c"], ready, partition_count=P)
    target = ideal_assignment(["a", "b", "c"], P)[0]
    for p in range(P):
        assert owners[p] != "a"  # not ready yet: never advertised as owner
        if target[p] == "a":
            assert "a" in backups[p]
    staged = table((owners, backups), ["a", "b", "c"], 2)
    ready |= {(p, "a") for p in range(P) if "a" in backups[p]}
    nxt = plan(staged, ["a", "b", "c"], ready, partition_count=P)
    assert all(nxt[0][p] == "a" for p in range(P) if target[p] == "a")


def test_old_ready_replica_is_kept_until_new_backup_is_ready() -> None:
    # partition 0: owner a, backup b; b dies, c becomes the new backup but is not ready
    t = table((("a",) * P, (("b",),) * P), ["a", "b", "c"])
    ready = all_ready(t)
    owners, backups = plan(t, ["a", "c"], ready, partition_count=P)
    assert owners[0] == "a" and backups[0] == ("c",)
    # a owner change where the target backup lacks data keeps the old replica as well
    t2 = table((("a",) * P, (("c",),) * P), ["a", "c", "d"])
    ready2 = {(p, n) for p in range(P) for n in ("a", "c")}
    owners2, backups2 = plan(t2, ["a", "c", "d"], ready2, partition_count=P)
    for p in range(P):
        holders = [n for n in (owners2[p], *backups2[p]) if (p, n) in ready2]
        assert len(holders) >= 2


def test_everything_lost_falls_back_to_ideal() -> None:
    t = table((("x",) * P, (("y",),) * P), ["x", "y"])
    assert plan(t, ["a"], set(), partition_count=P) == ideal_assignment(["a"], P)


@settings(max_examples=60, deadline=None)
@given(
    start=st.sets(st.sampled_from("abcdef"), min_size=1, max_size=5),
    end=st.sets(st.sampled_from("abcdef"), min_size=1, max_size=5),
)
def test_repeated_planning_with_migrations_converges_without_unready_owners(start, end) -> None:  # type: ignore[no-untyped-def]
    t = table(ideal_assignment(start, P), sorted(start))
    ready = all_ready(t)
    survivors = start & end
    ready = {(p, n) for p, n in ready if n in end}
    for step in range(12):
        assignment = plan(t, end, ready, partition_count=P)
        owners, backups = assignment
        for p in range(P):
            prev_holders = [n for n in t.replicas_of(p) if n in end and (p, n) in ready]
            if prev_holders:
                # an owner always holds the data, and no copy that existed is dropped early
                assert (p, owners[p]) in ready
                kept = [n for n in (owners[p], *backups[p]) if (p, n) in ready]
                assert len(kept) >= min(len(prev_holders), 2)
            assert set(owners[p : p + 1]) | set(backups[p]) <= set(end)
        if is_ideal(assignment, end):
            break
        t = table(assignment, sorted(end), step + 2)
        # the owner migrates to every backup (that is what ServerNode does on a new table)
        ready |= {(p, owners[p]) for p in range(P)}
        ready |= {(p, b) for p in range(P) for b in backups[p]}
    else:
        raise AssertionError("did not converge")
    assert survivors is not None


def test_draining_node_keeps_ownership_until_a_live_copy_is_ready() -> None:
    t = table((("a",) * P, (("b",),) * P), ["a", "b", "c"])
    ready = {(p, "a") for p in range(P)}  # b is still being filled
    owners, backups = plan(t, ["b", "c"], ready, draining=["a"], partition_count=P)
    assert set(owners) == {"a"}
    assert all("b" in backups[p] for p in range(P))
    ready |= {(p, n) for p in range(P) for n in ("b", "c")}
    t2 = table((owners, backups), ["a", "b", "c"], 2)
    owners2, backups2 = plan(t2, ["b", "c"], ready, draining=["a"], partition_count=P)
    assert "a" not in owners2 and all("a" not in b for b in backups2)
    assert (owners2, backups2) == ideal_assignment(["b", "c"], P)


def test_draining_node_with_ready_backup_is_replaced_at_once() -> None:
    t = table(ideal_assignment(["a", "b"], P), ["a", "b"])
    owners, backups = plan(t, ["b"], all_ready(t), draining=["a"], partition_count=P)
    assert set(owners) == {"b"} and all(b == () for b in backups)
