"""Where a node keeps its held copies besides memory: a storage engine (:mod:`.base` says what
one offers; LMDB in a data dir, :mod:`.engine`; PostgreSQL, :mod:`.postgres`), the group
commit that feeds it from the event loop (:mod:`.commit`) and the store that writes through
it (:mod:`.store`)."""

from topgun.server.config import NodeConfig
from topgun.server.storage.base import StorageEngine, StorageError
from topgun.server.storage.commit import GroupCommit
from topgun.server.storage.engine import Engine
from topgun.server.storage.store import DurableStore

__all__ = [
    "DurableStore",
    "Engine",
    "GroupCommit",
    "StorageEngine",
    "StorageError",
    "open_engine",
]


def open_engine(config: NodeConfig) -> StorageEngine | None:
    """The engine ``config`` asks for, or None for a node that keeps its copies in memory
    only. LMDB opens (locks, checks) its data dir here; PostgreSQL only checks the DSN and
    connects in :meth:`~.base.StorageEngine.load`, off the event loop."""
    kind = config.storage_kind
    if kind == "lmdb" and config.data_dir is not None:
        return Engine(config.data_dir, config.node_id)
    if kind == "postgres" and config.dsn is not None:
        from topgun.server.storage.postgres import PostgresEngine

        return PostgresEngine(config.dsn, config.node_id, config.pg_schema)
    return None
