"""In-process nodes for code already on an event loop (integration tests, benchmarks).

:class:`~topgun.harness.cluster.EmbeddedCluster` is the synchronous face of the same idea
for behave steps; this is the ``async`` one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

from topgun.core.policy import PolicySet
from topgun.core.table import ideal_assignment
from topgun.harness.waiting import wait_until
from topgun.server import NodeConfig, ServerNode
from topgun.server.policy_file import load_policy_file

HARNESS_POLICY_FILE = Path(__file__).with_name("policies.toml")
"""What test nodes allow (role USER: everything); a node without policies lets only ADMIN act."""


@cache
def harness_policies() -> PolicySet:
    return load_policy_file(HARNESS_POLICY_FILE)


def local_config(
    node_id: str,
    peers: list[str],
    *,
    jwt_secret: str,
    cluster_secret: str,
    ports: tuple[int, int] = (0, 0),
    **knobs: Any,
) -> NodeConfig:
    """A node on 127.0.0.1; ``ports`` (client, cluster) 0 lets the OS choose; the
    harness's policy file unless ``policies`` is given."""
    knobs.setdefault("policies", harness_policies())
    return NodeConfig(
        node_id=node_id,
        host="127.0.0.1",
        port=ports[0],
        cluster_port=ports[1],
        peers=peers,
        jwt_secret=jwt_secret,
        cluster_secret=cluster_secret,
        **knobs,
    )


def formed(nodes: Iterable[ServerNode]) -> bool:
    """Every node sees all the others and serves one and the same, fully balanced table."""
    nodes = list(nodes)
    ids = sorted(n.node_id for n in nodes)
    tables = [n.table for n in nodes]
    if any(sorted(n.members()) != ids for n in nodes):
        return False
    if any(t is None for t in tables) or len({t.version for t in tables if t}) != 1:
        return False
    first = tables[0]
    assert first is not None
    return sorted(first.node_ids()) == ids and (first.owners, first.backups) == ideal_assignment(
        ids
    )


async def start_nodes(
    ids: Iterable[str],
    *,
    jwt_secret: str,
    cluster_secret: str,
    into: list[ServerNode] | None = None,
    within: float = 10.0,
    **knobs: Any,
) -> list[ServerNode]:
    """Start nodes on 127.0.0.1 (ports chosen by the OS), each joining the ones before, and
    wait until they have :func:`formed` a cluster. Started nodes are appended to ``into``
    as they start, so a caller can stop them whatever happens."""
    nodes = into if into is not None else []
    for node_id in ids:
        peers = [n.cluster_address for n in nodes]
        config = local_config(
            node_id, peers, jwt_secret=jwt_secret, cluster_secret=cluster_secret, **knobs
        )
        node = ServerNode(config)
        nodes.append(node)
        await asyncio.wait_for(node.start(), within)
    await wait_until(lambda: formed(nodes), within, f"a cluster of {len(nodes)} nodes")
    return nodes


async def kill_nodes(nodes: Iterable[ServerNode], within: float = 5.0) -> None:
    """Kill every node, each within ``within`` seconds; errors are reported, not raised."""
    nodes = list(nodes)
    results = await asyncio.gather(
        *(asyncio.wait_for(n.kill(), within) for n in nodes), return_exceptions=True
    )
    failed = [(n.node_id, r) for n, r in zip(nodes, results, strict=True) if r is not None]
    if failed:
        raise RuntimeError(f"nodes that did not stop cleanly: {failed}")
