"""One WebSocket connection to one node: the asyncio shell around the pure state machine.

The connection object is stable for its whole life: the pool may rename it (seed id →
node id) but every callback receives the object itself, never an id captured when the
socket was created (reference §6.3). It authenticates itself (decision 5): before AUTH_ACK
nothing but AUTH and PING is written. PONG (and any other frame) feeds this connection's own
liveness tracker (§6.4-F); a silent connection is dropped and dialled again. Reconnects use
capped exponential backoff with jitter and never give up (§6.4-L); AUTH_FAIL parks the
connection in FAILED until a new token arrives.

PING carries whole epoch milliseconds: TopGun's Rust server reads the timestamp as an
unsigned integer and silently drops a PING whose float has a fraction. Until the first PONG
of a session, each PING goes with a WebSocket ping as well, so a server that never answers
PING (the Rust server before AUTH_ACK, or any server that drops our PINGs) is still known to
be alive: it is named in one warning instead of being dropped and dialled again forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from ssl import SSLContext, create_default_context
from typing import Protocol

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from topgun.client.pool_state import ConnectionStateMachine, ConnEvent, ConnState, backoff_delay
from topgun.core.codec import decode_frame, encode
from topgun.core.errors import ProtocolError
from topgun.core.messages import Auth, AuthAck, AuthFail, AuthRequired, Message, Ping, Pong

log = logging.getLogger(__name__)

MAX_FRAME_BYTES = 64 * 1024 * 1024


def epoch_ms() -> int:
    """Now in whole epoch milliseconds, the only form a millisecond timestamp takes on the wire."""
    return time.time_ns() // 1_000_000


class ConnectionListener(Protocol):
    def on_open(self, conn: NodeConnection) -> None: ...
    def on_authenticated(self, conn: NodeConnection) -> None: ...
    def on_lost(self, conn: NodeConnection, was_authenticated: bool, reason: str) -> None: ...
    def on_auth_failed(self, conn: NodeConnection, error: str) -> None: ...
    def on_message(self, conn: NodeConnection, message: Message) -> None: ...


class NodeConnection:
    def __init__(
        self,
        conn_id: str,
        url: str,
        *,
        listener: ConnectionListener,
        token: Callable[[], str | None],
        connect_timeout_s: float = 5.0,
        ping_interval_s: float = 5.0,
        liveness_timeout_s: float = 15.0,
        reconnect_base_s: float = 0.25,
        reconnect_max_s: float = 30.0,
        ssl: SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.id = conn_id
        self.url = url
        self.listener = listener
        self._token = token
        self.connect_timeout_s = connect_timeout_s
        self.ping_interval_s = ping_interval_s
        self.liveness_timeout_s = liveness_timeout_s
        self.reconnect_base_s = reconnect_base_s
        self.reconnect_max_s = reconnect_max_s
        self._clock = clock
        self._ssl = (ssl or create_default_context()) if url.startswith("wss://") else None
        """``wss://`` only: the given context, else the system's CAs; ``ws://`` takes none."""
        self.sm = ConnectionStateMachine()
        self.last_seen: float | None = None
        self.latency_ms: float | None = None
        self.pongs = 0
        self.pings = 0
        self.ws_pongs = 0
        """WebSocket pongs: answers to the pings sent until the session's first PONG."""
        self.ignores_ping = False
        """This session's server answers WebSocket pings but none of our PINGs."""
        self.last_error: str | None = None
        self.auth_error: str | None = None
        self.liveness_drops = 0
        self.leaving = False
        """The node announced its shutdown (SHUTDOWN_PENDING): route around it."""
        self._ws: ClientConnection | None = None
        self._out: asyncio.Queue[bytes] | None = None
        self._auth_sent = False
        self._closing = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._retiring: asyncio.Task[None] | None = None
        self._session_pongs = 0
        self._first_ping_at: float | None = None
        self._warned_ignores_ping = False

    def __repr__(self) -> str:
        return f"<NodeConnection {self.id} {self.url} {self.sm.state}>"

    @property
    def state(self) -> ConnState:
        return self.sm.state

    @property
    def is_authenticated(self) -> bool:
        return self.sm.is_authenticated

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"topgun-conn-{self.id}"
            )

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 2.0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 2.0)
        self.sm.fire(ConnEvent.CLOSE)

    def token_changed(self) -> None:
        """A new token: authenticate an open connection, revive a FAILED one."""
        if self.sm.state is ConnState.CONNECTED and not self._auth_sent:
            self._send_auth()
        elif self.sm.state is ConnState.FAILED:
            self.sm.fire(ConnEvent.RETRY)
            self.auth_error = None
            self._wake.set()
        elif self.sm.state is ConnState.RECONNECTING:
            self._wake.set()

    def retire(self) -> None:
        """Close the current session with 1001 (going away); reconnecting carries on, so
        the node is dialled again only if it stays in the partition table."""
        ws = self._ws
        if ws is not None and self._retiring is None:
            self._retiring = asyncio.get_running_loop().create_task(
                ws.close(1001, "node is shutting down")
            )
            self._retiring.add_done_callback(self._retired)

    def _retired(self, task: asyncio.Task[None]) -> None:
        self._retiring = None

    def force_reconnect(self) -> None:
        ws = self._ws
        if ws is not None:
            ws.transport.abort()

    # --- sending -------------------------------------------------------------------------

    def send(self, message: Message) -> bool:
        """Queue ``message`` if authenticated; False otherwise (nothing is written before
        AUTH_ACK except AUTH and PING)."""
        if not self.sm.is_authenticated or self._out is None:
            return False
        self._out.put_nowait(encode(message))
        return True

    def _send_raw(self, message: Message) -> None:
        if self._out is not None:
            self._out.put_nowait(encode(message))

    def _send_auth(self) -> None:
        token = self._token()
        if token:
            self._auth_sent = True
            self._send_raw(Auth(token))

    # --- the loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._closing:
            try:
                await self._attempt()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not silently end reconnecting
                log.exception("connection %s: unexpected error; retrying", self.id)
                self.sm.state = ConnState.RECONNECTING
                await self._pause()

    async def _attempt(self) -> None:
        if self.sm.state is ConnState.FAILED:
            self._wake.clear()
            await self._wake.wait()
            return
        self.sm.fire(ConnEvent.CONNECT)
        try:
            ws = await asyncio.wait_for(
                connect(
                    self.url,
                    ssl=self._ssl,
                    open_timeout=None,
                    ping_interval=None,
                    close_timeout=1.0,
                    max_size=MAX_FRAME_BYTES,
                    compression=None,
                    proxy=None,
                ),
                self.connect_timeout_s,
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.last_error = f"cannot connect to {self.url}: {exc or type(exc).__name__}"
            self.sm.fire(ConnEvent.LOST)
            self.listener.on_lost(self, False, self.last_error)
            await self._pause()
            return
        reason = await self._session(ws)
        was_authenticated = self.sm.is_authenticated
        if self.sm.can(ConnEvent.LOST):  # not when a new token already moved it on
            self.sm.fire(ConnEvent.LOST)
        self.last_error = reason
        self.listener.on_lost(self, was_authenticated, reason)
        await self._pause()

    async def _pause(self) -> None:
        if self._closing or self.sm.state is ConnState.FAILED:
            return
        delay = backoff_delay(self.sm.attempts, self.reconnect_base_s, self.reconnect_max_s)
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)

    async def _session(self, ws: ClientConnection) -> str:
        self._ws = ws
        self._out = asyncio.Queue()
        self._auth_sent = False
        self.leaving = False
        self.last_seen = self._clock()
        self._session_pongs = 0
        self._first_ping_at = None
        self.ignores_ping = False
        self.sm.fire(ConnEvent.OPENED)
        self.listener.on_open(self)
        self._send_auth()
        writer = asyncio.create_task(self._writer(ws, self._out))
        pinger = asyncio.create_task(self._pinger(ws))
        reason = "connection closed"
        try:
            async for frame in ws:
                self.last_seen = self._clock()
                self._on_frame(ws, frame)
        except ProtocolError as exc:
            reason = f"undecodable frame from {self.url}: {exc}"
            with contextlib.suppress(Exception):
                await ws.close(1002, "Protocol Error")
        except Exception as exc:
            reason = f"connection to {self.url} lost: {exc or type(exc).__name__}"
        else:
            code = ws.close_code
            reason = f"connection to {self.url} closed (code {code})"
        finally:
            writer.cancel()
            pinger.cancel()
            await asyncio.gather(writer, pinger, return_exceptions=True)
            self._ws = None
            self._out = None
            ws.transport.abort()
        return reason

    async def _writer(self, ws: ClientConnection, out: asyncio.Queue[bytes]) -> None:
        try:
            while True:
                data = await out.get()
                await ws.send(data)
        except asyncio.CancelledError:
            raise
        except Exception:
            ws.transport.abort()

    async def _pinger(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(self.ping_interval_s)
            if self._closing:  # close() is waiting for the server's close frame
                return
            last = self.last_seen or 0.0
            now = self._clock()
            if now - last > self.liveness_timeout_s:
                self.liveness_drops += 1
                log.warning("no frame from %s for %.1fs: reconnecting", self.url, now - last)
                ws.transport.abort()
                return
            if self._session_pongs == 0:
                self._note_unanswered_pings(now)
                await self._ws_ping(ws)
            self.pings += 1
            self._send_raw(Ping(float(epoch_ms())))

    def _note_unanswered_pings(self, now: float) -> None:
        """Name, once per connection, a server that answered no PING for a liveness period."""
        if self._first_ping_at is None:
            self._first_ping_at = now
            return
        if now - self._first_ping_at < self.liveness_timeout_s or self.ignores_ping:
            return
        self.ignores_ping = True
        if self._warned_ignores_ping:
            return
        self._warned_ignores_ping = True
        stage = "" if self.is_authenticated else " (before AUTH_ACK)"
        log.warning(
            "%s has answered none of our PINGs for %.1fs%s; it answers WebSocket pings, so "
            "the connection is kept and its liveness is checked with those",
            self.url,
            now - self._first_ping_at,
            stage,
        )

    async def _ws_ping(self, ws: ClientConnection) -> None:
        """A WebSocket ping whose pong counts as a frame from the server."""
        try:
            waiter = await asyncio.wait_for(ws.ping(), self.ping_interval_s)
        except (ConnectionClosed, TimeoutError):  # closing, or writes stalled: liveness tells
            return
        if isinstance(waiter, asyncio.Future):
            waiter.add_done_callback(self._on_ws_pong)

    def _on_ws_pong(self, waiter: asyncio.Future[float]) -> None:
        if waiter.cancelled() or waiter.exception() is not None:
            return
        self.ws_pongs += 1
        self.last_seen = self._clock()

    def _on_frame(self, ws: ClientConnection, frame: bytes | str) -> None:
        for item in decode_frame(frame):  # raises a fatal ProtocolError on garbage
            if isinstance(item, ProtocolError):
                log.debug("ignoring a message from %s: %s", self.url, item)
                continue
            if isinstance(item, Pong):
                self.pongs += 1
                self._session_pongs += 1
                self.ignores_ping = False
                self.latency_ms = max(0.0, time.time() * 1000.0 - item.timestamp)
            elif isinstance(item, AuthAck):
                if self.sm.state is ConnState.CONNECTED:
                    self.sm.fire(ConnEvent.AUTH_ACK)
                    self.listener.on_authenticated(self)
            elif isinstance(item, AuthFail):
                if self.sm.state is ConnState.CONNECTED:
                    self.auth_error = item.error
                    self.sm.fire(ConnEvent.AUTH_FAIL)
                    self.listener.on_auth_failed(self, item.error)
                    ws.transport.abort()
                    return
            elif isinstance(item, AuthRequired):
                if self.sm.state is ConnState.CONNECTED and not self._auth_sent:
                    self._send_auth()
            else:
                self.listener.on_message(self, item)
