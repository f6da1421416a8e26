"""What tests and users need to run a local cluster and wait on it, with bounded waits."""

from topgun.harness.cluster import (
    ClusterController,
    ClusterError,
    ClusterSettings,
    EmbeddedCluster,
    ProcessCluster,
)
from topgun.harness.loop import LoopThread
from topgun.harness.waiting import WaitTimeout, eventually, eventually_async

__all__ = [
    "ClusterController",
    "ClusterError",
    "ClusterSettings",
    "EmbeddedCluster",
    "LoopThread",
    "ProcessCluster",
    "WaitTimeout",
    "eventually",
    "eventually_async",
]
