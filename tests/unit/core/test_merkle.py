"""The sync Merkle tree: the reference's own numbers, and the rules sums must obey."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from topgun.core.hlc import Timestamp
from topgun.core.merkle import MASK32, MerkleTree, entry_hash, key_path, summed_buckets

# From topgun-wire-samples.json, scenario "single-watch": one record, the reference's answers.
SAMPLE_TS = Timestamp(1795705681661, 0, "bb2f565c-6480-4ba8-adfb-0420546289fe")


def test_reference_root_bucket_and_leaf_path() -> None:
    tree = MerkleTree()
    tree.update("key-user", SAMPLE_TS)
    assert tree.root() == 93402082
    assert tree.buckets("") == {"f": 93402082}
    assert key_path("key-user") == "f8b" and key_path("key-3") == "55e"
    assert tree.keys_at("f8b") == ["key-user"] and tree.is_leaf("f8b")
    assert tree.buckets("f8b") == {} and tree.buckets("zz") == {}


def test_millis_print_as_integers() -> None:
    as_float = Timestamp(1795705681661.0, 0, "n")  # type: ignore[arg-type]
    assert entry_hash("k", as_float) == entry_hash("k", Timestamp(1795705681661, 0, "n"))


keys = st.text(min_size=0, max_size=12)
stamps = st.builds(
    Timestamp, st.integers(0, 2**48), st.integers(0, 2**16), st.sampled_from(["a", "b", "c"])
)
entries = st.dictionaries(keys, stamps, max_size=40)


@given(entries)
def test_root_is_the_sum_of_entry_hashes_and_every_level_adds_up(
    data: dict[str, Timestamp],
) -> None:
    tree = MerkleTree()
    for k, ts in data.items():
        tree.update(k, ts)
    assert tree.root() == sum(entry_hash(k, ts) for k, ts in data.items()) & MASK32
    assert len(tree) == len(data)
    for path in ["", *{key_path(k)[:1] for k in data}, *{key_path(k)[:2] for k in data}]:
        assert tree.hash_at(path) == sum(tree.buckets(path).values()) & MASK32


@given(entries, entries)
def test_updates_replace_and_removals_forget(
    first: dict[str, Timestamp], second: dict[str, Timestamp]
) -> None:
    tree = MerkleTree()
    for k, ts in first.items():
        tree.update(k, ts)
    for k, ts in second.items():
        tree.update(k, ts)
    expected = MerkleTree()
    for k, ts in {**first, **second}.items():
        expected.update(k, ts)
    assert tree.root() == expected.root() and tree.buckets("") == expected.buckets("")
    for k in {**first, **second}:
        tree.remove(k)
    tree.remove("never-there")
    assert tree.root() == 0 and tree.buckets("") == {} and len(tree) == 0


@given(entries)
def test_trees_over_disjoint_keys_sum_to_the_tree_of_their_union(
    data: dict[str, Timestamp],
) -> None:
    parts = [MerkleTree(), MerkleTree(), MerkleTree()]
    whole = MerkleTree()
    for n, (k, ts) in enumerate(sorted(data.items())):
        parts[n % 3].update(k, ts)
        whole.update(k, ts)
    assert summed_buckets(parts, "") == whole.buckets("")
    assert sum(p.root() for p in parts) & MASK32 == whole.root()


def test_paths_from_a_peer_are_hex_digits_of_the_tree_or_nothing() -> None:
    tree = MerkleTree()
    tree.update("key-user", SAMPLE_TS)
    for bad in ["0xf", "f_8", " f", "F", "f8b0", "-1", "+f"]:
        assert tree.hash_at(bad) == 0 and tree.buckets(bad) == {} and tree.keys_at(bad) == []
    assert tree.hash_at("f") == tree.hash_at("f8") == tree.hash_at("f8b") == tree.root()
