"""One authenticated peer link: msgpack maps over a WebSocket on the cluster port.

Handshake (both sides prove they know the cluster secret, nothing secret is sent):

1. acceptor → ``{t: CHALLENGE, nonce}``
2. initiator → ``{t: HELLO, member, nonce, mac}`` with
   ``mac = HMAC(secret, "hello|" + acceptor nonce + "|" + nodeId)``
3. acceptor → ``{t: WELCOME, member, mac}`` with
   ``mac = HMAC(secret, "welcome|" + initiator nonce + "|" + nodeId)``
   or ``{t: REFUSED, reason}`` and a close with 4003.

Over mutual TLS (:mod:`topgun.server.tls`) each side also checks that the node id the other
names is one of the names of the certificate it presented (CN or a DNS SAN): a stolen
cluster secret without that node's key opens no link.

After it, messages are one-way (``send``) or requests (``request`` puts an ``id``; the answer
carries ``re`` with that id). A request whose link dies fails with :class:`PeerGone`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed

from topgun.core.codec import pack, unpack
from topgun.core.errors import ProtocolError
from topgun.server.tls import certificate_names

HANDSHAKE_TIMEOUT_S = 5.0
CLOSE_REFUSED = 4003


class PeerGone(Exception):
    """The link to a peer closed before it answered."""


class HandshakeError(Exception):
    pass


@dataclass(frozen=True)
class Member:
    node_id: str
    cluster_address: str
    client_url: str
    incarnation: str

    def to_wire(self) -> dict[str, str]:
        return {
            "nodeId": self.node_id,
            "clusterAddress": self.cluster_address,
            "clientUrl": self.client_url,
            "incarnation": self.incarnation,
        }

    @classmethod
    def from_wire(cls, obj: object) -> Member:
        if not isinstance(obj, dict):
            raise HandshakeError("member must be an object")
        vals = [obj.get(k) for k in ("nodeId", "clusterAddress", "clientUrl", "incarnation")]
        if not all(isinstance(v, str) and 0 < len(v) <= 512 for v in vals):
            raise HandshakeError("member fields must be non-empty strings")
        return cls(*vals)  # type: ignore[arg-type]


def mac(secret: str, purpose: str, nonce: str, node_id: str) -> str:
    return hmac.new(
        secret.encode(), f"{purpose}|{nonce}|{node_id}".encode(), hashlib.sha256
    ).hexdigest()


Handler = Callable[["PeerLink", dict[str, Any]], Awaitable[None] | None]


def _expire(fut: asyncio.Future[dict[str, Any]]) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError("peer did not answer in time"))


class PeerLink:
    def __init__(self, ws: Connection, *, outbound: bool) -> None:
        self.ws = ws
        self.outbound = outbound
        self.remote: Member | None = None
        self.last_recv = time.monotonic()
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.closed = False
        self.remote_extra: dict[str, Any] = {}

    @property
    def node_id(self) -> str:
        return self.remote.node_id if self.remote else "?"

    async def _recv(self, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        frame = await asyncio.wait_for(self.ws.recv(), timeout)
        if isinstance(frame, str):
            raise HandshakeError("peer links carry binary frames only")
        obj = unpack(frame)
        if not isinstance(obj, dict):
            raise HandshakeError("peer message must be a map")
        return obj

    async def handshake(
        self, me: Member, secret: str, extra: dict[str, Any] | None = None
    ) -> Member:
        """Run the handshake for this side; returns the authenticated remote member.

        ``extra`` (the sender's table and ready set) rides along in HELLO/WELCOME and the
        peer's arrives in :attr:`remote_extra`, so a joining node knows the cluster's table
        before it could think of founding its own.
        """
        extra = extra or {}
        try:
            if self.outbound:
                challenge = await self._recv(HANDSHAKE_TIMEOUT_S)
                nonce_a = challenge.get("nonce")
                if challenge.get("t") != "CHALLENGE" or not isinstance(nonce_a, str):
                    raise HandshakeError("expected CHALLENGE")
                nonce_c = secrets.token_hex(16)
                await self.ws.send(pack({
                    "t": "HELLO", "member": me.to_wire(), "nonce": nonce_c, "extra": extra,
                    "mac": mac(secret, "hello", nonce_a, me.node_id),
                }))  # fmt: skip
                reply = await self._recv(HANDSHAKE_TIMEOUT_S)
                if reply.get("t") != "WELCOME":
                    raise HandshakeError(f"refused: {reply.get('reason')}")
                remote = Member.from_wire(reply.get("member"))
                expected = mac(secret, "welcome", nonce_c, remote.node_id)
                if not hmac.compare_digest(str(reply.get("mac")), expected):
                    raise HandshakeError("acceptor does not know the cluster secret")
                if not self.certified(remote.node_id):
                    raise HandshakeError(f"acceptor's certificate does not name {remote.node_id}")
                peer_extra = reply.get("extra")
            else:
                nonce_a = secrets.token_hex(16)
                await self.ws.send(pack({"t": "CHALLENGE", "nonce": nonce_a}))
                hello = await self._recv(HANDSHAKE_TIMEOUT_S)
                if hello.get("t") != "HELLO":
                    raise HandshakeError("expected HELLO")
                remote = Member.from_wire(hello.get("member"))
                expected = mac(secret, "hello", nonce_a, remote.node_id)
                if not hmac.compare_digest(str(hello.get("mac")), expected):
                    await self.refuse("bad cluster credentials")
                    raise HandshakeError("initiator does not know the cluster secret")
                if not self.certified(remote.node_id):
                    await self.refuse("node id not named by its certificate")
                    raise HandshakeError(f"initiator's certificate does not name {remote.node_id}")
                if remote.node_id == me.node_id:
                    await self.refuse("same node id")
                    raise HandshakeError("peer has our own node id")
                nonce_c = str(hello.get("nonce"))
                peer_extra = hello.get("extra")
                await self.ws.send(pack({
                    "t": "WELCOME", "member": me.to_wire(), "extra": extra,
                    "mac": mac(secret, "welcome", nonce_c, me.node_id),
                }))  # fmt: skip
        except (TimeoutError, ConnectionClosed, ProtocolError) as exc:
            raise HandshakeError(str(exc) or type(exc).__name__) from exc
        self.remote = remote
        self.remote_extra = peer_extra if isinstance(peer_extra, dict) else {}
        self.last_recv = time.monotonic()
        return remote

    def certified(self, node_id: str) -> bool:
        """Whether ``node_id`` is a name of the peer's certificate; True on a plain link."""
        transport = self.ws.transport
        if transport.get_extra_info("ssl_object") is None:
            return True
        return node_id in certificate_names(transport.get_extra_info("peercert"))

    async def refuse(self, reason: str) -> None:
        with contextlib.suppress(Exception):
            await self.ws.send(pack({"t": "REFUSED", "reason": reason}))
            await self.ws.close(CLOSE_REFUSED, reason)

    async def run(self, handler: Handler) -> None:
        """Receive until the link closes; dispatch every message to ``handler``."""
        try:
            async for frame in self.ws:
                self.last_recv = time.monotonic()
                if isinstance(frame, str):
                    continue
                try:
                    msg = unpack(frame)
                except ProtocolError:
                    break
                if not isinstance(msg, dict):
                    continue
                re_id = msg.get("re")
                if re_id is not None:
                    fut = self._pending.pop(re_id, None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                    continue
                try:
                    result = handler(self, msg)
                    if result is not None:
                        await result
                except (ConnectionClosed, PeerGone):
                    raise
                except Exception:  # one bad message must not take the link down
                    logging.getLogger("topgun.server").exception(
                        "peer message %r failed", msg.get("t")
                    )
        except (ConnectionClosed, PeerGone):
            pass
        finally:
            self._fail_pending()

    def _fail_pending(self) -> None:
        self.closed = True
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(PeerGone(self.node_id))

    async def send(self, msg: dict[str, Any]) -> None:
        if self.closed:
            raise PeerGone(self.node_id)
        try:
            await self.ws.send(pack(msg))
        except ConnectionClosed as exc:
            raise PeerGone(self.node_id) from exc

    async def request(self, msg: dict[str, Any], timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
        if self.closed:
            raise PeerGone(self.node_id)
        self._next_id += 1
        rid = self._next_id
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending[rid] = fut
        msg["id"] = rid
        # a plain timer instead of wait_for: this is on every write's critical path
        timer = loop.call_later(timeout, _expire, fut)
        try:
            await self.send(msg)
            return await fut
        finally:
            timer.cancel()
            self._pending.pop(rid, None)

    async def reply(self, request: dict[str, Any], msg: dict[str, Any]) -> None:
        msg["re"] = request.get("id")
        with contextlib.suppress(PeerGone):
            await self.send(msg)

    def abort(self) -> None:
        """Drop the TCP connection at once (no close handshake)."""
        self.closed = True
        transport = self.ws.transport
        if transport is not None:
            transport.abort()
