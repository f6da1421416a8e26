"""The map handle: an LWW map whose writes apply locally at once and queue for the server."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from topgun.client.write_concern import WriteConcern, WriteConcernLike
from topgun.core.errors import ClockSkewError, ProtocolError
from topgun.core.hlc import HLC, Timestamp
from topgun.core.merkle import MerkleTree
from topgun.core.messages import OP_PUT, OP_REMOVE
from topgun.core.records import LWWMap, LWWRecord

if TYPE_CHECKING:
    from topgun.client.storage import Storage
    from topgun.client.subscriptions import ChangeCallback, Subscription
    from topgun.client.sync_engine import SyncEngine


class TopGunMap:
    """Offline-first: ``set``/``remove`` work before ``start()`` and while disconnected; the
    op is persisted in the op log and sent when a connection is authenticated.

    ``write_concern`` is what this map's writes ask for unless a write says otherwise (see
    :mod:`topgun.client.write_concern`); ``flush()`` reports the level each write reached.
    """

    def __init__(
        self,
        name: str,
        *,
        hlc: HLC,
        storage: Storage,
        engine: SyncEngine,
        wall_ms: Callable[[], int],
        on_write: Callable[[], None],
        write_concern: WriteConcern | None = None,
    ) -> None:
        self.name = name
        self.write_concern = write_concern
        self._hlc = hlc
        self._storage = storage
        self._engine = engine
        self._wall_ms = wall_ms
        self._on_write = on_write
        self._map = LWWMap()
        self.tree = self._new_tree()
        """The §2.9 tree of every local record, kept current: what Merkle sync compares."""
        self.subscribe_hook: Callable[..., Subscription] | None = None
        for key, raw in storage.records(name):
            try:
                self.merge(key, LWWRecord.from_wire(raw), persist=False)
            except ProtocolError:
                continue

    def set(
        self,
        key: str,
        value: Any,
        ttl_ms: int | None = None,
        *,
        write_concern: WriteConcernLike = None,
    ) -> LWWRecord:
        """Write ``value`` (not None: use ``remove``) under ``key``; returns the record.
        ``write_concern`` (a level name or a ``WriteConcern``) wins over the map's."""
        concern = self._concern(write_concern)
        self._check_key(key)
        old = self._stamp_of(key)
        record = self._map.set(key, value, self._hlc, ttl_ms)
        self.tree.update(key, record.timestamp, old)
        self._write(key, OP_PUT, record, concern)
        return record

    def remove(self, key: str, *, write_concern: WriteConcernLike = None) -> LWWRecord:
        """Remove ``key`` (an LWW tombstone, replicated like any write)."""
        concern = self._concern(write_concern)
        self._check_key(key)
        old = self._stamp_of(key)
        record = self._map.remove(key, self._hlc)
        self.tree.update(key, record.timestamp, old)
        self._write(key, OP_REMOVE, record, concern)
        return record

    def _concern(self, asked: WriteConcernLike) -> WriteConcern | None:
        """The write's own concern, else the map's (checked before anything is written)."""
        own = WriteConcern.of(asked)
        return own if own is not None else self.write_concern

    def _stamp_of(self, key: str) -> Timestamp | None:
        rec = self._map.record(key)
        return None if rec is None else rec.timestamp

    def _held_stamp(self, key: str) -> Timestamp:
        stamp = self._stamp_of(key)
        if stamp is None:
            raise KeyError(key)  # the tree only asks for keys it was given
        return stamp

    def _new_tree(self) -> MerkleTree:
        return MerkleTree(self._held_stamp)

    def get(self, key: str) -> Any:
        """The local value, None when absent, removed or expired."""
        return self._map.get(key, self._wall_ms())

    def record(self, key: str) -> LWWRecord | None:
        return self._map.record(key)

    def entries(self) -> dict[str, Any]:
        return dict(self._map.live_items(self._wall_ms()))

    def keys(self) -> list[str]:
        return list(self.entries())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __len__(self) -> int:
        return len(self.entries())

    def merge(self, key: str, record: LWWRecord, *, persist: bool = True) -> bool:
        """Merge a record from the server (LWW); folds its timestamp into the clock first."""
        try:
            self._hlc.update(record.timestamp)
        except ClockSkewError:
            return False  # a timestamp far in the future would freeze the key: refuse it
        old = self._stamp_of(key)
        accepted = self._map.merge(key, record)
        if accepted:
            self.tree.update(key, record.timestamp, old)
            if persist:
                self._storage.put_record(self.name, key, record.to_wire())
        return accepted

    def reset(self) -> None:
        """Forget every record the server will send again (``SYNC_RESET_REQUIRED``: the
        last sync is older than the server's tombstone GC age). Keys with writes not yet
        acknowledged keep their local record, so the write stays visible until it is."""
        keep = self._engine.pending_keys(self.name)
        old = self._map
        self._map = LWWMap()
        self.tree = self._new_tree()
        for key, rec in old.items():
            if key in keep:
                self._map.merge(key, rec)
                self.tree.update(key, rec.timestamp, None)

    def subscribe(
        self,
        where: dict[str, Any] | None = None,
        *,
        predicate: dict[str, Any] | None = None,
        on_change: ChangeCallback | None = None,
    ) -> Subscription:
        """A live query on this map (see :meth:`TopGunClient.subscribe`)."""
        if self.subscribe_hook is None:
            raise RuntimeError("this map handle is not attached to a client")
        return self.subscribe_hook(self.name, where, predicate=predicate, on_change=on_change)

    def _write(
        self, key: str, op_type: str, record: LWWRecord, concern: WriteConcern | None
    ) -> None:
        self._storage.put_record(self.name, key, record.to_wire())
        self._engine.record(self.name, key, op_type, record, concern)
        self._on_write()

    @staticmethod
    def _check_key(key: str) -> None:
        if not isinstance(key, str):
            raise TypeError(f"map keys are strings, got {type(key).__name__}")
