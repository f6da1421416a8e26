"""Client storage: records of every map and the op log (reference §5.6).

Two adapters with the same small synchronous interface: :class:`MemoryStorage` and
:class:`SqliteStorage` (stdlib ``sqlite3``; survives a restart, so a new client on the same
file re-sends every op that was never acknowledged). Values are stored msgpack-encoded in
their wire shape, so anything the protocol can carry can be stored.
"""

from __future__ import annotations

import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from topgun.core.codec import pack, unpack


class Storage(ABC):
    """What the client needs from a storage adapter."""

    def open(self) -> None:  # noqa: B027 - optional hook
        """Called by ``TopGunClient.start()``; may be called again after ``close()``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Called by ``TopGunClient.close()``."""

    @abstractmethod
    def put_record(self, map_name: str, key: str, record: dict[str, Any]) -> None: ...

    @abstractmethod
    def get_record(self, map_name: str, key: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def records(self, map_name: str) -> list[tuple[str, dict[str, Any]]]: ...

    @abstractmethod
    def append_op(self, entry: dict[str, Any]) -> int:
        """Store an op-log entry; return its id (strictly increasing, starting at 1)."""

    @abstractmethod
    def pending_ops(self) -> list[tuple[int, dict[str, Any]]]:
        """Every entry not yet marked synced, by ascending id."""

    @abstractmethod
    def mark_synced(self, op_ids: Iterable[int]) -> None:
        """Mark exactly these ids as synced (never a range: reference §6.4-B)."""

    @abstractmethod
    def get_meta(self, key: str) -> Any: ...

    @abstractmethod
    def set_meta(self, key: str, value: Any) -> None: ...


class MemoryStorage(Storage):
    """Everything in process memory; lost when the process ends."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], dict[str, Any]] = {}
        self._ops: dict[int, dict[str, Any]] = {}
        self._synced: set[int] = set()
        self._next_id = 1
        self._meta: dict[str, Any] = {}

    def put_record(self, map_name: str, key: str, record: dict[str, Any]) -> None:
        self._records[(map_name, key)] = record

    def get_record(self, map_name: str, key: str) -> dict[str, Any] | None:
        return self._records.get((map_name, key))

    def records(self, map_name: str) -> list[tuple[str, dict[str, Any]]]:
        return [(k, r) for (m, k), r in self._records.items() if m == map_name]

    def append_op(self, entry: dict[str, Any]) -> int:
        op_id = self._next_id
        self._next_id += 1
        self._ops[op_id] = dict(entry)
        return op_id

    def pending_ops(self) -> list[tuple[int, dict[str, Any]]]:
        return [(i, dict(e)) for i, e in sorted(self._ops.items()) if i not in self._synced]

    def mark_synced(self, op_ids: Iterable[int]) -> None:
        for op_id in op_ids:
            if op_id in self._ops:
                self._synced.add(op_id)

    def get_meta(self, key: str) -> Any:
        return self._meta.get(key)

    def set_meta(self, key: str, value: Any) -> None:
        self._meta[key] = value


_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    map_name TEXT NOT NULL, key TEXT NOT NULL, record BLOB NOT NULL,
    PRIMARY KEY (map_name, key)
);
CREATE TABLE IF NOT EXISTS oplog (
    id INTEGER PRIMARY KEY AUTOINCREMENT, entry BLOB NOT NULL, synced INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS oplog_pending ON oplog (synced, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
"""


class SqliteStorage(Storage):
    """A SQLite file (or ``":memory:"``). Every write is committed before it returns."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._db: sqlite3.Connection | None = None

    def open(self) -> None:
        if self._db is None:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            self.open()
        assert self._db is not None
        return self._db

    def put_record(self, map_name: str, key: str, record: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO records (map_name, key, record) VALUES (?, ?, ?)",
            (map_name, key, pack(record)),
        )

    def get_record(self, map_name: str, key: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT record FROM records WHERE map_name = ? AND key = ?", (map_name, key)
        ).fetchone()
        return None if row is None else dict(unpack(row[0]))

    def records(self, map_name: str) -> list[tuple[str, dict[str, Any]]]:
        rows = self.db.execute(
            "SELECT key, record FROM records WHERE map_name = ?", (map_name,)
        ).fetchall()
        return [(k, unpack(r)) for k, r in rows]

    def append_op(self, entry: dict[str, Any]) -> int:
        cur = self.db.execute("INSERT INTO oplog (entry) VALUES (?)", (pack(entry),))
        assert cur.lastrowid is not None
        return int(cur.lastrowid)

    def pending_ops(self) -> list[tuple[int, dict[str, Any]]]:
        sql = "SELECT id, entry FROM oplog WHERE synced = 0 ORDER BY id"
        rows = self.db.execute(sql).fetchall()
        return [(int(i), unpack(e)) for i, e in rows]

    def mark_synced(self, op_ids: Iterable[int]) -> None:
        ids = [(int(i),) for i in op_ids]
        if ids:
            self.db.executemany("UPDATE oplog SET synced = 1 WHERE id = ?", ids)

    def get_meta(self, key: str) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else unpack(row[0])

    def set_meta(self, key: str, value: Any) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, pack(value))
        )
