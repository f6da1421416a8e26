"""PostgreSQL as a node's store: what the group commit writes comes back as it was, nodes share a
database in schemas of their own, and every refusal names the server, never the password.
Against a real PostgreSQL (the ``postgres`` fixture; skipped with the reason without one)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from test_server_units import SECRET, op
from test_storage import held

from topgun import cli
from topgun.core.concern import Concern, Level
from topgun.core.hlc import Timestamp
from topgun.core.records import LWWRecord
from topgun.harness.ports import free_port
from topgun.harness.postgres import PostgresServer, PostgresUnavailable, unavailable_reason
from topgun.server import NodeConfig, ServerNode
from topgun.server.logutil import node_logger
from topgun.server.metrics import NodeMetrics
from topgun.server.storage import DurableStore, GroupCommit, StorageError
from topgun.server.storage.base import Batch
from topgun.server.storage.postgres import MAX_NAME_BYTES, PostgresEngine, default_schema

pytestmark = pytest.mark.timeout(60)


def engine_of(server: PostgresServer, node_id: str, schema: str | None = None) -> PostgresEngine:
    return PostgresEngine(server.dsn, node_id, schema)


def commit_of(engine: PostgresEngine) -> GroupCommit:
    return GroupCommit(engine, node_logger(engine.node_id), NodeMetrics(engine.node_id))


@pytest.fixture
def db(postgres: PostgresServer) -> Iterator[psycopg.Connection[Any]]:
    """A connection of the test's own, to look at what the nodes wrote."""
    with psycopg.connect(postgres.dsn, autocommit=True) as conn:
        yield conn


def test_records_come_back_in_their_held_form(
    postgres: PostgresServer, db: psycopg.Connection[Any]
) -> None:
    async def scenario() -> None:
        engine = engine_of(postgres, "held")
        commit = commit_of(engine)
        assert engine.load().rows == []  # connects and creates the schema
        store = DurableStore(commit)
        for n, key in enumerate(["k1", "k2", "k1", "x" * 4096]):  # k1 twice in one group
            assert store.merge("m", key, LWWRecord({"n": n}, Timestamp(1000 + n, 7 + n, "c")))
        commit.put_meta(b"table", b"t1")
        await commit.durable()
        assert commit.metrics.registry.get_sample_value("topgun_storage_commits_total") == 1
        expected = {k: held(store, k) for k in ("k1", "k2", "x" * 4096)}
        await commit.close(flush=True)

        query = sql.SQL("SELECT key, held FROM {}.records WHERE map = 'm'")
        in_db = db.execute(query.format(sql.Identifier("topgun_held"))).fetchall()
        assert {k: bytes(h) for k, h in in_db} == expected  # the later k1 won

        again = engine_of(postgres, "held")
        try:
            loaded = again.load()
        finally:
            again.close()
        assert loaded.nodes == ["c"] and loaded.table == b"t1"
        assert {k: h for _, _, k, h in loaded.rows} == expected
        fresh = DurableStore(commit_of(engine_of(postgres, "held-fresh")))
        fresh.packer.adopt(loaded.nodes)
        fresh.install(loaded.rows)
        record = fresh.get("m", "k1")
        assert record is not None and record.value == {"n": 2}

    asyncio.run(scenario())


def test_nodes_share_a_database_each_in_its_own_schema(postgres: PostgresServer) -> None:
    long_id = "n" * 100
    assert default_schema("a") == "topgun_a"
    assert len(default_schema(long_id).encode()) <= MAX_NAME_BYTES
    assert default_schema(long_id) != default_schema(long_id[:-1] + "m")
    engines = [engine_of(postgres, n) for n in ("share-a", "share-b", long_id)]
    try:
        for n, engine in enumerate(engines):
            engine.load()
            held_form = bytes(40) + bytes([n])
            engine.write(Batch([(3, "m", "k", held_form)], [(0, "w")], {}))
        for n, engine in enumerate(engines):
            engine.close()
            [(_, _, _, held_form)] = engine.load().rows
            assert held_form[-1] == n
    finally:
        for engine in engines:
            engine.close()


def test_a_schema_in_use_or_of_another_node_is_refused(postgres: PostgresServer) -> None:
    first = engine_of(postgres, "mine")
    first.load()
    try:
        with pytest.raises(StorageError, match=r"schema topgun_mine: in use by another running"):
            engine_of(postgres, "mine").load()
    finally:
        first.close()
    with pytest.raises(StorageError, match=r"holds the data of node b'mine', not 'yours'"):
        engine_of(postgres, "yours", schema="topgun_mine").load()


def test_a_record_that_is_not_whole_stops_the_load(
    postgres: PostgresServer, db: psycopg.Connection[Any]
) -> None:
    engine = engine_of(postgres, "torn")
    engine.load()
    engine.write(Batch([(3, "m", "k", bytes(41))], [(0, "w")], {}))
    engine.close()
    db.execute("UPDATE topgun_torn.records SET held = '\\x0102'")
    with pytest.raises(
        StorageError, match=r"schema topgun_torn: record 0 \(map 'm', key 'k'\) is corrupt"
    ):
        engine.load()
    engine.close()


def test_a_broken_connection_is_opened_again_for_the_next_group(
    postgres: PostgresServer, db: psycopg.Connection[Any]
) -> None:
    engine = engine_of(postgres, "cut")
    engine.load()
    try:
        engine.write(Batch([(3, "m", "k1", bytes(41))], [(0, "w")], {}))
        db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'topgun node cut'"
        )
        engine.write(Batch([(3, "m", "k2", bytes(41))], [], {}))
        with pytest.raises(StorageError, match="in use by another running node"):
            engine_of(postgres, "cut").load()  # the new connection holds the lock again
    finally:
        engine.close()
    assert sorted(k for _, _, k, _ in engine.load().rows) == ["k1", "k2"]
    engine.close()


@pytest.mark.parametrize("case", ["malformed", "refused", "wrong password"])
def test_a_bad_dsn_or_server_is_refused_naming_the_host_never_the_password(
    postgres: PostgresServer, case: str
) -> None:
    secret = "s3cret-Pa55word"
    if case == "malformed":
        dsn = f"postgresql://topgun:{secret}@[::1/postgres"
        expected = "the DSN is not a valid connection string"
    elif case == "refused":
        port = free_port()
        dsn = f"postgresql://topgun:{secret}@127.0.0.1:{port}/postgres"
        expected = f"PostgreSQL at 127.0.0.1:{port}/postgres schema topgun_bad: cannot connect"
    else:
        dsn = f"postgresql://topgun:{secret}@127.0.0.1:{postgres.port}/postgres"
        expected = f"127.0.0.1:{postgres.port}/postgres schema topgun_bad: cannot connect"
    with pytest.raises(StorageError) as caught:
        engine = PostgresEngine(dsn, "bad")
        try:
            engine.load()
        finally:
            engine.close()
    assert expected in str(caught.value)
    assert secret not in str(caught.value)


def test_a_node_restarted_on_postgres_serves_what_it_held(postgres: PostgresServer) -> None:
    config = {"jwt_secret": SECRET, "cluster_secret": SECRET, "dsn": postgres.dsn}

    async def scenario() -> None:
        node = ServerNode(NodeConfig(node_id="solo", storage="postgres", **config))
        await node.start()
        try:
            await asyncio.wait_for(node.partitions.table_changed.wait(), 5)
            [o] = await node.execute([op("key-1", "v1")], concern=Concern(Level.PERSISTED))
            assert o.ok and o.level == "PERSISTED"
            table = node.table
        finally:
            await node.kill()
        again = ServerNode(NodeConfig(node_id="solo", **config))
        await again.start()
        try:
            record = again.store.get("m", "key-1")
            assert record is not None and record.value == "v1"
            assert again.table is not None and table is not None
            assert again.table.key == table.key and again.table.owners == table.owners
        finally:
            await again.kill()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"storage": "lmdb"}, "storage lmdb needs a data dir"),
        ({"storage": "postgres"}, "storage postgres needs a DSN"),
        ({"data_dir": "/d", "dsn": "host=h"}, "a data dir (--data-dir) is for storage lmdb, not"),
        ({"storage": "memory", "dsn": "host=h"}, "a DSN (--dsn) is for storage postgres, not"),
        ({"data_dir": "/d", "pg_schema": "s"}, "--pg-schema) is for storage postgres, not lmdb"),
        ({"storage": "redis"}, "storage must be one of memory, lmdb, postgres"),
    ],
)
def test_storage_options_that_do_not_go_together_are_refused(
    options: dict[str, str], error: str
) -> None:
    config = NodeConfig(node_id="a", jwt_secret=SECRET, cluster_secret=SECRET, **options)
    with pytest.raises(ValueError, match=error.replace("(", r"\(").replace(")", r"\)")):
        config.validate()


def test_without_postgresql_the_reason_is_said(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TOPGUN_PG_BINDIR", str(tmp_path))
    reason = unavailable_reason()
    assert reason is not None and f"no initdb and pg_ctl in {tmp_path}" in reason
    with pytest.raises(PostgresUnavailable, match="PostgreSQL is not installed"):
        PostgresServer.start()


def test_the_command_line_chooses_the_store(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def config(*argv: str) -> NodeConfig:
        return cli._config(cli._parser().parse_args(["node", "--node-id", "n", *argv]))

    monkeypatch.delenv("TOPGUN_POSTGRES_DSN", raising=False)
    assert config().storage_kind == "memory"
    assert config("--data-dir", "/d").storage_kind == "lmdb"
    cfg = config("--storage", "postgres", "--dsn", "host=h", "--pg-schema", "s")
    assert (cfg.storage_kind, cfg.dsn, cfg.pg_schema) == ("postgres", "host=h", "s")
    assert "host=h" not in repr(cfg)  # a DSN may carry a password
    monkeypatch.setenv("TOPGUN_POSTGRES_DSN", "host=e")
    assert config("--storage", "postgres").dsn == "host=e"
    assert cli.main(["node", "--node-id", "n", "--dev", "--storage", "lmdb"]) == 2
    assert "storage lmdb needs a data dir" in capsys.readouterr().err
