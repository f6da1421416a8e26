"""The Merkle sync messages (reference §2.9) and the single-op ``SERVER_EVENT`` (§2.7).

Importing this module registers the types with the codec's type table
(:data:`topgun.core.messages.MESSAGE_TYPES`); :mod:`topgun.core.codec` does so.
``SYNC_INIT`` is one of the few messages whose fields sit at the top level (§1.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from topgun.core.errors import ProtocolError
from topgun.core.hlc import Timestamp
from topgun.core.merkle import DEPTH, HEX
from topgun.core.messages import (
    MAX_KEY_LENGTH,
    MAX_MAP_NAME_LENGTH,
    MESSAGE_TYPES,
    Message,
    ServerBatchEvent,
    _int,
    _list,
    _number,
    _obj,
    _payload,
    _str,
)
from topgun.core.records import LWWRecord

MAX_LEAF_RECORDS = 100_000


def _path(obj: dict[str, Any]) -> str:
    """A tree path: at most ``DEPTH`` lowercase hex digits ("" is the root)."""
    path = _str(obj, "path", DEPTH)
    if any(c not in HEX for c in path):
        raise ProtocolError("path must be lowercase hex digits")
    return str(path)


def _map_name(obj: dict[str, Any]) -> str:
    name = _str(obj, "mapName", MAX_MAP_NAME_LENGTH)
    if not name:
        raise ProtocolError("mapName must not be empty")
    return str(name)


@dataclass(frozen=True, slots=True)
class SyncInit(Message):
    """Client → server: start a sync of one map; ``last_sync_timestamp`` is epoch ms."""

    TYPE: ClassVar[str] = "SYNC_INIT"
    map_name: str
    last_sync_timestamp: float | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": self.TYPE, "mapName": self.map_name}
        if self.last_sync_timestamp is not None:
            ts = self.last_sync_timestamp
            wire["lastSyncTimestamp"] = 0 if ts == 0 else float(ts)
        return wire

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> SyncInit:
        ts = _number(obj, "lastSyncTimestamp", optional=True)
        if ts is not None and ts < 0:
            raise ProtocolError("lastSyncTimestamp must not be negative")
        return cls(_map_name(obj), None if ts is None else float(ts))


@dataclass(frozen=True, slots=True)
class MerkleReqBucket(Message):
    TYPE: ClassVar[str] = "MERKLE_REQ_BUCKET"
    map_name: str
    path: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.TYPE, "payload": {"mapName": self.map_name, "path": self.path}}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> MerkleReqBucket:
        payload = _payload(obj)
        return cls(_map_name(payload), _path(payload))


@dataclass(frozen=True, slots=True)
class SyncRespRoot(Message):
    TYPE: ClassVar[str] = "SYNC_RESP_ROOT"
    map_name: str
    root_hash: int
    timestamp: Timestamp

    def to_wire(self) -> dict[str, Any]:
        payload = {
            "mapName": self.map_name,
            "rootHash": self.root_hash,
            "timestamp": self.timestamp.to_wire(),
        }
        return {"type": self.TYPE, "payload": payload}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> SyncRespRoot:
        payload = _payload(obj)
        return cls(
            _map_name(payload),
            _hash(payload, "rootHash"),
            Timestamp.from_wire(payload.get("timestamp")),
        )


def _hash(obj: dict[str, Any], name: str) -> int:
    value = _int(obj, name)
    if not 0 <= value <= 0xFFFFFFFF:
        raise ProtocolError(f"{name} must be a 32-bit unsigned number")
    return value


@dataclass(frozen=True, slots=True)
class SyncRespBuckets(Message):
    TYPE: ClassVar[str] = "SYNC_RESP_BUCKETS"
    map_name: str
    path: str
    buckets: dict[str, int]

    def to_wire(self) -> dict[str, Any]:
        payload = {"mapName": self.map_name, "path": self.path, "buckets": dict(self.buckets)}
        return {"type": self.TYPE, "payload": payload}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> SyncRespBuckets:
        payload = _payload(obj)
        raw = _obj(payload, "buckets")
        buckets: dict[str, int] = {}
        for digit in raw:
            if not isinstance(digit, str) or len(digit) != 1 or digit not in HEX:
                raise ProtocolError("bucket names must be single hex digits")
            buckets[digit] = _hash(raw, digit)
        return cls(_map_name(payload), _path(payload), buckets)


@dataclass(frozen=True, slots=True)
class SyncRespLeaf(Message):
    TYPE: ClassVar[str] = "SYNC_RESP_LEAF"
    map_name: str
    path: str
    records: tuple[tuple[str, LWWRecord], ...]

    def to_wire(self) -> dict[str, Any]:
        records = [{"key": k, "record": r.to_wire()} for k, r in self.records]
        payload = {"mapName": self.map_name, "path": self.path, "records": records}
        return {"type": self.TYPE, "payload": payload}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> SyncRespLeaf:
        payload = _payload(obj)
        raw = _list(payload, "records")
        if len(raw) > MAX_LEAF_RECORDS:
            raise ProtocolError(f"a leaf of more than {MAX_LEAF_RECORDS} records")
        records = []
        for item in raw:
            if not isinstance(item, dict):
                raise ProtocolError("leaf records must be objects {key, record}")
            key = _str(item, "key", MAX_KEY_LENGTH)
            records.append((key, LWWRecord.from_wire(item.get("record"))))
        return cls(_map_name(payload), _path(payload), tuple(records))


@dataclass(frozen=True, slots=True)
class SyncResetRequired(Message):
    """The client's last sync is older than the tombstone GC age: clear the map and resync."""

    TYPE: ClassVar[str] = "SYNC_RESET_REQUIRED"
    map_name: str

    def to_wire(self) -> dict[str, Any]:
        return {"type": self.TYPE, "payload": {"mapName": self.map_name}}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> SyncResetRequired:
        return cls(_map_name(_payload(obj)))


@dataclass(frozen=True, slots=True)
class ServerEvent(ServerBatchEvent):
    """``SERVER_EVENT``: one change, the payload being the event itself (§2.7). Reads into
    the same shape as ``SERVER_BATCH_EVENT`` (one event), so receivers handle one type."""

    TYPE: ClassVar[str] = "SERVER_EVENT"

    def to_wire(self) -> dict[str, Any]:
        if len(self.events) != 1:
            raise ValueError("SERVER_EVENT carries exactly one event")
        wire: dict[str, Any] = {"type": self.TYPE, "payload": self.events[0].to_wire()}
        if self.timestamp is not None:
            wire["timestamp"] = self.timestamp
        return wire


SYNC_TYPES: tuple[type[Message], ...] = (
    SyncInit,
    MerkleReqBucket,
    SyncRespRoot,
    SyncRespBuckets,
    SyncRespLeaf,
    SyncResetRequired,
    ServerEvent,
)
MESSAGE_TYPES.update({cls.TYPE: cls for cls in SYNC_TYPES})
