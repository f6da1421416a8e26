"""Per-node Prometheus metrics (own CollectorRegistry: several nodes share a process in tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


class NodeMetrics:
    def __init__(self, node_id: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ops_applied = Counter(
            "topgun_ops_applied", "Ops applied on this node as owner", registry=r
        )
        self.ops_forwarded = Counter(
            "topgun_ops_forwarded", "Ops this node forwarded to their owner", registry=r
        )
        self.ops_rejected = Counter(
            "topgun_ops_rejected", "Ops refused (NOT_OWNER, clock skew, limits)", registry=r
        )
        self.ops_replicated = Counter(
            "topgun_ops_replicated", "Records applied here as a backup", registry=r
        )
        self.connections = Gauge("topgun_client_connections", "Open client sockets", registry=r)
        self.table_version = Gauge(
            "topgun_partition_table_version", "Version of the table this node serves", registry=r
        )
        self.members = Gauge("topgun_cluster_members", "Live members incl. self", registry=r)
        self.replication_lag = Gauge(
            "topgun_replication_lag_seconds",
            "Round trip of the last replication to a backup",
            registry=r,
        )
        self.replication_pending = Gauge(
            "topgun_replication_pending", "Replication requests awaiting a backup ack", registry=r
        )
        self.peer_auth_failures = Counter(
            "topgun_peer_auth_failures",
            "Inbound peer handshakes refused (wrong or missing cluster secret, timeout, id clash)",
            registry=r,
        )
        self.migrations = Counter(
            "topgun_partition_migrations", "Partitions sent to a new replica", registry=r
        )
        self.info = Gauge("topgun_node_info", "Node identity", ["node_id"], registry=r)
        self.info.labels(node_id=node_id).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
