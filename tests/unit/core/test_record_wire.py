"""Records between nodes: what goes in comes out, and a blob that breaks a rule is refused."""

from __future__ import annotations

from typing import Any

import msgpack
import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from topgun.core.codec import pack
from topgun.core.hlc import Timestamp
from topgun.core.record_wire import Triple, decode_flat, decode_records, encode_flat, encode_records
from topgun.core.records import MAX_TTL_MS, LWWRecord

scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text()
values = st.recursive(
    scalars | st.binary(),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids),
    max_leaves=12,
)
records = st.builds(
    LWWRecord,
    values,
    st.builds(Timestamp, st.integers(0, 2**53), st.integers(0, 2**31 - 1), st.text(max_size=20)),
    st.none() | st.integers(1, MAX_TTL_MS),
)
triples = st.lists(
    st.tuples(st.text(min_size=1, max_size=20), st.text(max_size=30), records), max_size=20
)


def same(a: list[Triple], b: list[Triple]) -> bool:
    """Equal, NaN values included (NaN != NaN, but its bytes match)."""
    return pack(a) == pack(b)


@given(triples)
def test_plain_records_come_back_as_they_went(recs: list[Triple]) -> None:
    blob = encode_records(recs)
    assert blob[:1] == b"\x00"
    assert same(decode_records(blob), recs)


@given(triples)
def test_records_for_the_store_keep_their_values_encoded(recs: list[Triple]) -> None:
    """``decode_flat`` reads the same blob with each value as its bytes, and those bytes
    travel on unchanged: encoded again, the blob is the one that came."""
    blob = encode_records(recs)
    flats = decode_flat(blob)
    assert [bytes(f[2]) for f in flats] == [msgspec.msgpack.encode(r.value) for _, _, r in recs]
    assert [(f[0], f[1], *f[3:]) for f in flats] == [
        (n, k, *r.timestamp, r.ttl_ms) for n, k, r in recs
    ]
    assert encode_flat(flats) == blob


def test_a_value_holding_a_msgpack_timestamp_is_kept_to_the_nanosecond() -> None:
    stamp = msgpack.Timestamp(1_700_000_000, 123_456_789)
    recs = [("m", "k", LWWRecord({"at": [stamp]}, Timestamp(5, 0, "n"), 60_000))]
    blob = encode_records(recs)
    assert blob[:1] == b"\x01"
    back = decode_records(blob)
    assert back == recs and back[0][2].value["at"][0].nanoseconds == 123_456_789
    assert decode_flat(blob) == [("m", "k", {"at": [stamp]}, 5, 0, "n", 60_000)]  # decoded


def flat(**change: Any) -> list[Any]:
    item = {"map": "m", "key": "k", "value": 1, "millis": 5, "counter": 0, "node": "n"}
    item |= change
    return [*item.values(), change.get("ttl")]


BAD = [
    flat(map=""),
    flat(map="m" * 257),
    flat(key=7),
    flat(key="k" * 4097),
    flat(millis=-1),
    flat(millis=2**53 + 1),
    flat(millis=1.5),
    flat(millis=True),
    flat(counter=2**31),
    flat(node="n" * 257),
    flat(node=None),
    flat(ttl=0),
    flat(ttl=MAX_TTL_MS + 1),
    flat(ttl="soon"),
    [1, 2, 3],
]


DECODERS = [decode_records, decode_flat]


@pytest.mark.parametrize("item", BAD)
@pytest.mark.parametrize("tag", [b"\x00", b"\x01"])
@pytest.mark.parametrize("decode", DECODERS)
def test_a_record_that_breaks_a_rule_refuses_the_blob(
    item: list[Any], tag: bytes, decode: Any
) -> None:
    good = flat()
    with pytest.raises(ValueError):
        decode(tag + pack([good, item]))
    assert decode_records(tag + pack([good])) == [("m", "k", LWWRecord(1, Timestamp(5, 0, "n")))]
    assert len(decode_flat(tag + pack([good]))) == 1


@pytest.mark.parametrize(
    "raw",
    [
        None, b"", [["m", "k", {}]], b"\x02" + pack([]), b"\x00\xc1", b"\x00" + b"\x91" * 5000,
        b"\x00" + pack([flat()])[:-3] + b"\x85\xa1x",  # a value cut short inside the blob
    ],
)  # fmt: skip
@pytest.mark.parametrize("decode", DECODERS)
def test_what_is_no_blob_is_refused(raw: object, decode: Any) -> None:
    with pytest.raises(ValueError):
        decode(raw)
