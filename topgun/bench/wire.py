"""A lean client-protocol connection for load: pre-encoded frames out, acks checked.

Benchmarks must not measure their own client, so this one skips the smart client's
routing and storage: it authenticates, sends ``OP_BATCH`` frames built once, and reads
``OP_ACK`` as plain msgpack maps. Every wait is bounded by ``step_s``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect

from topgun.bench.workload import key_for, value_for
from topgun.core.codec import encode, pack, unpack
from topgun.core.hlc import Timestamp
from topgun.core.messages import Auth, ClientOp, OpBatch
from topgun.core.records import LWWRecord

MAP = "bench"
WRITER = "bench-writer"


def batch_frame(
    keys: list[str], values: list[Any], millis: int, counter: int = 0, first_id: int = 1
) -> bytes:
    ops = tuple(
        ClientOp(MAP, k, LWWRecord(v, Timestamp(millis, counter, WRITER)), "PUT", str(first_id + n))
        for n, (k, v) in enumerate(zip(keys, values, strict=True))
    )
    return encode(OpBatch(ops))


def key_frames(numbers: Sequence[int], batch_size: int, millis: int) -> list[bytes]:
    """OP_BATCH frames writing ``key_for(i)`` = ``value_for(i)`` for each ``i`` given."""
    return [
        batch_frame(
            [key_for(i) for i in numbers[s : s + batch_size]],
            [value_for(i) for i in numbers[s : s + batch_size]],
            millis,
        )
        for s in range(0, len(numbers), batch_size)
    ]


class AckResult(msgspec.Struct):
    """One op's result in an ``OP_ACK`` (other fields ignored)."""

    success: bool = False
    achievedLevel: str | None = None


class _AckPayload(msgspec.Struct):
    results: list[AckResult] = []


class _Frame(msgspec.Struct):
    type: str = ""
    payload: msgspec.Raw = msgspec.Raw(b"\xc0")


# The load client shares the cores with the nodes it measures: an ack's envelope and per-op
# results are read by msgspec in C rather than as msgpack maps walked in Python.
_frame_decoder = msgspec.msgpack.Decoder(_Frame)
_ack_decoder = msgspec.msgpack.Decoder(_AckPayload)


class WireClient:
    def __init__(self, ws: ClientConnection, step_s: float) -> None:
        self.ws = ws
        self.step_s = step_s
        self._next_query = 0

    @classmethod
    async def open(cls, url: str, token: str, step_s: float = 10.0) -> WireClient:
        ws = await asyncio.wait_for(connect(url, compression=None, open_timeout=step_s), step_s)
        client = cls(ws, step_s)
        await client.expect("AUTH_REQUIRED")
        await asyncio.wait_for(ws.send(encode(Auth(token))), step_s)
        reply = await client.expect("AUTH_ACK", "AUTH_FAIL")
        if reply["type"] == "AUTH_FAIL":
            raise RuntimeError(f"AUTH refused by {url}: {reply.get('error')}")
        return client

    async def expect(self, *types: str) -> dict[str, Any]:
        """The next message of one of ``types``; pushes (partition maps, updates) skipped."""
        deadline = time.monotonic() + self.step_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {types} within {self.step_s} s")
            frame: Any = await asyncio.wait_for(self.ws.recv(), left)
            msg = unpack(frame)
            if isinstance(msg, dict) and msg.get("type") in types:
                return msg

    async def write(self, frame: bytes) -> list[AckResult]:
        """Send one encoded OP_BATCH; the per-op results of its OP_ACK (other messages,
        such as partition map pushes, are skipped)."""
        async with asyncio.timeout(self.step_s):  # no task per call, unlike wait_for
            await self.ws.send(frame)
            while True:
                frame_in = await self.ws.recv()
                if not isinstance(frame_in, bytes):
                    continue  # a text frame is never an ack of ours
                msg = _frame_decoder.decode(frame_in)
                if msg.type == "OP_ACK":
                    return _ack_decoder.decode(msg.payload).results

    async def query_page(self, query: dict[str, Any]) -> dict[str, Any]:
        """One QUERY_SUB answer's payload; the subscription is dropped again at once."""
        self._next_query += 1
        qid = f"bench-q{self._next_query}"
        sub = {"type": "QUERY_SUB", "payload": {"queryId": qid, "mapName": MAP, "query": query}}
        await asyncio.wait_for(self.ws.send(pack(sub)), self.step_s)
        while True:
            resp = await self.expect("QUERY_RESP")
            payload = resp.get("payload", {})
            if payload.get("queryId") == qid:
                break
        unsub = {"type": "QUERY_UNSUB", "payload": {"queryId": qid}}
        await asyncio.wait_for(self.ws.send(pack(unsub)), self.step_s)
        return payload if isinstance(payload, dict) else {}

    async def sync_root(self, map_name: str = MAP) -> int:
        """``SYNC_INIT`` from an empty client: the cluster's Merkle root of the map (every
        owner then keeps its trees of the map current)."""
        sync = {"type": "SYNC_INIT", "mapName": map_name, "lastSyncTimestamp": 0}
        await asyncio.wait_for(self.ws.send(pack(sync)), self.step_s)
        return int((await self.expect("SYNC_RESP_ROOT"))["payload"]["rootHash"])

    async def close(self) -> None:
        await asyncio.wait_for(self.ws.close(), self.step_s)


def succeeded(results: list[AckResult]) -> tuple[int, int]:
    """(acked ops, of which confirmed by every backup: level REPLICATED)."""
    ok = [r for r in results if r.success]
    return len(ok), sum(1 for r in ok if r.achievedLevel == "REPLICATED")
