"""TopGun's Rust server 2.2.0 on the wire: the frames the project recorded from it
(``tests/fixtures``, written by ``scripts/capture-wire-samples``), decoded by our codec, our
frames re-encoded byte for byte, and our encoding of what our server sends too compared with
the Rust server's, difference by named difference.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgpack
import pytest

from tests.unit.core.wire_compare import message_type, normalise_ours, strict_equal
from topgun.core import messages as m
from topgun.core.codec import decode_frame, encode, encode_batch
from topgun.core.errors import ProtocolError
from topgun.core.hashing import PARTITION_COUNT
from topgun.core.merkle import DEPTH, MASK32, entry_hash, key_path
from topgun.core.sync_messages import SyncRespBuckets, SyncRespLeaf
from topgun.harness.wire_fixture import (
    CLIENT_TO_SERVER,
    SERVER_TO_CLIENT,
    decoded,
    frame_data,
    render,
    rust_fixture_path,
)

SERVER_VERSION = "2.2.0"
FIXTURE: dict[str, Any] = json.loads(rust_fixture_path(SERVER_VERSION).read_text(encoding="utf-8"))
STEPS: list[dict[str, Any]] = FIXTURE["steps"]
FRAMES = [(step, frame) for step in STEPS for frame in step["frames"]]
SERVER_FRAMES = [(s, f) for s, f in FRAMES if f["direction"] == SERVER_TO_CLIENT]
OUR_FRAMES = [(s, f) for s, f in FRAMES if f["direction"] == CLIENT_TO_SERVER and f["ours"]]

# What we send, and what the Rust server answers to it.
ANSWERS = {
    "AUTH": {"AUTH_ACK"},
    "PING": {"PONG"},
    "OP_BATCH": {"OP_ACK"},
    "CLIENT_OP": {"OP_ACK"},
    "PARTITION_MAP_REQUEST": {"PARTITION_MAP"},
    "QUERY_SUB": {"QUERY_RESP"},
    "SYNC_INIT": {"SYNC_RESP_ROOT"},
    "MERKLE_REQ_BUCKET": {"SYNC_RESP_BUCKETS", "SYNC_RESP_LEAF"},
}
# Server messages that our server sends too.
WE_SEND_TOO = {
    "AUTH_REQUIRED", "AUTH_ACK", "AUTH_FAIL", "PONG", "OP_ACK", "QUERY_RESP", "QUERY_UPDATE",
    "SERVER_EVENT", "SYNC_RESP_ROOT", "SYNC_RESP_BUCKETS", "SYNC_RESP_LEAF", "PARTITION_MAP",
}  # fmt: skip
BYTE_EXACT = {"AUTH_REQUIRED", "AUTH_FAIL", "OP_ACK", "SYNC_RESP_BUCKETS"}
EPOCH_MS_KEYS = frozenset({"timestamp", "serverTime", "millis", "generatedAt"})
# The differences between the Rust server's frame and ours, by message type:
#  ours:float-ms:<key> epoch ms: the Rust server writes integers, we write float64 (as the
#                      TypeScript reference does; TS peers turn msgpack int64 into BigInt)
#  rust:<key>=nil      the Rust server writes an absent optional field as nil, we omit it
#  rust:<key>          a field the Rust server adds that our server does not send
#  ours:type           QUERY_UPDATE's change type under "type" too, for the snapshot client
ALLOWED = {
    "AUTH_ACK": {"rust:userId"},
    "PONG": {"ours:float-ms:timestamp", "ours:float-ms:serverTime"},
    "QUERY_RESP": {"rust:merkleRootHash"},
    "QUERY_UPDATE": {"ours:type"},
    "SERVER_EVENT": {"ours:float-ms:millis", "rust:ttlMs=nil"},
    "SYNC_RESP_ROOT": {"ours:float-ms:millis"},
    "SYNC_RESP_LEAF": {"ours:float-ms:millis", "rust:ttlMs=nil"},
    "PARTITION_MAP": {"ours:float-ms:generatedAt"},
}
RUST_EXTRAS = {"AUTH_ACK": "userId", "QUERY_RESP": "merkleRootHash"}


def frame_id(item: tuple[dict[str, Any], dict[str, Any]]) -> str:
    step, frame = item
    return f"{step['step']}-{frame['connection']}-{frame['type']}"


def answers(step: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in step["frames"] if f["direction"] == SERVER_TO_CLIENT]


def step_named(title: str) -> dict[str, Any]:
    (step,) = [s for s in STEPS if s["step"] == title]
    return step


def comparable(value: Any, applied: list[str], *, ours: bool) -> Any:
    """``value`` with the named differences taken out (recorded in ``applied``)."""
    if isinstance(value, list):
        return [comparable(v, applied, ours=ours) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        if not ours and key == "ttlMs" and item is None:
            applied.append("rust:ttlMs=nil")
            continue
        if ours and key in EPOCH_MS_KEYS and isinstance(item, float):
            assert item.is_integer(), f"{key}: {item} is not whole milliseconds"
            applied.append(f"ours:float-ms:{key}")
            out[key] = int(item)
        else:
            out[key] = comparable(item, applied, ours=ours)
    return out


# --- the capture itself ---------------------------------------------------------------------


def test_header_says_what_was_captured_and_under_which_licence() -> None:
    server = FIXTURE["server"]
    assert server["version"] == SERVER_VERSION
    assert server["package"] == f"@topgunbuild/server-linux-x64@{SERVER_VERSION}"
    assert server["license"] == "Apache-2.0"
    assert "github.com/TopGunBuild/topgun" in server["source"]
    assert re.fullmatch(r"[0-9a-f]{64}", server["sha256"])
    assert FIXTURE["captured_by"] == "scripts/capture-wire-samples"
    assert FIXTURE["how"] and FIXTURE["captured_at"]


def test_the_capture_covers_the_conversation() -> None:
    sent = {f["type"] for _, f in OUR_FRAMES}
    received = {f["type"] for _, f in SERVER_FRAMES}
    assert set(ANSWERS) | {"QUERY_UNSUB", "BATCH"} <= sent
    assert received >= WE_SEND_TOO
    assert not [s["step"] for s in STEPS if "missing" in s], "a re-capture lost answers"


@pytest.mark.parametrize("item", FRAMES, ids=frame_id)
def test_raw_bytes_and_decoded_rendering_agree(item: tuple[dict[str, Any], Any]) -> None:
    _, frame = item
    fields = {"direction", "connection", "frame", "type", "decoded"}
    fields |= {"raw_b64"} if frame["frame"] == "binary" else {"text"}
    fields |= {"ours"} if frame["direction"] == CLIENT_TO_SERVER else set()
    assert set(frame) == fields
    assert render(decoded(frame_data(frame))) == frame["decoded"]


# --- decoding what the Rust server sends ----------------------------------------------------


@pytest.mark.parametrize("item", SERVER_FRAMES, ids=frame_id)
def test_every_server_frame_decodes(item: tuple[dict[str, Any], Any]) -> None:
    _, frame = item
    items = decode_frame(frame_data(frame))
    assert not [i for i in items if isinstance(i, ProtocolError)], items
    assert [message_type(i) for i in items] == [frame["type"]]


@pytest.mark.parametrize("item", SERVER_FRAMES, ids=frame_id)
def test_our_encoding_of_what_our_server_sends_too(item: tuple[dict[str, Any], Any]) -> None:
    _, frame = item
    kind = frame["type"]
    assert kind in WE_SEND_TOO
    raw = frame_data(frame)
    (msg,) = decode_frame(raw)
    ours = encode(msg)
    if kind in BYTE_EXACT:
        assert ours == raw
    applied: list[str] = []
    theirs = comparable(msgpack.unpackb(raw, raw=False), applied, ours=False)
    extra = RUST_EXTRAS.get(kind)
    if extra is not None:
        del (theirs if extra in theirs else theirs["payload"])[extra]
        applied.append(f"rust:{extra}")
    mine, ours_applied = normalise_ours(msgpack.unpackb(ours, raw=False), keep="changeType")
    strict_equal(comparable(mine, applied, ours=True), theirs)
    assert set(applied + ours_applied) <= ALLOWED.get(kind, set())


# --- what we send, and what the Rust server makes of it -------------------------------------


@pytest.mark.parametrize("item", OUR_FRAMES, ids=frame_id)
def test_our_frames_decode_and_reencode_byte_for_byte(item: tuple[dict[str, Any], Any]) -> None:
    _, frame = item
    raw = frame_data(frame)
    items = decode_frame(raw)
    assert not [i for i in items if isinstance(i, ProtocolError)], items
    messages = [i for i in items if isinstance(i, m.Message)]
    if frame["type"] == "BATCH":
        assert encode_batch(encode(i) for i in messages) == raw
    else:
        assert [message_type(i) for i in messages] == [frame["type"]]
        assert encode(messages[0]) == raw


@pytest.mark.parametrize("kind", sorted(ANSWERS))
def test_the_rust_server_answers_what_we_send(kind: str) -> None:
    steps = [s for s, f in OUR_FRAMES if f["type"] == kind]
    answered = [s for s in steps if {f["type"] for f in answers(s)} & ANSWERS[kind]]
    assert answered, f"no {ANSWERS[kind]} to our {kind} in {[s['step'] for s in steps]}"


def test_ping_millis_must_be_whole() -> None:
    for _, frame in OUR_FRAMES:
        if frame["type"] == "PING":
            raw = frame_data(frame)
            ts = msgpack.unpackb(raw)["timestamp"]
            assert isinstance(ts, float) and ts.is_integer(), ts
    for title in ("PING, whole float64 millis", "PING, integer millis"):
        step = step_named(title)
        (ping,) = [f for f in step["frames"] if f["direction"] == CLIENT_TO_SERVER]
        (pong,) = answers(step)
        assert pong["type"] == "PONG"
        assert pong["decoded"]["timestamp"] == ping["decoded"]["timestamp"]
        (msg,) = decode_frame(frame_data(pong))
        assert isinstance(msg, m.Pong) and msg.timestamp == ping["decoded"]["timestamp"]
    # the fraction our client used to send makes the server drop the PING without a word
    fractional = step_named("PING, fractional float64 millis")
    assert not answers(fractional) and "closed" not in fractional
    assert not answers(step_named("PING before AUTH"))


def test_writes_are_acknowledged_by_last_id() -> None:
    step = step_named("OP_BATCH")
    (batch,) = [f for f in step["frames"] if f["direction"] == CLIENT_TO_SERVER]
    (ack,) = answers(step)
    (msg,) = decode_frame(frame_data(ack))
    assert isinstance(msg, m.OpAck)
    assert msg.last_id == batch["decoded"]["payload"]["ops"][-1]["id"]
    assert msg.results is None and msg.achieved_level == "APPLIED"


def test_live_query_sees_enter_and_leave() -> None:
    updates = [
        msg
        for title in ("OP_BATCH from b, writeConcern + timeout", "REMOVE from b")
        for f in answers(step_named(title))
        if f["type"] == "QUERY_UPDATE"
        for msg in decode_frame(frame_data(f))
    ]
    assert [(u.key, u.change_type) for u in updates if isinstance(u, m.QueryUpdate)] == [
        ("red-1", "ENTER"),
        ("red-1", "LEAVE"),
    ]


def test_merkle_tree_is_ours() -> None:
    """The leaf holding a key, and the bucket hash over it, are those our tree computes."""
    walk = [
        msg
        for s in STEPS
        if s["step"].startswith("MERKLE_REQ_BUCKET")
        for f in answers(s)
        for msg in decode_frame(frame_data(f))
    ]
    *levels, leaf = walk
    assert isinstance(leaf, SyncRespLeaf) and len(leaf.path) == DEPTH and leaf.records
    parent = levels[-1]
    assert isinstance(parent, SyncRespBuckets) and parent.path == leaf.path[:-1]
    total = 0
    for key, record in leaf.records:
        assert key_path(key) == leaf.path
        total += entry_hash(key, record.timestamp)
    assert parent.buckets[leaf.path[-1]] == total & MASK32


def test_partition_map_of_a_one_node_cluster() -> None:
    (frame,) = answers(step_named("PARTITION_MAP_REQUEST"))
    (msg,) = decode_frame(frame_data(frame))
    assert isinstance(msg, m.PartitionMap)
    table = msg.table
    assert table.partition_count == PARTITION_COUNT
    (node_id,) = table.node_ids()
    assert set(table.owners) == {node_id}
    assert not any(table.backups)
    node = table.node(node_id)
    assert node is not None and node.websocket.startswith("ws://127.0.0.1:")


def test_bad_input_is_dropped_and_the_connection_survives() -> None:
    for title in (
        "unknown type", "no type", "OP_BATCH, malformed op",
        "SYNC_INIT, fractional lastSyncTimestamp", "not msgpack", "text frame",
        "OP_BATCH before AUTH", "BATCH envelope",
    ):  # fmt: skip
        step = step_named(title)
        assert not answers(step) and "closed" not in step, title
    assert [f["type"] for f in answers(step_named("PING after the bad input"))] == ["PONG"]


def test_auth_failures_close_the_connection() -> None:
    for title in ("AUTH, wrong secret", "AUTH, no exp claim"):
        step = step_named(title)
        (fail,) = answers(step)
        (msg,) = decode_frame(frame_data(fail))
        assert isinstance(msg, m.AuthFail) and msg.error
        assert "closed" in step, title
