"""The sync Merkle tree: the reference's own numbers, and the rules sums must obey."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topgun.core.hlc import Timestamp
from topgun.core.merkle import MASK32, MerkleTree, entry_hash, key_path, summed_buckets

# From topgun-wire-samples.json, scenario "single-watch": one record, the reference's answers.
SAMPLE_TS = Timestamp(1795705681661, 0, "bb2f565c-6480-4ba8-adfb-0420546289fe")


class Held:
    """What a holder keeps (key → timestamp) and its tree, updated the way the store does."""

    def __init__(self) -> None:
        self.stamps: dict[str, Timestamp] = {}
        self.tree = MerkleTree(self.stamps.__getitem__)

    def put(self, key: str, ts: Timestamp) -> None:
        old = self.stamps.get(key)
        self.stamps[key] = ts
        self.tree.update(key, ts, old)


def held(data: dict[str, Timestamp]) -> Held:
    h = Held()
    for k, ts in data.items():
        h.put(k, ts)
    return h


def test_reference_root_bucket_and_leaf_path() -> None:
    tree = held({"key-user": SAMPLE_TS}).tree
    assert tree.root() == 93402082
    assert tree.buckets("") == {"f": 93402082}
    assert key_path("key-user") == "f8b" and key_path("key-3") == "55e"
    assert tree.keys_at("f8b") == ["key-user"]
    assert tree.buckets("f8b") == {} and tree.buckets("zz") == {}


def test_millis_print_as_integers() -> None:
    as_float = Timestamp(1795705681661.0, 0, "n")  # type: ignore[arg-type]
    assert entry_hash("k", as_float) == entry_hash("k", Timestamp(1795705681661, 0, "n"))


keys = st.text(min_size=0, max_size=12)
stamps = st.builds(
    Timestamp, st.integers(0, 2**48), st.integers(0, 2**16), st.sampled_from(["a", "b", "c"])
)
entries = st.dictionaries(keys, stamps, max_size=40)


def prefixes(data: dict[str, Timestamp]) -> set[str]:
    return {key_path(k)[:n] for k in data for n in range(4)}


@given(entries)
def test_every_sum_is_the_sum_of_the_entry_hashes_under_it(data: dict[str, Timestamp]) -> None:
    tree = held(data).tree
    assert len(tree) == len(data)
    for path in prefixes(data) | {"", "0", "ff", "abc"}:
        under = [entry_hash(k, ts) for k, ts in data.items() if key_path(k).startswith(path)]
        assert tree.hash_at(path) == sum(under) & MASK32
        if len(path) < 3:
            assert tree.hash_at(path) == sum(tree.buckets(path).values()) & MASK32
            assert set(tree.buckets(path)) == {
                key_path(k)[len(path)] for k in data if key_path(k).startswith(path)
            }
        else:
            assert tree.keys_at(path) == sorted(k for k in data if key_path(k) == path)


@given(entries, entries)
def test_a_tree_updated_in_place_equals_one_built_from_the_final_records(
    first: dict[str, Timestamp], second: dict[str, Timestamp]
) -> None:
    h = held(first)
    for k, ts in second.items():
        h.put(k, ts)
    final = {**first, **second}
    expected = held(final).tree
    for path in prefixes(final) | {""}:
        assert h.tree.hash_at(path) == expected.hash_at(path)
        assert h.tree.buckets(path) == expected.buckets(path)
        assert h.tree.keys_at(path) == expected.keys_at(path)


def test_an_update_of_a_key_the_tree_never_had_is_refused() -> None:
    with pytest.raises(KeyError):
        MerkleTree({}.__getitem__).update("k", SAMPLE_TS, SAMPLE_TS)


@given(entries)
def test_trees_over_disjoint_keys_sum_to_the_tree_of_their_union(
    data: dict[str, Timestamp],
) -> None:
    parts = [Held(), Held(), Held()]
    for n, (k, ts) in enumerate(sorted(data.items())):
        parts[n % 3].put(k, ts)
    whole = held(data).tree
    trees = [p.tree for p in parts]
    for path in prefixes(data) | {""}:
        if len(path) < 3:
            assert summed_buckets(trees, path) == whole.buckets(path)
    assert sum(t.root() for t in trees) & MASK32 == whole.root()


def test_paths_from_a_peer_are_hex_digits_of_the_tree_or_nothing() -> None:
    tree = held({"key-user": SAMPLE_TS}).tree
    for bad in ["0xf", "f_8", " f", "F", "f8b0", "-1", "+f"]:
        assert tree.hash_at(bad) == 0 and tree.buckets(bad) == {} and tree.keys_at(bad) == []
    assert tree.hash_at("f") == tree.hash_at("f8") == tree.hash_at("f8b") == tree.root()
