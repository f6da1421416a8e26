"""A partition moved between stores as flat records (migration, repair, replication) arrives
exactly as it was held, values never decoded on the way, msgpack timestamps included."""

from __future__ import annotations

import msgpack

from topgun.core.hashing import fnv1a_utf16, partition_id
from topgun.core.hlc import Timestamp
from topgun.core.record_wire import decode_flat, encode_flat
from topgun.core.records import LWWRecord
from topgun.server.store import PartitionStore

KEY = "key-1"
PID = partition_id(KEY)


def moved(records: dict[str, LWWRecord]) -> PartitionStore:
    source, target = PartitionStore(), PartitionStore()
    for key, rec in records.items():
        source.merge("m", key, rec)
    flats = decode_flat(encode_flat(source.partition_flats(PID)))
    for flat in flats:
        assert target.merge_flat(flat, fnv1a_utf16(flat[1]))
    assert not any(target.merge_flat(flat, fnv1a_utf16(flat[1])) for flat in flats)  # no change
    return target


def test_plain_and_foreign_values_arrive_as_held() -> None:
    stamp = msgpack.Timestamp(1_700_000_000, 123_456_789)
    records = {
        KEY: LWWRecord({"a": [1, "x"], "b": None}, Timestamp(10, 1, "n1"), 60_000),
    }
    target = moved(records)
    assert target.get("m", KEY) == records[KEY]
    foreign = {KEY: LWWRecord({"at": stamp}, Timestamp(11, 0, "n2"))}
    got = moved(foreign).get("m", KEY)
    assert got == foreign[KEY] and got is not None and got.value["at"].nanoseconds == 123_456_789


def test_a_tombstone_moves_as_a_tombstone() -> None:
    target = moved({KEY: LWWRecord(None, Timestamp(12, 0, "n1"))})
    rec = target.get("m", KEY)
    assert rec is not None and rec.is_tombstone


def test_the_trees_of_both_stores_agree() -> None:
    records = {KEY: LWWRecord(1, Timestamp(10, 1, "n1"))}
    source = PartitionStore()
    source.merge("m", KEY, records[KEY])
    target = PartitionStore()
    tree = target.tree(PID, "m")  # kept current by merge_flat from here on
    for flat in decode_flat(encode_flat(source.partition_flats(PID))):
        target.merge_flat(flat, fnv1a_utf16(flat[1]))
    assert tree.root() == source.tree(PID, "m").root() != 0
