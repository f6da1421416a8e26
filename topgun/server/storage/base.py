"""What every storage engine of a node offers (:class:`StorageEngine`), and what they share: the
batch one commit writes, what a load returns, and how a stored record is checked.

An engine is driven by :class:`~topgun.server.storage.commit.GroupCommit` from one writer
thread: :meth:`StorageEngine.load` once at start, then :meth:`StorageEngine.write` per group,
then :meth:`StorageEngine.close`. Every method blocks; none touches the event loop.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import Protocol

from topgun.core.packed import HEAD_SIZE

Row = tuple[int, str, str, bytes]
"""(partition, map name, key, held record) as the store holds it."""

_PID = struct.Struct(">H")
_INDEX_MASK = 0x3FFF_FFFF  # the node-index bits of a held record's third head word
_WORD3 = struct.Struct(">I")


class StorageError(Exception):
    """A store this node cannot use; the message names where it is and what is wrong."""


@dataclass(slots=True)
class Batch:
    """What one transaction writes: changed records, newly interned writer ids (index, id)
    that those records refer to, and metadata (the last partition table)."""

    rows: list[Row] = field(default_factory=list)
    nodes: list[tuple[int, str]] = field(default_factory=list)
    meta: dict[bytes, bytes] = field(default_factory=dict)


@dataclass(slots=True)
class Loaded:
    nodes: list[str]
    rows: list[Row]
    table: bytes | None


class StorageEngine(Protocol):
    where: str
    """Where the records are (a file, a database and schema), for messages and logs; never a
    password."""

    def load(self) -> Loaded:
        """Open the store if it is not open yet, check it is this node's, and return
        everything it holds, checked record by record (:class:`StorageError` otherwise)."""
        ...

    def write(self, batch: Batch) -> None:
        """One transaction; returns once it is durable (fsynced, or committed)."""
        ...

    def close(self) -> None: ...


def record_key(pid: int, map_name: str, key: str) -> bytes:
    """Partition (u16) + BLAKE2b-128 of ``map NUL key``: a fixed 18 bytes whatever the key's
    length (a TopGun key may be 4096 characters)."""
    digest = hashlib.blake2b(f"{map_name}\0{key}".encode(), digest_size=16).digest()
    return _PID.pack(pid) + digest


def partition_of(stored_key: bytes) -> int:
    return int(_PID.unpack_from(stored_key)[0])


def check_held(held: bytes, node_count: int) -> None:
    """ValueError if a held record is shorter than its head or names a writer the store's
    node table does not have."""
    if len(held) <= HEAD_SIZE:
        raise ValueError("record shorter than its head")
    (word,) = _WORD3.unpack_from(held, HEAD_SIZE - _WORD3.size)
    if (word & _INDEX_MASK) >= node_count:
        raise ValueError("record head out of range")


def check_row(stored_key: bytes, map_name: str, key: str, held: bytes, node_count: int) -> Row:
    """The row a stored record stands for; ValueError if the record is not whole or its key
    does not match it."""
    check_held(held, node_count)
    if len(stored_key) != 18:
        raise ValueError("key does not match the record")
    pid = partition_of(stored_key)
    if stored_key != record_key(pid, map_name, key):
        raise ValueError("key does not match the record")
    return pid, map_name, key, held
