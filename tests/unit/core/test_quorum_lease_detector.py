"""Fencing rules in the pure core: quorum, table acceptance, the owner lease, phi accrual."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from topgun.core.failure_detector import PhiAccrualDetector
from topgun.core.lease import Lease
from topgun.core.quorum import Acceptor, Proposal, committed, has_quorum, quorum_size
from topgun.core.table import NodeInfo, PartitionTable, ideal_assignment


def test_quorum_is_a_majority_of_the_last_table_unless_a_minimum_size_is_set() -> None:
    assert [quorum_size(n) for n in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]
    assert quorum_size(2, min_cluster_size=1) == 1  # a 2-node cluster that survives a failure
    assert has_quorum(["a", "b", "c"], ["a", "b"])
    assert not has_quorum(["a", "b", "c"], ["a", "x", "y"])  # strangers do not count
    assert not has_quorum(["a", "b"], ["a"])  # 2 nodes: no majority after one failure
    assert has_quorum(["a", "b"], ["a"], min_cluster_size=1)
    assert has_quorum([], ["a"]) and not has_quorum([], ["a"], min_cluster_size=2)


def test_acceptor_promises_only_move_forward() -> None:
    acc = Acceptor()
    assert acc.consider(Proposal((1, 5), (1, 4)), (1, 4), ["a", "b"])
    assert not acc.consider(Proposal((1, 5), (1, 4)), (1, 4), ["a"])  # that slot is promised
    assert not acc.consider(Proposal((0, 9), (1, 4)), (1, 4), ["a"])  # a deposed authority
    assert not acc.consider(Proposal((2, 6), (0, 3)), (1, 4), ["a"])  # planned from a stale table
    assert not acc.consider(Proposal((2, 6), (1, 4), frozenset({"b"})), (1, 4), ["a", "b"])
    assert acc.consider(Proposal((2, 6), (1, 4), frozenset({"c"})), (1, 4), ["a", "b"])
    acc.observe((3, 10))
    assert not acc.consider(Proposal((3, 10), (3, 10)), (3, 10), ["a"])


def test_a_table_without_a_quorum_of_acks_is_not_committed() -> None:
    assert committed(["a", "b"], ["a", "b", "c"])
    assert not committed(["a", "x", "y"], ["a", "b", "c"])  # strangers' acks do not count
    assert not committed([], ["a"]) and not committed(["a"], [])
    assert committed(["a"], ["a"])  # the founding table of a one-node cluster
    assert committed(["a"], ["a", "b"], min_cluster_size=1)


@settings(max_examples=200, deadline=None)
@given(
    voters=st.integers(1, 5),
    rounds=st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(1, 6), st.integers(0, 31)),
        max_size=40,
    ),
)
def test_no_two_different_tables_commit_under_one_epoch_and_version(
    voters: int, rounds: list[tuple[int, int, int, int]]
) -> None:
    """Proposers with arbitrary (stale or racing) epochs and versions, each reaching an
    arbitrary subset of the voters: whatever commits, one (epoch, version) names one table."""
    acceptors = [Acceptor() for _ in range(voters)]
    need = quorum_size(voters)
    commits: dict[tuple[int, int], int] = {}
    for proposer, epoch, version, reach in rounds:
        content = proposer * 1000 + epoch * 10 + version  # each proposer plans its own table
        p = Proposal((epoch, version), (0, 0))
        acks = sum(
            acc.consider(p, (0, 0), []) for i, acc in enumerate(acceptors) if reach & (1 << i)
        )
        if acks >= need:
            assert commits.setdefault(p.key, content) == content
            for acc in acceptors:  # some voters learn of the commit
                if reach & 1:
                    acc.observe(p.key)


def test_lease_is_dated_by_the_send_time_and_needs_a_live_quorum() -> None:
    lease = Lease(1.0)
    voters, alive = ["a", "b", "c"], ["a", "b", "c"]
    assert not lease.holds(0.0, "a", voters, alive, 2)
    lease.confirm("b", 10.0)
    assert lease.holds(10.9, "a", voters, alive, 2) and not lease.holds(11.0, "a", voters, alive, 2)
    lease.confirm("b", 5.0)  # an old answer arriving late never extends it
    assert lease.valid_until("a", voters, alive, 2) == 11.0
    assert not lease.holds(10.5, "a", voters, ["a", "c"], 2)  # b is no longer alive
    assert not lease.holds(10.5, "a", voters, alive, 3)  # c never confirmed
    lease.confirm("c", 10.2)
    assert lease.valid_until("a", voters, alive, 3) == 11.0  # the older of the two
    assert lease.valid_until("a", ["a"], ["a"], 1) == math.inf
    lease.forget("b")
    assert lease.valid_until("a", voters, alive, 2) == 11.2


def test_a_stall_leaves_the_lease_expired_on_wake_up() -> None:
    lease = Lease(1.2)
    lease.confirm("b", 100.0)  # the last heartbeat answered before the stall
    assert not lease.holds(105.0, "a", ["a", "b", "c"], ["a", "b", "c"], 2)


def _regular(det: PhiAccrualDetector, start: float, interval: float, n: int) -> float:
    t = start
    for _ in range(n):
        det.heartbeat(t)
        t += interval
    return t - interval


def test_phi_grows_with_silence_within_the_silence_bounds() -> None:
    det = PhiAccrualDetector(0.5, threshold=8.0, min_silence_s=1.7, max_silence_s=3.0)
    last = _regular(det, 0.0, 0.5, 20)
    assert det.phi(last + 0.5) < 1.0 and not det.is_dead(last + 0.6)
    assert det.phi(last + 1.5) > det.phi(last + 1.0)
    assert not det.is_dead(last + 1.6)  # phi is high, but the lease may still run
    assert det.is_dead(last + 1.8)


def test_an_irregular_peer_gets_more_slack_and_max_silence_always_ends_it() -> None:
    regular = PhiAccrualDetector(0.5, min_silence_s=0.5, max_silence_s=10.0)
    irregular = PhiAccrualDetector(0.5, min_silence_s=0.5, max_silence_s=10.0)
    _regular(regular, 0.0, 0.5, 30)
    t = 0.0
    for i in range(30):
        irregular.heartbeat(t)
        t += 0.2 if i % 2 else 1.4
    last_r, last_i = 14.5, t - (1.4 if 29 % 2 == 0 else 0.2)
    assert regular.is_dead(last_r + 2.0) and not irregular.is_dead(last_i + 2.0)
    assert irregular.is_dead(last_i + 10.0)


def test_restart_forgets_our_own_silence() -> None:
    det = PhiAccrualDetector(0.5, min_silence_s=1.0, max_silence_s=3.0)
    _regular(det, 0.0, 0.5, 10)
    assert det.is_dead(10.0)  # as it would look right after waking from a 5 s stall
    det.restart(10.0)
    assert not det.is_dead(10.5) and det.is_dead(13.0)


def test_tables_are_ordered_by_epoch_then_version_and_clients_never_see_the_epoch() -> None:
    owners, backups = ideal_assignment(["a", "b"])
    nodes = (NodeInfo("a", "ws://a"), NodeInfo("b", "ws://b"))
    t1 = PartitionTable(7, nodes, owners, backups, epoch=1)
    t2 = PartitionTable(8, nodes, owners, backups, epoch=2)
    assert t1.key < t2.key and t1.same_contents(t2) and t1 != t2
    wire = t2.to_wire()
    assert "epoch" not in wire and wire["version"] == 8  # the PARTITION_MAP clients know
    assert PartitionTable.from_wire(wire).epoch == 0
