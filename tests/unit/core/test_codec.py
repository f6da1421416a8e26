"""Frames ⇄ messages: msgpack/JSON, BATCH envelopes and graded errors (§1.2, §1.4, §1.5)."""

from __future__ import annotations

import json
import struct
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from topgun.core import codec
from topgun.core import messages as m
from topgun.core.codec import MAX_BATCH_COUNT, MAX_BATCH_DEPTH, decode_frame, encode, encode_batch
from topgun.core.errors import ProtocolError
from topgun.core.hlc import Timestamp
from topgun.core.records import LWWRecord

from .strategies import MESSAGE_STRATEGIES, any_message, json_values

MILLIS = 1795705444775
TS = Timestamp(MILLIS, 0, "c1")
REC = LWWRecord({"value": 1}, TS)
U32 = struct.Struct("<I")


def f64(value: float) -> bytes:
    return b"\xcb" + struct.pack(">d", value)


def batch_frame(data: Any, count: int = 0) -> bytes:
    return codec.pack({"type": "BATCH", "count": count, "data": data})


def raw_batch(*chunks: bytes, count: int | None = None) -> bytes:
    n = len(chunks) if count is None else count
    return U32.pack(n) + b"".join(U32.pack(len(c)) + c for c in chunks)


def only(frame: bytes | str) -> m.Message | ProtocolError:
    items = decode_frame(frame)
    assert len(items) == 1, items
    return items[0]


# --- round trips --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", list(MESSAGE_STRATEGIES), ids=lambda c: c.__name__)
@settings(derandomize=True, max_examples=25, deadline=None)
@given(data=st.data())
def test_encode_decode_round_trip(cls: type[m.Message], data: st.DataObject) -> None:
    msg = data.draw(MESSAGE_STRATEGIES[cls])
    assert decode_frame(encode(msg)) == [msg]


@settings(derandomize=True, max_examples=60, deadline=None)
@given(any_message)
def test_json_text_round_trip(msg: m.Message) -> None:
    wire = msg.to_wire()
    try:
        text = json.dumps(wire, allow_nan=False)
    except (TypeError, ValueError, OverflowError):
        return  # bytes / non-finite values have no JSON form
    if json.loads(text) != wire:
        return  # e.g. a float that JSON turns into an int
    assert decode_frame(text) == [msg]


def test_json_in_binary_frame_is_accepted() -> None:
    # the reference server retries undecodable msgpack as UTF-8 JSON (§1.4)
    assert only(b'{"type":"AUTH","token":"x"}') == m.Auth("x")


def test_pack_rules() -> None:
    assert codec.unpack(codec.pack({"b": b"\x00\x01", "s": "é"})) == {"b": b"\x00\x01", "s": "é"}
    assert codec.pack("x")[0] == 0xA1  # str, not bin
    assert codec.pack(b"x")[0] == 0xC4  # bin8


# --- wire types -----------------------------------------------------------------------------


def test_ping_timestamp_is_float64() -> None:
    out = encode(m.Ping(1795705525501))
    assert f64(1795705525501.0) in out
    assert msgpack.unpackb(out) == {"type": "PING", "timestamp": 1795705525501.0}
    # small values too: epoch-ms fields are always float64
    assert f64(5.0) in encode(m.Ping(5))


def test_hlc_millis_is_float64_and_counter_int() -> None:
    out = encode(m.OpBatch((m.ClientOp("map", "k", REC, op_type="PUT", id="1"),)))
    assert f64(float(MILLIS)) in out
    assert b"\xcb\x42\x7a\x21\x86\x29\x9a\x70\x00" in out  # same bytes as the TS capture
    assert b"\xa7counter\x00" in out
    assert b"\xd3" not in out and b"\xcf" not in out  # never int64/uint64


def test_other_epoch_fields_are_float64() -> None:
    assert f64(1.0) in encode(m.Pong(1, 2)) and f64(2.0) in encode(m.Pong(1, 2))
    assert f64(5000.0) in encode(m.OpBatch((), timeout=5000))
    event = m.ServerBatchEvent((m.ServerEventPayload("m", "k", "PUT", REC),), TS.to_wire())
    assert encode(event).count(f64(float(MILLIS))) == 2


def test_absent_optionals_are_omitted_on_encode() -> None:
    op = m.ClientOp("map", "k", REC)
    decoded = msgpack.unpackb(encode(m.OpBatch((op,))))
    assert decoded["payload"] == {"ops": [{"mapName": "map", "key": "k", "record": REC.to_wire()}]}
    assert b"\xc0" not in encode(m.OpBatch((op,)))  # no nil anywhere
    assert b"\xc0" not in encode(m.AuthFail("x"))
    assert b"\xc0" not in encode(m.OpAck("1"))
    assert b"\xc0" not in encode(m.QuerySub("q", "m"))


# Frames with ext types are built with msgpack itself: codec.pack (msgspec) writes plain
# values only and would write an ExtType as the tuple it is.
def _undefined() -> msgpack.ExtType:
    return msgpack.ExtType(0, b"\x00")


def test_ext0_undefined_decodes_as_absent() -> None:
    op = {
        "mapName": "test",
        "opType": "PUT",
        "key": "key-1",
        "record": REC.to_wire(),
        "orRecord": _undefined(),
        "orTag": _undefined(),
        "id": "1",
    }
    frame = msgpack.packb({"type": "OP_BATCH", "payload": {"ops": [op], "timeout": _undefined()}})
    assert b"\xd4\x00\x00" in frame
    assert only(frame) == m.OpBatch((m.ClientOp("test", "key-1", REC, "PUT", "1"),))
    assert codec.unpack(b"\xd4\x00\x00") is None


def test_ext0_in_required_field_is_non_fatal_error() -> None:
    item = only(msgpack.packb({"type": "AUTH", "token": _undefined()}))
    assert isinstance(item, ProtocolError) and not item.fatal and item.msg_type == "AUTH"


def test_other_ext_types_are_refused_non_fatally() -> None:
    item = only(msgpack.packb({"type": "AUTH", "token": msgpack.ExtType(5, b"xx")}))
    assert isinstance(item, ProtocolError) and not item.fatal


# --- BATCH --------------------------------------------------------------------------------


def test_batch_round_trip() -> None:
    msgs = [m.OpAck("1"), m.Pong(1, 2), m.AuthAck()]
    frame = encode_batch(encode(x) for x in msgs)
    decoded = msgpack.unpackb(frame)
    assert decoded["type"] == "BATCH" and decoded["count"] == 3
    assert isinstance(decoded["data"], bytes)
    assert decoded["data"][:4] == U32.pack(3)
    assert decode_frame(frame) == msgs


def test_batch_layout_matches_reference_example() -> None:
    # §1.5: de0003 'type' 'BATCH' 'count' 02 'data' c453 02000000 23000000 <35-byte OP_ACK> ...
    ack, pong = encode(m.OpAck("1")), encode(m.Pong(1, 2))
    data = msgpack.unpackb(encode_batch([ack, pong]))["data"]
    assert data == b"\x02\x00\x00\x00" + U32.pack(len(ack)) + ack + U32.pack(len(pong)) + pong


@settings(derandomize=True, max_examples=40, deadline=None)
@given(st.lists(any_message, max_size=5))
def test_batch_round_trip_any(msgs: list[m.Message]) -> None:
    assert decode_frame(encode_batch(encode(x) for x in msgs)) == msgs


def test_empty_batch() -> None:
    assert decode_frame(encode_batch([])) == []


def test_nested_batch_is_flattened_in_order() -> None:
    a, b, c, d = m.OpAck("1"), m.OpAck("2"), m.OpAck("3"), m.AuthAck()
    inner = encode_batch([encode(b), encode(c)])
    frame = encode_batch([encode(a), inner, encode(d)])
    assert decode_frame(frame) == [a, b, c, d]


def _nested(levels: int, msg: m.Message) -> bytes:
    frame = encode(msg)
    for _ in range(levels):
        frame = encode_batch([frame])
    return frame


def test_batch_nesting_limit() -> None:
    assert decode_frame(_nested(MAX_BATCH_DEPTH, m.AuthAck())) == [m.AuthAck()]
    item = only(_nested(MAX_BATCH_DEPTH + 1, m.AuthAck()))
    assert isinstance(item, ProtocolError) and not item.fatal and item.msg_type == "BATCH"


@pytest.mark.parametrize("cut", [1, 3, 10])
def test_truncated_batch_data_is_an_item(cut: int) -> None:
    data = raw_batch(encode(m.AuthAck()), encode(m.OpAck("1")))
    item = only(batch_frame(data[:-cut], 2))
    assert isinstance(item, ProtocolError)
    assert not item.fatal and item.msg_type == "BATCH"


def test_truncated_length_prefix() -> None:
    data = raw_batch(encode(m.AuthAck()), count=2) + b"\x01\x00"
    item = only(batch_frame(data, 2))
    assert isinstance(item, ProtocolError) and item.msg_type == "BATCH"


@pytest.mark.parametrize(
    "data",
    [None, "text", 5, b"", b"\x01\x00", [b"\x00\x00\x00\x00"]],
    ids=["nil", "str", "int", "empty", "short", "list"],
)
def test_bad_batch_data_is_an_item(data: Any) -> None:
    item = only(batch_frame(data))
    assert isinstance(item, ProtocolError) and not item.fatal and item.msg_type == "BATCH"


def test_batch_count_over_limit() -> None:
    item = only(batch_frame(U32.pack(MAX_BATCH_COUNT + 1)))
    assert isinstance(item, ProtocolError) and item.msg_type == "BATCH"
    assert str(MAX_BATCH_COUNT) in str(item)
    # at the limit the count is accepted (and then the data is short)
    item = only(batch_frame(U32.pack(MAX_BATCH_COUNT)))
    assert isinstance(item, ProtocolError) and "truncated" in str(item)


def test_batch_with_bad_chunk_keeps_the_good_ones() -> None:
    data = raw_batch(encode(m.AuthAck()), b"\xc1", b"\x92\x01\x02", encode(m.OpAck("1")))
    items = decode_frame(batch_frame(data, 4))
    assert len(items) == 4
    assert items[0] == m.AuthAck()
    assert isinstance(items[1], ProtocolError)  # undecodable chunk: reported, not raised
    assert isinstance(items[2], ProtocolError) and not items[2].fatal  # a list, not a map
    assert items[3] == m.OpAck("1")


def test_batch_with_invalid_message_keeps_the_others() -> None:
    data = raw_batch(codec.pack({"type": "AUTH", "token": 1}), encode(m.AuthAck()))
    items = decode_frame(batch_frame(data, 2))
    assert isinstance(items[0], ProtocolError) and items[0].msg_type == "AUTH"
    assert items[1] == m.AuthAck()


# --- errors ---------------------------------------------------------------------------------


def test_truncated_msgpack_is_fatal() -> None:
    frame = encode(m.Auth("token"))
    for cut in range(1, len(frame)):
        with pytest.raises(ProtocolError) as info:
            decode_frame(frame[:cut])
        assert info.value.fatal


@pytest.mark.parametrize(
    "frame",
    [b"", b"\xc1", b"\xff\xfe\xfd", b"\x81\xa4type", b"\x93\x01\x02", b"\xde\x00\x05"],
)
def test_garbage_bytes_are_fatal(frame: bytes) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_frame(frame)
    assert info.value.fatal


def test_trailing_bytes_after_a_message_are_fatal() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_frame(encode(m.AuthAck()) + b"\x00")
    assert info.value.fatal


@pytest.mark.parametrize("text", ["", "not json", "{", '{"type": "AUTH",}', "[" * 100_000])
def test_text_frame_that_is_not_json_is_fatal(text: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode_frame(text)
    assert info.value.fatal


def test_wrong_typed_field_is_a_non_fatal_item() -> None:
    for frame in (codec.pack({"type": "PING", "timestamp": "x"}), '{"type":"PING"}'):
        item = only(frame)
        assert isinstance(item, ProtocolError)
        assert not item.fatal and item.msg_type == "PING"


def test_unknown_type_is_a_non_fatal_item() -> None:
    item = only(codec.pack({"type": "FROBNICATE", "payload": {}}))
    assert isinstance(item, ProtocolError)
    assert not item.fatal and item.msg_type == "FROBNICATE"


def test_known_but_unsupported_type() -> None:
    body = {"type": "TOPIC_SUB", "payload": {"topic": "news"}}
    assert only(codec.pack(body)) == m.Unsupported("TOPIC_SUB", body)
    assert only(json.dumps(body)) == m.Unsupported("TOPIC_SUB", body)


@pytest.mark.parametrize("value", [[1, 2], "AUTH", None, 42, 1.5, True, b"x"])
def test_non_map_top_level_is_a_non_fatal_item(value: Any) -> None:
    item = only(codec.pack(value))
    assert isinstance(item, ProtocolError) and not item.fatal


@pytest.mark.parametrize("value", ["[1, 2]", '"AUTH"', "null", "42"])
def test_non_object_json_is_a_non_fatal_item(value: str) -> None:
    item = only(value)
    assert isinstance(item, ProtocolError) and not item.fatal


def test_op_with_empty_map_name() -> None:
    op = {"mapName": "", "key": "k", "record": REC.to_wire()}
    item = only(codec.pack({"type": "OP_BATCH", "payload": {"ops": [op]}}))
    assert isinstance(item, m.OpBatch) and isinstance(item.ops[0], m.InvalidOp)


def test_op_key_length_limit() -> None:
    def frame(key: str) -> bytes:
        op = {"mapName": "m", "key": key, "record": REC.to_wire()}
        return codec.pack({"type": "OP_BATCH", "payload": {"ops": [op]}})

    assert isinstance(only(frame("k" * m.MAX_KEY_LENGTH)), m.OpBatch)
    item = only(frame("k" * (m.MAX_KEY_LENGTH + 1)))
    assert isinstance(item, m.OpBatch) and isinstance(item.ops[0], m.InvalidOp)


def test_non_string_map_keys_do_not_crash() -> None:
    item = only(codec.pack({1: "x", "type": "AUTH", "token": "t"}))
    assert item == m.Auth("t")


# --- fuzz ---------------------------------------------------------------------------------


def _decode_never_crashes(frame: bytes | str) -> None:
    try:
        items = decode_frame(frame)
    except ProtocolError as exc:
        assert exc.fatal
        return
    for item in items:
        assert isinstance(item, m.Message | ProtocolError)


@settings(derandomize=True, max_examples=400, deadline=None)
@given(st.binary(max_size=64))
def test_fuzz_arbitrary_bytes(frame: bytes) -> None:
    _decode_never_crashes(frame)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.text(max_size=64))
def test_fuzz_arbitrary_text(frame: str) -> None:
    _decode_never_crashes(frame)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(any_message, st.data())
def test_fuzz_mutated_frames(msg: m.Message, data: st.DataObject) -> None:
    frame = bytearray(encode(msg))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(frame) - 1))
        frame[i] = data.draw(st.integers(0, 255))
    _decode_never_crashes(bytes(frame))
    _decode_never_crashes(bytes(frame[: data.draw(st.integers(0, len(frame)))]))


wire_types = st.sampled_from([*m.MESSAGE_TYPES, "BATCH", "SYNC_INIT", "???"])
fields = st.sampled_from(
    [
        "payload", "token", "timestamp", "serverTime", "error", "code", "retryAfter", "ops",
        "mapName", "key", "record", "opType", "id", "lastId", "results", "queryId", "query",
        "version", "nodes", "partitions", "partitionCount", "generatedAt", "events", "data",
        "count", "value", "ttlMs", "millis", "counter", "nodeId", "changeType", "type",
        "hint", "currentVersion", "where", "sort", "limit", "hasMore", "eventType", "status",
        "partitionId", "ownerNodeId", "backupNodeIds", "endpoints", "success", "opId",
    ]
)  # fmt: skip
shaped = st.recursive(
    json_values | st.sampled_from([float("nan"), float("inf"), -1, 2**53 + 1, "PUT"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(fields, inner, max_size=5),
    max_leaves=20,
)


@settings(
    derandomize=True, max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(wire_types, st.dictionaries(fields, shaped, max_size=6))
def test_fuzz_shaped_messages(msg_type: str, body: dict[str, Any]) -> None:
    body["type"] = msg_type
    _decode_never_crashes(codec.pack(body))
