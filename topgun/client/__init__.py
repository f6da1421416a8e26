"""The TopGun client: offline-first maps, a connection pool, partition-aware routing.

Public entry points: :class:`TopGunClient`, :class:`ClusterConfig`, :class:`MemoryStorage`,
:class:`SqliteStorage`, the typed errors, and write concern (:class:`WriteConcern`,
:class:`Level`; ``flush()`` returns a :class:`FlushResult`). The pure building blocks
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
from topgun.client.write_concern import AckedWrite, FlushResult, WriteConcern
from topgun.core.concern import Level

__all__ = [
    "AckedWrite",
    "AuthError",
    "ClientClosedError",
    "ClusterConfig",
    "ClusterEvent",
    "ConfigError",
    "EventKind",
    "FlushResult",
    "FlushTimeout",
    "Level",
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
    "WriteConcern",
    "WriteRejected",
]
