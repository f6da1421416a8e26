"""Write concern on the client: what a write asks the server to reach before it answers, and
what :meth:`~topgun.client.TopGunClient.flush` reports the server vouched for.

A write concern is one of TopGun's levels (:class:`~topgun.core.concern.Level`, weakest
first: ``FIRE_AND_FORGET``, ``MEMORY``, ``APPLIED``, ``REPLICATED``, ``PERSISTED``; what each
promises is in :mod:`topgun.core.concern`) and how long the server may take to reach it. It
is chosen per client (``ClusterConfig.write_concern``), per map (``client.get_map(name,
write_concern=…)``) or per write (``map.set(key, value, write_concern=…)``): the most
specific one wins, and none at all leaves the server's default. It travels as TopGun sends
it, ``OP_BATCH.payload.writeConcern`` and ``timeout`` (ms), so writes asking for different
concerns never share a batch.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from topgun.client.errors import ConfigError
from topgun.core.concern import DEFAULT_TIMEOUT_MS, Level, level_of
from topgun.core.messages import MAX_OP_TIMEOUT_MS

MAX_TIMEOUT_S = MAX_OP_TIMEOUT_MS / 1000


@dataclass(frozen=True, slots=True)
class WriteConcern:
    """A level and how long the server may take to reach it (None: its default, 5 s).

    Past that time the server answers ``WRITE_CONCERN_UNMET`` with the level it reached; the
    client sends the write again (it may have been applied: resending is harmless).
    """

    level: Level
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.level, Level):
            raise ConfigError(f"a write concern level is a Level, not {self.level!r}")
        t = self.timeout_s
        if t is not None and not (math.isfinite(t) and 0 < t <= MAX_TIMEOUT_S):
            raise ConfigError(f"write concern timeout_s must be in (0, {MAX_TIMEOUT_S:g}], not {t}")

    @classmethod
    def of(cls, value: WriteConcernLike) -> WriteConcern | None:
        """``value`` as a write concern: a level name (``"PERSISTED"``), a :class:`Level`,
        a :class:`WriteConcern`, or None (no choice made here)."""
        if value is None or isinstance(value, WriteConcern):
            return value
        if isinstance(value, Level):
            return cls(value)
        if isinstance(value, str):
            try:
                return cls(Level[value.strip().upper()])
            except KeyError:
                names = ", ".join(level.name for level in Level)
                raise ConfigError(f"unknown write concern {value!r}; one of {names}") from None
        raise ConfigError(f"a write concern is a level name or a WriteConcern, not {value!r}")

    def __str__(self) -> str:
        return f"{self.level.name} within {self.wait_s:g} s"

    @property
    def wait_s(self) -> float:
        """How long the server may take, its default filled in."""
        return self.timeout_s if self.timeout_s is not None else DEFAULT_TIMEOUT_MS / 1000

    @property
    def timeout_ms(self) -> int:
        """The batch's ``timeout`` on the wire (whole ms: TopGun's Rust server reads a u64)."""
        return max(1, round(self.wait_s * 1000))


WriteConcernLike = WriteConcern | Level | str | None


def level_named(name: str | None) -> Level | None:
    """The level a server's answer names (None for none, or for a name we do not know)."""
    try:
        return level_of(name)
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class AckedWrite:
    """One write the server acknowledged, with the level it vouched for."""

    op_id: int
    map_name: str
    key: str
    asked: Level | None
    """The level the write asked for (None: the server's default)."""
    level: Level | None
    """The level the server vouched for: the ``achievedLevel`` its ack reported, else the
    level asked for (``success`` means it was reached); None when neither says."""

    @property
    def short(self) -> bool:
        """Acknowledged below the level it asked for (a server that broke its promise)."""
        return self.asked is not None and self.level is not None and self.level < self.asked


@dataclass(frozen=True, slots=True)
class FlushResult:
    """What one :meth:`~topgun.client.TopGunClient.flush` saw acknowledged, write by write.

    ``level`` is what every one of those writes is promised: the lowest level among them.
    """

    writes: tuple[AckedWrite, ...] = ()

    def __len__(self) -> int:
        return len(self.writes)

    @property
    def level(self) -> Level | None:
        """The lowest level vouched for; None if nothing was flushed or a write's level is
        unknown (a server that reports none, for a write that asked for none)."""
        levels = [w.level for w in self.writes]
        if not levels or any(level is None for level in levels):
            return None
        return min(level for level in levels if level is not None)

    @property
    def shortfalls(self) -> tuple[AckedWrite, ...]:
        """Writes acknowledged below the level they asked for."""
        return tuple(w for w in self.writes if w.short)

    def by_level(self) -> dict[str, int]:
        """How many writes were vouched for at each level (``"unknown"`` when not said)."""
        return dict(Counter("unknown" if w.level is None else w.level.name for w in self.writes))
