"""Who may change the partition table, and when a table change counts: majority quorum.

Pure rules, no I/O. A table change is *proposed* by the authority and *committed* once a
quorum of the voters (the nodes of the last table the proposer applied) accepted it. Each
voter accepts at most one proposal per table version, and only proposals that are newer than
anything it accepted; any two quorums of the same voters share a node, so two different
tables can never both commit under the same (epoch, version).

The epoch is the authority's term: a node that takes over as authority proposes under a
higher epoch, and a voter that has accepted epoch ``e`` refuses proposals from lower epochs,
which fences a deposed authority that has not yet heard of its successor. Versions stay
strictly increasing across epochs (clients only ever see the version).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

TableKey = tuple[int, int]
"""(epoch, version): the total order of partition tables."""


def majority(voters: int) -> int:
    return voters // 2 + 1


def quorum_size(voters: int, min_cluster_size: int = 0) -> int:
    """How many of ``voters`` must agree. ``min_cluster_size`` (Hazelcast's split-brain
    protection) replaces the majority when set; below a majority it trades safety under a
    network partition for availability (a 2-node cluster that must survive one failure)."""
    if min_cluster_size > 0:
        return max(1, min_cluster_size)
    return majority(max(voters, 1))


def has_quorum(
    voters: Collection[str], reachable: Iterable[str], min_cluster_size: int = 0
) -> bool:
    """Whether the ``reachable`` nodes (self included) form a quorum of ``voters``.

    Without voters (no table yet) a node is on its own and counts as a quorum of one, unless
    a minimum cluster size asks for more live nodes."""
    live = set(reachable)
    if not voters:
        return len(live) >= max(1, min_cluster_size)
    return len(live & set(voters)) >= quorum_size(len(voters), min_cluster_size)


@dataclass(frozen=True, slots=True)
class Proposal:
    """A table a proposer wants committed: its key, the key of the table it was planned from,
    and the nodes the new table drops."""

    key: TableKey
    base: TableKey
    dropped: frozenset[str] = frozenset()


class Acceptor:
    """One voter's promises. ``consider`` answers a proposal; the state only moves forward."""

    def __init__(self) -> None:
        self.epoch = 0
        self.version = 0

    def observe(self, key: TableKey) -> None:
        """A committed table was applied here: never accept anything not newer."""
        self.epoch = max(self.epoch, key[0])
        self.version = max(self.version, key[1])

    def consider(self, p: Proposal, current: TableKey, alive: Collection[str]) -> bool:
        """Accept ``p`` iff it is newer than every promise, planned from a table at least as
        new as ours, and drops no node this voter still sees alive."""
        epoch, version = p.key
        if epoch < self.epoch or version <= self.version or version <= current[1]:
            return False
        if p.base < current:
            return False
        if p.dropped & set(alive):
            return False
        self.epoch, self.version = epoch, version
        return True


def committed(acks: Iterable[str], voters: Collection[str], min_cluster_size: int = 0) -> bool:
    """Whether ``acks`` are a quorum of ``voters`` (the voters the commit was counted
    against, sent along with the table): a table without one is refused."""
    if not voters:
        return False
    got = set(acks) & set(voters)
    return len(got) >= quorum_size(len(voters), min_cluster_size)
