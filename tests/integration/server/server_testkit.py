"""Helpers for the server integration tests: in-process clusters and a raw wire client."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from topgun.core.hashing import partition_id
from topgun.harness.nodes import harness_policies, kill_nodes, start_nodes
from topgun.harness.waiting import wait_until
from topgun.harness.wire import WireClient
from topgun.server import NodeConfig, ServerNode
from topgun.server.auth import make_token

__all__ = ["WireClient"]  # re-exported: the tests' raw client lives in topgun.harness.wire

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


def token(roles: list[str] | None = None) -> str:
    return make_token(SECRET, sub="tester", roles=roles)


def owner_of(nodes: list[ServerNode], key: str) -> ServerNode:
    t = nodes[0].table
    assert t is not None
    owner = t.owners[partition_id(key)]
    return next(n for n in nodes if n.node_id == owner)


def run(coro: Any, timeout: float = 60.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


def with_node(body, **knobs):  # type: ignore[no-untyped-def]
    """Run ``body(node)`` against one started solo node; afterwards no task of it is left."""

    async def scenario() -> None:
        node = make_node("solo", **knobs)
        await node.start()
        try:
            await wait_until(lambda: node.table is not None, 3.0, "solo table")
            await body(node)
        finally:
            await node.kill()
            assert not node.ctx.tasks

    run(scenario())
