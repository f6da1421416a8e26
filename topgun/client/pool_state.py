"""The connection pool's pure parts: one connection's state machine, the reconnect backoff,
and the plan that reconciles pooled connections with a partition table.

No I/O here; :mod:`topgun.client.connection` and :mod:`topgun.client.pool` drive these.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

from topgun.core.table import NodeStatus, PartitionTable

HISTORY_LENGTH = 64


class ConnState(StrEnum):
    DISCONNECTED = "DISCONNECTED"
    CONNECTING = "CONNECTING"
    CONNECTED = "CONNECTED"
    AUTHENTICATED = "AUTHENTICATED"
    RECONNECTING = "RECONNECTING"
    FAILED = "FAILED"
    CLOSED = "CLOSED"


class ConnEvent(StrEnum):
    CONNECT = "connect"  # start an attempt
    OPENED = "opened"  # the WebSocket handshake completed
    AUTH_ACK = "auth_ack"
    AUTH_FAIL = "auth_fail"
    LOST = "lost"  # the attempt failed or the socket closed: schedule a retry
    RETRY = "retry"  # a new token arrived after AUTH_FAIL: try again
    CLOSE = "close"  # the user closed the client


S, E = ConnState, ConnEvent
TRANSITIONS: dict[tuple[ConnState, ConnEvent], ConnState] = {
    (S.DISCONNECTED, E.CONNECT): S.CONNECTING,
    (S.RECONNECTING, E.CONNECT): S.CONNECTING,
    (S.CONNECTING, E.OPENED): S.CONNECTED,
    (S.CONNECTING, E.LOST): S.RECONNECTING,
    (S.CONNECTED, E.AUTH_ACK): S.AUTHENTICATED,
    (S.CONNECTED, E.AUTH_FAIL): S.FAILED,
    (S.CONNECTED, E.LOST): S.RECONNECTING,
    (S.AUTHENTICATED, E.LOST): S.RECONNECTING,
    (S.AUTHENTICATED, E.AUTH_ACK): S.AUTHENTICATED,  # a duplicate ack is harmless
    (S.FAILED, E.RETRY): S.RECONNECTING,
    (S.FAILED, E.LOST): S.FAILED,  # the server closes 4001 right after AUTH_FAIL
}
"""Every allowed transition. There is no "give up" edge: a connection that keeps failing
stays in RECONNECTING with a capped delay (reference §6.4-L); only AUTH_FAIL leads to FAILED,
and only a new token leaves it. A total disconnect always finds its way back (§6.4-K)."""


class InvalidTransition(RuntimeError):
    pass


@dataclass(slots=True)
class ConnectionStateMachine:
    state: ConnState = ConnState.DISCONNECTED
    attempts: int = 0
    """Consecutive failed attempts since the last successful authentication."""
    history: deque[ConnState] = field(default_factory=lambda: deque(maxlen=HISTORY_LENGTH))
    """The most recent states entered (bounded: a connection may live for months)."""

    def can(self, event: ConnEvent) -> bool:
        return event is ConnEvent.CLOSE or (self.state, event) in TRANSITIONS

    def fire(self, event: ConnEvent) -> ConnState:
        """Apply ``event``; raise :class:`InvalidTransition` if it is not allowed."""
        if event is ConnEvent.CLOSE:
            new = ConnState.CLOSED
        else:
            try:
                new = TRANSITIONS[(self.state, event)]
            except KeyError:
                raise InvalidTransition(f"{event} is not allowed in state {self.state}") from None
        if event is ConnEvent.AUTH_ACK:
            self.attempts = 0
        elif event is ConnEvent.LOST and self.state is not ConnState.FAILED:
            self.attempts += 1
        self.history.append(new)
        self.state = new
        return new

    @property
    def is_authenticated(self) -> bool:
        return self.state is ConnState.AUTHENTICATED


def backoff_delay(
    attempts: int,
    base_s: float,
    max_s: float,
    rand: Callable[[], float] = random.random,
) -> float:
    """Capped exponential backoff with jitter: ``min(max, base·2^(attempts-1))`` scaled by a
    factor in [0.5, 1.0); ``attempts`` counts failures so far (1 after the first)."""
    exp = min(max(attempts - 1, 0), 30)
    capped = min(max_s, base_s * (2**exp))
    return float(capped * (0.5 + 0.5 * rand()))


# --- reconciliation of pooled connections with a table ----------------------------------


def usable_endpoint(url: str) -> bool:
    """A URL a client can dial: ws/wss with a real host and a non-zero port (reference §6.1
    servers advertise ``ws://unknown:0``)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        return False
    return parts.hostname != "unknown" and port != 0


@dataclass(frozen=True, slots=True)
class ReconcilePlan:
    renames: tuple[tuple[str, str], ...] = ()
    """(seed id, node id): the same connection object, now known by the node id."""
    adds: tuple[tuple[str, str], ...] = ()
    """(node id, url): nodes of the table with no connection yet."""
    removes: tuple[str, ...] = ()
    """Node ids that left the table: close their connections."""

    @property
    def empty(self) -> bool:
        return not (self.renames or self.adds or self.removes)


def plan_reconcile(
    current: Mapping[str, str],
    seed_ids: set[str],
    table: PartitionTable,
) -> ReconcilePlan:
    """What to do with the pool (``current``: connection id → endpoint) given ``table``.

    * A table node whose endpoint equals a seed connection's endpoint *exactly* takes that
      connection over (rename; reference §6.3 done atomically by the pool).
    * A table node with a usable endpoint and no connection gets one, if ACTIVE or JOINING.
    * A connection known by a node id that is no longer in the table is removed.
    * Seed connections that match nothing are kept: a table whose endpoints are unusable
      (reference §6.1) never tears down working connections.
    """
    renames: list[tuple[str, str]] = []
    adds: list[tuple[str, str]] = []
    by_endpoint: dict[str, str] = {}
    for conn_id, url in current.items():
        if conn_id in seed_ids:
            by_endpoint.setdefault(url, conn_id)
    table_ids = set(table.node_ids())
    taken: set[str] = set()
    for node in table.nodes:
        if node.node_id in current or node.node_id in taken:
            continue
        seed = by_endpoint.get(node.websocket) if node.websocket else None
        if seed is not None and seed not in taken:
            renames.append((seed, node.node_id))
            taken.add(seed)
            taken.add(node.node_id)
            continue
        if node.status in (NodeStatus.ACTIVE, NodeStatus.JOINING) and usable_endpoint(
            node.websocket
        ):
            adds.append((node.node_id, node.websocket))
            taken.add(node.node_id)
    removes = tuple(
        conn_id for conn_id in current if conn_id not in seed_ids and conn_id not in table_ids
    )
    return ReconcilePlan(tuple(renames), tuple(adds), removes)
