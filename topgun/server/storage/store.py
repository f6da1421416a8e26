"""The store of a node with a data dir: every record a merge changes also goes to disk."""

from __future__ import annotations

from topgun.core.record_wire import Flat
from topgun.server.storage.commit import GroupCommit
from topgun.server.store import PartitionStore


class DurableStore(PartitionStore):
    """A :class:`PartitionStore` whose changed records join the open group commit, in the
    held form they are kept in (so a node without a data dir pays nothing for this)."""

    __slots__ = ("commit",)

    def __init__(self, commit: GroupCommit) -> None:
        super().__init__()
        self.commit = commit
        commit.new_nodes = self.packer.nodes_from

    def merge_flat(self, flat: Flat, key_hash: int) -> bool:
        if not super().merge_flat(flat, key_hash):
            return False
        pid = key_hash % len(self._parts)
        map_name, key = flat[0], flat[1]
        self.commit.add((pid, map_name, key, self._parts[pid][map_name][key]))
        return True
