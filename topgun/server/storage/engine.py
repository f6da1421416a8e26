"""The on-disk form of one node's held copies: an LMDB environment in ``DATA_DIR/<node id>``.

LMDB, not SQLite, by a measurement of the write path (group commits of 1,000 and 5,000
records of ~70 bytes, each commit fsynced, on the shared 2-core VM): LMDB 220,000 and
676,000 records/s with commits of 4 and 8 ms, SQLite in WAL mode 52,000 and 80,000 with 19
and 72 ms; with the writer in a thread beside a busy event loop (the node's case: one GIL),
LMDB 77,000 records/s and SQLite 3,700 (its ``executemany`` takes and drops the GIL once per
row). SQLite is half the bytes per record (119 against 238).

Three named databases:

* ``records``: key = partition (u16) + BLAKE2b-128 of ``map NUL key`` (a fixed 18 bytes:
  LMDB keys are at most 511 bytes and a TopGun key may be 4096 characters), value = map
  length (u16), key length (u16), map, key (UTF-8) and the record in the held form of
  :mod:`topgun.core.packed`, so loading is not a re-encode;
* ``nodes``: index (u32) → node id, the packer's interned writer ids that held records
  refer to, written in the same transaction as the first record using each;
* ``meta``: the format, the owning node's id (a node refuses another's data) and the last
  partition table the node applied.

Every write is one transaction committed with fsync (LMDB's default ``sync``). Nothing here
touches the event loop: :mod:`topgun.server.storage.commit` runs it on a writer thread.
"""

from __future__ import annotations

import fcntl
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import lmdb

from topgun.server.storage.base import Batch, Loaded, Row, StorageError, check_row, record_key

FORMAT = b"topgun-lmdb-1"
INITIAL_MAP_BYTES = 1 << 30
"""LMDB reserves address space for the file up front; it doubles when a write fills it."""
_LENS = struct.Struct(">HH")
_INDEX = struct.Struct(">I")

__all__ = ["Batch", "Engine", "Loaded", "Row", "StorageError", "record_key"]


class Engine:
    """One node's LMDB environment (a :class:`~topgun.server.storage.base.StorageEngine`);
    every method blocks (call it from a writer thread)."""

    def __init__(self, root: str | os.PathLike[str], node_id: str) -> None:
        self.path = Path(root) / node_id
        self.file = self.path / "data.mdb"
        self.where = str(self.file)
        self._lock: IO[bytes] | None = None
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = (self.path / "topgun.lock").open("ab")
            fcntl.flock(self._lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._release()
            raise StorageError(f"{self.path}: in use by another running node") from None
        except OSError as exc:
            self._release()
            raise StorageError(f"{self.path}: cannot use it as a data dir: {exc}") from None
        if not os.access(self.path, os.W_OK):
            self._release()
            raise StorageError(f"{self.path}: not writable")
        self._check_size()
        self._env: lmdb.Environment | None = None
        try:
            self._env = lmdb.open(
                str(self.path), map_size=INITIAL_MAP_BYTES, max_dbs=4, subdir=True,
                sync=True, metasync=True, readahead=False,
            )  # fmt: skip
            self.records = self.env.open_db(b"records")
            self.nodes = self.env.open_db(b"nodes")
            self.meta = self.env.open_db(b"meta")
        except lmdb.Error as exc:
            self._release()
            raise StorageError(f"{self.file}: not a usable TopGun data file: {exc}") from None
        self._check_meta(node_id)

    def _check_size(self) -> None:
        """A truncated file would fault (SIGBUS) when LMDB maps a page past its end: refuse
        it before opening. LMDB's two meta pages hold the last page number it wrote."""
        if not self.file.exists():
            return
        size = self.file.stat().st_size
        if size == 0:
            return
        try:
            env = lmdb.open(str(self.path), readonly=True, lock=False, subdir=True, max_dbs=4)
        except lmdb.Error as exc:
            self._release()
            raise StorageError(f"{self.file}: not a usable TopGun data file: {exc}") from None
        try:
            need = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
        finally:
            env.close()
        if size < need:
            self._release()
            raise StorageError(f"{self.file}: truncated ({size} bytes, its pages need {need})")

    def _check_meta(self, node_id: str) -> None:
        with self.env.begin(write=True) as txn:
            fmt = txn.get(b"format", db=self.meta)
            owner = txn.get(b"node_id", db=self.meta)
            if fmt is None and owner is None:
                txn.put(b"format", FORMAT, db=self.meta)
                txn.put(b"node_id", node_id.encode(), db=self.meta)
                return
        if fmt != FORMAT:
            self.close()
            raise StorageError(f"{self.file}: format {fmt!r}, this node reads {FORMAT!r}")
        if owner != node_id.encode():
            self.close()
            raise StorageError(f"{self.file}: holds the data of node {owner!r}, not {node_id!r}")

    def load(self) -> Loaded:
        """Everything the file holds, checked record by record (StorageError names the file
        and the first record that is not whole)."""
        try:
            with self.env.begin() as txn:
                nodes = self._load_nodes(txn)
                rows = list(self._load_rows(txn, len(nodes)))
                table = txn.get(b"table", db=self.meta)
        except lmdb.Error as exc:
            raise StorageError(f"{self.file}: unreadable: {exc}") from None
        return Loaded(nodes, rows, None if table is None else bytes(table))

    def _load_nodes(self, txn: lmdb.Transaction) -> list[str]:
        nodes: list[str] = []
        for k, v in txn.cursor(db=self.nodes):
            (idx,) = _INDEX.unpack(k) if len(k) == _INDEX.size else (-1,)
            if idx != len(nodes):
                raise StorageError(f"{self.file}: node table broken at entry {len(nodes)}")
            nodes.append(bytes(v).decode())
        return nodes

    def _load_rows(self, txn: lmdb.Transaction, node_count: int) -> Iterator[Row]:
        for n, (k, v) in enumerate(txn.cursor(db=self.records)):
            try:
                map_len, key_len = _LENS.unpack_from(v)
                start = _LENS.size + map_len + key_len
                map_name = bytes(v[_LENS.size : _LENS.size + map_len]).decode()
                key = bytes(v[_LENS.size + map_len : start]).decode()
                yield check_row(bytes(k), map_name, key, bytes(v[start:]), node_count)
            except (struct.error, UnicodeDecodeError, ValueError) as exc:
                raise StorageError(f"{self.file}: record {n} is corrupt ({exc})") from None

    def write(self, batch: Batch) -> None:
        """One transaction, committed with fsync; the map grows when the file fills it."""
        while True:
            try:
                self._write(batch)
                return
            except lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)

    def _write(self, batch: Batch) -> None:
        with self.env.begin(write=True) as txn:
            if batch.nodes:
                txn.cursor(db=self.nodes).putmulti(
                    [(_INDEX.pack(i), n.encode()) for i, n in batch.nodes]
                )
            if batch.rows:
                txn.cursor(db=self.records).putmulti(
                    [(record_key(p, m, k), _row_value(m, k, held)) for p, m, k, held in batch.rows]
                )
            for k, v in batch.meta.items():
                txn.put(k, v, db=self.meta)

    def size_bytes(self) -> int:
        return self.file.stat().st_size if self.file.exists() else 0

    @property
    def env(self) -> lmdb.Environment:
        if self._env is None:
            raise StorageError(f"{self.file}: closed")
        return self._env

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()  # closing the descriptor drops the flock
            self._lock = None


def _row_value(map_name: str, key: str, held: bytes) -> bytes:
    m, k = map_name.encode(), key.encode()
    return _LENS.pack(len(m), len(k)) + m + k + held
