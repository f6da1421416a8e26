"""The pure core: hashing, clocks, records, the partition table and the wire codec.

Nothing here opens a socket, starts a task or reads the wall clock on its own; clocks are
injected. That keeps every protocol rule testable without I/O (the websockets library's
"sans-I/O" idea applied to the TopGun protocol).
"""

from topgun.core.errors import ClockSkewError, ProtocolError, TopGunError
from topgun.core.hashing import BACKUP_COUNT, PARTITION_COUNT, fnv1a_utf16, partition_id
from topgun.core.hlc import HLC, Timestamp
from topgun.core.records import LWWMap, LWWRecord
from topgun.core.table import NodeInfo, NodeStatus, PartitionTable, ideal_assignment

__all__ = [
    "BACKUP_COUNT",
    "HLC",
    "PARTITION_COUNT",
    "ClockSkewError",
    "LWWMap",
    "LWWRecord",
    "NodeInfo",
    "NodeStatus",
    "PartitionTable",
    "ProtocolError",
    "Timestamp",
    "TopGunError",
    "fnv1a_utf16",
    "ideal_assignment",
    "partition_id",
]
