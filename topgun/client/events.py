"""What the client tells its listeners about the cluster, as it happens.

Listeners run synchronously on the client's event loop, at the moment the client learns
the fact and before it handles anything else, so what a listener does (a write, a
``sync_now()``) sees the client's state exactly as it was then.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum


class EventKind(StrEnum):
    AUTHENTICATED = "authenticated"
    """A connection to a node completed AUTH."""
    NODE_LEAVING = "node_leaving"
    """A node announced its shutdown (SHUTDOWN_PENDING); it is routed around from now on."""
    NODE_LOST = "node_lost"
    """An authenticated connection to a node dropped."""
    PARTITION_MAP = "partition_map"
    """A newer partition table was accepted."""


@dataclass(frozen=True, slots=True)
class ClusterEvent:
    kind: EventKind
    node_id: str | None = None
    map_version: int | None = None


Listener = Callable[[ClusterEvent], None]
