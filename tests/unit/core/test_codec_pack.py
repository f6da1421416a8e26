"""``codec.pack`` (msgspec) writes exactly what ``msgpack.packb(use_bin_type=True)`` writes."""

from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import given
from hypothesis import strategies as st

from topgun.core.codec import pack, unpack

scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text()
    | st.binary()
)  # fmt: skip
values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text() | st.integers(-5, 5), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(values)
def test_pack_writes_the_bytes_msgpack_writes(value: Any) -> None:
    assert pack(value) == msgpack.packb(value, use_bin_type=True)


@given(values)
def test_pack_round_trips_through_unpack(value: Any) -> None:
    assert pack(unpack(pack(value))) == pack(value)  # bytes: NaN is not equal to itself


def test_a_msgpack_timestamp_in_a_value_round_trips_byte_for_byte() -> None:
    """Found when the store began holding values as msgpack: a client's timestamp value
    (ext -1) could not be encoded, so the admin route could not show it."""
    for ts in (msgpack.Timestamp(1, 2), msgpack.Timestamp(2**40, 0)):
        value = {"at": [ts]}
        assert pack(value) == msgpack.packb(value, use_bin_type=True)
        assert unpack(pack(value)) == value
