"""topgun: a partition-aware data grid (server nodes, smart client) speaking the TopGun protocol."""

from topgun.client import ClusterConfig, MemoryStorage, SqliteStorage, TopGunClient
from topgun.core.hashing import PARTITION_COUNT, partition_id

__all__ = [
    "PARTITION_COUNT",
    "ClusterConfig",
    "MemoryStorage",
    "SqliteStorage",
    "TopGunClient",
    "partition_id",
]
