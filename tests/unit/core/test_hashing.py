"""FNV-1a over UTF-16 code units and key → partition (reference §3.2-§3.4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topgun.core.hashing import BACKUP_COUNT, PARTITION_COUNT, fnv1a_utf16, partition_id

SAMPLES = Path(__file__).resolve().parents[3] / ".." / "shared" / "reference"
SAMPLES = SAMPLES / "topgun-wire-samples.json"

# Reference §3.4, FNV columns: key → (hash, hex, partition)
WORKED_EXAMPLES = [
    ("key-1", 1474311238, 0x57E03446, 236),
    ("key-0", 1491088857, 0x58E035D9, 245),
    ("test", 2949673445, 0xAFD071E5, 232),
    ("user:42", 795573122, 0x2F6B7B82, 48),
    ("users:abc123", 3636285003, 0xD8BD4E4B, 228),
    ("hello", 1335831723, 0x4F9F2CAB, 95),
    ("", 2166136261, 0x811C9DC5, 199),
    ("\u00e9", 1812687940, 0x6C0B6C44, 105),
    ("\U0001f600", 3409036472, 0xCB31C4B8, 102),
]


def reference_hash(text: str) -> int:
    """Reference §3.3, written independently over explicit UTF-16 code units."""
    units: list[int] = []
    for ch in text:
        cp = ord(ch)
        if cp >= 0x10000:
            cp -= 0x10000
            units += [0xD800 | (cp >> 10), 0xDC00 | (cp & 0x3FF)]
        else:
            units.append(cp)
    h = 0x811C9DC5
    for unit in units:
        h ^= unit
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def test_constants() -> None:
    assert PARTITION_COUNT == 271
    assert BACKUP_COUNT == 1


@pytest.mark.parametrize(("key", "dec", "hexval", "pid"), WORKED_EXAMPLES)
def test_worked_examples(key: str, dec: int, hexval: int, pid: int) -> None:
    assert dec == hexval
    assert fnv1a_utf16(key) == dec
    assert partition_id(key) == pid
    assert reference_hash(key) == dec


def test_sequential_keys_follow_reference_sequence() -> None:
    # §3.4: key-0..key-6 fall into 245, 236, 227, 218, 10, 1, 263
    assert [partition_id(f"key-{i}") for i in range(7)] == [245, 236, 227, 218, 10, 1, 263]


def test_astral_char_counts_as_two_surrogate_units() -> None:
    assert fnv1a_utf16("\U0001f600") == reference_hash("\ud83d\ude00")
    # hashing the code point as a single 32-bit unit would give a different value
    single = ((0x811C9DC5 ^ 0x1F600) * 0x01000193) & 0xFFFFFFFF
    assert fnv1a_utf16("\U0001f600") != single


def test_lone_surrogates_are_hashed_as_code_units() -> None:
    # JS strings may hold lone surrogates; charCodeAt still yields them
    assert fnv1a_utf16("\ud83d") == reference_hash("\ud83d")
    assert fnv1a_utf16("a\udc00b") == reference_hash("a\udc00b")


def test_samples_meta_examples_fnv() -> None:
    if not SAMPLES.is_file():
        pytest.skip(f"wire samples file not found at {SAMPLES}")
    examples = json.loads(SAMPLES.read_text(encoding="utf-8"))["meta"]["partition_hash"]
    assert examples["count"] == PARTITION_COUNT
    fnv = examples["examples_fnv"]
    assert fnv, "examples_fnv must not be empty"
    for key, pid in fnv.items():
        assert partition_id(key) == pid, key


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.text())
def test_partition_id_range_and_definition(key: str) -> None:
    pid = partition_id(key)
    assert 0 <= pid < PARTITION_COUNT
    assert pid == fnv1a_utf16(key) % PARTITION_COUNT
    assert 0 <= fnv1a_utf16(key) <= 0xFFFFFFFF


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x80)))
def test_non_ascii_matches_reference(key: str) -> None:
    assert fnv1a_utf16(key) == reference_hash(key)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="ascii")))
def test_ascii_fast_path_matches_reference(key: str) -> None:
    assert fnv1a_utf16(key) == reference_hash(key)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="ascii")), st.text(min_size=1))
def test_mixed_text_matches_reference(prefix: str, rest: str) -> None:
    key = prefix + rest
    assert fnv1a_utf16(key) == reference_hash(key)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=0xFFFF), max_size=20))
def test_arbitrary_code_units_incl_lone_surrogates(units: list[int]) -> None:
    key = "".join(chr(u) for u in units)
    h = 0x811C9DC5
    for u in units:
        h = ((h ^ u) * 0x01000193) & 0xFFFFFFFF
    assert fnv1a_utf16(key) == h
