"""The records one node holds, grouped by partition so a partition can be migrated whole."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from topgun.core.hashing import PARTITION_COUNT, partition_id
from topgun.core.records import LWWMap, LWWRecord

Triple = tuple[str, str, LWWRecord]
"""(map name, key, record)."""


class PartitionStore:
    def __init__(self, partition_count: int = PARTITION_COUNT) -> None:
        self._parts: list[dict[str, LWWMap]] = [{} for _ in range(partition_count)]

    def merge(self, map_name: str, key: str, record: LWWRecord, pid: int | None = None) -> bool:
        """LWW-merge one record; ``pid`` saves hashing the key again when the caller has it."""
        maps = self._parts[(partition_id(key) if pid is None else pid) % len(self._parts)]
        m = maps.get(map_name)
        if m is None:
            m = maps[map_name] = LWWMap()
        return m.merge(key, record)

    def get(self, map_name: str, key: str) -> LWWRecord | None:
        m = self._parts[partition_id(key) % len(self._parts)].get(map_name)
        return None if m is None else m.record(key)

    def partition_records(self, pid: int) -> list[Triple]:
        return [(name, k, r) for name, m in self._parts[pid].items() for k, r in m.items()]

    def partition_size(self, pid: int) -> int:
        return sum(len(m) for m in self._parts[pid].values())

    def map_records(
        self, map_name: str, pids: set[int] | None = None
    ) -> Iterator[tuple[str, LWWRecord]]:
        for pid, maps in enumerate(self._parts):
            if pids is not None and pid not in pids:
                continue
            m = maps.get(map_name)
            if m is not None:
                yield from m.items()

    def count(self) -> int:
        return sum(len(m) for maps in self._parts for m in maps.values())


def triples_to_wire(triples: list[Triple]) -> list[list[Any]]:
    return [[name, key, rec.to_wire()] for name, key, rec in triples]


def triples_from_wire(raw: object) -> list[Triple]:
    if not isinstance(raw, list):
        raise ValueError("records must be a list")
    out: list[Triple] = []
    for item in raw:
        if not isinstance(item, list) or len(item) != 3:
            raise ValueError("a record entry must be [map, key, record]")
        name, key, rec = item
        if not isinstance(name, str) or not isinstance(key, str):
            raise ValueError("map and key must be strings")
        out.append((name, key, LWWRecord.from_wire(rec)))
    return out
