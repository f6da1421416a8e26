"""Last-writer-wins records and maps (reference §5.7).

A record replaces another only when its timestamp is strictly greater, which makes merge
commutative, associative and idempotent: replicas that saw the same set of records hold the
same state whatever the order. A removal is a record whose value is None (a tombstone), so it
replicates and merges like any other write.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

from topgun.core.errors import ProtocolError
from topgun.core.hlc import HLC, Timestamp

MAX_TTL_MS = 10 * 365 * 24 * 3600 * 1000


class LWWRecord(msgspec.Struct, frozen=True, gc=False):
    """One value of one key at one timestamp; ``value is None`` marks a tombstone."""

    value: Any
    timestamp: Timestamp
    ttl_ms: int | None = None

    @property
    def is_tombstone(self) -> bool:
        return self.value is None

    def is_expired(self, now_ms: int) -> bool:
        return self.ttl_ms is not None and self.timestamp.millis + self.ttl_ms < now_ms

    def is_live(self, now_ms: int) -> bool:
        return self.value is not None and not self.is_expired(now_ms)

    def newer_than(self, other: LWWRecord | None) -> bool:
        return other is None or self.timestamp > other.timestamp

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"value": self.value, "timestamp": self.timestamp.to_wire()}
        if self.ttl_ms is not None:
            wire["ttlMs"] = self.ttl_ms
        return wire

    @classmethod
    def from_wire(cls, obj: object) -> LWWRecord:
        if obj.__class__ is dict and obj.get("ttlMs") is None:  # the common case, once per op
            return cls(obj.get("value"), Timestamp.from_wire(obj.get("timestamp")))
        if not isinstance(obj, dict):
            raise ProtocolError("record must be an object {value, timestamp, ttlMs?}")
        ttl = obj.get("ttlMs")
        if ttl is not None:
            if isinstance(ttl, bool) or not isinstance(ttl, int | float):
                raise ProtocolError("record.ttlMs must be a number")
            if not 0 < ttl <= MAX_TTL_MS or (isinstance(ttl, float) and not ttl.is_integer()):
                raise ProtocolError(f"record.ttlMs must be a whole number in (0, {MAX_TTL_MS}]")
            ttl = int(ttl)
        return cls(obj.get("value"), Timestamp.from_wire(obj.get("timestamp")), ttl)


class LWWMap:
    """A key → record map with LWW merge; reads hide tombstones and expired records."""

    __slots__ = ("_records",)

    def __init__(self) -> None:
        self._records: dict[str, LWWRecord] = {}

    def __len__(self) -> int:
        return len(self._records)

    def record(self, key: str) -> LWWRecord | None:
        """The stored record, tombstones and expired ones included."""
        return self._records.get(key)

    def merge(self, key: str, record: LWWRecord) -> bool:
        """Store ``record`` if it is strictly newer than what the key holds; say whether it was."""
        if record.newer_than(self._records.get(key)):
            self._records[key] = record
            return True
        return False

    def set(self, key: str, value: Any, hlc: HLC, ttl_ms: int | None = None) -> LWWRecord:
        if value is None:
            raise ValueError("None is reserved for removals: use remove()")
        if ttl_ms is not None and not 0 < ttl_ms <= MAX_TTL_MS:
            raise ValueError(f"ttl_ms must be in (0, {MAX_TTL_MS}]")
        record = LWWRecord(value, self._stamp(key, hlc), ttl_ms)
        self._records[key] = record
        return record

    def remove(self, key: str, hlc: HLC) -> LWWRecord:
        record = LWWRecord(None, self._stamp(key, hlc))
        self._records[key] = record
        return record

    def _stamp(self, key: str, hlc: HLC) -> Timestamp:
        """``hlc.now()``, moved past the key's stored record so that a local write wins.

        ``merge`` takes no clock, so a merged record may be ahead of ``hlc``; the reference
        folds it in at merge time (§5.7), we do it here. Raises ``ClockSkewError`` if that
        record lies beyond the clock's allowed drift.
        """
        stamp = hlc.now()
        current = self._records.get(key)
        if current is not None and stamp <= current.timestamp:
            hlc.update(current.timestamp)
            stamp = hlc.now()
        return stamp

    def get(self, key: str, now_ms: int) -> Any:
        record = self._records.get(key)
        return record.value if record is not None and record.is_live(now_ms) else None

    def items(self) -> Iterator[tuple[str, LWWRecord]]:
        """Every stored (key, record), tombstones included: what replication and sync need."""
        return iter(list(self._records.items()))

    def live_items(self, now_ms: int) -> Iterator[tuple[str, Any]]:
        for key, record in list(self._records.items()):
            if record.is_live(now_ms):
                yield key, record.value

    def prune(self, older_than: Timestamp) -> list[str]:
        """Drop tombstones older than ``older_than``; return their keys."""
        dead = [
            key
            for key, record in self._records.items()
            if record.is_tombstone and record.timestamp < older_than
        ]
        for key in dead:
            del self._records[key]
        return dead
