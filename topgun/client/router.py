"""The partition router: the newest partition table, key → owner, and routing metrics.

Pure: no sockets, no tasks; time comes from an injected monotonic clock (seconds).
Every routing decision is counted exactly once as ``direct`` (the owner is usable),
``fallback`` (owner unknown/down/circuit open, or smart routing off) or ``partition miss``
(no table). "Usable" is decided by the caller: a node whose connection is authenticated and
whose circuit allows traffic (reference §5.2 ``getConnection``, fixed per decision 6).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from topgun.core.hashing import partition_id
from topgun.core.table import PartitionTable

MonotonicClock = Callable[[], float]


class RouteKind(StrEnum):
    DIRECT = "direct"
    FALLBACK = "fallback"
    MISS = "miss"


@dataclass(frozen=True, slots=True)
class Route:
    """Where a key lives according to the table (connectivity not considered)."""

    partition_id: int
    owner: str
    backups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """Where one op is sent now and how that counts; ``node_id`` None = nowhere usable."""

    node_id: str | None
    kind: RouteKind
    partition_id: int


@dataclass(slots=True)
class RoutingMetrics:
    direct_routes: int = 0
    fallback_routes: int = 0
    partition_misses: int = 0
    total_routes: int = 0
    not_owner_retries: int = 0
    map_refreshes: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class PartitionRouter:
    """Holds the newest table (only strictly higher versions replace it) and routes keys."""

    def __init__(
        self,
        *,
        max_staleness_s: float = 60.0,
        clock: MonotonicClock = time.monotonic,
    ) -> None:
        self.max_staleness_s = max_staleness_s
        self._clock = clock
        self._table: PartitionTable | None = None
        self.last_refresh: float | None = None
        self.metrics = RoutingMetrics()

    # --- the table ---------------------------------------------------------------------

    @property
    def table(self) -> PartitionTable | None:
        return self._table

    @property
    def version(self) -> int:
        """The held table's version, 0 when there is none."""
        return 0 if self._table is None else self._table.version

    def has_table(self) -> bool:
        return self._table is not None

    def update_table(self, table: PartitionTable) -> bool:
        """Accept ``table`` if it is the first or strictly newer; say whether it was.

        An equal version still counts as a refresh (the table is confirmed current).
        """
        if self._table is not None and table.version <= self._table.version:
            if table.version == self._table.version:
                self.last_refresh = self._clock()
            return False
        self._table = table
        self.last_refresh = self._clock()
        return True

    def is_stale(self) -> bool:
        if self._table is None or self.last_refresh is None:
            return True
        return self._clock() - self.last_refresh > self.max_staleness_s

    def route(self, key: str) -> Route | None:
        """The owner and backups of ``key``'s partition, or None without a table."""
        return self._route(partition_id(key))

    def _route(self, pid: int) -> Route | None:
        table = self._table
        if table is None or pid >= table.partition_count:
            return None
        return Route(pid, table.owner(pid), table.backups_of(pid))

    # --- decisions and metrics -----------------------------------------------------------

    def decide(
        self, key: str, usable: Sequence[str], *, smart: bool = True, prefer: str | None = None
    ) -> RouteDecision:
        """Pick the node for one op on ``key`` among ``usable`` node ids (in preference
        order) and count the decision. ``smart=False`` always picks ``usable[0]`` (the node
        that forwards) and counts a fallback. ``prefer`` is an owner a server named in a
        NOT_OWNER refusal: a redirect is followed when that node is usable, in either mode,
        and counts as direct."""
        pid = partition_id(key)
        first = usable[0] if usable else None
        self.metrics.total_routes += 1
        if prefer is not None and prefer in usable:
            self.metrics.direct_routes += 1
            return RouteDecision(prefer, RouteKind.DIRECT, pid)
        if not smart:
            self.metrics.fallback_routes += 1
            return RouteDecision(first, RouteKind.FALLBACK, pid)
        route = self._route(pid)
        if route is None:
            self.metrics.partition_misses += 1
            return RouteDecision(first, RouteKind.MISS, pid)
        if route.owner in usable:
            self.metrics.direct_routes += 1
            return RouteDecision(route.owner, RouteKind.DIRECT, pid)
        self.metrics.fallback_routes += 1
        for backup in route.backups:
            if backup in usable:
                return RouteDecision(backup, RouteKind.FALLBACK, pid)
        return RouteDecision(first, RouteKind.FALLBACK, pid)

    def count_not_owner_retry(self) -> None:
        self.metrics.not_owner_retries += 1

    def count_map_refresh(self) -> None:
        self.metrics.map_refreshes += 1

    def get_metrics(self) -> dict[str, int]:
        return self.metrics.as_dict()

    def reset_metrics(self) -> None:
        self.metrics = RoutingMetrics()

    def stats(self, wall_clock_ms: Callable[[], int] | None = None) -> dict[str, Any]:
        """``{map_version, partition_count, node_count, last_refresh, is_stale}``.

        ``last_refresh`` is epoch milliseconds when ``wall_clock_ms`` is given (it converts
        the monotonic refresh time), else the monotonic seconds; None before any table.
        """
        table = self._table
        last: float | None = self.last_refresh
        if last is not None and wall_clock_ms is not None:
            last = wall_clock_ms() - (self._clock() - last) * 1000.0
        return {
            "map_version": self.version,
            "partition_count": 0 if table is None else table.partition_count,
            "node_count": 0 if table is None else len(table.nodes),
            "last_refresh": last,
            "is_stale": self.is_stale(),
        }
