"""PostgreSQL as the store of ``topgun node`` processes (issue 18): what a node acknowledged at
PERSISTED is in PostgreSQL, a cluster killed at once restarts from it and serves every
acknowledged record, and a node whose server it cannot use refuses to start, naming the
server, never the password. Against a real PostgreSQL (the ``postgres`` fixture)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import psycopg
import pytest
from psycopg import sql
from test_durability import MAP, kill_all_at_once_and_restart, record

from topgun.core.packed import RecordPacker
from topgun.harness.cluster import ClusterSettings, ProcessCluster
from topgun.harness.ports import free_port
from topgun.harness.postgres import PostgresServer
from topgun.harness.wire import WireClient

pytestmark = pytest.mark.timeout(240)
WANTED_ACKS = 5000
BATCH = 100


def postgres_cluster(dsn: str) -> ProcessCluster:
    return ProcessCluster(ClusterSettings(node_options={"storage": "postgres", "dsn": dsn}))


def in_postgres(dsn: str, node_id: str) -> dict[str, Any]:
    """The values of ``MAP`` as the node's schema holds them, read apart from the node."""
    schema = sql.Identifier(f"topgun_{node_id}")
    with psycopg.connect(dsn) as conn:
        nodes = conn.execute(sql.SQL("SELECT node_id FROM {}.nodes ORDER BY idx").format(schema))
        packer = RecordPacker()
        packer.adopt([n for (n,) in nodes])
        rows = conn.execute(
            sql.SQL("SELECT key, held FROM {}.records WHERE map = %s").format(schema), (MAP,)
        ).fetchall()
    return {key: packer.unpack(bytes(held)).value for key, held in rows}


def test_records_acknowledged_at_persisted_are_in_postgres(postgres: PostgresServer) -> None:
    dsn = postgres.new_database()
    cluster = postgres_cluster(dsn)
    try:
        [node] = cluster.start(1)
        cluster.wait_until_formed(30)

        async def write() -> dict[str, Any]:
            client = await WireClient.open(cluster.client_url(node), cluster.token())
            acked: dict[str, Any] = {}
            try:
                for b in range(20):
                    ops = [
                        {"id": str(n), "mapName": MAP, "key": f"k{n}", "record": record(n, n)}
                        for n in range(b * BATCH, (b + 1) * BATCH)
                    ]
                    payload = {"ops": ops, "writeConcern": "PERSISTED", "timeout": 10_000}
                    await client.send({"type": "OP_BATCH", "payload": payload})
                    ack = (await client.recv("OP_ACK", timeout=15))["payload"]
                    for op, result in zip(ops, ack["results"], strict=True):
                        assert result == {**result, "success": True, "achievedLevel": "PERSISTED"}
                        acked[op["key"]] = op["record"]["value"]
            finally:
                await client.close()
            return acked

        acked = asyncio.run(write())
        assert in_postgres(dsn, node) == acked  # read while the node runs: nothing waits
    finally:
        cluster.close()


def test_a_cluster_killed_at_once_restarts_from_postgres_losing_nothing(
    postgres: PostgresServer,
) -> None:
    cluster = postgres_cluster(postgres.new_database())  # three schemas in one database
    try:
        kill_all_at_once_and_restart(cluster, WANTED_ACKS)
    finally:
        cluster.close()


@pytest.mark.parametrize("case", ["server not there", "wrong password"])
def test_a_node_refuses_to_start_on_a_server_it_cannot_use(
    postgres: PostgresServer, case: str
) -> None:
    secret = "Wr0ng-s3cret-pw"
    port = free_port() if case == "server not there" else postgres.port
    dsn = f"postgresql://topgun:{secret}@127.0.0.1:{port}/postgres"
    given = {"TOPGUN_POSTGRES_DSN": dsn} if case == "wrong password" else {}  # or --dsn
    done = subprocess.run(
        [sys.executable, "-m", "topgun", "node", "--node-id", "n1", "--dev",
         "--storage", "postgres", *([] if given else ["--dsn", dsn])],
        check=False, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **given},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    where = f"topgun node: storage: PostgreSQL at 127.0.0.1:{port}/postgres schema topgun_n1"
    assert f"{where}: cannot connect" in done.stderr, done.stderr[-2000:]
    assert secret not in done.stdout + done.stderr
    assert "READY" not in done.stdout
