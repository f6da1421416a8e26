"""A small fake TopGun cluster for client integration tests (websockets asyncio server).

Each :class:`FakeNode` speaks the client protocol: AUTH_REQUIRED on connect, AUTH → AUTH_ACK
(or AUTH_FAIL + close 4001), close 4001 on anything but AUTH/PING before auth, PING → PONG,
PARTITION_MAP_REQUEST → PARTITION_MAP (only when the client's version is older), OP_BATCH
→ OP_ACK (with per-op ``results`` or, in ``reference_acks`` mode, ``lastId`` only), and
QUERY_SUB → QUERY_RESP over the union of the nodes' stores. Ops for keys the node does not
own are answered NOT_OWNER when ``not_owner`` is set, else applied at the owner (forwarded).
Every message received is logged for assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve

from topgun.core.codec import decode_frame, encode, encode_batch
from topgun.core.errors import ProtocolError
from topgun.core.messages import (
    NOT_OWNER,
    Auth,
    AuthAck,
    AuthFail,
    AuthRequired,
    ErrorMessage,
    Message,
    NotOwnerHint,
    OpAck,
    OpBatch,
    OpRejected,
    OpResult,
    PartitionMap,
    PartitionMapRequest,
    Ping,
    Pong,
    QueryResp,
    QuerySub,
)
from topgun.core.records import LWWMap
from topgun.core.table import NodeInfo, PartitionTable, build_table, ideal_assignment

TOKEN = "good-token"


@dataclass
class FakeNode:
    node_id: str
    cluster: FakeCluster
    server: Server | None = None
    url: str = ""
    stores: dict[str, LWWMap] = field(default_factory=dict)
    received: list[tuple[int, Message]] = field(default_factory=list)
    closed_4001: int = 0
    sockets: set[ServerConnection] = field(default_factory=set)
    hold_acks: bool = False
    not_owner: bool = False
    reference_acks: bool = False
    results_not_owner: bool = False
    batch_replies: bool = False

    async def start(self, port: int = 0) -> None:
        self.server = await serve(self._handle, "127.0.0.1", port, compression=None)
        sock_port = self.server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{sock_port}"

    async def kill(self) -> None:
        """Close the listener and abort every connection (like a crashed process)."""
        if self.server is not None:
            self.server.close(close_connections=False)
        for ws in list(self.sockets):
            ws.transport.abort()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)
        self.server = None

    def store(self, name: str) -> LWWMap:
        return self.stores.setdefault(name, LWWMap())

    def of_type(self, cls: type[Message]) -> list[Message]:
        return [m for _, m in self.received if isinstance(m, cls)]

    async def _handle(self, ws: ServerConnection) -> None:
        self.sockets.add(ws)
        cid = id(ws)
        authed = False
        try:
            await ws.send(encode(AuthRequired()))
            async for frame in ws:
                try:
                    items = decode_frame(frame)
                except ProtocolError:
                    await ws.close(1002, "Protocol Error")
                    return
                for msg in items:
                    if isinstance(msg, ProtocolError):
                        await ws.send(encode(ErrorMessage(400, "Invalid message format")))
                        continue
                    self.received.append((cid, msg))
                    if isinstance(msg, Ping):
                        await ws.send(encode(Pong(msg.timestamp, 1.0e12)))
                    elif isinstance(msg, Auth):
                        if authed:
                            continue
                        if msg.token == self.cluster.token:
                            authed = True
                            await ws.send(encode(AuthAck()))
                        else:
                            await ws.send(encode(AuthFail("Invalid token")))
                            await ws.close(4001, "Unauthorized")
                            return
                    elif not authed:
                        self.closed_4001 += 1
                        await ws.close(4001, "Auth required")
                        return
                    else:
                        await self._serve(ws, msg)
        except Exception:
            pass
        finally:
            self.sockets.discard(ws)

    async def _reply(self, ws: ServerConnection, *messages: Message) -> None:
        if self.batch_replies and len(messages) > 1:
            await ws.send(encode_batch(encode(m) for m in messages))
        else:
            for m in messages:
                await ws.send(encode(m))

    async def _serve(self, ws: ServerConnection, msg: Message) -> None:
        cluster = self.cluster
        if isinstance(msg, PartitionMapRequest):
            if msg.current_version < cluster.table.version:
                await self._reply(ws, PartitionMap(cluster.table))
        elif isinstance(msg, OpBatch):
            if self.hold_acks or not msg.ops:
                return
            results: list[OpResult] = []
            extra: list[Message] = []
            for op in msg.ops:
                owner = cluster.table.owner_of_key(op.key)
                if owner != self.node_id and self.not_owner:
                    pid = cluster.partition_of(op.key)
                    if self.results_not_owner:
                        results.append(OpResult(op.id or "", False, "APPLIED", NOT_OWNER))
                    else:
                        hint = NotOwnerHint(pid, owner, cluster.table.version)
                        extra.append(OpRejected(op.id or "", NOT_OWNER, None, hint))
                    continue
                target = cluster.nodes[owner]
                if target.server is None:  # a dead owner: this node stands in (promoted)
                    target = self
                assert op.record is not None
                target.store(op.map_name).merge(op.key, op.record)
                results.append(OpResult(op.id or "", True, "APPLIED"))
            last = msg.ops[-1].id or ""
            ack = OpAck(last) if self.reference_acks else OpAck(last, tuple(results))
            await self._reply(ws, *extra, ack)
        elif isinstance(msg, QuerySub):
            rows: dict[str, Any] = {}
            now = 2**62
            for node in cluster.nodes.values():
                for key, value in node.store(msg.map_name).live_items(now // 2**20):
                    rows.setdefault(key, value)
            await self._reply(ws, QueryResp(msg.query_id, tuple(sorted(rows.items()))))


@dataclass
class FakeCluster:
    size: int = 3
    token: str = TOKEN
    nodes: dict[str, FakeNode] = field(default_factory=dict)
    table: PartitionTable = field(init=False)

    async def start(self, endpoint_bug: bool = False) -> FakeCluster:
        for i in range(self.size):
            node = FakeNode(f"node-{i}", self)
            await node.start()
            self.nodes[node.node_id] = node
        self.publish(1, endpoint_bug=endpoint_bug)
        return self

    def publish(
        self, version: int, members: list[str] | None = None, *, endpoint_bug: bool = False
    ) -> PartitionTable:
        ids = members if members is not None else list(self.nodes)
        infos = [NodeInfo(i, "ws://unknown:0" if endpoint_bug else self.nodes[i].url) for i in ids]
        self.table = build_table(version, infos, ideal_assignment(ids))
        return self.table

    async def push_table(self) -> None:
        """Send the current table to every connected client (as servers do on change)."""
        frame = encode(PartitionMap(self.table))
        for node in self.nodes.values():
            for ws in list(node.sockets):
                with contextlib.suppress(Exception):
                    await ws.send(frame)

    def partition_of(self, key: str) -> int:
        from topgun.core.hashing import partition_id

        return partition_id(key)

    @property
    def seeds(self) -> list[str]:
        return [n.url for n in self.nodes.values()]

    async def stop(self) -> None:
        for node in self.nodes.values():
            await node.kill()
