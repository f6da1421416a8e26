"""Hosts mode: each ``topgun node`` process on a network host of its own.

:class:`HostCluster` is a :class:`~topgun.harness.cluster.ProcessCluster` whose nodes run
inside the namespaces of a :class:`~topgun.harness.netns.NetworkLab`, listening on their
host's address. Clients run in the root namespace and reach the nodes over the lab's bridge,
so the links between nodes, and between clients and each node, can be cut. A restarted node
comes back on the same host (same address). The harness's own inspection requests come from
the lab's control address, which no fault touches.
"""

from __future__ import annotations

from topgun.harness.cluster import ClusterError, ClusterSettings, ProcessCluster
from topgun.harness.netns import Host, NetworkLab


class HostCluster(ProcessCluster):
    mode = "hosts"

    def __init__(self, settings: ClusterSettings | None = None) -> None:
        self.lab = NetworkLab()
        self.source_address = (self.lab.control_address, 0)  # before the admin routes are made
        try:
            super().__init__(settings)
        except BaseException:
            self.lab.close()
            raise

    def host(self, node_id: str) -> Host:
        try:
            return self.lab.hosts[node_id]
        except KeyError:
            raise ClusterError(f"{node_id} has no network host in this cluster") from None

    def _bind_host(self, node_id: str) -> str:
        return self.lab.add_host(node_id).address

    def _command(self, node_id: str, peers: list[str], ports: tuple[int, int]) -> list[str]:
        command = super()._command(node_id, peers, ports)
        return [*self.lab.add_host(node_id).exec_prefix(), *command]

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.lab.close()
