"""A node's held copies in PostgreSQL (``topgun node --storage postgres --dsn …``): the store an
operator already backs up, written through by the same group commit as the data dir.

Schema. Each node keeps its tables in a schema of its own, so several nodes may share one
database: ``topgun_<node id>`` by default (``--pg-schema`` names another; a node id too long
for PostgreSQL's 63-byte names is cut and given a hash suffix). The name is used as it is,
quoted (``SELECT … FROM "topgun_node-1".records``). Created on start when missing:

.. code-block:: sql

    CREATE TABLE records (
        id   bytea PRIMARY KEY,  -- partition (u16, big-endian) + BLAKE2b-128 of map NUL key
        map  text  NOT NULL,     -- the map's name
        key  text  NOT NULL,     -- the record's key
        held bytea NOT NULL      -- the record in the held form of topgun.core.packed
    );
    CREATE TABLE nodes (idx integer PRIMARY KEY, node_id text NOT NULL);
    CREATE TABLE meta  (name text PRIMARY KEY, value bytea NOT NULL);

One table keyed by map, not a table per map: map names are any client string (PostgreSQL
names stop at 63 bytes), a new map would need DDL inside the write path, and a restart loads
the node with one scan. ``WHERE map = 'users'`` reads one map. The key is hashed into ``id``
because a btree entry stops at ~2.7 kB and a TopGun key may be 4,096 characters; ``id``
only serves the upsert (a load places each record by its key, as the node does). ``held``
is the same bytes the node holds in memory, so loading is not a re-encode; ``nodes`` maps
the writer-id indexes in those bytes to node ids; ``meta`` holds the format, the owning
node's id (a node refuses another's schema) and the last partition table it applied.

One node per schema. A running node's session holds an advisory lock on its schema; a second
node started on it waits :data:`LOCK_WAIT_S` (the session of a node that just stopped ends a
moment later) and is refused. The session sets TCP keepalives, so the server ends the
session of a node whose host vanished within ~:data:`KEEPALIVE_DEAD_S` s.

Write path. A group is one transaction: the group's records (the last version of each key)
are copied in binary into a temporary table and merged with one ``INSERT … ON CONFLICT DO
UPDATE``. The transaction commits with ``synchronous_commit`` as the server has it (set to
``on`` for this session when the server has it ``off``), so ``PERSISTED`` means committed
to PostgreSQL's WAL on disk (and on synchronous standbys if the operator set
``remote_write``/``remote_apply``). Sending the merge and the metadata as one query after the
copy (one round trip less) was slower: the staging rows, deleted instead of dropped at
commit, pile up in a temporary table that autovacuum never visits.

psycopg 3 rather than asyncpg, measured on the 2-core VM with PostgreSQL 15 on the same
machine (50,000 records of ~70 bytes, groups of 1,000 / 5,000, each group one committed
transaction): psycopg's binary COPY + merge 65,000 / 72,000 records/s alone and 22,000 /
40,000 beside a busy Python thread; asyncpg 53,000-59,000 alone and 24,000-38,000 beside a
busy loop; a parameter array (``unnest``) 34,000-55,000 with either, ``executemany`` 18,000.
As fast, and psycopg is blocking: it runs on the group commit's writer thread exactly as
LMDB does, releasing the GIL while it waits for the server, where asyncpg would need a second
commit path on the event loop. Through one ``topgun node`` (16 connections of 100-op
batches, 200,000 keys): 21,000-29,500 writes/s acknowledged at ``PERSISTED`` (LMDB
23,000-25,000; in memory 48,000-90,000, the shared machine being noisy). A table of
1,000,000 records takes 170 B per record (heap and index) and loads in 5.3 s.

A connection that breaks (the server restarted, a network cut) is opened again once and the
group written again (an upsert: a commit whose answer was lost is written to the same
effect); if that fails too, the group commit fails and the node stops promising
``PERSISTED``. Messages name the server (host, port, database, schema), never the password.
"""

from __future__ import annotations

import hashlib
import os
import re
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from topgun.core.hashing import partition_id
from topgun.server.storage.base import (
    Batch,
    Loaded,
    Row,
    StorageError,
    check_held,
    record_key,
)

FORMAT = b"topgun-pg-1"
MAX_NAME_BYTES = 63
"""PostgreSQL's longest name (NAMEDATALEN - 1); longer names are cut silently."""
CONNECT_TIMEOUT_S = 10
"""Used when neither the DSN nor PGCONNECT_TIMEOUT says otherwise."""
LOCK_WAIT_S = 3
"""How long a node waits for its schema's lock before it says another node holds it."""
KEEPALIVES = (
    ("tcp_keepalives_idle", sql.Literal(10)),
    ("tcp_keepalives_interval", sql.Literal(5)),
    ("tcp_keepalives_count", sql.Literal(3)),
)
"""Set on the node's session, so the server ends the session of a node whose host vanished
(and frees its schema's lock) within :data:`KEEPALIVE_DEAD_S`, not TCP's two hours."""
KEEPALIVE_DEAD_S = 25
LOAD_CHUNK = 50_000
"""Rows fetched per round trip while loading (a server-side cursor: the client never holds
the whole result twice)."""
STAGING = sql.Identifier("topgun_staging")
_COLUMNS = ("bytea", "text", "text", "bytea")


def default_schema(node_id: str) -> str:
    """``topgun_<node id>``, cut with a hash suffix when longer than a PostgreSQL name."""
    name = f"topgun_{node_id}"
    if len(name.encode()) <= MAX_NAME_BYTES:
        return name
    suffix = "_" + hashlib.blake2b(node_id.encode(), digest_size=6).hexdigest()
    head = name.encode()[: MAX_NAME_BYTES - len(suffix)].decode(errors="ignore")
    return head + suffix


def scrub(text: str, dsn: str, password: str | None) -> str:
    """``text`` without the DSN or any password in it (driver messages may quote either)."""
    if password:
        text = text.replace(password, "***")
    text = text.replace(dsn, "<dsn>")
    text = re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", text)
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


class PostgresEngine:
    """One node's schema in a PostgreSQL database (a
    :class:`~topgun.server.storage.base.StorageEngine`). Nothing connects until
    :meth:`load`, which runs off the event loop."""

    def __init__(self, dsn: str, node_id: str, schema: str | None = None) -> None:
        self.node_id = node_id
        self.schema = schema or default_schema(node_id)
        self._dsn = dsn
        try:
            self._params: dict[str, Any] = conninfo_to_dict(dsn)
        except psycopg.Error as exc:
            raise StorageError(
                "PostgreSQL: the DSN is not a valid connection string (libpq 'host=… "
                f"dbname=…' or a postgresql:// URI): {scrub(str(exc).strip(), dsn, None)}"
            ) from None
        password = self._params.get("password")
        self._password = None if password is None else str(password)
        self.where = f"PostgreSQL at {self._server()} schema {self.schema}"
        if len(self.schema.encode()) > MAX_NAME_BYTES:
            raise StorageError(f"{self.where}: a schema name is at most {MAX_NAME_BYTES} bytes")
        self._ident = sql.Identifier(self.schema)
        self._lock_key = int.from_bytes(
            hashlib.blake2b(f"topgun:{self.schema}".encode(), digest_size=8).digest(),
            "big", signed=True,
        )  # fmt: skip
        self._conn: psycopg.Connection[Any] | None = None
        self._backend: int | None = None
        """The server process of this engine's session while it is open or was cut."""

    def _server(self) -> str:
        """``host:port/database`` as libpq will resolve them (the environment's defaults)."""
        p, env = self._params, os.environ
        host = p.get("host") or p.get("hostaddr") or env.get("PGHOST") or "the local socket"
        port = p.get("port") or env.get("PGPORT") or "5432"
        db = p.get("dbname") or env.get("PGDATABASE") or p.get("user") or env.get("PGUSER", "")
        return f"{host}:{port}/{db}"

    def _error(self, what: str, exc: BaseException) -> StorageError:
        return StorageError(
            f"{self.where}: {what}: {scrub(str(exc).strip(), self._dsn, self._password)}"
        )

    # ------------------------------------------------------------------ connection

    def _connect(self) -> psycopg.Connection[Any]:
        """Connect, take the schema's lock, create what is missing and check the schema is
        this node's."""
        extra: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in self._params and "PGCONNECT_TIMEOUT" not in os.environ:
            extra["connect_timeout"] = CONNECT_TIMEOUT_S
        if "application_name" not in self._params:
            extra["application_name"] = f"topgun node {self.node_id}"[:MAX_NAME_BYTES]
        try:
            conn = psycopg.connect(self._dsn, **extra)
        except psycopg.Error as exc:
            raise self._error("cannot connect", exc) from None
        try:
            self._prepare(conn)
        except BaseException:
            conn.close()
            raise
        self._backend = conn.info.backend_pid
        return conn

    def _prepare(self, conn: psycopg.Connection[Any]) -> None:
        try:
            self._take_lock(conn)
            if conn.execute("SHOW synchronous_commit").fetchone() == ("off",):
                conn.execute("SET synchronous_commit = on")
            with conn.transaction():
                self._create(conn)
                self._check_meta(conn)
            conn.execute(
                sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {}.records) ON COMMIT DELETE ROWS")
                .format(STAGING, self._ident)
            )  # fmt: skip
        except psycopg.Error as exc:
            raise self._error("cannot use the schema", exc) from None

    def _take_lock(self, conn: psycopg.Connection[Any]) -> None:
        """The schema's advisory lock, held by the session. The holder may be a session
        that is ending (a node that just stopped: the server ends it a moment after the
        client goes), so the lock is waited for up to :data:`LOCK_WAIT_S`. On a
        reconnection the holder may be this engine's own earlier session, which the
        server has not yet seen cut: that one is ended first."""
        key = self._lock_key
        for name, value in KEEPALIVES:
            conn.execute(sql.SQL("SET {} = {}").format(sql.Identifier(name), value))
        if self._backend is not None:
            unsigned = key & 0xFFFF_FFFF_FFFF_FFFF  # pg_locks shows a bigint key as two oids
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                "AND pid = %s AND classid = %s::oid AND objid = %s::oid AND objsubid = 1",
                (self._backend, unsigned >> 32, unsigned & 0xFFFF_FFFF),
            )
        conn.execute(sql.SQL("SET lock_timeout = {}").format(f"{LOCK_WAIT_S}s"))
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        except psycopg.errors.LockNotAvailable:
            raise StorageError(
                f"{self.where}: in use by another running node (its session holds the "
                "schema's lock; the session of a node that died ends once PostgreSQL "
                f"notices, within ~{KEEPALIVE_DEAD_S} s)"
            ) from None
        conn.execute("RESET lock_timeout")

    def _create(self, conn: psycopg.Connection[Any]) -> None:
        s = self._ident
        for statement in (
            "CREATE SCHEMA IF NOT EXISTS {s}",
            "CREATE TABLE IF NOT EXISTS {s}.records (id bytea PRIMARY KEY, map text NOT NULL, "
            "key text NOT NULL, held bytea NOT NULL)",
            "CREATE TABLE IF NOT EXISTS {s}.nodes (idx integer PRIMARY KEY, node_id text NOT NULL)",
            "CREATE TABLE IF NOT EXISTS {s}.meta (name text PRIMARY KEY, value bytea NOT NULL)",
        ):
            conn.execute(sql.SQL(statement).format(s=s))

    def _check_meta(self, conn: psycopg.Connection[Any]) -> None:
        rows = conn.execute(
            sql.SQL("SELECT name, value FROM {}.meta WHERE name IN ('format', 'node_id')")
            .format(self._ident)
        ).fetchall()  # fmt: skip
        meta = {name: bytes(value) for name, value in rows}
        if not meta:
            with conn.cursor() as cur:
                cur.executemany(
                    sql.SQL("INSERT INTO {}.meta VALUES (%s, %s)").format(self._ident),
                    [("format", FORMAT), ("node_id", self.node_id.encode())],
                )
            return
        if meta.get("format") != FORMAT:
            raise StorageError(
                f"{self.where}: format {meta.get('format')!r}, this node reads {FORMAT!r}"
            )
        if meta.get("node_id") != self.node_id.encode():
            owner = meta.get("node_id")
            raise StorageError(
                f"{self.where}: holds the data of node {owner!r}, not {self.node_id!r}"
            )

    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    # ------------------------------------------------------------------ engine

    def load(self) -> Loaded:
        try:
            with self.conn.transaction():
                nodes = self._load_nodes()
                rows = self._load_rows(len(nodes))
                table = self.conn.execute(
                    sql.SQL("SELECT value FROM {}.meta WHERE name = 'table'").format(self._ident)
                ).fetchone()
        except psycopg.Error as exc:
            raise self._error("unreadable", exc) from None
        return Loaded(nodes, rows, None if table is None else bytes(table[0]))

    def _load_nodes(self) -> list[str]:
        nodes: list[str] = []
        query = sql.SQL("SELECT idx, node_id FROM {}.nodes ORDER BY idx").format(self._ident)
        for idx, node_id in self.conn.execute(query):
            if idx != len(nodes):
                raise StorageError(f"{self.where}: node table broken at entry {len(nodes)}")
            nodes.append(node_id)
        return nodes

    def _load_rows(self, node_count: int) -> list[Row]:
        """Every record, its partition taken from its key as the node places it (``id``
        only serves the upsert)."""
        rows: list[Row] = []
        query = sql.SQL("SELECT map, key, held FROM {}.records").format(self._ident)
        with self.conn.cursor(name="topgun_load", binary=True) as cur:
            cur.execute(query)
            while chunk := cur.fetchmany(LOAD_CHUNK):
                for map_name, key, held in chunk:
                    try:
                        check_held(held, node_count)
                    except ValueError as exc:
                        raise StorageError(
                            f"{self.where}: record {len(rows)} (map {map_name!r}, key "
                            f"{key[:64]!r}) is corrupt ({exc})"
                        ) from None
                    rows.append((partition_id(key), map_name, key, held))
        return rows

    def write(self, batch: Batch) -> None:
        """One transaction; a broken connection is opened again once and the group
        written again."""
        try:
            self._write(batch)
            return
        except psycopg.Error as exc:
            if self._conn is None or not self._conn.broken:
                raise self._error("write failed", exc) from None
        self._disconnect()
        try:
            self._write(batch)
        except psycopg.Error as exc:
            raise self._error("write failed after reconnecting", exc) from None

    def _write(self, batch: Batch) -> None:
        conn, s = self.conn, self._ident
        latest = {record_key(p, m, k): (m, k, held) for p, m, k, held in batch.rows}
        with conn.transaction(), conn.cursor() as cur:
            if batch.nodes:
                cur.executemany(
                    sql.SQL(
                        "INSERT INTO {}.nodes VALUES (%s, %s) "
                        "ON CONFLICT (idx) DO UPDATE SET node_id = EXCLUDED.node_id"
                    ).format(s),
                    batch.nodes,
                )
            if latest:
                with cur.copy(sql.SQL("COPY {} FROM STDIN (FORMAT BINARY)").format(STAGING)) as cp:
                    cp.set_types(_COLUMNS)
                    for rid, (map_name, key, held) in latest.items():
                        cp.write_row((rid, map_name, key, held))
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {}.records SELECT * FROM {} "
                        "ON CONFLICT (id) DO UPDATE SET held = EXCLUDED.held"
                    ).format(s, STAGING)
                )
            if batch.meta:
                cur.executemany(
                    sql.SQL(
                        "INSERT INTO {}.meta VALUES (%s, %s) "
                        "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
                    ).format(s),
                    [(k.decode(), v) for k, v in batch.meta.items()],
                )

    def close(self) -> None:
        """Close the connection (which drops the schema's lock)."""
        self._disconnect()
        self._backend = None

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
