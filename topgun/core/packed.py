"""Records held compactly: one ``bytes`` object per stored record.

A node holding a million records cannot afford the Python objects of an ``LWWRecord`` each
(the record, its ``Timestamp`` tuple, the millis int, the node-id string and the decoded
value: about 700 bytes in all). A held record is instead

    millis u64 | counter u32 | flags u2 + node index u30 | [ttl u64] | value

(flags: a TTL follows; the value holds a msgpack timestamp, so it is read back by
msgpack-python, which keeps it as the ``msgpack.Timestamp`` it arrived as — msgspec would
turn it into a ``datetime`` and drop its nanoseconds)

big-endian, with the value as its msgpack encoding (``nil`` for a tombstone) and the node id
as an index into a table shared by the whole store (interned: a store sees few writers).
One immutable, untracked ``bytes`` of ~60 bytes for a 40-byte value. The first 12 bytes
order like (millis, counter), so the LWW test rarely needs the node id at all.

Reading one back builds the ``LWWRecord`` afresh (the value decoded again): the cost moves
from memory to reads, which are rarer than writes on the hot path and bounded per page.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import msgspec

from topgun.core.hlc import Timestamp
from topgun.core.records import LWWRecord

_HEAD = struct.Struct(">QII")
_TTL = struct.Struct(">Q")
_HAS_TTL = 0x8000_0000
_FOREIGN = 0x4000_0000
_INDEX = _FOREIGN - 1
HEAD_SIZE = _HEAD.size


class RecordPacker:
    """Packs records into their held form and back; owns the store's node-id table."""

    __slots__ = ("_decoder", "_index", "_nodes", "_packer")

    def __init__(self) -> None:
        self._nodes: list[str] = []
        self._index: dict[str, int] = {}
        # msgspec: the same bytes as msgpack, faster both ways. A held value was encoded
        # here from plain Python values, so it holds no extension types to interpret.
        self._packer = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder()

    def _new_node(self, node_id: str) -> int:
        idx = len(self._nodes)
        if idx > _INDEX:
            raise OverflowError("more distinct node ids than a held record can index")
        self._nodes.append(node_id)
        self._index[node_id] = idx
        return idx

    def pack(
        self, value: Any, millis: int, counter: int, node_id: str, ttl_ms: int | None
    ) -> bytes:
        """The held form of one record; ``value`` may be a ``msgspec.Raw`` (its msgpack
        bytes as a peer's blob held them), which is kept as it is, never decoded."""
        idx = self._index.get(node_id)
        if idx is None:
            idx = self._new_node(node_id)
        body: bytes
        if value.__class__ is msgspec.Raw:
            body = value  # bytes + Raw concatenates its buffer
        else:
            try:
                body = self._packer.encode(value)
            except TypeError:  # a msgpack.Timestamp inside: the one foreign type a value holds
                body = msgpack.packb(value, use_bin_type=True)
                idx |= _FOREIGN
        if ttl_ms is None:
            return _HEAD.pack(millis, counter, idx) + body
        return _HEAD.pack(millis, counter, idx | _HAS_TTL) + _TTL.pack(ttl_ms) + body

    def timestamp(self, held: bytes) -> Timestamp:
        millis, counter, idx = _HEAD.unpack_from(held)
        return Timestamp(millis, counter, self._nodes[idx & _INDEX])

    def newer(self, millis: int, counter: int, node_id: str, held: bytes) -> bool:
        """Whether a record stamped (millis, counter, node_id) wins over ``held`` (strictly
        greater timestamp)."""
        held_millis: int
        held_counter: int
        idx: int
        held_millis, held_counter, idx = _HEAD.unpack_from(held)
        if millis != held_millis:
            return millis > held_millis
        if counter != held_counter:
            return counter > held_counter
        return node_id > self._nodes[idx & _INDEX]

    def unpack(self, held: bytes) -> LWWRecord:
        value, millis, counter, node_id, ttl = self.unpack_flat(held, encoded=False)
        return LWWRecord(value, Timestamp(millis, counter, node_id), ttl)

    def unpack_flat(
        self, held: bytes, *, encoded: bool = True
    ) -> tuple[Any, int, int, str, int | None]:
        """(value, millis, counter, nodeId, ttlMs) of a held record; ``encoded``: the value
        as a ``msgspec.Raw`` of its bytes (not decoded, for a peer's blob), unless it holds
        a msgpack timestamp, which only msgpack-python keeps as it is."""
        millis, counter, idx = _HEAD.unpack_from(held)
        start, ttl = HEAD_SIZE, None
        if idx & _HAS_TTL:
            (ttl,) = _TTL.unpack_from(held, HEAD_SIZE)
            start += _TTL.size
        raw = memoryview(held)[start:]
        if idx & _FOREIGN:
            value = msgpack.unpackb(raw, raw=False, strict_map_key=False)
        elif encoded:
            value = msgspec.Raw(raw)
        else:
            value = self._decoder.decode(raw)
        return value, millis, counter, self._nodes[idx & _INDEX], ttl

    @property
    def node_ids(self) -> int:
        """How many distinct node ids the table holds."""
        return len(self._nodes)

    def nodes_from(self, start: int) -> list[str]:
        """The node ids interned at index ``start`` and after (a data dir keeps them)."""
        return self._nodes[start:]

    def adopt(self, nodes: list[str]) -> None:
        """Take the node-id table of held records loaded from disk (before any pack)."""
        if self._nodes:
            raise ValueError("the node-id table is already in use")
        if len(set(nodes)) != len(nodes) or len(nodes) > _INDEX + 1:
            raise ValueError("a node-id table holds distinct ids within the index range")
        self._nodes = list(nodes)
        self._index = {n: i for i, n in enumerate(nodes)}
