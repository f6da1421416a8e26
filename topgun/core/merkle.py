"""The Merkle tree of TopGun's LWW sync (reference §2.9), kept up to date on every merge.

A key's path is the first ``depth`` (3) hex digits of its zero-padded 8-digit FNV-1a hash;
a leaf entry's hash is the hash of ``"<key>:<millis>:<counter>:<nodeId>"`` (integer millis);
every inner node's hash is the sum of its children's modulo 2^32, and an empty tree's root is
0. Tombstones are entries like any other. Because hashes are sums, trees over disjoint key
sets add up: a node answering for a whole cluster sums the owners' bucket hashes, and two
replicas of a partition agree exactly when their roots do.

Updates cost O(depth): each entry's hash is added to its leaf and every ancestor, and the
previous hash of the key (if any) subtracted.
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
    """Sums of entry hashes per path prefix, plus the entries of each leaf."""

    __slots__ = ("_counts", "_depth", "_leaves", "_sums")

    def __init__(self, depth: int = DEPTH) -> None:
        self._depth = depth
        self._sums: dict[str, int] = {}  # path prefix ("" = root) → hash
        self._counts: dict[str, int] = {}  # path prefix → entries under it
        self._leaves: dict[str, dict[str, int]] = {}  # leaf path → key → entry hash

    @property
    def depth(self) -> int:
        return self._depth

    def __len__(self) -> int:
        return self._counts.get("", 0)

    def update(self, key: str, ts: Timestamp, key_hash: int | None = None) -> None:
        """Set ``key``'s entry to the record stamped ``ts`` (replacing any earlier one)."""
        path = key_path(key, self._depth, key_hash)
        leaf = self._leaves.setdefault(path, {})
        new = entry_hash(key, ts)
        old = leaf.get(key)
        leaf[key] = new
        self._add(path, new - (old or 0), 0 if old is not None else 1)

    def remove(self, key: str, key_hash: int | None = None) -> None:
        """Forget ``key`` entirely (a purged record, or a partition handed away)."""
        path = key_path(key, self._depth, key_hash)
        leaf = self._leaves.get(path)
        if leaf is None or key not in leaf:
            return
        old = leaf.pop(key)
        if not leaf:
            del self._leaves[path]
        self._add(path, -old, -1)

    def _add(self, path: str, delta: int, count: int) -> None:
        sums, counts = self._sums, self._counts
        for n in range(len(path) + 1):
            prefix = path[:n]
            left = counts.get(prefix, 0) + count
            if left:
                counts[prefix] = left
                sums[prefix] = (sums.get(prefix, 0) + delta) & MASK32
            else:
                counts.pop(prefix, None)
                sums.pop(prefix, None)

    def root(self) -> int:
        return self._sums.get("", 0)

    def hash_at(self, path: str) -> int:
        return self._sums.get(path, 0)

    def buckets(self, path: str) -> dict[str, int]:
        """The non-empty children of an inner node: hex digit → hash (``{}`` if unknown)."""
        if len(path) >= self._depth:
            return {}
        out: dict[str, int] = {}
        for digit in HEX:
            child = path + digit
            if child in self._sums:
                out[digit] = self._sums[child]
        return out

    def is_leaf(self, path: str) -> bool:
        return len(path) == self._depth

    def keys_at(self, path: str) -> list[str]:
        """The keys of a leaf (sorted), empty for an unknown or inner path."""
        return sorted(self._leaves.get(path, ()))

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
