"""Validation of the Merkle sync messages from untrusted peers (reference §2.9)."""

from __future__ import annotations

from typing import Any

import pytest

from topgun.core.errors import ProtocolError
from topgun.core.messages import message_from_wire
from topgun.core.sync_messages import MerkleReqBucket, SyncInit, SyncRespBuckets


@pytest.mark.parametrize(
    "wire",
    [
        {"type": "SYNC_INIT"},
        {"type": "SYNC_INIT", "mapName": ""},
        {"type": "SYNC_INIT", "mapName": "m", "lastSyncTimestamp": -1},
        {"type": "SYNC_INIT", "mapName": "m", "lastSyncTimestamp": "yesterday"},
        {"type": "SYNC_INIT", "mapName": "m", "lastSyncTimestamp": float("nan")},
        {"type": "MERKLE_REQ_BUCKET", "payload": {"mapName": "m", "path": "0g"}},
        {"type": "MERKLE_REQ_BUCKET", "payload": {"mapName": "m", "path": "0000"}},
        {"type": "MERKLE_REQ_BUCKET", "payload": {"mapName": "m", "path": "A"}},
        {"type": "MERKLE_REQ_BUCKET", "payload": {"mapName": "m"}},
        {"type": "SYNC_RESP_BUCKETS", "payload": {"mapName": "m", "path": "", "buckets": {"": 1}}},
        {
            "type": "SYNC_RESP_BUCKETS",
            "payload": {"mapName": "m", "path": "", "buckets": {"a": -1}},
        },
        {"type": "SYNC_RESP_ROOT", "payload": {"mapName": "m", "rootHash": 2**32, "timestamp": {}}},
        {"type": "SYNC_RESP_LEAF", "payload": {"mapName": "m", "path": "abc", "records": [1]}},
        {"type": "SERVER_EVENT", "payload": {"mapName": "m", "key": "k"}},
    ],
)
def test_bad_shapes_are_refused(wire: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError):
        message_from_wire(wire)


def test_reference_shapes() -> None:
    assert message_from_wire({"type": "SYNC_INIT", "mapName": "test"}) == SyncInit("test")
    assert SyncInit("test", 0.0).to_wire() == {
        "type": "SYNC_INIT", "mapName": "test", "lastSyncTimestamp": 0,
    }  # fmt: skip
    req = {"type": "MERKLE_REQ_BUCKET", "payload": {"mapName": "test", "path": ""}}
    assert message_from_wire(req) == MerkleReqBucket("test", "")
    empty = {"type": "SYNC_RESP_BUCKETS", "payload": {"mapName": "t", "path": "f", "buckets": {}}}
    assert message_from_wire(empty) == SyncRespBuckets("t", "f", {})
