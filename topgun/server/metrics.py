"""Per-node Prometheus metrics (own CollectorRegistry: several nodes share a process in tests)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


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
        self.migrations_in_flight = Gauge(
            "topgun_migrations_in_flight", "Partition copies being sent from here", registry=r
        )
        self.tables_refused = Counter(
            "topgun_peer_tables_refused",
            "Tables from peers refused: stale (not newer), forged (same epoch and version with "
            "other contents) or uncommitted (no quorum of acks)",
            ["reason"],
            registry=r,
        )
        self.ops_minority = Counter(
            "topgun_ops_refused_minority",
            "Ops refused with CLUSTER_MINORITY (no quorum, or the owner lease lapsed)",
            registry=r,
        )
        self.ops_unknown = Counter(
            "topgun_ops_outcome_unknown",
            "Ops answered OUTCOME_UNKNOWN or REPLICATION_TIMEOUT (the client resends them)",
            registry=r,
        )
        self.stalls = Counter(
            "topgun_node_stalls", "Heartbeat ticks found late (this node was stalled)", registry=r
        )
        self.declared_dead = Counter(
            "topgun_members_declared_dead",
            "Peer links this node's failure detector declared dead (silent past its limit)",
            registry=r,
        )
        self.safe = Gauge(
            "topgun_cluster_safe", "1 when every partition has its owner and synced backups",
            registry=r,
        )  # fmt: skip
        self.seconds_since_safe = Gauge(
            "topgun_seconds_since_safe", "Seconds since the cluster was last seen safe", registry=r
        )
        self.repaired = Counter(
            "topgun_records_repaired",
            "Records sent to an owner by anti-entropy (stranded or disagreeing copies)",
            registry=r,
        )
        self.storage_commits = Counter(
            "topgun_storage_commits",
            "Group commits written to the node's store (one fsync or transaction each)",
            registry=r,
        )  # fmt: skip
        self.storage_records = Counter(
            "topgun_storage_records_written", "Records written to the node's store", registry=r
        )
        self.storage_pending = Gauge(
            "topgun_storage_pending_records",
            "Changed records waiting behind the commit in progress",
            registry=r,
        )
        self.storage_commit_seconds = Histogram(
            "topgun_storage_commit_seconds", "Time of one group commit, fsync included",
            buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0), registry=r,
        )  # fmt: skip
        self.storage_errors = Counter(
            "topgun_storage_errors",
            "Failed writes to the node's store (disk full, I/O error, lost database)",
            registry=r,
        )  # fmt: skip
        self.info = Gauge("topgun_node_info", "Node identity", ["node_id"], registry=r)
        self.info.labels(node_id=node_id).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)
