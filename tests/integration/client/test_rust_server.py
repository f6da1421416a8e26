"""Our client against TopGun's Rust server 2.2.0: one real node (the founder of a one-node
cluster under :class:`~topgun.harness.rust.RustCluster`). That server drops a PING whose
timestamp has a fraction, and every PING before AUTH_ACK, without a word.

Skipped, saying why, where the binary cannot run (not linux x64, or ``scripts/bootstrap``
not run).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.integration.client.conftest import run
from tests.unit.client.test_connection import Listener
from topgun import MemoryStorage, TopGunClient
from topgun.client.connection import NodeConnection
from topgun.harness.rust import RustCluster, unavailable_reason
from topgun.harness.waiting import wait_until
from topgun.harness.wire import WireClient

pytestmark = [
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
    pytest.mark.timeout(180),
]

PING_S = 0.2
LIVENESS_S = 1.0
PERIODS = 4
"""Liveness periods a connection is watched for: a dropped PING would end it in one."""
MAP = "rust-interop"


@pytest.fixture(scope="module")
def rust_server() -> Iterator[tuple[RustCluster, str]]:
    cluster = RustCluster()
    try:
        (node,) = cluster.start(1)
        yield cluster, cluster.client_url(node)
    finally:
        cluster.close()


def test_single_server_client_stays_connected_and_its_write_is_acknowledged(
    rust_server: tuple[RustCluster, str], caplog: pytest.LogCaptureFixture
) -> None:
    cluster, url = rust_server

    async def main() -> None:
        client = TopGunClient(
            server_url=url,
            storage=MemoryStorage(),
            options={"ping_interval_s": PING_S, "liveness_timeout_s": LIVENESS_S},
        )
        client.set_auth_token(cluster.token())
        try:
            await client.start(timeout=10)
            (conn,) = client._conns.values()
            pongs = PERIODS * round(LIVENESS_S / PING_S)
            await wait_until(
                lambda: conn.pongs >= pongs,
                within=PERIODS * LIVENESS_S * 4,
                what=f"{pongs} PONGs from the Rust server ({PERIODS} liveness periods)",
            )
            assert conn.liveness_drops == 0 and not conn.ignores_ping
            assert client.get_connection_history()[conn.id] == [
                "DISCONNECTED", "CONNECTING", "CONNECTED", "AUTHENTICATED",
            ]  # fmt: skip
            client.get_map(MAP).set("key-1", {"value": 1})
            await client.flush(timeout=5)  # acknowledged, or FlushTimeout
            reader = await WireClient.open(url, cluster.token())
            try:
                rows = (await reader.query("read-back", MAP, {}))["results"]
            finally:
                await reader.close()
            assert {"key": "key-1", "value": {"value": 1}} in rows
            assert conn.liveness_drops == 0 and conn.state == "AUTHENTICATED"
        finally:
            await client.close()

    with caplog.at_level(logging.WARNING, logger="topgun.client"):
        run(main(), timeout=90)
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_unanswered_pings_are_named_once_and_the_connection_is_kept(
    rust_server: tuple[RustCluster, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Before AUTH_ACK the Rust server answers no PING (it answers WebSocket pings)."""
    _, url = rust_server

    async def main() -> None:
        listener = Listener()
        conn = NodeConnection(
            "unsigned",
            url,
            listener=listener,
            token=lambda: None,  # never signs in
            ping_interval_s=PING_S,
            liveness_timeout_s=LIVENESS_S,
        )
        conn.start()
        try:
            await wait_until(lambda: conn.ignores_ping, within=10, what="PINGs found unanswered")
            seen = conn.pings
            more = PERIODS * round(LIVENESS_S / PING_S)
            await wait_until(
                lambda: conn.pings >= seen + more,
                within=PERIODS * LIVENESS_S * 4,
                what=f"{more} more PINGs ({PERIODS} liveness periods)",
            )
            assert conn.pongs == 0 and conn.ws_pongs > 0
            assert conn.liveness_drops == 0 and not listener.lost
        finally:
            await conn.close()

    with caplog.at_level(logging.WARNING, logger="topgun.client.connection"):
        run(main(), timeout=90)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert url in warnings[0] and "before AUTH_ACK" in warnings[0]
