"""Held records (topgun.core.packed): same records back, same LWW order as Timestamp."""

from __future__ import annotations

from typing import Any

import msgpack
import msgspec
from hypothesis import given
from hypothesis import strategies as st

from topgun.core.hlc import Timestamp
from topgun.core.packed import RecordPacker
from topgun.core.records import MAX_TTL_MS, LWWRecord

stamps = st.builds(
    Timestamp,
    st.integers(0, 2**53),
    st.integers(0, 2**31 - 1),
    st.sampled_from(["a", "b", "node-1", "node-10", "ü", ""]),
)
values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
records = st.builds(LWWRecord, values, stamps, st.none() | st.integers(1, MAX_TTL_MS))


def pack(p: RecordPacker, rec: LWWRecord) -> bytes:
    return p.pack(rec.value, *rec.timestamp, rec.ttl_ms)


@given(records)
def test_a_held_record_reads_back_equal(rec: LWWRecord) -> None:
    p = RecordPacker()
    held = pack(p, rec)
    assert p.unpack(held) == rec
    assert p.timestamp(held) == rec.timestamp


@given(records)
def test_a_value_kept_encoded_is_held_as_its_bytes(rec: LWWRecord) -> None:
    """A peer's blob holds values as bytes: held as they came, handed out the same way."""
    p = RecordPacker()
    raw = msgspec.msgpack.encode(rec.value)
    held = p.pack(msgspec.Raw(raw), *rec.timestamp, rec.ttl_ms)
    assert held == pack(p, rec)
    assert p.unpack(held) == rec
    value, *rest = p.unpack_flat(held)
    assert bytes(value) == raw and tuple(rest) == (*rec.timestamp, rec.ttl_ms)


@given(stamps, stamps)
def test_newer_is_the_timestamp_order(a: Timestamp, b: Timestamp) -> None:
    p = RecordPacker()
    held = pack(p, LWWRecord("v", b))
    assert p.newer(*a, held) is (a > b)


def test_node_ids_are_held_once() -> None:
    p = RecordPacker()
    for i in range(100):
        pack(p, LWWRecord(i, Timestamp(i, 0, "node-" + str(i % 3))))
    assert p.node_ids == 3


def test_a_tombstone_stays_a_tombstone() -> None:
    p = RecordPacker()
    rec = p.unpack(pack(p, LWWRecord(None, Timestamp(5, 1, "n"))))
    assert rec.is_tombstone and rec.ttl_ms is None


def test_a_value_holding_a_msgpack_timestamp_comes_back_as_it_arrived() -> None:
    packer = RecordPacker()
    ts = msgpack.Timestamp(1_700_000_000, 123_456_789)  # nanoseconds a datetime cannot keep
    for ttl in (None, 5000):
        record = LWWRecord({"at": ts, "n": 1}, Timestamp(10, 2, "writer"), ttl)
        held = pack(packer, record)
        assert packer.unpack(held) == record
        assert packer.unpack_flat(held)[0] == record.value  # decoded: only msgpack keeps it
