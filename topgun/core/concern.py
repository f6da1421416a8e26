"""Write concern: TopGun's acknowledgement levels, what each promises, and how an answer is
judged against the level asked for.

The levels are ordered ``FIRE_AND_FORGET < MEMORY < APPLIED < REPLICATED < PERSISTED``
(``OP_BATCH.payload.writeConcern`` or an op's own ``writeConcern``, which wins; ``timeout``
in ms, default :data:`DEFAULT_TIMEOUT_MS`). An ack is sent when the level asked for is
reached; if the timeout passes first it says ``success: false`` with the highest level
reached (``OP_ACK.results[].achievedLevel``) and :data:`UNMET` as its error. What each
level promises, once ``success: true`` says it:

* ``FIRE_AND_FORGET``: the node received the frame. Nothing else: the op may yet be refused
  (permissions, ownership) or lost, and no refusal is reported.
* ``MEMORY``: the op passed validation and permissions on the node that received it, which
  will apply it (or forward it to its owner) next. Lost if that node or the owner crashes
  first, or if the owner refuses it (the refusal is not reported).
* ``APPLIED``: the owner of the key merged it into its copy: readable there at once. Lost if
  the owner crashes before its backups received it.
* ``REPLICATED``: the owner and every backup the partition table names for the partition
  hold it in memory (a table naming no backup, as on a single node, asks only the owner).
  Survives the crash of any one of those copies, not of all of them at once.
* ``PERSISTED``: the owner and every backup the table names have it on disk, fsynced.
  Survives the crash of every node at once. A node without a data dir cannot promise it and
  refuses the op before applying it (:data:`PERSISTENCE_UNAVAILABLE`).

An op sent without a write concern gets the node's default, which is neither of those
exactly: the owner applies it and waits for every backup it is linked to (a backup that is
gone is skipped: the next table replaces it), and the ack reports the level reached
(``REPLICATED``, or ``APPLIED`` when no backup was there to confirm), with ``success: true``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum


class Level(IntEnum):
    """The levels in their order: a higher one includes every promise of the lower ones."""

    FIRE_AND_FORGET = 0
    MEMORY = 1
    APPLIED = 2
    REPLICATED = 3
    PERSISTED = 4


DEFAULT_TIMEOUT_MS = 5000.0
"""How long an ack waits for the level asked for (TopGun's default)."""

UNMET = "WRITE_CONCERN_UNMET"
"""Error code of an op whose level was not reached in time (``WRITE_CONCERN_UNMET: …``).
The op may have been applied at a lower level: resending it is harmless (LWW)."""

PERSISTENCE_UNAVAILABLE = "PERSISTENCE_UNAVAILABLE"
"""Refusal of a ``PERSISTED`` op by an owner that keeps no store: nothing was applied."""


def level_of(name: str | None) -> Level | None:
    """The level a wire name means (None for absent); ValueError for an unknown name."""
    if name is None:
        return None
    try:
        return Level[name]
    except KeyError:
        raise ValueError(f"unknown write concern {name!r}") from None


@dataclass(frozen=True, slots=True)
class Concern:
    """What one op asks for: a level (None: the node's default) and how long to wait."""

    level: Level | None = None
    timeout_ms: float = DEFAULT_TIMEOUT_MS

    @classmethod
    def of(
        cls,
        op_level: str | None,
        op_timeout: float | None,
        batch_level: str | None = None,
        batch_timeout: float | None = None,
    ) -> Concern:
        """An op's own ``writeConcern`` / ``timeout`` win over its batch's (as in TopGun)."""
        level = level_of(op_level if op_level is not None else batch_level)
        timeout = op_timeout if op_timeout is not None else batch_timeout
        if timeout is None or not math.isfinite(timeout) or timeout <= 0:
            timeout = DEFAULT_TIMEOUT_MS
        return cls(level, float(timeout))

    @property
    def timeout_s(self) -> float:
        return self.timeout_ms / 1000.0

    @property
    def early(self) -> bool:
        """Acknowledged by the receiving node before the owner applies it."""
        return self.level is not None and self.level <= Level.MEMORY

    @property
    def waits_for_backups(self) -> bool:
        return self.level is None or self.level >= Level.REPLICATED

    @property
    def persisted(self) -> bool:
        return self.level == Level.PERSISTED

    def met(self, achieved: Level) -> bool:
        """Whether ``achieved`` keeps the promise asked for (the default: any level)."""
        return self.level is None or achieved >= self.level

    def unmet(self, achieved: Level, why: str) -> str:
        """The error of an op that reached only ``achieved``."""
        asked = self.level.name if self.level is not None else "the default"
        return f"{UNMET}: requested {asked}, reached {achieved.name}: {why}"


def achieved(owner_durable: bool, backups: list[int | None]) -> Level:
    """The highest level an applied op reached, from the owner's disk and its backups'
    answers (:data:`GONE`, :data:`HELD`, :data:`DURABLE`, or None for no answer): each
    level needs every copy of the one below it."""
    if not all(b is not None and b >= HELD for b in backups):
        return Level.APPLIED
    if owner_durable and all(b == DURABLE for b in backups):
        return Level.PERSISTED
    return Level.REPLICATED


GONE = 0
"""A backup's answer: it is gone (its link is closed); it holds nothing we can count."""
HELD = 1
"""A backup's answer: it merged the records (in memory)."""
DURABLE = 2
"""A backup's answer: it merged the records and they are on its disk (fsynced)."""
