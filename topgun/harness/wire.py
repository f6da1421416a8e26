"""A plain websockets + msgpack client of the TopGun protocol (no topgun client code), as an
outside implementation such as the reference TypeScript client, or an attacker, would speak to
a node: for integration tests, the protocol and security features and the hostile-input run.
It trusts nothing and assumes nothing about what the server sends.

:class:`WireClient` is the asyncio object; :class:`WireDriver` drives one from synchronous
test code on the harness loop. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from topgun.core.codec import decode_frame, pack
from topgun.core.errors import ProtocolError
from topgun.core.merkle import DEPTH
from topgun.harness.loop import LoopThread

CALL_MARGIN_S = 5.0


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
        """The first message (of one of ``types``, if given) already received or arriving
        within ``timeout``; others stay in the inbox. BATCH envelopes are unwrapped."""
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

    async def query(self, query_id: str, map_name: str, query: dict[str, Any]) -> dict[str, Any]:
        """One ``QUERY_SUB`` → ``QUERY_RESP`` (payload), then ``QUERY_UNSUB``."""
        payload = {"queryId": query_id, "mapName": map_name, "query": query}
        await self.send({"type": "QUERY_SUB", "payload": payload})
        resp: dict[str, Any] = (await self.recv("QUERY_RESP"))["payload"]
        await self.send({"type": "QUERY_UNSUB", "payload": {"queryId": query_id}})
        return resp

    async def sync_root(self, map_name: str) -> int:
        await self.send({"type": "SYNC_INIT", "mapName": map_name, "lastSyncTimestamp": 0})
        return int((await self.recv("SYNC_RESP_ROOT"))["payload"]["rootHash"])

    async def walk(self, map_name: str, path: str = "") -> dict[str, dict[str, Any]]:
        """Every record under ``path``, by walking MERKLE_REQ_BUCKET down to the leaves."""
        msg = {"type": "MERKLE_REQ_BUCKET", "payload": {"mapName": map_name, "path": path}}
        await self.send(msg)
        if len(path) == DEPTH:
            leaf = (await self.recv("SYNC_RESP_LEAF"))["payload"]
            return {item["key"]: item["record"] for item in leaf["records"]}
        buckets = (await self.recv("SYNC_RESP_BUCKETS"))["payload"]["buckets"]
        out: dict[str, dict[str, Any]] = {}
        for digit in sorted(buckets):
            out.update(await self.walk(map_name, path + digit))
        return out

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


class WireDriver:
    """A :class:`WireClient` on the harness loop, called from synchronous steps."""

    def __init__(self, loop: LoopThread, client: WireClient) -> None:
        self.loop = loop
        self.client = client

    @classmethod
    def open(cls, loop: LoopThread, url: str, token: str) -> WireDriver:
        return cls(loop, loop.run(WireClient.open(url, token), 10.0))

    def send(self, msg: dict[str, Any]) -> None:
        self.loop.run(self.client.send(msg), CALL_MARGIN_S)

    def recv(self, *types: str, within: float) -> dict[str, Any]:
        return self.loop.run(self.client.recv(*types, timeout=within), within + CALL_MARGIN_S)

    def query(self, query_id: str, map_name: str, query: dict[str, Any]) -> dict[str, Any]:
        return self.loop.run(self.client.query(query_id, map_name, query), 2 * CALL_MARGIN_S)

    def sync_root(self, map_name: str) -> int:
        return self.loop.run(self.client.sync_root(map_name), 2 * CALL_MARGIN_S)

    def walk(self, map_name: str, within: float) -> dict[str, dict[str, Any]]:
        return self.loop.run(self.client.walk(map_name), within + CALL_MARGIN_S)

    def close(self) -> None:
        self.loop.run(self.client.close(), CALL_MARGIN_S)
