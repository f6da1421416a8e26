"""Helpers for the server integration tests: in-process clusters and a raw wire client."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from topgun.core.codec import decode_frame, pack
from topgun.core.errors import ProtocolError
from topgun.core.hashing import partition_id
from topgun.harness.nodes import harness_policies, kill_nodes, start_nodes
from topgun.server import NodeConfig, ServerNode
from topgun.server.auth import make_token

SECRET = "test-secret-0123456789abcdef0123456789"
CLUSTER_SECRET = "test-cluster-secret-0123456789abcdef"
FAST = {"heartbeat_interval_s": 0.1, "failure_timeout_s": 1.0, "shutdown_timeout_s": 3.0}


def make_node(node_id: str, peers: list[str] | None = None, **knobs: Any) -> ServerNode:
    cfg = NodeConfig(
        node_id=node_id,
        peers=list(peers or []),
        jwt_secret=SECRET,
        cluster_secret=knobs.pop("cluster_secret", CLUSTER_SECRET),
        **{**FAST, "policies": harness_policies(), **knobs},
    )
    return ServerNode(cfg)


async def start_cluster(ids: list[str], **knobs: Any) -> list[ServerNode]:
    return await start_nodes(
        ids, jwt_secret=SECRET, cluster_secret=CLUSTER_SECRET, **{**FAST, **knobs}
    )


async def stop_all(nodes: list[ServerNode]) -> None:
    await kill_nodes(nodes)


def record(value: Any, millis: int | None = None, counter: int = 0, node: str = "c1") -> dict:
    ms = int(time.time() * 1000) if millis is None else millis
    return {"value": value, "timestamp": {"millis": float(ms), "counter": counter, "nodeId": node}}


def put(op_id: str, key: str, value: Any, map_name: str = "m", **kw: Any) -> dict:
    return {"id": op_id, "mapName": map_name, "key": key, "opType": "PUT",
            "record": record(value, **kw)}  # fmt: skip


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
                self.inbox.append(item.to_wire() if hasattr(item, "to_wire") else item)

    async def write(
        self,
        ops: list[dict[str, Any]],
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        await self.send({"type": "OP_BATCH", "payload": {"ops": ops}})
        return (await self.recv("OP_ACK", timeout=timeout))["payload"]

    async def close(self) -> None:
        await self.ws.close()


def token(roles: list[str] | None = None) -> str:
    return make_token(SECRET, sub="tester", roles=roles)


def owner_of(nodes: list[ServerNode], key: str) -> ServerNode:
    t = nodes[0].table
    assert t is not None
    owner = t.owners[partition_id(key)]
    return next(n for n in nodes if n.node_id == owner)


def run(coro: Any, timeout: float = 60.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))
