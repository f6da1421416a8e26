"""The records one node holds, grouped by partition so a partition can be migrated whole.

Merkle trees (:mod:`topgun.core.merkle`) exist per (partition, map) once someone asked for
one (sync, replica repair) and are kept current on every merge from then on, so a map that
is never synced costs no tree memory and a synced one is never rebuilt per request.
"""

from __future__ import annotations

from collections.abc import Iterable

from topgun.core.hashing import PARTITION_COUNT, fnv1a_utf16
from topgun.core.merkle import MerkleTree
from topgun.core.packed import RecordPacker
from topgun.core.record_wire import Flat, Triple
from topgun.core.records import LWWRecord


class PartitionStore:
    """Per partition, per map: key → the record in its held form (:mod:`topgun.core.packed`).

    Reads hand out fresh :class:`LWWRecord` s; nothing outside sees the held bytes.
    """

    __slots__ = ("_packer", "_parts", "_sorted", "_trees")

    def __init__(self, partition_count: int = PARTITION_COUNT) -> None:
        self._parts: list[dict[str, dict[str, bytes]]] = [{} for _ in range(partition_count)]
        # per partition: map → its tree (a list, so a merge looks one up without a tuple key)
        self._trees: list[dict[str, MerkleTree]] = [{} for _ in range(partition_count)]
        # (partition, map) → [its keys sorted when last asked, keys new since]: built by the
        # first paged read of the map, kept by merges at the cost of one append per new key
        self._sorted: dict[tuple[int, str], tuple[list[str], list[str]]] = {}
        self._packer = RecordPacker()

    def merge(
        self, map_name: str, key: str, record: LWWRecord, key_hash: int | None = None
    ) -> bool:
        """LWW-merge one record; ``key_hash`` (its partition's and its tree's) saves hashing
        the key again when the caller has it."""
        millis, counter, node_id = record.timestamp
        flat = (map_name, key, record.value, millis, counter, node_id, record.ttl_ms)
        return self.merge_flat(flat, fnv1a_utf16(key) if key_hash is None else key_hash)

    def merge_flat(self, flat: Flat, key_hash: int) -> bool:
        """LWW-merge one record as a peer's blob holds it (its value may stay encoded)."""
        map_name, key, value, millis, counter, node_id, ttl_ms = flat
        pid = key_hash % len(self._parts)
        maps = self._parts[pid]
        m = maps.get(map_name)
        if m is None:
            m = maps[map_name] = {}
        held = m.get(key)
        packer = self._packer
        if held is not None and not packer.newer(millis, counter, node_id, held):
            return False
        m[key] = packer.pack(value, millis, counter, node_id, ttl_ms)
        if held is None and self._sorted:
            index = self._sorted.get((pid, map_name))
            if index is not None:
                index[1].append(key)
        trees = self._trees[pid]
        tree = trees.get(map_name) if trees else None
        if tree is not None:
            old = None if held is None else packer.timestamp(held)
            tree.update(key, (millis, counter, node_id), old, key_hash)
        return True

    @property
    def packer(self) -> RecordPacker:
        return self._packer

    def install(self, rows: Iterable[tuple[int, str, str, bytes]]) -> None:
        """Take records in their held form as a data dir kept them, before the node serves
        (no trees or key indexes exist yet; the packer adopted the data dir's node ids)."""
        parts = self._parts
        for pid, map_name, key, held in rows:
            maps = parts[pid]
            m = maps.get(map_name)
            if m is None:
                m = maps[map_name] = {}
            m[key] = held

    def get(self, map_name: str, key: str) -> LWWRecord | None:
        m = self._parts[fnv1a_utf16(key) % len(self._parts)].get(map_name)
        held = None if m is None else m.get(key)
        return None if held is None else self._packer.unpack(held)

    def tree(self, pid: int, map_name: str) -> MerkleTree:
        """The Merkle tree of one map's records in one partition, built on first use."""
        tree = self._trees[pid].get(map_name)
        if tree is None:
            maps, stamp = self._parts[pid], self._packer.timestamp
            tree = MerkleTree(lambda key: stamp(maps[map_name][key]))
            self._trees[pid][map_name] = tree
            for key, held in maps.get(map_name, {}).items():
                tree.update(key, stamp(held), None)
        return tree

    def trees(self, map_name: str, pids: list[int]) -> list[MerkleTree]:
        """The trees of ``map_name`` in those of ``pids`` that hold any of its records (so a
        sync of a map name nobody wrote creates no trees)."""
        parts = self._parts
        return [self.tree(pid, map_name) for pid in pids if map_name in parts[pid]]

    def partition_records(self, pid: int) -> list[Triple]:
        unpack = self._packer.unpack
        return [(name, k, unpack(h)) for name, m in self._parts[pid].items() for k, h in m.items()]

    def partition_flats(self, pid: int) -> list[Flat]:
        """One partition's records for a peer's blob, values as their held bytes."""
        unpack = self._packer.unpack_flat
        return [(name, k, *unpack(h)) for name, m in self._parts[pid].items() for k, h in m.items()]

    def partition_maps(self, pid: int) -> list[str]:
        """Names of the maps with records in this partition."""
        return list(self._parts[pid])

    def partition_size(self, pid: int) -> int:
        return sum(len(m) for m in self._parts[pid].values())

    def partition_ids(self) -> range:
        return range(len(self._parts))

    def map_keys(self, map_name: str, pid: int) -> list[str]:
        """The keys of ``map_name`` in partition ``pid``: a copy, so a walk may yield the loop
        between them and fetch each record (:meth:`get`) only if it still wants it."""
        m = self._parts[pid].get(map_name)
        return [] if m is None else list(m)

    def sorted_keys(self, map_name: str, pid: int) -> list[str]:
        """The keys of ``map_name`` in partition ``pid`` in order, for a page to start at its
        cursor by bisection. A list the store never changes afterwards (keys merged later
        go into the next one), so a walk may yield the loop while it holds it; the sort of
        a list that is already sorted but for its new tail is near linear."""
        index = self._sorted.get((pid, map_name))
        if index is None:
            m = self._parts[pid].get(map_name)
            index = self._sorted[(pid, map_name)] = (sorted(m or ()), [])
        elif index[1]:
            index = self._sorted[(pid, map_name)] = (sorted([*index[0], *index[1]]), [])
        return index[0]

    def count(self) -> int:
        return sum(len(m) for maps in self._parts for m in maps.values())
