"""Frames on the wire: msgpack (and JSON text) in, typed messages out, and back.

Decoding is split in two steps so that a peer's mistakes are graded: bytes that are not
msgpack/JSON at all are *fatal* (close 1002), while a well-formed message of the wrong shape
is reported on its own and the connection carries on. A ``BATCH`` envelope (reference §1.5)
is unwrapped into its messages, each judged separately. Write frames take a fast path
(:mod:`topgun.core.hotwire`) that yields the same messages.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterable
from typing import Any

import msgpack
import msgspec

from topgun.core.errors import ProtocolError
from topgun.core.hotwire import decode_hot
from topgun.core.messages import Message, message_from_wire
from topgun.core.sync_messages import SYNC_TYPES  # noqa: F401  (registers the sync types)

BATCH_TYPE = "BATCH"
MAX_BATCH_DEPTH = 4
MAX_BATCH_COUNT = 10_000
_U32 = struct.Struct("<I")

Decoded = Message | ProtocolError
"""One message of a frame, or why it was refused."""


def _ext_hook(code: int, data: bytes) -> Any:
    if code == 0:  # msgpackr's encoding of JavaScript `undefined`
        return None
    raise ProtocolError(f"unsupported msgpack extension type {code}")


def unpack(data: bytes) -> Any:
    """msgpack → Python with the reference's rules; raises a fatal ProtocolError."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=_ext_hook)
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types for bad bytes
        raise ProtocolError(f"undecodable msgpack frame: {exc}", fatal=True) from exc


def _foreign(obj: Any) -> Any:
    """A msgpack timestamp (ext -1, the one extension :func:`unpack` lets into a value) goes
    out exactly as it came in."""
    if isinstance(obj, msgpack.Timestamp):
        return msgspec.msgpack.Ext(-1, obj.to_bytes())
    raise TypeError(f"cannot encode {type(obj).__name__} as msgpack")


_encoder = msgspec.msgpack.Encoder(enc_hook=_foreign)


def pack(obj: Any) -> bytes:
    """Python → msgpack; callers send epoch-ms values as floats (``to_wire`` does).

    msgspec writes the same bytes as ``msgpack.packb(obj, use_bin_type=True)`` for every
    plain value (tests/unit/core/test_codec_pack.py) about three times faster; it is on
    every ack, every replication and every forward.
    """
    return _encoder.encode(obj)


def encode(message: Message) -> bytes:
    return pack(message.encodable())


def encode_batch(frames: Iterable[bytes]) -> bytes:
    """Wrap already-encoded messages in one ``BATCH`` envelope."""
    chunks = list(frames)
    parts = [_U32.pack(len(chunks))]
    for chunk in chunks:
        parts.append(_U32.pack(len(chunk)))
        parts.append(chunk)
    return pack({"type": BATCH_TYPE, "count": len(chunks), "data": b"".join(parts)})


def _split_batch(data: object) -> list[bytes]:
    if not isinstance(data, bytes | bytearray) or len(data) < 4:
        raise ProtocolError("BATCH data must be binary with a u32 count")
    view = memoryview(data)
    (count,) = _U32.unpack_from(view, 0)
    if count > MAX_BATCH_COUNT:
        raise ProtocolError(f"BATCH of {count} messages exceeds {MAX_BATCH_COUNT}")
    offset, chunks = 4, []
    for _ in range(count):
        if offset + 4 > len(view):
            raise ProtocolError("BATCH data truncated")
        (length,) = _U32.unpack_from(view, offset)
        offset += 4
        if offset + length > len(view):
            raise ProtocolError("BATCH data truncated")
        chunks.append(bytes(view[offset : offset + length]))
        offset += length
    return chunks


def parse_text(text: str) -> Any:
    """A JSON text frame → Python; raises a fatal ProtocolError."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"undecodable text frame: {exc}", fatal=True) from exc


def decode_frame(frame: bytes | str) -> list[Decoded]:
    """Decode one WebSocket frame into its messages (BATCH unwrapped).

    Raises a fatal :class:`ProtocolError` when the frame cannot be decoded at all.
    A binary frame that is not msgpack is retried as UTF-8 JSON, as the reference server does.
    """
    if isinstance(frame, str):
        obj = parse_text(frame)
    else:
        hot = decode_hot(frame)
        if hot is not None:
            return [hot]
        try:
            obj = unpack(frame)
        except ProtocolError as exc:
            if not exc.fatal:
                return [exc]
            try:
                obj = parse_text(frame.decode("utf-8"))
            except (UnicodeDecodeError, ProtocolError):
                raise exc from None
    out: list[Decoded] = []
    _collect(obj, out, 0)
    return out


def _collect(obj: Any, out: list[Decoded], depth: int) -> None:
    if isinstance(obj, dict) and obj.get("type") == BATCH_TYPE:
        if depth >= MAX_BATCH_DEPTH:
            out.append(ProtocolError("BATCH nested too deeply", msg_type=BATCH_TYPE))
            return
        try:
            chunks = _split_batch(obj.get("data"))
        except ProtocolError as exc:
            exc.msg_type = BATCH_TYPE
            out.append(exc)
            return
        for chunk in chunks:
            hot = decode_hot(chunk)
            if hot is not None:
                out.append(hot)
                continue
            try:
                inner = unpack(chunk)
            except ProtocolError as exc:
                exc.fatal = False  # the frame itself decoded; only this message is lost
                out.append(exc)
                continue
            _collect(inner, out, depth + 1)
        return
    try:
        out.append(message_from_wire(obj))
    except ProtocolError as exc:
        out.append(exc)
