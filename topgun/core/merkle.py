"""The Merkle tree of TopGun's LWW sync (reference §2.9), kept up to date on every merge.

A key's path is the first ``depth`` (3) hex digits of its zero-padded 8-digit FNV-1a hash;
a leaf entry's hash is the hash of ``"<key>:<millis>:<counter>:<nodeId>"`` (integer millis);
every inner node's hash is the sum of its children's modulo 2^32, and an empty tree's root is
0. Tombstones are entries like any other. Because hashes are sums, trees over disjoint key
sets add up: a node answering for a whole cluster sums the owners' bucket hashes, and two
replicas of a partition agree exactly when their roots do.

An update adds the entry's hash (less the key's previous one) to its leaf, the root and the
first level; the sums in between are added up from the leaves when asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from topgun.core.hashing import fnv1a_utf16
from topgun.core.hlc import Timestamp

DEPTH = 3
MASK32 = 0xFFFFFFFF
HEX = "0123456789abcdef"


def key_path(key: str, depth: int = DEPTH, key_hash: int | None = None) -> str:
    """The leaf path of ``key``: the first ``depth`` hex digits of its hash (``key_hash``
    saves hashing again when the caller has it, as the store does for the partition id)."""
    return f"{fnv1a_utf16(key) if key_hash is None else key_hash:08x}"[:depth]


def entry_hash(key: str, ts: Timestamp) -> int:
    """The hash of one entry, as the reference computes it (millis printed as an integer)."""
    return fnv1a_utf16(f"{key}:{int(ts.millis)}:{ts.counter}:{ts.node_id}")


class MerkleTree:
    """Entry hashes per leaf, with the sums every level above them needs.

    A prefix of level ``n`` is the top ``4n`` bits of the key hash (its hex path parsed).
    An update runs on every merge of every record a node holds, owner and backup alike, so it
    keeps only the root and the 16 first-level sums current (plain int arithmetic); a sum
    deeper down is added up from the leaves under it when asked for (16 leaves at level 2 of
    the depth-3 tree, most holding one or two keys) — sync and repair ask rarely, and by
    prefix.
    """

    __slots__ = ("_depth", "_first", "_first_n", "_leaves", "_root", "_shift", "_size")

    def __init__(self, depth: int = DEPTH) -> None:
        if not 1 <= depth <= 8:
            raise ValueError("a path has 1 to 8 hex digits (of a 32-bit hash)")
        self._depth = depth
        self._shift = 32 - 4 * depth  # key hash >> shift = its leaf prefix
        self._leaves: dict[int, dict[str, int]] = {}  # leaf prefix → key → entry hash
        self._root = 0
        self._size = 0
        self._first = [0] * 16  # level-1 sums
        self._first_n = [0] * 16  # entries under each level-1 prefix

    @property
    def depth(self) -> int:
        return self._depth

    def __len__(self) -> int:
        return self._size

    def _prefix(self, path: str) -> int | None:
        """The prefix a hex path names, or None for a path that is not one of this tree's."""
        if len(path) > self._depth or path.strip(HEX):
            return None
        return int(path, 16) if path else 0

    def update(self, key: str, ts: Timestamp, key_hash: int | None = None) -> None:
        """Set ``key``'s entry to the record stamped ``ts`` (replacing any earlier one)."""
        h = fnv1a_utf16(key) if key_hash is None else key_hash
        leaf_at = h >> self._shift
        leaf = self._leaves.get(leaf_at)
        if leaf is None:
            leaf = self._leaves[leaf_at] = {}
        new = entry_hash(key, ts)
        old = leaf.get(key)
        leaf[key] = new
        top = h >> 28
        if old is None:
            self._size += 1
            self._first_n[top] += 1
            delta = new
        else:
            delta = new - old
        self._root = (self._root + delta) & MASK32
        self._first[top] = (self._first[top] + delta) & MASK32

    def remove(self, key: str, key_hash: int | None = None) -> None:
        """Forget ``key`` entirely (a purged record, or a partition handed away)."""
        h = fnv1a_utf16(key) if key_hash is None else key_hash
        leaf_at = h >> self._shift
        leaf = self._leaves.get(leaf_at)
        if leaf is None or key not in leaf:
            return
        old = leaf.pop(key)
        if not leaf:
            del self._leaves[leaf_at]
        top = h >> 28
        self._size -= 1
        self._first_n[top] -= 1
        self._root = (self._root - old) & MASK32
        self._first[top] = (self._first[top] - old) & MASK32

    def _sum(self, level: int, at: int) -> tuple[int, bool]:
        """(hash, whether any entry is under it) of the prefix ``at`` of ``level``."""
        if level == 0:
            return self._root, self._size > 0
        if level == 1:
            return self._first[at], self._first_n[at] > 0
        width = self._depth - level
        leaves = self._leaves
        total, found = 0, False
        for leaf_at in range(at << (4 * width), (at + 1) << (4 * width)):
            leaf = leaves.get(leaf_at)
            if leaf is not None:
                total += sum(leaf.values())
                found = True
        return total & MASK32, found

    def root(self) -> int:
        return self._root

    def hash_at(self, path: str) -> int:
        at = self._prefix(path)
        return 0 if at is None else self._sum(len(path), at)[0]

    def buckets(self, path: str) -> dict[str, int]:
        """The non-empty children of an inner node: hex digit → hash (``{}`` if unknown)."""
        at = self._prefix(path)
        if at is None or len(path) >= self._depth:
            return {}
        out: dict[str, int] = {}
        for n, digit in enumerate(HEX):
            h, found = self._sum(len(path) + 1, at * 16 + n)
            if found:
                out[digit] = h
        return out

    def is_leaf(self, path: str) -> bool:
        return len(path) == self._depth

    def keys_at(self, path: str) -> list[str]:
        """The keys of a leaf (sorted), empty for an unknown or inner path."""
        at = self._prefix(path)
        if at is None or len(path) != self._depth:
            return []
        return sorted(self._leaves.get(at, ()))

    def keys(self) -> Iterator[str]:
        for leaf in self._leaves.values():
            yield from leaf


def summed_buckets(trees: Iterable[MerkleTree], path: str) -> dict[str, int]:
    """Bucket hashes at ``path`` of the union of trees over disjoint key sets."""
    out: dict[str, int] = {}
    for tree in trees:
        for digit, h in tree.buckets(path).items():
            out[digit] = (out.get(digit, 0) + h) & MASK32
    return out
