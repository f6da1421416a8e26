"""The Merkle tree of TopGun's LWW sync (reference §2.9), kept up to date on every merge.

A key's path is the first ``depth`` (3) hex digits of its zero-padded 8-digit FNV-1a hash;
a leaf entry's hash is the hash of ``"<key>:<millis>:<counter>:<nodeId>"`` (integer millis);
every inner node's hash is the sum of its children's modulo 2^32, and an empty tree's root is
0. Tombstones are entries like any other. Because hashes are sums, trees over disjoint key
sets add up: a node answering for a whole cluster sums the owners' bucket hashes, and two
replicas of a partition agree exactly when their roots do.

How the sums are held, so that a million keys cost little: :class:`MerkleTree`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fnv_hash_fast import fnv1a_32

from topgun.core.hashing import fnv1a_utf16
from topgun.core.hlc import Timestamp

DEPTH = 3
MASK32 = 0xFFFFFFFF
HEX = "0123456789abcdef"


def key_path(key: str, depth: int = DEPTH, key_hash: int | None = None) -> str:
    """The leaf path of ``key``: the first ``depth`` hex digits of its hash (``key_hash``
    saves hashing again when the caller has it, as the store does for the partition id)."""
    return f"{fnv1a_utf16(key) if key_hash is None else key_hash:08x}"[:depth]


def entry_hash(key: str, ts: tuple[int, int, str]) -> int:
    """The hash of one entry, as the reference computes it (millis printed as an integer)."""
    millis, counter, node_id = ts  # unpacked: a NamedTuple's attributes cost more
    if millis.__class__ is not int:
        millis = int(millis)
    text = f"{key}:{millis}:{counter}:{node_id}"
    return fnv1a_32(text.encode()) if text.isascii() else fnv1a_utf16(text)


class MerkleTree:
    """The sums of the tree over one set of keys, held in little memory.

    A node keeps one tree per partition and map for a million records, so the tree holds no
    object per key and none per leaf: keys are grouped by their level-2 prefix (256 groups,
    a list each: the group's sum, then its keys) and the root is one int; a first-level sum
    is added up from its groups, and a leaf's from its group's keys, when sync asks, with
    each entry hashed from the timestamp its holder keeps (``stamp``). So an update needs the key's
    previous timestamp from the caller (the store has it at hand); in return a key costs
    the tree one list slot. Updates run on every merge, owner and backup alike.
    """

    __slots__ = ("_groups", "_root", "_stamp")

    def __init__(self, stamp: Callable[[str], Timestamp]) -> None:
        self._stamp = stamp  # key → the timestamp of the record held for it
        # level-2 prefix → [sum, key, key, ...]. An update adds to its group and to the root
        # (which anti-entropy reads for every held partition each turn); the 16 first-level
        # sums, which only a sync walk asks for, are added up from the groups when read. The
        # sums are kept unmasked (reduced modulo 2^32 when read); groups are never removed,
        # so a prefix has keys exactly when a group under it exists.
        self._groups: dict[int, list[Any]] = {}
        self._root = 0

    def __len__(self) -> int:
        return sum(len(group) - 1 for group in self._groups.values())

    def update(
        self,
        key: str,
        ts: tuple[int, int, str],
        old: tuple[int, int, str] | None,
        key_hash: int | None = None,
    ) -> None:
        """``key`` now holds the record stamped ``ts``; ``old`` is the stamp it held (None
        for a key new to the tree). Runs on every merge, owner and backup alike."""
        at = (fnv1a_utf16(key) if key_hash is None else key_hash) >> 24
        group = self._groups.get(at)
        delta = entry_hash(key, ts)
        if old is None:
            if group is None:
                self._groups[at] = [delta, key]
            else:
                group[0] += delta
                group.append(key)
        elif group is None:
            raise KeyError(key)
        else:
            delta -= entry_hash(key, old)
            group[0] += delta
        self._root += delta

    @staticmethod
    def _prefix(path: str) -> int | None:
        """The prefix a hex path names, or None for a path that is not one of the tree's."""
        if len(path) > DEPTH or path.strip(HEX):
            return None
        return int(path, 16) if path else 0

    def _leaves(self, group_at: int) -> dict[int, tuple[int, list[str]]]:
        """The non-empty leaves under one level-2 prefix: leaf prefix → (sum, keys)."""
        group = self._groups.get(group_at)
        out: dict[int, tuple[int, list[str]]] = {}
        if group is None:
            return out
        stamp = self._stamp
        for key in group[1:]:
            at = fnv1a_utf16(key) >> 20
            total, keys = out.get(at, (0, []))
            keys.append(key)
            out[at] = ((total + entry_hash(key, stamp(key))) & MASK32, keys)
        return out

    def _sum(self, level: int, at: int) -> tuple[int, bool]:
        """(hash, whether any key is under it) of the prefix ``at`` of ``level``."""
        groups = self._groups
        if level == 0:
            return self._root & MASK32, bool(groups)
        if level == 1:
            under = [g[0] for n in range(at * 16, at * 16 + 16) if (g := groups.get(n))]
            return sum(under) & MASK32, bool(under)
        if level == 2:
            group = groups.get(at)
            return (0, False) if group is None else (group[0] & MASK32, True)
        leaf = self._leaves(at >> 4).get(at)
        return (0, False) if leaf is None else (leaf[0], True)

    def root(self) -> int:
        return self._sum(0, 0)[0]

    def hash_at(self, path: str) -> int:
        at = self._prefix(path)
        return 0 if at is None else self._sum(len(path), at)[0]

    def buckets(self, path: str) -> dict[str, int]:
        """The non-empty children of an inner node: hex digit → hash (``{}`` if unknown)."""
        at = self._prefix(path)
        if at is None or len(path) >= DEPTH:
            return {}
        if len(path) == DEPTH - 1:  # the leaves: one pass over the group
            return {HEX[leaf & 15]: h for leaf, (h, _) in self._leaves(at).items()}
        out: dict[str, int] = {}
        for n, digit in enumerate(HEX):
            h, found = self._sum(len(path) + 1, at * 16 + n)
            if found:
                out[digit] = h
        return out

    def keys_at(self, path: str) -> list[str]:
        """The keys of a leaf (sorted), empty for an unknown or inner path."""
        at = self._prefix(path)
        if at is None or len(path) != DEPTH:
            return []
        leaf = self._leaves(at >> 4).get(at)
        return [] if leaf is None else sorted(leaf[1])


def summed_buckets(trees: Iterable[MerkleTree], path: str) -> dict[str, int]:
    """Bucket hashes at ``path`` of the union of trees over disjoint key sets."""
    out: dict[str, int] = {}
    for tree in trees:
        for digit, h in tree.buckets(path).items():
            out[digit] = (out.get(digit, 0) + h) & MASK32
    return out
