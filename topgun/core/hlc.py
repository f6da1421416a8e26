"""Hybrid logical clock and its timestamps (reference §5.8).

Timestamps order by (millis, counter, node id); node ids are compared by code point, which
equals the reference's ``localeCompare`` for the lowercase ASCII ids topgun uses.
The wall clock is injected so that every rule is testable without real time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from topgun.core.errors import ClockSkewError, ProtocolError

Clock = Callable[[], int]
"""A source of epoch milliseconds."""

DEFAULT_MAX_DRIFT_MS = 60_000

MAX_COUNTER = 2**31 - 1
MAX_MILLIS = 2**53  # largest integer a float64 (the wire type of millis) holds exactly
MAX_NODE_ID_LENGTH = 256


class Timestamp(NamedTuple):
    """An HLC timestamp; tuple order is the LWW order."""

    millis: int
    counter: int
    node_id: str

    def to_wire(self) -> dict[str, Any]:
        # millis travel as float64: TS peers turn msgpack int64 into BigInt and break.
        return {"millis": float(self.millis), "counter": self.counter, "nodeId": self.node_id}

    def __str__(self) -> str:
        return f"{self.millis}:{self.counter}:{self.node_id}"

    @classmethod
    def from_wire(cls, obj: object) -> Timestamp:
        """Validate a ``{millis, counter, nodeId}`` object from a peer."""
        if obj.__class__ is dict:  # the common case checked inline: this runs once per op
            m, c, n = obj.get("millis"), obj.get("counter"), obj.get("nodeId")
            if (
                ((m.__class__ is float and m.is_integer()) or m.__class__ is int)
                and 0 <= m <= MAX_MILLIS
                and c.__class__ is int
                and 0 <= c <= MAX_COUNTER
                and n.__class__ is str
                and len(n) <= MAX_NODE_ID_LENGTH
            ):
                return cls(int(m), c, n)
        if not isinstance(obj, dict):
            raise ProtocolError("timestamp must be an object {millis, counter, nodeId}")
        millis = _whole_number(obj.get("millis"), "timestamp.millis", 0, MAX_MILLIS)
        counter = _whole_number(obj.get("counter"), "timestamp.counter", 0, MAX_COUNTER)
        node_id = obj.get("nodeId")
        if not isinstance(node_id, str) or len(node_id) > MAX_NODE_ID_LENGTH:
            raise ProtocolError(
                f"timestamp.nodeId must be a string of at most {MAX_NODE_ID_LENGTH} characters"
            )
        return cls(millis, counter, node_id)


def _whole_number(value: object, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"{name} must be a number")
    if isinstance(value, float):
        if not value.is_integer():
            raise ProtocolError(f"{name} must be a whole number")
        value = int(value)
    if not low <= value <= high:
        raise ProtocolError(f"{name} out of range [{low}, {high}]")
    return value


class HLC:
    """A hybrid logical clock owned by one node (server or client)."""

    __slots__ = ("_clock", "_counter", "_millis", "max_drift_ms", "node_id")

    def __init__(
        self, node_id: str, clock: Clock, *, max_drift_ms: int = DEFAULT_MAX_DRIFT_MS
    ) -> None:
        if ":" in node_id:
            raise ValueError("an HLC node id must not contain ':'")
        self.node_id = node_id
        self.max_drift_ms = max_drift_ms
        self._clock = clock
        self._millis = 0
        self._counter = 0

    def now(self) -> Timestamp:
        """A timestamp strictly greater than every one this clock issued or saw."""
        wall = self._clock()
        if wall > self._millis:
            self._millis, self._counter = wall, 0
        else:
            self._counter += 1
        return Timestamp(self._millis, self._counter, self.node_id)

    def check(self, remote: Timestamp, wall: int | None = None) -> None:
        """Refuse a timestamp further ahead of our wall clock than ``max_drift_ms``.

        Accepting one would let a single write far in the future win every later write of
        its key, freezing it; the reference only logs a warning here.
        """
        ahead = remote.millis - (self._clock() if wall is None else wall)
        if ahead > self.max_drift_ms:
            raise ClockSkewError(
                f"timestamp is {ahead} ms ahead of this node's clock "
                f"(at most {self.max_drift_ms} ms allowed)"
            )

    def update(self, remote: Timestamp) -> None:
        """Fold a remote timestamp into the clock after checking its drift."""
        wall = self._clock()
        self.check(remote, wall)
        self._fold(remote, wall)

    def observe(self, newest: Timestamp) -> None:
        """Fold in the newest of timestamps already checked (:meth:`check`): folding the
        newest of a batch leaves the clock past all of them, at one reading of the clock."""
        self._fold(newest, self._clock())

    def _fold(self, remote: Timestamp, wall: int) -> None:
        m = max(self._millis, wall, remote.millis)
        if m == self._millis == remote.millis:
            counter = max(self._counter, remote.counter) + 1
        elif m == self._millis:
            counter = self._counter + 1
        elif m == remote.millis:
            counter = remote.counter + 1
        else:
            counter = 0
        self._millis, self._counter = m, counter
