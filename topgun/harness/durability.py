"""Nodes that keep their data on disk (``topgun node --data-dir DIR``): where each node's data
is, and waiting until a restarted cluster says it is safe again.

Every node of a cluster gets the same ``DIR`` (``ClusterSettings.node_options["data_dir"]``)
and keeps its own data in ``DIR/<node-id>``, so a node restarted under its id finds its
data again, and deleting that folder is what a lost disk looks like.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from topgun.harness.cluster import ClusterController, ClusterError, ProcessCluster
from topgun.harness.waiting import eventually

DATA_DIR = "data_dir"
"""The node option (``--data-dir``) naming the folder every node keeps its data under."""


def node_data_dir(cluster: ClusterController, node_id: str) -> Path:
    """The folder ``node_id`` keeps its data in."""
    root = cluster.settings.node_options.get(DATA_DIR)
    if root is None:
        raise ClusterError(f"{node_id} keeps no data on disk: its cluster has no {DATA_DIR}")
    return Path(root) / node_id


def wait_until_safe(cluster: ClusterController, within: float) -> dict[str, Any]:
    """Wait until every live node's ``/health`` says ``safe`` (each partition owned and
    backed up in sync, by the node's own account); returns each node's last answer."""
    if not isinstance(cluster, ProcessCluster):
        raise ClusterError("a node's /health is read over HTTP: processes or hosts mode")

    def safe() -> dict[str, Any]:
        health = {n: cluster.routes.http.json(n, "/health") for n in cluster.live_nodes()}
        unsafe = {n: h for n, h in health.items() if not h.get("safe")}
        assert not unsafe, f"not safe yet: {unsafe}"
        return health

    return eventually(safe, within, "every node saying it is safe")
