"""A plain websockets + msgpack client of the TopGun protocol, as an outside user (or an
attacker) would write one: for integration tests, the security feature and the hostile-input
run. It trusts nothing and assumes nothing about what the server sends."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from topgun.core.codec import decode_frame, pack
from topgun.core.errors import ProtocolError


class WireClient:
    """A plain websockets + msgpack client, as an outside user would write."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.inbox: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, url: str, token: str | None = None) -> WireClient:
        c = cls(await connect(url, compression=None, open_timeout=5))
        first = await c.recv("AUTH_REQUIRED")
        assert first["type"] == "AUTH_REQUIRED"
        if token is not None:
            await c.send({"type": "AUTH", "token": token})
            assert (await c.recv("AUTH_ACK", "AUTH_FAIL"))["type"] == "AUTH_ACK"
        return c

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send(pack(msg))

    async def recv(self, *types: str, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while True:
            for i, m in enumerate(self.inbox):
                if not types or m.get("type") in types:
                    return self.inbox.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {types} within {timeout}s; inbox={self.inbox!r}")
            frame = await asyncio.wait_for(self.ws.recv(), left)
            for item in decode_frame(frame):
                if isinstance(item, ProtocolError):
                    raise item
                self.inbox.append(item.to_wire())

    async def write(
        self,
        ops: list[dict[str, Any]],
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        await self.send({"type": "OP_BATCH", "payload": {"ops": ops}})
        payload: dict[str, Any] = (await self.recv("OP_ACK", timeout=timeout))["payload"]
        return payload

    async def close(self) -> None:
        if self.ws.state is not State.CLOSED:  # closing a failed socket again fails oddly
            await self.ws.close()

    async def closed_code(self, within: float = 5.0) -> int | None:
        """Read until the server closes; its close code (None: closed without one).
        Raises TimeoutError if the socket is still open after ``within`` seconds."""
        try:
            async with asyncio.timeout(within):
                while True:
                    await self.ws.recv()
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None
