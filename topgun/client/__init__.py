"""The TopGun client: offline-first maps, a connection pool, partition-aware routing.

Public entry points: :class:`TopGunClient`, :class:`ClusterConfig`, :class:`MemoryStorage`,
:class:`SqliteStorage` and the typed errors. The pure building blocks
(:class:`~topgun.client.breaker.CircuitBreaker`,
:class:`~topgun.client.router.PartitionRouter`,
:class:`~topgun.client.pool_state.ConnectionStateMachine`,
:class:`~topgun.client.sync_engine.SyncEngine`) are importable from their modules.
"""

from topgun.client.client import TopGunClient
from topgun.client.config import ClusterConfig
from topgun.client.errors import (
    AuthError,
    ClientClosedError,
    ConfigError,
    FlushTimeout,
    NotConnectedError,
    QueryError,
    QueryTimeout,
    StartTimeout,
    TopGunClientError,
    WriteRejected,
)
from topgun.client.events import ClusterEvent, EventKind
from topgun.client.maps import TopGunMap
from topgun.client.storage import MemoryStorage, SqliteStorage, Storage

__all__ = [
    "AuthError",
    "ClientClosedError",
    "ClusterConfig",
    "ClusterEvent",
    "ConfigError",
    "EventKind",
    "FlushTimeout",
    "MemoryStorage",
    "NotConnectedError",
    "QueryError",
    "QueryTimeout",
    "SqliteStorage",
    "StartTimeout",
    "Storage",
    "TopGunClient",
    "TopGunClientError",
    "TopGunMap",
    "WriteRejected",
]
