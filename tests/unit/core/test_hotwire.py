"""The fast path for write frames never disagrees with the general decoder.

For any frame, ``decode_hot`` either declines (None) or returns exactly the message the
general path builds; it declines everything the general path refuses.
"""

from __future__ import annotations

from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from topgun.core.errors import ProtocolError
from topgun.core.hotwire import HOT_VALUE_DEPTH, decode_hot
from topgun.core.messages import MAX_VALUE_DEPTH, message_from_wire

UNDEFINED = msgpack.ExtType(0, b"")


def pack(obj: Any) -> bytes:
    """msgpack itself, which writes ExtType values as ext (codec.pack writes plain values)."""
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


odd: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.just(UNDEFINED), st.just(msgpack.ExtType(7, b"x")),
    st.integers(-5, 2**54), st.floats(allow_nan=True), st.text(max_size=3), st.just([]),
)  # fmt: skip


def mostly(valid: st.SearchStrategy[Any], *edges: Any) -> st.SearchStrategy[Any]:
    """Valid most of the time, else an edge case or an odd value, so that whole frames are
    often valid but for one field."""
    rare = st.sampled_from(edges) | odd if edges else odd
    return st.one_of(valid, valid, valid, valid, valid, valid, rare)


def fields(required: dict[str, Any], optional: dict[str, Any]) -> st.SearchStrategy[Any]:
    return mostly(st.fixed_dictionaries(required, optional=optional))


whole = st.integers(0, 2**40) | st.integers(0, 2**40).map(float)
millis = mostly(whole, -1, 2**53 + 1, 2.0**53 + 2, 0.5, 1e300)
counter = mostly(st.integers(0, 2**31 - 1), -1, 2**31, 1.5, 2.0**31)
strings = mostly(st.text(max_size=3), "", "x" * 257, "y" * 4097)
stamps = fields({"millis": millis, "counter": counter, "nodeId": strings}, {})
ttl = mostly(st.integers(1, 2**30), 0, 0.5, 10 * 365 * 24 * 3600 * 1000 + 1)
leaves = st.one_of(
    odd, st.binary(max_size=2), st.just(msgpack.Timestamp(1, 2)), st.text(max_size=2)
)
nested = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=2)
        | st.dictionaries(st.text(max_size=2) | st.integers(0, 3), inner, max_size=2)
    ),
    max_leaves=14,
)  # values often nested deeper than the fast path's HOT_VALUE_DEPTH
records = fields({"timestamp": stamps}, {"value": nested, "ttlMs": ttl})
ops = fields(
    {"mapName": strings, "key": strings, "record": records},
    {
        "id": strings, "orRecord": odd, "orTag": strings,
        "opType": mostly(st.sampled_from(["PUT", "REMOVE", "OR_ADD"]), "BOGUS"),
    },
)  # fmt: skip
batches = fields(
    {"ops": mostly(st.lists(ops, max_size=3))},
    {"writeConcern": mostly(st.just("APPLIED"), "NOPE"), "timeout": millis},
)
frames = st.one_of(
    st.fixed_dictionaries({"type": st.just("OP_BATCH"), "payload": batches}),
    st.fixed_dictionaries({"type": st.just("CLIENT_OP"), "payload": ops}),
    st.fixed_dictionaries({"type": st.sampled_from(["PING", "AUTH", "BATCH"]) | odd}),
)


def general(obj: Any) -> Any:
    raw = msgpack.unpackb(
        pack(obj), raw=False, strict_map_key=False, ext_hook=lambda c, d: None if c == 0 else d
    )
    try:
        return message_from_wire(raw)
    except ProtocolError:
        return None


@settings(max_examples=600)
@given(frames)
def test_fast_path_agrees_with_the_general_path_or_declines(obj: dict[str, Any]) -> None:
    hot = decode_hot(pack(obj))
    if hot is not None:
        assert hot == general(obj)


def test_a_valid_batch_takes_the_fast_path() -> None:
    op = {
        "mapName": "m", "key": "k", "opType": "PUT", "id": "1",
        "record": {"value": {"a": [1]}, "timestamp": {"millis": 5.0, "counter": 1, "nodeId": "n"}},
    }  # fmt: skip
    frame = {"type": "OP_BATCH", "payload": {"ops": [op, op]}}
    hot = decode_hot(pack(frame))
    assert hot is not None and hot == message_from_wire(frame)


def test_ops_the_rule_table_refuses_are_left_to_the_general_path() -> None:
    """Found by the hostile-input run: the fast path accepted a REMOVE carrying a value."""
    stamp = {"millis": 5.0, "counter": 1, "nodeId": "n"}
    plain = {"mapName": "m", "key": "k", "record": {"value": 1, "timestamp": stamp}}
    for op in (
        {**plain, "opType": "REMOVE"},  # a removal with a value
        {**plain, "opType": "REMOVE", "record": {"value": {"v": [1]}, "timestamp": stamp}},
        {**plain, "opType": "OR_ADD"},  # an OR op with an LWW record
        {**plain, "writeConcern": "bogus"},  # per-op fields the fast path does not know
        {**plain, "sneaky": 1},
        {**plain, "record": {"value": 1, "timestamp": stamp, "owner": "x"}},
        {**plain, "record": {"value": msgpack.Timestamp(1, 2), "timestamp": stamp}},
    ):
        for frame in (
            {"type": "OP_BATCH", "payload": {"ops": [op]}},
            {"type": "CLIENT_OP", "payload": op},
        ):
            assert decode_hot(pack(frame)) is None, op


def nested_lists(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def test_a_deeper_value_is_left_to_the_general_path_which_takes_it() -> None:
    stamp = {"millis": 5, "counter": 1, "nodeId": "n"}
    for depth, hot in ((HOT_VALUE_DEPTH, True), (HOT_VALUE_DEPTH + 1, False)):
        op = {
            "mapName": "m",
            "key": "k",
            "record": {"value": nested_lists(depth), "timestamp": stamp},
        }
        frame = {"type": "CLIENT_OP", "payload": op}
        assert (decode_hot(pack(frame)) is not None) is hot
        assert general(frame) is not None  # both depths are within MAX_VALUE_DEPTH
    assert HOT_VALUE_DEPTH < MAX_VALUE_DEPTH
