"""The partition table: who owns and who backs up each of the 271 partitions.

One authority in the cluster computes it and stamps it with a cluster-wide, strictly
increasing ``version``; every node serves the same version for the same table, so a client
that accepts only newer versions can never be stuck on an older one (reference §6.4-A).
Between nodes a table also carries the ``epoch`` (term) of the authority that committed it;
tables are ordered by :attr:`PartitionTable.key` = (epoch, version) (see
:mod:`topgun.core.quorum`). The client wire form has no epoch.
Node entries carry the client URL exactly as clients are told it (reference §6.1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from topgun.core.errors import ProtocolError
from topgun.core.hashing import BACKUP_COUNT, PARTITION_COUNT, partition_id


class NodeStatus(StrEnum):
    ACTIVE = "ACTIVE"
    JOINING = "JOINING"
    LEAVING = "LEAVING"
    SUSPECTED = "SUSPECTED"
    FAILED = "FAILED"


@dataclass(frozen=True, slots=True)
class NodeInfo:
    node_id: str
    websocket: str
    status: NodeStatus = NodeStatus.ACTIVE


@dataclass(frozen=True, slots=True)
class PartitionChange:
    partition_id: int
    previous_owner: str | None
    new_owner: str


Assignment = tuple[tuple[str, ...], tuple[tuple[str, ...], ...]]
"""(owner of each partition, backups of each partition)."""


def ideal_assignment(
    members: Iterable[str],
    partition_count: int = PARTITION_COUNT,
    backup_count: int = BACKUP_COUNT,
) -> Assignment:
    """The reference's deterministic placement: sort the ids, owner of ``p`` is ``s[p % n]``
    and its backups the next members round the ring."""
    ordered = sorted(set(members))
    n = len(ordered)
    if n == 0:
        raise ValueError("cannot assign partitions to an empty cluster")
    copies = min(backup_count, n - 1)
    owners = tuple(ordered[p % n] for p in range(partition_count))
    backups = tuple(
        tuple(ordered[(p % n + k) % n] for k in range(1, copies + 1))
        for p in range(partition_count)
    )
    return owners, backups


@dataclass(frozen=True, slots=True)
class PartitionTable:
    version: int
    nodes: tuple[NodeInfo, ...]
    owners: tuple[str, ...]
    backups: tuple[tuple[str, ...], ...]
    generated_at: int = 0
    epoch: int = 0
    _by_id: dict[str, NodeInfo] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.owners) != len(self.backups):
            raise ValueError("owners and backups must cover the same partitions")
        object.__setattr__(self, "_by_id", {n.node_id: n for n in self.nodes})

    @property
    def key(self) -> tuple[int, int]:
        """(epoch, version): the order in which nodes apply tables."""
        return (self.epoch, self.version)

    def same_contents(self, other: PartitionTable) -> bool:
        return (self.nodes, self.owners, self.backups) == (other.nodes, other.owners, other.backups)

    @property
    def partition_count(self) -> int:
        return len(self.owners)

    def owner(self, pid: int) -> str:
        return self.owners[pid]

    def backups_of(self, pid: int) -> tuple[str, ...]:
        return self.backups[pid]

    def owner_of_key(self, key: str) -> str:
        return self.owners[partition_id(key) % self.partition_count]

    def node(self, node_id: str) -> NodeInfo | None:
        return self._by_id.get(node_id)

    def node_ids(self) -> list[str]:
        return [n.node_id for n in self.nodes]

    def partitions_of(self, node_id: str) -> list[int]:
        return [p for p, o in enumerate(self.owners) if o == node_id]

    def replicas_of(self, pid: int) -> tuple[str, ...]:
        return (self.owners[pid], *self.backups[pid])

    def to_wire(self) -> dict[str, Any]:
        """The ``PARTITION_MAP`` payload (reference §2.2)."""
        return {
            "version": self.version,
            "partitionCount": self.partition_count,
            "nodes": [
                {
                    "nodeId": n.node_id,
                    "endpoints": {"websocket": n.websocket},
                    "status": str(n.status),
                }
                for n in self.nodes
            ],
            "partitions": [
                {"partitionId": p, "ownerNodeId": o, "backupNodeIds": list(b)}
                for p, (o, b) in enumerate(zip(self.owners, self.backups, strict=True))
            ],
            "generatedAt": float(self.generated_at),
        }

    @classmethod
    def from_wire(cls, payload: object) -> PartitionTable:
        """Validate a ``PARTITION_MAP`` payload from a peer (it may be a foreign server)."""
        if not isinstance(payload, dict):
            raise ProtocolError("PARTITION_MAP payload must be an object")
        version = payload.get("version")
        if isinstance(version, float) and version.is_integer():
            version = int(version)
        if not isinstance(version, int) or isinstance(version, bool) or version < 0:
            raise ProtocolError("PARTITION_MAP version must be a non-negative integer")
        nodes = _nodes_from_wire(payload.get("nodes"))
        owners, backups = _partitions_from_wire(payload.get("partitions"))
        count = payload.get("partitionCount")
        if count is not None and (isinstance(count, bool) or count != len(owners)):
            raise ProtocolError(
                f"PARTITION_MAP partitionCount {count!r} but {len(owners)} partitions listed"
            )
        generated = payload.get("generatedAt")
        generated_ms = (
            int(generated) if isinstance(generated, int | float) and math.isfinite(generated) else 0
        )
        return cls(version, nodes, owners, backups, generated_ms)


def _nodes_from_wire(raw: object) -> tuple[NodeInfo, ...]:
    if not isinstance(raw, list):
        raise ProtocolError("PARTITION_MAP nodes must be a list")
    nodes = []
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("nodeId"), str):
            raise ProtocolError("PARTITION_MAP node entries need a string nodeId")
        endpoints = entry.get("endpoints")
        ws = endpoints.get("websocket") if isinstance(endpoints, dict) else None
        try:
            status = NodeStatus(entry.get("status", "ACTIVE"))
        except ValueError as exc:
            raise ProtocolError(f"unknown node status {entry.get('status')!r}") from exc
        nodes.append(NodeInfo(entry["nodeId"], ws if isinstance(ws, str) else "", status))
    return tuple(nodes)


def _partitions_from_wire(raw: object) -> Assignment:
    if not isinstance(raw, list) or not raw:
        raise ProtocolError("PARTITION_MAP partitions must be a non-empty list")
    owners: list[str] = [""] * len(raw)
    backups: list[tuple[str, ...]] = [()] * len(raw)
    seen = set()
    for entry in raw:
        if not isinstance(entry, dict):
            raise ProtocolError("PARTITION_MAP partition entries must be objects")
        pid, owner, bk = (
            entry.get("partitionId"),
            entry.get("ownerNodeId"),
            entry.get("backupNodeIds", []),
        )
        if (
            not isinstance(pid, int)
            or isinstance(pid, bool)
            or not 0 <= pid < len(raw)
            or pid in seen
        ):
            raise ProtocolError(f"PARTITION_MAP has a bad or repeated partitionId {pid!r}")
        if (
            not isinstance(owner, str)
            or not isinstance(bk, list)
            or not all(isinstance(b, str) for b in bk)
        ):
            raise ProtocolError(f"PARTITION_MAP partition {pid} has a bad owner or backups")
        seen.add(pid)
        owners[pid], backups[pid] = owner, tuple(bk)
    return tuple(owners), tuple(backups)


def build_table(
    version: int,
    nodes: Sequence[NodeInfo],
    assignment: Assignment,
    generated_at: int = 0,
) -> PartitionTable:
    owners, backups = assignment
    return PartitionTable(version, tuple(nodes), owners, backups, generated_at)


def diff(old: PartitionTable | None, new: PartitionTable) -> list[PartitionChange]:
    """Partitions whose owner differs between ``old`` and ``new``."""
    if old is None:
        return [PartitionChange(p, None, o) for p, o in enumerate(new.owners)]
    return [
        PartitionChange(p, old.owners[p] if p < len(old.owners) else None, o)
        for p, o in enumerate(new.owners)
        if p >= len(old.owners) or old.owners[p] != o
    ]
