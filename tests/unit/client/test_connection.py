"""One NodeConnection against small WebSocket servers on 127.0.0.1: PING carries whole
epoch milliseconds; a server that never answers PING but is alive is named once and kept;
a server that answers nothing at all is still dropped and dialled again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import msgpack
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from topgun.client.connection import NodeConnection
from topgun.core.codec import decode_frame, encode
from topgun.core.messages import Auth, AuthAck, AuthRequired, Message, Ping, Pong
from topgun.harness.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

TOKEN = "token"
PING_S = 0.05
LIVENESS_S = 0.3


class Listener:
    """A ConnectionListener that keeps what it was told."""

    def __init__(self) -> None:
        self.authenticated = 0
        self.lost: list[str] = []
        self.messages: list[Message] = []

    def on_open(self, conn: NodeConnection) -> None:
        pass

    def on_authenticated(self, conn: NodeConnection) -> None:
        self.authenticated += 1

    def on_lost(self, conn: NodeConnection, was_authenticated: bool, reason: str) -> None:
        self.lost.append(reason)

    def on_auth_failed(self, conn: NodeConnection, error: str) -> None:
        pass

    def on_message(self, conn: NodeConnection, message: Message) -> None:
        self.messages.append(message)


class Server:
    """Signs a client in; then answers PING (``answers_ping``), ignores it, or stops reading
    altogether (``freezes``: no PONG and no WebSocket pong either). Keeps the PINGs' raw
    timestamps."""

    def __init__(self, *, answers_ping: bool = True, freezes: bool = False) -> None:
        self.answers_ping = answers_ping
        self.freezes = freezes
        self.ping_timestamps: list[object] = []
        self.url = ""

    async def handle(self, ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):  # the client aborts a silent socket
            await self._serve(ws)

    async def _serve(self, ws: ServerConnection) -> None:
        await ws.send(encode(AuthRequired()))
        async for frame in ws:
            assert isinstance(frame, bytes)
            (msg,) = decode_frame(frame)
            if isinstance(msg, Auth):
                await ws.send(encode(AuthAck()))
                if self.freezes:
                    ws.transport.pause_reading()
            elif isinstance(msg, Ping):
                self.ping_timestamps.append(msgpack.unpackb(frame)["timestamp"])
                if self.answers_ping:
                    await ws.send(encode(Pong(msg.timestamp, msg.timestamp)))


@contextlib.asynccontextmanager
async def connected(server: Server, listener: Listener) -> AsyncIterator[NodeConnection]:
    async with serve(server.handle, "127.0.0.1", 0, compression=None) as ws_server:
        port = ws_server.sockets[0].getsockname()[1]
        conn = NodeConnection(
            "server",
            f"ws://127.0.0.1:{port}",
            listener=listener,
            token=lambda: TOKEN,
            ping_interval_s=PING_S,
            liveness_timeout_s=LIVENESS_S,
            reconnect_base_s=0.05,
            reconnect_max_s=0.2,
        )
        conn.start()
        try:
            await wait_until(lambda: listener.authenticated, within=5, what="signed in")
            yield conn
        finally:
            await conn.close()


def test_pings_carry_whole_epoch_milliseconds() -> None:
    async def main() -> None:
        server, listener = Server(), Listener()
        async with connected(server, listener) as conn:
            await wait_until(lambda: conn.pongs >= 5, within=5, what="5 PONGs")
            stamps = list(server.ping_timestamps)
            assert all(isinstance(t, float) and t.is_integer() for t in stamps), stamps
            assert conn.latency_ms is not None
            assert conn.liveness_drops == 0 and not conn.ignores_ping
            assert conn.ws_pongs <= 1  # WebSocket pings go only until the first PONG

    asyncio.run(main())


def test_a_live_server_that_never_answers_ping_is_named_once_and_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> None:
        server, listener = Server(answers_ping=False), Listener()
        async with connected(server, listener) as conn:
            await wait_until(lambda: conn.ignores_ping, within=5, what="PINGs found unanswered")
            seen = conn.pings
            periods = 4 * round(LIVENESS_S / PING_S)  # four liveness periods more
            await wait_until(lambda: conn.pings >= seen + periods, within=10, what="more PINGs")
            assert conn.pongs == 0 and conn.ws_pongs > 0
            assert conn.liveness_drops == 0 and not listener.lost
            assert conn.is_authenticated

    with caplog.at_level(logging.WARNING, logger="topgun.client.connection"):
        asyncio.run(main())
    warnings = [r.getMessage() for r in caplog.records if "PING" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "ws://127.0.0.1:" in warnings[0] and "answered none of our PINGs" in warnings[0]


def test_a_server_that_answers_nothing_is_dropped_and_dialled_again() -> None:
    async def main() -> None:
        server, listener = Server(freezes=True), Listener()
        async with connected(server, listener) as conn:
            await wait_until(lambda: conn.liveness_drops >= 1, within=5, what="a liveness drop")
            await wait_until(lambda: listener.authenticated >= 2, within=5, what="signed in again")
            assert conn.ws_pongs == 0 and conn.pongs == 0

    asyncio.run(main())
