"""A node's data dir: the engine on disk (:mod:`.engine`), the group commit that feeds it from
the event loop (:mod:`.commit`) and the store that writes through it (:mod:`.store`)."""

from topgun.server.storage.commit import GroupCommit
from topgun.server.storage.engine import Engine, StorageError
from topgun.server.storage.store import DurableStore

__all__ = ["DurableStore", "Engine", "GroupCommit", "StorageError"]
