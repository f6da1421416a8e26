"""Typed messages: to_wire ⇄ message_from_wire, validation, omitted optionals (§1.3, §2)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topgun.core import messages as m
from topgun.core.codec import pack
from topgun.core.errors import ProtocolError
from topgun.core.hlc import Timestamp
from topgun.core.records import LWWRecord
from topgun.core.sync_messages import SYNC_TYPES, ServerEvent
from topgun.core.table import PartitionTable

from .strategies import MESSAGE_STRATEGIES, any_message

TS = Timestamp(1795705444775, 0, "c1")
REC = LWWRecord({"value": 1}, TS)

ALL_MESSAGE_CLASSES = [
    cls
    for cls in vars(m).values()
    if isinstance(cls, type) and issubclass(cls, m.Message) and cls is not m.Message
] + list(SYNC_TYPES)

# keys whose value is the user's data: nil is a legitimate value there (a tombstone's value,
# a QUERY_UPDATE removal) and anything may sit inside
USER_DATA_KEYS = {"value", "details", "where", "predicate", "orRecord"}


def assert_no_nil_fields(wire: Any, path: str = "") -> None:
    """Absent optional fields are omitted, never sent as nil (reference §1.4)."""
    if isinstance(wire, dict):
        for key, value in wire.items():
            if key in USER_DATA_KEYS:
                continue
            assert value is not None, f"{path}.{key} is nil on the wire"
            assert_no_nil_fields(value, f"{path}.{key}")
    elif isinstance(wire, list):
        for i, item in enumerate(wire):
            assert_no_nil_fields(item, f"{path}[{i}]")


def test_every_message_class_has_a_strategy() -> None:
    assert set(ALL_MESSAGE_CLASSES) == set(MESSAGE_STRATEGIES)


def test_registry_covers_every_message_type() -> None:
    for cls in ALL_MESSAGE_CLASSES:
        if cls is m.Unsupported:
            continue
        assert m.MESSAGE_TYPES[cls.TYPE] is cls
    assert m.MESSAGE_TYPES["SERVER_EVENT"] is ServerEvent
    assert issubclass(ServerEvent, m.ServerBatchEvent)  # receivers handle one shape
    assert not set(m.MESSAGE_TYPES) & m.UNSUPPORTED_TYPES


@pytest.mark.parametrize("cls", ALL_MESSAGE_CLASSES, ids=lambda c: c.__name__)
@settings(derandomize=True, max_examples=40, deadline=None)
@given(data=st.data())
def test_wire_round_trip(cls: type[m.Message], data: st.DataObject) -> None:
    msg = data.draw(MESSAGE_STRATEGIES[cls])
    wire = msg.to_wire()
    assert wire["type"] == (msg.msg_type if isinstance(msg, m.Unsupported) else cls.TYPE)
    if not isinstance(msg, m.Unsupported):  # its body is the peer's, passed through as is
        assert_no_nil_fields(wire)
    assert m.message_from_wire(wire) == msg


@settings(derandomize=True, max_examples=100, deadline=None)
@given(any_message)
def test_round_trip_is_stable(msg: m.Message) -> None:
    once = m.message_from_wire(msg.to_wire())
    assert once.to_wire() == msg.to_wire()


@settings(derandomize=True, max_examples=100, deadline=None)
@given(any_message)
def test_encodable_form_encodes_as_the_wire_form(msg: m.Message) -> None:
    assert pack(msg.encodable()) == pack(msg.to_wire())


# --- absent optionals are omitted ---------------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "wire"),
    [
        (m.AuthRequired(), {"type": "AUTH_REQUIRED"}),
        (m.AuthAck(), {"type": "AUTH_ACK"}),
        (m.Auth("t"), {"type": "AUTH", "token": "t"}),
        (m.AuthFail("bad"), {"type": "AUTH_FAIL", "error": "bad"}),
        (m.AuthFail("bad", 401), {"type": "AUTH_FAIL", "error": "bad", "code": 401}),
        (m.Ping(5), {"type": "PING", "timestamp": 5.0}),
        (m.Pong(5, 6), {"type": "PONG", "timestamp": 5.0, "serverTime": 6.0}),
        (m.OpAck("7"), {"type": "OP_ACK", "payload": {"lastId": "7"}}),
        (
            m.OpRejected("1", "Access Denied"),
            {"type": "OP_REJECTED", "payload": {"opId": "1", "reason": "Access Denied"}},
        ),
        (m.ErrorMessage(400, "x"), {"type": "ERROR", "payload": {"code": 400, "message": "x"}}),
        (
            m.PartitionMapRequest(),
            {"type": "PARTITION_MAP_REQUEST", "payload": {"currentVersion": 0}},
        ),
        (
            m.QuerySub("q", "map"),
            {"type": "QUERY_SUB", "payload": {"queryId": "q", "mapName": "map", "query": {}}},
        ),
        (m.QueryUnsub("q"), {"type": "QUERY_UNSUB", "payload": {"queryId": "q"}}),
        (
            m.QueryResp("q", (("k", 1),)),
            {
                "type": "QUERY_RESP",
                "payload": {"queryId": "q", "results": [{"key": "k", "value": 1}]},
            },
        ),
        (
            m.OpBatch((m.ClientOp("map", "k", REC),)),
            {
                "type": "OP_BATCH",
                "payload": {
                    "ops": [
                        {
                            "mapName": "map",
                            "key": "k",
                            "record": {
                                "value": {"value": 1},
                                "timestamp": {
                                    "millis": 1795705444775.0,
                                    "counter": 0,
                                    "nodeId": "c1",
                                },
                            },
                        }
                    ]
                },
            },
        ),
        (
            m.ServerBatchEvent((m.ServerEventPayload("map", "k", "REMOVE", None),)),
            {
                "type": "SERVER_BATCH_EVENT",
                "payload": {"events": [{"mapName": "map", "key": "k", "eventType": "REMOVE"}]},
            },
        ),
        (m.ShutdownPending(), {"type": "SHUTDOWN_PENDING", "retryAfter": 5000}),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, m.Message) else "",
)
def test_minimal_wire_form(msg: m.Message, wire: dict[str, Any]) -> None:
    assert msg.to_wire() == wire


def test_op_result_and_hint_omit_absent() -> None:
    assert m.OpResult("1", True, "APPLIED").to_wire() == {
        "opId": "1",
        "success": True,
        "achievedLevel": "APPLIED",
    }
    hint = m.NotOwnerHint(3, None, 9).to_wire()
    assert hint["hint"] == {"partitionId": 3, "mapVersion": 9}
    assert hint["code"] == "NOT_OWNER"


def test_tombstone_record_sends_null_value() -> None:
    op = m.ClientOp("map", "k", LWWRecord(None, TS), op_type="REMOVE", id="2")
    wire = op.to_wire()
    assert wire["record"]["value"] is None
    assert "ttlMs" not in wire["record"]
    back = m.ClientOp.from_wire(wire)
    assert back == op and back.is_remove


def test_is_remove() -> None:
    assert m.ClientOp("m", "k", REC, op_type="REMOVE").is_remove
    assert m.ClientOp("m", "k", LWWRecord(None, TS)).is_remove
    assert not m.ClientOp("m", "k", REC, op_type="PUT").is_remove
    assert not m.ClientOp("m", "k", None, op_type="OR_ADD", or_record={"v": 1}).is_remove


def test_query_update_sends_both_spellings() -> None:
    wire = m.QueryUpdate("q", "k", 1, "ENTER").to_wire()
    assert wire["payload"]["type"] == wire["payload"]["changeType"] == "ENTER"
    only_type = {"type": "QUERY_UPDATE", "payload": {"queryId": "q", "key": "k", "type": "LEAVE"}}
    assert m.message_from_wire(only_type) == m.QueryUpdate("q", "k", None, "LEAVE")


def test_server_event_reads_as_batch_event() -> None:
    wire = {
        "type": "SERVER_EVENT",
        "payload": {"mapName": "m", "key": "k", "eventType": "UPDATED", "record": REC.to_wire()},
        "timestamp": TS.to_wire(),
    }
    msg = m.message_from_wire(wire)
    assert isinstance(msg, m.ServerBatchEvent)
    assert msg == ServerEvent((m.ServerEventPayload("m", "k", "UPDATED", REC),), TS.to_wire())
    assert msg.to_wire() == wire


def test_partition_map_request_without_payload() -> None:
    assert m.message_from_wire({"type": "PARTITION_MAP_REQUEST"}) == m.PartitionMapRequest(0)
    assert m.message_from_wire(
        {"type": "PARTITION_MAP_REQUEST", "payload": {}}
    ) == m.PartitionMapRequest(0)
    assert m.message_from_wire(
        {"type": "PARTITION_MAP_REQUEST", "payload": {"currentVersion": 4.0}}
    ) == m.PartitionMapRequest(4)


def test_not_owner_rejection_round_trip() -> None:
    msg = m.OpRejected("9", "not owner", 409, m.NotOwnerHint(12, "node-b", 4))
    wire = msg.to_wire()
    assert wire["error"] == {
        "code": "NOT_OWNER",
        "message": "not the owner of this partition",
        "hint": {"partitionId": 12, "currentOwner": "node-b", "mapVersion": 4},
    }
    assert m.message_from_wire(wire) == msg
    # an error object of another code is not a NOT_OWNER hint
    wire["error"] = {"code": "STALE_MAP", "hint": {}}
    assert m.message_from_wire(wire) == m.OpRejected("9", "not owner", 409)


def test_partition_map_payload() -> None:
    msg = m.message_from_wire(
        {
            "type": "PARTITION_MAP",
            "payload": {
                "version": 1,
                "nodes": [],
                "partitions": [{"partitionId": 0, "ownerNodeId": "a"}],
            },
        }
    )
    assert isinstance(msg, m.PartitionMap)
    assert isinstance(msg.table, PartitionTable)
    assert msg.table.owners == ("a",)


# --- validation ---------------------------------------------------------------------------

OP = {"mapName": "map", "key": "k", "record": REC.to_wire()}


def batch(*ops: Any, **extra: Any) -> dict[str, Any]:
    return {"type": "OP_BATCH", "payload": {"ops": list(ops), **extra}}


BAD_MESSAGES: dict[str, tuple[Any, str | None]] = {
    "top level list": ([1, 2], None),
    "top level string": ("AUTH", None),
    "top level nil": (None, None),
    "no type": ({"token": "x"}, None),
    "type not a string": ({"type": 5}, None),
    "auth without token": ({"type": "AUTH"}, "AUTH"),
    "auth token number": ({"type": "AUTH", "token": 5}, "AUTH"),
    "auth token too long": ({"type": "AUTH", "token": "x" * (m.MAX_TOKEN_LENGTH + 1)}, "AUTH"),
    "ping string timestamp": ({"type": "PING", "timestamp": "now"}, "PING"),
    "ping bool timestamp": ({"type": "PING", "timestamp": True}, "PING"),
    "ping nan timestamp": ({"type": "PING", "timestamp": float("nan")}, "PING"),
    "ping inf timestamp": ({"type": "PING", "timestamp": float("inf")}, "PING"),
    "ping missing timestamp": ({"type": "PING"}, "PING"),
    "pong missing serverTime": ({"type": "PONG", "timestamp": 1.0}, "PONG"),
    "op batch no payload": ({"type": "OP_BATCH"}, "OP_BATCH"),
    "op batch payload list": ({"type": "OP_BATCH", "payload": []}, "OP_BATCH"),
    "op batch ops not list": ({"type": "OP_BATCH", "payload": {"ops": {}}}, "OP_BATCH"),
    "op batch unknown writeConcern": (batch(OP, writeConcern="ALL"), "OP_BATCH"),
    "op batch timeout string": (batch(OP, timeout="5"), "OP_BATCH"),
    "client op no payload": ({"type": "CLIENT_OP"}, "CLIENT_OP"),
    "op ack without lastId": ({"type": "OP_ACK", "payload": {}}, "OP_ACK"),
    "op ack bad result": (
        {"type": "OP_ACK", "payload": {"lastId": "1", "results": [{"opId": "1"}]}},
        "OP_ACK",
    ),
    "op ack results not a list": (
        {"type": "OP_ACK", "payload": {"lastId": "1", "results": "x"}},
        "OP_ACK",
    ),
    "not owner without hint": (
        {
            "type": "OP_REJECTED",
            "payload": {"opId": "1", "reason": "r"},
            "error": {"code": "NOT_OWNER"},
        },
        "OP_REJECTED",
    ),
    "error code string": (
        {"type": "ERROR", "payload": {"code": "400", "message": "x"}},
        "ERROR",
    ),
    "error code fractional": (
        {"type": "ERROR", "payload": {"code": 400.5, "message": "x"}},
        "ERROR",
    ),
    "error code huge": ({"type": "ERROR", "payload": {"code": 2**60, "message": "x"}}, "ERROR"),
    "map request version string": (
        {"type": "PARTITION_MAP_REQUEST", "payload": {"currentVersion": "0"}},
        "PARTITION_MAP_REQUEST",
    ),
    "map request payload list": (
        {"type": "PARTITION_MAP_REQUEST", "payload": [0]},
        "PARTITION_MAP_REQUEST",
    ),
    "partition map bad payload": (
        {"type": "PARTITION_MAP", "payload": {"version": 1}},
        "PARTITION_MAP",
    ),
    "query sub no queryId": (
        {"type": "QUERY_SUB", "payload": {"mapName": "m", "query": {}}},
        "QUERY_SUB",
    ),
    "query sub nil query": (
        {"type": "QUERY_SUB", "payload": {"queryId": "q", "mapName": "m", "query": None}},
        "QUERY_SUB",
    ),
    "query bad sort": (
        {
            "type": "QUERY_SUB",
            "payload": {"queryId": "q", "mapName": "m", "query": {"sort": {"a": "up"}}},
        },
        "QUERY_SUB",
    ),
    "query negative limit": (
        {
            "type": "QUERY_SUB",
            "payload": {"queryId": "q", "mapName": "m", "query": {"limit": -5}},
        },
        "QUERY_SUB",
    ),
    "query where not object": (
        {
            "type": "QUERY_SUB",
            "payload": {"queryId": "q", "mapName": "m", "query": {"where": [1]}},
        },
        "QUERY_SUB",
    ),
    "query unsub no id": ({"type": "QUERY_UNSUB", "payload": {}}, "QUERY_UNSUB"),
    "query resp row not dict": (
        {"type": "QUERY_RESP", "payload": {"queryId": "q", "results": [1]}},
        "QUERY_RESP",
    ),
    "query update no change type": (
        {"type": "QUERY_UPDATE", "payload": {"queryId": "q", "key": "k"}},
        "QUERY_UPDATE",
    ),
    "server batch events not list": (
        {"type": "SERVER_BATCH_EVENT", "payload": {"events": {}}},
        "SERVER_BATCH_EVENT",
    ),
    "server event bad record": (
        {
            "type": "SERVER_EVENT",
            "payload": {"mapName": "m", "key": "k", "eventType": "PUT", "record": 5},
        },
        "SERVER_EVENT",
    ),
    "shutdown retryAfter string": (
        {"type": "SHUTDOWN_PENDING", "retryAfter": "soon"},
        "SHUTDOWN_PENDING",
    ),
    "unknown type": ({"type": "FROBNICATE"}, "FROBNICATE"),
    "cluster HELLO": ({"type": "HELLO", "senderId": "node-3"}, "HELLO"),
}


BAD_OPS: dict[str, Any] = {
    "op not a dict": "op",
    "op empty mapName": {**OP, "mapName": ""},
    "op missing mapName": {"key": "k", "record": REC.to_wire()},
    "op mapName too long": {**OP, "mapName": "m" * (m.MAX_MAP_NAME_LENGTH + 1)},
    "op key too long": {**OP, "key": "k" * (m.MAX_KEY_LENGTH + 1)},
    "op key not string": {**OP, "key": 1},
    "op id too long": {**OP, "id": "9" * (m.MAX_ID_LENGTH + 1)},
    "op id number": {**OP, "id": 1},
    "op unknown opType": {**OP, "opType": "UPSERT"},
    "op PUT without record": {"mapName": "m", "key": "k", "opType": "PUT"},
    "op without record or opType": {"mapName": "m", "key": "k"},
    "op bad record ttl": {**OP, "record": {**REC.to_wire(), "ttlMs": -1}},
    "op bad record timestamp": {**OP, "record": {"value": 1, "timestamp": {"millis": "x"}}},
}
"""Ops that break a rule: refused one by one (``INVALID_OP``), their batch still parses."""


@pytest.mark.parametrize("name", list(BAD_MESSAGES))
def test_invalid_messages(name: str) -> None:
    obj, msg_type = BAD_MESSAGES[name]
    with pytest.raises(ProtocolError) as info:
        m.message_from_wire(obj)
    assert not info.value.fatal
    assert info.value.msg_type == msg_type


@pytest.mark.parametrize("name", list(BAD_OPS))
def test_invalid_ops_are_refused_one_by_one(name: str) -> None:
    msg = m.message_from_wire(batch(OP, BAD_OPS[name], {**OP, "id": "3"}))
    assert isinstance(msg, m.OpBatch)
    good, bad, also_good = msg.ops
    assert isinstance(good, m.ClientOp) and isinstance(also_good, m.ClientOp)
    assert isinstance(bad, m.InvalidOp) and bad.error.startswith("INVALID_OP: ")
    if isinstance(BAD_OPS[name], dict):  # a CLIENT_OP payload that is no object: ERROR 400
        single = m.message_from_wire({"type": "CLIENT_OP", "payload": BAD_OPS[name]})
        assert isinstance(single, m.ClientOpMessage) and isinstance(single.op, m.InvalidOp)


def test_unknown_type_name_is_truncated() -> None:
    with pytest.raises(ProtocolError) as info:
        m.message_from_wire({"type": "X" * 1000})
    assert info.value.msg_type == "X" * 64
    assert len(str(info.value)) < 200


def test_limits_are_inclusive() -> None:
    op = {**OP, "key": "k" * m.MAX_KEY_LENGTH, "mapName": "m" * m.MAX_MAP_NAME_LENGTH}
    msg = m.message_from_wire(batch({**op, "id": "1" * m.MAX_ID_LENGTH}))
    assert isinstance(msg, m.OpBatch)
    assert msg.ops[0].key == "k" * m.MAX_KEY_LENGTH
    assert m.message_from_wire({"type": "AUTH", "token": "t" * m.MAX_TOKEN_LENGTH})


@pytest.mark.parametrize("msg_type", sorted(m.UNSUPPORTED_TYPES))
def test_unsupported_types(msg_type: str) -> None:
    body = {"type": msg_type, "mapName": "test", "lastSyncTimestamp": 0}
    msg = m.message_from_wire(body)
    assert msg == m.Unsupported(msg_type, body)
    assert msg.to_wire() == body


def test_nullable_op_fields_accept_nil() -> None:
    # §1.4: record/orRecord/orTag are nullable; id/opType arrive as nil when the TS client's
    # `undefined` (ext 0) is decoded, and mean "absent"
    op = {**OP, "orRecord": None, "orTag": None, "id": None, "opType": None}
    msg = m.message_from_wire(batch(op, writeConcern=None, timeout=None))
    assert msg == m.OpBatch((m.ClientOp("map", "k", REC),))


def test_ts_op_log_fields_are_checked_not_used() -> None:
    # the TS client's op-log entries carry timestamp and synced (reference §2.3)
    op = {**OP, "timestamp": TS.to_wire(), "synced": False, "id": "1"}
    msg = m.message_from_wire(batch(op))
    assert msg == m.OpBatch((m.ClientOp("map", "k", REC, id="1"),))


def test_unknown_fields_refuse_the_op() -> None:
    (bad,) = m.message_from_wire(batch({**OP, "sneaky": 1})).ops  # type: ignore[attr-defined]
    assert isinstance(bad, m.InvalidOp) and "sneaky" in bad.error
    rec = {**REC.to_wire(), "owner": "x"}
    (bad,) = m.message_from_wire(batch({**OP, "record": rec})).ops  # type: ignore[attr-defined]
    assert isinstance(bad, m.InvalidOp) and "owner" in bad.error
