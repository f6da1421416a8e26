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
from topgun.core.merkle import DEPTH, key_path
from topgun.harness.loop import LoopThread

CALL_MARGIN_S = 5.0


class ServerError(AssertionError):
    """The server answered with ``ERROR`` or ``AUTH_FAIL`` instead of what was asked."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(f"{code}: {message}" if code is not None else message)
        self.code = code


class WireClient:
    """A plain websockets + msgpack client, as an outside user would write."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.inbox: list[dict[str, Any]] = []

    @classmethod
    async def open(
        cls, url: str, token: str | None = None, *, close_timeout: float | None = 10
    ) -> WireClient:
        """Connect, wait for ``AUTH_REQUIRED`` and sign in with ``token`` (if given);
        ``AUTH_FAIL`` raises :class:`ServerError`. ``close_timeout`` bounds the wait for the
        server's side of the closing handshake."""
        c = cls(await connect(url, compression=None, open_timeout=5, close_timeout=close_timeout))
        try:
            await c.recv("AUTH_REQUIRED")
            if token is not None:
                await c.send({"type": "AUTH", "token": token})
                answer = await c.recv("AUTH_ACK", "AUTH_FAIL")
                if answer["type"] == "AUTH_FAIL":
                    raise ServerError(401, f"AUTH_FAIL {answer.get('error', '')}".strip())
        except BaseException:  # a half-open client must not leak its socket
            await c.close()
            raise
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

    async def answer(self, *types: str, timeout: float = 5.0) -> dict[str, Any]:  # noqa: ASYNC109
        """Like :meth:`recv`, but an ``ERROR`` arriving first raises :class:`ServerError`."""
        msg = await self.recv(*types, "ERROR", timeout=timeout)
        if msg["type"] == "ERROR":
            payload = msg.get("payload")
            payload = payload if isinstance(payload, dict) else {}
            code = payload.get("code")
            raise ServerError(code if isinstance(code, int) else None, str(payload.get("message")))
        return msg

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

    async def partition_map(self, timeout: float = 5.0) -> dict[str, Any] | None:  # noqa: ASYNC109
        """The ``PARTITION_MAP`` payload the server sends for ``currentVersion`` 0, or None if
        none comes within ``timeout`` (a single server, or a node still forming)."""
        await self.send({"type": "PARTITION_MAP_REQUEST", "payload": {"currentVersion": 0}})
        try:
            payload = (await self.recv("PARTITION_MAP", timeout=timeout)).get("payload")
        except TimeoutError:
            return None
        if not isinstance(payload, dict):
            raise ProtocolError("PARTITION_MAP without a payload object")
        return payload

    async def read_key(
        self,
        map_name: str,
        key: str,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> dict[str, Any] | None:
        """The record the server's Merkle tree holds for ``key`` (a tombstone too), or None.

        ``SYNC_INIT``, then ``MERKLE_REQ_BUCKET`` down the key's own path only, one level at
        a time: a level that lacks the next digit means the key is not there. Asking for a
        path that does not exist is avoided, as some servers leave it unanswered.
        """
        await self.send({"type": "SYNC_INIT", "mapName": map_name, "lastSyncTimestamp": 0})
        root = _payload(await self.answer("SYNC_RESP_ROOT", timeout=timeout))
        if not root.get("rootHash"):
            return None
        path = key_path(key)
        for depth in range(DEPTH):
            level = await self._bucket(map_name, path[:depth], "SYNC_RESP_BUCKETS", timeout)
            buckets = level.get("buckets")
            if not isinstance(buckets, dict):
                raise ProtocolError("SYNC_RESP_BUCKETS without a buckets object")
            if path[depth] not in buckets:
                return None
        leaf = await self._bucket(map_name, path, "SYNC_RESP_LEAF", timeout)
        records = leaf.get("records")
        if not isinstance(records, list):
            raise ProtocolError("SYNC_RESP_LEAF without a records list")
        for item in records:
            if isinstance(item, dict) and item.get("key") == key:
                record = item.get("record")
                if not isinstance(record, dict):
                    raise ProtocolError(f"SYNC_RESP_LEAF holds {key!r} without a record object")
                return record
        return None

    async def _bucket(
        self,
        map_name: str,
        path: str,
        reply: str,
        timeout: float,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        msg = {"type": "MERKLE_REQ_BUCKET", "payload": {"mapName": map_name, "path": path}}
        await self.send(msg)
        return _payload(await self.answer(reply, timeout=timeout))

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


def _payload(msg: dict[str, Any]) -> dict[str, Any]:
    payload = msg.get("payload")
    if not isinstance(payload, dict):
        raise ProtocolError(f"{msg.get('type')} without a payload object")
    return payload


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
