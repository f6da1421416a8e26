"""The partition-table authority's planner: the next assignment from the current one.

Pure: it gets the current table, the live members and which (partition, node) pairs are
known to hold a partition's complete data ("ready"), and returns the assignment the
authority should publish next. Repeated application converges on
:func:`~topgun.core.table.ideal_assignment` without ever advertising a node as owner of
data it does not hold:

* **Promotion.** When an owner is gone, its first live ready backup becomes owner at once
  (its data is already there); new backups are added and filled by migration.
* **Join / move.** A partition whose ideal owner is another node first gets that node as an
  extra (staging) backup; only once the node is ready is ownership moved to it.
* **Safety.** Old ready replicas are kept as extra backups until enough of the new ones are
  ready, so a partition never has fewer complete copies than before.
* **Draining.** A node that is leaving gracefully (``draining``) is never a target, but while it
  is still up it counts as a holder: it stays owner of a partition until a live copy is ready,
  and stays as an extra backup until the new replicas are ready. It is out of the table once
  its data has been handed over.

Only when every replica of a partition is gone does the planner fall back to the ideal owner
(the data of that partition is then lost; nothing can bring it back).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from topgun.core.hashing import BACKUP_COUNT, PARTITION_COUNT
from topgun.core.table import Assignment, PartitionTable, ideal_assignment

Ready = Collection[tuple[int, str]]
"""(partition id, node id) pairs known to hold the partition's complete data."""


def plan(
    table: PartitionTable | None,
    members: Iterable[str],
    ready: Ready,
    *,
    draining: Iterable[str] = (),
    partition_count: int = PARTITION_COUNT,
    backup_count: int = BACKUP_COUNT,
) -> Assignment:
    """The assignment to publish next for ``members`` (the live, non-leaving node ids);
    ``draining`` are nodes still up but leaving."""
    live = set(members)
    drain = set(draining) - live
    target_owners, target_backups = ideal_assignment(live, partition_count, backup_count)
    if table is None or table.partition_count != partition_count:
        return target_owners, target_backups
    owners: list[str] = []
    backups: list[tuple[str, ...]] = []
    for p in range(partition_count):
        current = _dedupe((table.owners[p], *table.backups[p]))
        alive = [r for r in current if r in live or r in drain]
        tgt_owner, tgt_backups = target_owners[p], target_backups[p]
        if not alive:
            owners.append(tgt_owner)
            backups.append(tgt_backups)
            continue
        ready_alive = [r for r in alive if (p, r) in ready]
        live_alive = [r for r in alive if r in live]
        ready_live = [r for r in live_alive if (p, r) in ready]
        if current[0] in live:
            owner = current[0]
        elif ready_live:
            owner = ready_live[0]
        elif current[0] in drain and (p, current[0]) in ready:
            owner = current[0]  # hand over only once a live copy is complete
        else:
            owner = (live_alive or alive)[0]
        if owner != tgt_owner and tgt_owner in alive and (p, tgt_owner) in ready:
            owner = tgt_owner
        new = [owner]
        if owner != tgt_owner:
            new.append(tgt_owner)  # staging: filled by migration before it may own
        new.extend(b for b in tgt_backups if b not in new)
        need = min(len(ready_alive), 1 + min(backup_count, len(live) - 1))
        for r in ready_live + [r for r in ready_alive if r in drain]:
            if sum((p, n) in ready for n in new) >= need:
                break
            if r not in new:
                new.append(r)
        owners.append(new[0])
        backups.append(tuple(new[1:]))
    return tuple(owners), tuple(backups)


def is_ideal(
    assignment: Assignment, members: Iterable[str], backup_count: int = BACKUP_COUNT
) -> bool:
    """Whether ``assignment`` is the converged placement for ``members``."""
    owners, _ = assignment
    return assignment == ideal_assignment(members, len(owners), backup_count)


def _dedupe(nodes: Iterable[str]) -> list[str]:
    out: list[str] = []
    for n in nodes:
        if n not in out:
            out.append(n)
    return out
