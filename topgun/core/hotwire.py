"""The hot path's frames (``OP_BATCH``, ``CLIENT_OP``) decoded and validated in one C pass.

msgspec decodes msgpack straight into typed structs and checks types, lengths and ranges as
it goes, about five times faster than ``msgpack.unpackb`` followed by the field checks of
:mod:`topgun.core.messages`; with the typed messages built, a 100-op batch takes half the
time (README, runtime dependencies). It is only a fast path: it accepts a subset of what the
general path accepts and builds the very same messages. Whatever it does not accept (another
message type, a wrong shape, a fractional millis, an ``undefined`` where a string belongs)
makes it answer ``None``, and the general path decodes the frame again and words the error.
Every struct forbids unknown fields and declares only the fields of a plain LWW op, so an op
with anything else (``orRecord``, a per-op ``writeConcern``, the TS op-log's ``timestamp``,
a stray field) is left to the general path and its one rule table (``OP_FIELDS``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

import msgspec

from topgun.core.hlc import MAX_COUNTER, MAX_MILLIS, MAX_NODE_ID_LENGTH, Timestamp
from topgun.core.messages import (
    MAX_ID_LENGTH,
    MAX_KEY_LENGTH,
    MAX_MAP_NAME_LENGTH,
    OP_PUT,
    OP_REMOVE,
    ClientOp,
    ClientOpMessage,
    Message,
    OpBatch,
)
from topgun.core.records import MAX_TTL_MS, LWWRecord

Millis = (
    Annotated[int, msgspec.Meta(ge=0, le=MAX_MILLIS)]
    | Annotated[float, msgspec.Meta(ge=0, le=MAX_MILLIS)]
)
Counter = (
    Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNTER)]
    | Annotated[float, msgspec.Meta(ge=0, le=MAX_COUNTER)]
)
Ttl = (
    Annotated[int, msgspec.Meta(gt=0, le=MAX_TTL_MS)]
    | Annotated[float, msgspec.Meta(gt=0, le=MAX_TTL_MS)]
)
OpType = Literal["PUT", "REMOVE", "OR_ADD", "OR_REMOVE"]
Concern = Literal["FIRE_AND_FORGET", "MEMORY", "APPLIED", "REPLICATED", "PERSISTED"]


HOT_VALUE_DEPTH = 8
"""Containers nested at most this deep in a value the fast path takes; a deeper value (up to
``MAX_VALUE_DEPTH``) is the general path's."""


def _value_type(depth: int) -> Any:
    """JSON's types nested at most ``depth`` deep, with string keys: msgspec checks a value
    against it in C as it decodes. Anything else (bytes, a msgpack timestamp, which msgspec
    would read as a ``datetime`` and lose its nanoseconds, any extension such as msgpackr's
    ``undefined``, a key that is not a string, a deeper nesting) fails, and the general path
    decides. (Each level names the one below twice, so building the type grows with
    2^depth: a few ms at import for 8.)"""
    leaf = Union[None, bool, int, float, str]  # noqa: UP007 - built at run time
    value: Any = leaf
    for _ in range(depth):
        value = Union[leaf, list[value], dict[str, value]]  # noqa: UP007
    return value


if TYPE_CHECKING:
    _Value = Any
else:
    _Value = _value_type(HOT_VALUE_DEPTH)


# Field names are the wire names (camelCase), so msgspec maps them one to one. The per-op
# structs hold only decoded data, never a cycle, so the cyclic collector need not track them.


class _Stamp(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    millis: Millis
    counter: Counter
    nodeId: Annotated[str, msgspec.Meta(max_length=MAX_NODE_ID_LENGTH)]


class _Record(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    timestamp: _Stamp
    value: _Value = None
    ttlMs: Ttl | None = None


class _Op(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    mapName: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_MAP_NAME_LENGTH)]
    key: Annotated[str, msgspec.Meta(max_length=MAX_KEY_LENGTH)]
    record: _Record | None = None
    opType: OpType | None = None
    id: Annotated[str, msgspec.Meta(max_length=MAX_ID_LENGTH)] | None = None


class _BatchPayload(msgspec.Struct, forbid_unknown_fields=True):
    ops: list[_Op]
    writeConcern: Concern | None = None
    timeout: int | float | None = None


class _OpBatch(msgspec.Struct, tag_field="type", tag="OP_BATCH", forbid_unknown_fields=True):
    payload: _BatchPayload


class _ClientOp(msgspec.Struct, tag_field="type", tag="CLIENT_OP", forbid_unknown_fields=True):
    payload: _Op


class _NotHot(Exception):
    """The fast path declines; the general path decides."""


_decoder = msgspec.msgpack.Decoder(_OpBatch | _ClientOp)


_LWW_TYPES = (None, OP_PUT, OP_REMOVE)
_tuple_new = tuple.__new__  # a NamedTuple's own __new__ is a Python-level lambda


def _whole(x: int | float) -> int:
    if x.__class__ is int:
        return x
    if not x.is_integer():  # type: ignore[union-attr]
        raise _NotHot
    return int(x)


def _op(op: _Op) -> ClientOp:
    """A plain LWW op (PUT, REMOVE or no opType, with its record); anything else declines."""
    rec = op.record
    if rec is None or op.opType not in _LWW_TYPES:
        raise _NotHot
    value = rec.value
    if value is not None and op.opType == OP_REMOVE:
        raise _NotHot  # a removal must carry nil: the rule table words the refusal
    ts = rec.timestamp
    millis, counter = ts.millis, ts.counter
    if millis.__class__ is not int:  # the TS client sends its millis as float64
        millis = _whole(millis)
    if counter.__class__ is not int:
        counter = _whole(counter)
    stamp = _tuple_new(Timestamp, (millis, counter, ts.nodeId))
    ttl = None if rec.ttlMs is None else _whole(rec.ttlMs)
    return ClientOp(op.mapName, op.key, LWWRecord(value, stamp, ttl), op.opType, op.id)


def decode_hot(data: bytes) -> Message | None:
    """The ``OP_BATCH`` / ``CLIENT_OP`` in ``data``, or None to leave it to the general path."""
    try:
        msg = _decoder.decode(data)
        if isinstance(msg, _ClientOp):
            return ClientOpMessage(_op(msg.payload))
        p = msg.payload
        if p.timeout is not None and not math.isfinite(p.timeout):
            return None
        return OpBatch(tuple([_op(op) for op in p.ops]), p.writeConcern, p.timeout)
    except (_NotHot, msgspec.DecodeError, msgspec.ValidationError):
        return None
