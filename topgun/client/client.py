"""``TopGunClient``: the facade over the pool, the router, the sync engine and storage.

Two modes: ``server_url=`` (one server, like the reference's single-server client: no table,
no routing metrics) and ``cluster=ClusterConfig(...)`` (one authenticated connection per
node, partition-aware routing with fallback, NOT_OWNER retry, per-node circuit breakers).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from topgun.client.breaker import CircuitBreakers
from topgun.client.config import ClusterConfig
from topgun.client.connection import NodeConnection
from topgun.client.errors import (
    AuthError,
    ClientClosedError,
    ConfigError,
    FlushTimeout,
    NotConnectedError,
    StartTimeout,
    WriteRejected,
)
from topgun.client.events import ClusterEvent, EventKind, Listener
from topgun.client.maps import TopGunMap
from topgun.client.merkle_sync import MerkleSync
from topgun.client.pool_state import ConnState, plan_reconcile
from topgun.client.queries import OneShotQueries, iter_pages, require_connection
from topgun.client.router import PartitionRouter
from topgun.client.storage import MemoryStorage, Storage
from topgun.client.subscriptions import ChangeCallback, Subscription, Subscriptions
from topgun.client.sync_engine import Receipt, SyncEngine
from topgun.client.write_concern import FlushResult, WriteConcern, WriteConcernLike
from topgun.core.errors import ClockSkewError, ProtocolError
from topgun.core.hlc import HLC, Timestamp
from topgun.core.messages import (
    ErrorMessage,
    Message,
    OpAck,
    OpBatch,
    OpRejected,
    PartitionMap,
    PartitionMapRequest,
    Query,
    QueryResp,
    QueryUpdate,
    ServerBatchEvent,
    ShutdownPending,
)
from topgun.core.table import PartitionTable

log = logging.getLogger(__name__)

SINGLE_CONN_ID = "server"
SYNC_TIMEOUT_S = 10.0
TABLE_REQUEST_MIN_INTERVAL_S = 0.05
MAX_LOOP_WAIT_S = 0.5


def _wall_ms() -> int:
    return int(time.time() * 1000)


class TopGunClient:
    def __init__(
        self,
        *,
        server_url: str | None = None,
        cluster: ClusterConfig | None = None,
        storage: Storage | None = None,
        node_id: str | None = None,
        clock: Callable[[], int] | None = None,
        auth_token: str | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        """``options``: connection settings of single-server mode (``ClusterConfig`` fields
        such as ``ping_interval_s``); a cluster client takes them in its ``ClusterConfig``."""
        if (server_url is None) == (cluster is None):
            raise ConfigError("give exactly one of server_url='ws://…' or cluster=ClusterConfig(…)")
        if server_url is not None:
            if not isinstance(server_url, str) or not server_url.startswith(("ws://", "wss://")):
                raise ConfigError(f"server_url {server_url!r} is not a ws:// or wss:// URL")
            self._config = ClusterConfig(seeds=[server_url], smart_routing=False, **(options or {}))
        elif options:
            raise ConfigError("a cluster client takes its options in cluster=ClusterConfig(…)")
        else:
            assert cluster is not None
            self._config = cluster
        self.is_cluster = cluster is not None
        self._storage: Storage = storage if storage is not None else MemoryStorage()
        self._wall = clock or _wall_ms
        self.node_id = node_id or f"client-{uuid.uuid4().hex[:12]}"
        self._hlc = HLC(self.node_id, self._wall)
        self._mono = time.monotonic
        cfg = self._config
        self._router = (
            PartitionRouter(max_staleness_s=cfg.max_map_staleness_s, clock=self._mono)
            if self.is_cluster
            else None
        )
        self._breakers = CircuitBreakers(
            cfg.breaker_failure_threshold, cfg.breaker_reset_timeout_s, self._mono
        )
        self._engine = SyncEngine(
            self._storage,
            self,
            self._router,
            smart_routing=cfg.smart_routing,
            clock=self._mono,
            ack_timeout_s=cfg.ack_timeout_s,
            not_owner_max_attempts=cfg.not_owner_max_attempts,
            not_owner_backoff_s=cfg.not_owner_backoff_s,
            not_owner_deadline_s=cfg.not_owner_deadline_s,
        )
        self._engine.listeners.append(self._on_progress)
        self._token = auth_token
        self._conns: dict[str, NodeConnection] = {}
        self._seed_ids: set[str] = set()
        self._maps: dict[str, TopGunMap] = {}
        self._oneshot = OneShotQueries()
        self._started = False
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kick: asyncio.Event | None = None
        self._changed: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_table_request = -1e9
        self._table_request_due = False
        self._last_stale_check = 0.0
        self._listeners: list[Listener] = []
        self._msync = MerkleSync(
            lambda: self._maps, self._storage, timeout_s=SYNC_TIMEOUT_S, clock=self._mono
        )
        self._subs = Subscriptions(
            lambda: [self._conns[i] for i in self.usable_nodes()], self._mono
        )

    # --- configuration -------------------------------------------------------------------

    @property
    def config(self) -> ClusterConfig:
        return self._config

    @property
    def storage(self) -> Storage:
        """The local store (records, op log): hand it to a later client to resume offline."""
        return self._storage

    def set_auth_token(self, token: str) -> None:
        """Use ``token`` on every pooled connection (each authenticates itself)."""
        if not token:
            raise AuthError("the auth token must be a non-empty string")
        self._token = token
        for conn in list(self._conns.values()):
            conn.token_changed()

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109
        """Connect and wait until one connection is authenticated and, in cluster mode, a
        partition table arrived. Raises :class:`StartTimeout` or :class:`AuthError`."""
        if self._closed:
            raise ClientClosedError("this client was closed; create a new TopGunClient")
        if not self._started:
            self._started = True
            self._loop = asyncio.get_running_loop()
            self._kick = asyncio.Event()
            self._changed = asyncio.Event()
            self._storage.open()
            self._engine.load()
            for i, url in enumerate(self._config.seeds):
                conn_id = f"seed-{i}" if self.is_cluster else SINGLE_CONN_ID
                self._seed_ids.add(conn_id)
                self._add_connection(conn_id, url)
            self._task = self._loop.create_task(self._background(), name="topgun-client")
        await self._wait_ready(timeout)

    def _ready(self) -> bool:
        if not any(c.is_authenticated for c in self._conns.values()):
            return False
        return self._router is None or self._router.has_table()

    async def _wait_ready(self, timeout: float) -> None:  # noqa: ASYNC109
        assert self._changed is not None
        deadline = self._mono() + timeout
        while not self._ready():
            states = {c.id: c for c in self._conns.values()}
            if states and all(c.state is ConnState.FAILED for c in states.values()):
                errors = {c.auth_error for c in states.values() if c.auth_error}
                raise AuthError(
                    f"every server refused the auth token ({'; '.join(sorted(errors))}); "
                    "call set_auth_token() with a valid token"
                )
            remaining = deadline - self._mono()
            if remaining <= 0:
                raise StartTimeout(self._not_ready_reason(timeout))
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, MAX_LOOP_WAIT_S))

    def _not_ready_reason(self, timeout: float) -> str:
        states = self.get_connection_states()
        if not self._token:
            hint = "no auth token is set: call client.set_auth_token(token) before start()"
        elif not any(c.is_authenticated for c in self._conns.values()):
            errors = [c.last_error for c in self._conns.values() if c.last_error]
            hint = "no connection authenticated; check the URLs and that the servers run" + (
                f" (last error: {errors[-1]})" if errors else ""
            )
        else:
            hint = "connected, but no partition table arrived from the cluster"
        return f"client not ready after {timeout:g}s: {hint}; connections: {states}"

    async def close(self) -> None:
        """Stop every connection and background task; pending ops stay in storage."""
        if self._closed:
            return
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 2.0)
        self._subs.close()
        await self._msync.close()
        conns = list(self._conns.values())
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
        self._oneshot.close()
        with contextlib.suppress(Exception):
            self._storage.close()

    async def __aenter__(self) -> TopGunClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- data ----------------------------------------------------------------------------

    def get_map(self, name: str, *, write_concern: WriteConcernLike = None) -> TopGunMap:
        """The handle of map ``name`` (one per name). ``write_concern``: what its writes ask
        for unless a write says otherwise (default: the client's ``write_concern``); a map
        keeps the concern it was opened with, and asking for another is a ConfigError."""
        if not isinstance(name, str) or not name:
            raise ValueError("a map name must be a non-empty string")
        asked = WriteConcern.of(write_concern)
        handle = self._maps.get(name)
        if handle is not None and asked is not None and asked != handle.write_concern:
            raise ConfigError(
                f"map {name!r} is open with write concern "
                f"{handle.write_concern or 'the server default'}; give "
                "write_concern= to set()/remove() for writes that need another"
            )
        if handle is None:
            default = WriteConcern.of(self._config.write_concern)
            handle = TopGunMap(
                name,
                hlc=self._hlc,
                storage=self._storage,
                engine=self._engine,
                wall_ms=self._wall,
                on_write=self._kick_sync,
                write_concern=asked if asked is not None else default,
            )
            handle.subscribe_hook = self.subscribe
            self._maps[name] = handle
            usable = self.usable_nodes() if self._started and not self._closed else []
            if usable:  # a map opened after start catches up at once
                self._msync.sync_map(self._conns[usable[0]], name)
        return handle

    def subscribe(
        self,
        map_name: str,
        where: dict[str, Any] | None = None,
        *,
        predicate: dict[str, Any] | None = None,
        on_change: ChangeCallback | None = None,
    ) -> Subscription:
        """A live query (``QUERY_SUB``): ``sub.results`` stays current, ``on_change`` (and
        ``async for change in sub``) see every change, and it is registered again after a
        failover. While it lives, other clients' writes to the map also merge into
        ``get_map(map_name)``. ``sub.close()`` ends it."""
        if self._closed:
            raise ClientClosedError("this client was closed")
        self.get_map(map_name)
        sub = self._subs.add(map_name, Query(where, predicate))
        if on_change is not None:
            sub.callbacks.append(on_change)
        return sub

    def sync_runs(self, map_name: str) -> int:
        """Completed Merkle syncs of ``map_name`` (one per start/reconnect, at least)."""
        return self._msync.completed.get(map_name, 0)

    def sync_now(self) -> int:
        """Route and send every pending op now, without waiting for acks; returns the number
        of batches sent. Writes are otherwise sent on the next turn of the event loop."""
        if self._closed or not self._started:
            return 0
        return self._engine.sync()

    def get_in_flight(self) -> dict[str, list[int]]:
        """Op ids sent and still awaiting their ack, by node: where writes went."""
        return self._engine.in_flight_by_node()

    def pending_count(self) -> int:
        """Ops not yet acknowledged by the server."""
        return self._engine.pending_count()

    async def flush(self, timeout: float = 5.0) -> FlushResult:  # noqa: ASYNC109
        """Wait until every op pending now is acknowledged; else :class:`FlushTimeout`.

        Returns what the server vouched for, write by write: ``result.level`` is the lowest
        level among them (what all of them are promised), ``result.shortfalls`` the writes
        acknowledged below the level they asked for. Raises :class:`WriteRejected` if the
        server refused some of them for good (``PERSISTENCE_UNAVAILABLE`` among others).
        A write whose concern was not met in time (``WRITE_CONCERN_UNMET``) is sent again
        until it is, or until ``timeout``.
        """
        if self._closed:
            raise ClientClosedError("this client was closed")
        if not self._started or self._changed is None:
            raise NotConnectedError("call await client.start() before flush()")
        receipt = self._engine.watch()
        try:
            deadline = self._mono() + timeout
            self._kick_sync()
            while receipt.waiting:
                remaining = deadline - self._mono()
                if remaining <= 0:
                    left = len(receipt.waiting)
                    raise FlushTimeout(self._flush_reason(receipt, timeout), left)
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(remaining, MAX_LOOP_WAIT_S))
        finally:
            self._engine.unwatch(receipt)
        if receipt.rejected:
            raise WriteRejected(
                f"the server refused {len(receipt.rejected)} write(s): "
                + "; ".join(f"op {i}: {why}" for i, why in receipt.rejected[:5]),
                receipt.rejected,
            )
        result = FlushResult(tuple(receipt.acked))
        if result.shortfalls:
            w = result.shortfalls[0]
            log.warning(
                "%d write(s) acknowledged below the level they asked for, e.g. %s/%s: "
                "asked %s, acknowledged at %s", len(result.shortfalls), w.map_name, w.key,
                w.asked.name if w.asked else None, w.level.name if w.level else None,
            )  # fmt: skip
        return result

    def _flush_reason(self, receipt: Receipt, timeout: float) -> str:
        parts = [f"{len(receipt.waiting)} op(s) still unacknowledged after {timeout:g}s"]
        if not any(c.is_authenticated for c in self._conns.values()):
            parts.append("no connection is authenticated (offline: ops are kept and sent later)")
        parked = self._engine.parked()
        refused = self._engine.refused()
        retrying = [r for r in self._engine.retrying() if r[0] in receipt.waiting]
        if parked:
            parts.append(parked[0][1])
        elif refused:
            op_id, times = refused[0]
            parts.append(
                f"op {op_id} was refused NOT_OWNER {times} time(s) and is being retried "
                "(the cluster may be moving that partition)"
            )
        elif retrying:
            op_id, answer = retrying[0]
            parts.append(f"op {op_id} is being sent again after the answer {answer}")
        parts.append(f"connections: {self.get_connection_states()}")
        return "; ".join(parts)

    async def query(
        self,
        map_name: str,
        where: dict[str, Any] | None = None,
        *,
        predicate: dict[str, Any] | None = None,
        sort: dict[str, str] | None = None,
        limit: int | None = None,
        page_size: int | None = None,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """Every matching row (up to ``limit``), key → value in the server's order, read
        page by page with cursors; ``timeout`` applies to each page."""
        rows = self.iter_query(
            map_name, where, predicate=predicate, sort=sort, limit=limit,
            page_size=page_size, timeout=timeout,
        )  # fmt: skip
        return {key: value async for key, value in rows}

    def iter_query(
        self,
        map_name: str,
        where: dict[str, Any] | None = None,
        *,
        predicate: dict[str, Any] | None = None,
        sort: dict[str, str] | None = None,
        limit: int | None = None,
        page_size: int | None = None,
        timeout: float = 5.0,
    ) -> AsyncIterator[tuple[str, Any]]:
        """The matching rows as an async iterator, one page (``QUERY_SUB`` with ``limit``
        and the previous page's ``nextCursor``) fetched at a time."""

        async def page(query: Query) -> QueryResp:
            conn_id = require_connection(
                self.usable_nodes(), self._closed, self.get_connection_states
            )
            return await self._oneshot.page(self._conns[conn_id], map_name, query, timeout)

        query = Query(where, predicate, sort, limit)
        return iter_pages(page, map_name, query, page_size)

    # --- observability -------------------------------------------------------------------

    def get_routing_metrics(self) -> dict[str, int] | None:
        """Routing counters (cluster mode); None in single-server mode."""
        return None if self._router is None else self._router.get_metrics()

    def reset_routing_metrics(self) -> None:
        if self._router is not None:
            self._router.reset_metrics()

    def get_cluster_stats(self) -> dict[str, Any] | None:
        return None if self._router is None else self._router.stats(self._wall)

    def get_partition_table(self) -> PartitionTable | None:
        return None if self._router is None else self._router.table

    def is_routing_active(self) -> bool:
        return (
            self._router is not None
            and self._config.smart_routing
            and self._router.has_table()
            and any(c.is_authenticated for c in self._conns.values())
        )

    def get_connection_states(self) -> dict[str, str]:
        return {conn_id: str(c.state) for conn_id, c in self._conns.items()}

    def get_connection_history(self) -> dict[str, list[str]]:
        """Each connection's recent states, oldest first, from DISCONNECTED when complete."""
        out = {}
        for conn_id, c in self._conns.items():
            states = [str(s) for s in c.sm.history]
            if len(states) < (c.sm.history.maxlen or 0):
                states.insert(0, str(ConnState.DISCONNECTED))
            out[conn_id] = states
        return out

    # --- listeners -----------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(ClusterEvent)`` on the client's loop for every cluster event."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _emit(self, kind: EventKind, node_id: str | None = None) -> None:
        event = ClusterEvent(kind, node_id, None if self._router is None else self._router.version)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a listener's bug must not break the client
                log.exception("client listener %r failed on %s", listener, event)

    def get_circuit_states(self) -> dict[str, str]:
        return self._breakers.states()

    def owner_of(self, key: str) -> str | None:
        route = None if self._router is None else self._router.route(key)
        return None if route is None else route.owner

    async def refresh_partition_map(self) -> None:
        self.request_table("requested by the user", force=True)

    # --- Transport (used by the sync engine) ---------------------------------------------

    def usable_nodes(self) -> list[str]:
        return [
            conn_id
            for conn_id, c in self._conns.items()
            if c.is_authenticated and not c.leaving and self._breakers.allow(conn_id)
        ]

    def send_batch(self, node_id: str, batch: OpBatch) -> object | None:
        conn = self._conns.get(node_id)
        if conn is not None and conn.send(batch):
            return conn
        return None

    def request_table(self, reason: str, *, force: bool = False) -> None:
        if self._router is None or self._closed:
            return
        now = self._mono()
        if not force and now - self._last_table_request < TABLE_REQUEST_MIN_INTERVAL_S:
            self._table_request_due = True
            self._kick_sync()
            return
        usable = self.usable_nodes()
        if not usable:
            self._table_request_due = True
            return
        self._table_request_due = False
        self._last_table_request = now
        self._router.count_map_refresh()
        log.debug("requesting the partition table (%s)", reason)
        self._conns[usable[0]].send(PartitionMapRequest(self._router.version))

    def report_failure(self, node_id: str) -> None:
        self._breakers.record_failure(node_id)

    def report_success(self, node_id: str) -> None:
        self._breakers.record_success(node_id)

    # --- connection events ---------------------------------------------------------------

    def _add_connection(self, conn_id: str, url: str) -> NodeConnection:
        cfg = self._config
        conn = NodeConnection(
            conn_id,
            url,
            listener=self,
            token=lambda: self._token,
            connect_timeout_s=cfg.connect_timeout_s,
            ping_interval_s=cfg.ping_interval_s,
            liveness_timeout_s=cfg.liveness_timeout_s,
            reconnect_base_s=cfg.reconnect_base_s,
            reconnect_max_s=cfg.reconnect_max_s,
            ssl=cfg.ssl,
        )
        self._conns[conn_id] = conn
        conn.start()
        return conn

    def _live(self, conn: NodeConnection) -> bool:
        return not self._closed and self._conns.get(conn.id) is conn

    def on_open(self, conn: NodeConnection) -> None:
        self._signal()

    def on_authenticated(self, conn: NodeConnection) -> None:
        if not self._live(conn):
            return
        self._breakers.record_success(conn.id)
        self._engine.on_authenticated()
        self._msync.sync_all(conn)
        self._subs.reregister()
        if self._router is not None:
            self._router.count_map_refresh()
            conn.send(PartitionMapRequest(self._router.version))
        self._emit(EventKind.AUTHENTICATED, conn.id)
        self._kick_sync()
        self._signal()

    def on_lost(self, conn: NodeConnection, was_authenticated: bool, reason: str) -> None:
        if not self._live(conn):
            return
        self._breakers.record_failure(conn.id)
        self._lost(conn)
        self._oneshot.on_lost(conn, reason)
        if was_authenticated:
            log.info("connection %s lost: %s", conn.id, reason)
            self._emit(EventKind.NODE_LOST, conn.id)
            self.request_table(f"connection to {conn.id} lost", force=True)
        self._kick_sync()
        self._signal()

    def on_auth_failed(self, conn: NodeConnection, error: str) -> None:
        log.warning("%s refused the auth token: %s", conn.url, error)
        self._signal()

    def _lost(self, conn: NodeConnection) -> None:
        self._engine.on_connection_lost(conn)
        self._msync.on_connection_lost(conn)
        self._subs.on_connection_lost(conn)

    def on_message(self, conn: NodeConnection, message: Message) -> None:
        if not self._live(conn) or self._msync.on_message(conn, message):
            return
        if isinstance(message, OpAck):
            self._engine.on_ack(conn, message)
            self._retire_if_idle(conn)
            self._kick_sync()
        elif isinstance(message, OpRejected):
            self._engine.on_rejected(conn, message)
            self._retire_if_idle(conn)
            self._kick_sync()
        elif isinstance(message, PartitionMap):
            self._on_table(message.table)
        elif isinstance(message, QueryResp):
            if not self._oneshot.on_resp(message):
                self._subs.on_resp(message)
        elif isinstance(message, QueryUpdate):
            self._subs.on_update(message)
        elif isinstance(message, ServerBatchEvent):
            self._on_events(message)
        elif isinstance(message, ErrorMessage):
            self._on_error(conn, message)
        elif isinstance(message, ShutdownPending):
            self._on_leaving(conn)

    def _on_table(self, table: PartitionTable) -> None:
        if self._router is None or not self._router.update_table(table):
            self._signal()
            return
        current = {conn_id: c.url for conn_id, c in self._conns.items()}
        plan = plan_reconcile(current, self._seed_ids, table)
        for seed_id, node_id in plan.renames:
            self._rename(seed_id, node_id)
        for node_id in plan.removes:
            conn = self._conns.pop(node_id)
            self._lost(conn)
            asyncio.get_running_loop().create_task(conn.close())
        for node_id, url in plan.adds:
            self._add_connection(node_id, url)
        self._engine.on_table_changed()
        self._emit(EventKind.PARTITION_MAP)
        self._kick_sync()
        self._signal()

    def _on_leaving(self, conn: NodeConnection) -> None:
        """The node is shutting down: stop routing to it now, before its table changes.

        Ops already in flight to it stay there (it still acks them while it drains).
        """
        if conn.leaving:
            return
        conn.leaving = True
        log.info("node %s announced its shutdown; routing around it", conn.id)
        self._emit(EventKind.NODE_LEAVING, conn.id)
        self.request_table(f"{conn.id} is shutting down", force=True)
        self._retire_if_idle(conn)
        self._kick_sync()
        self._signal()

    def _retire_if_idle(self, conn: NodeConnection) -> None:
        """Hang up on a leaving node once nothing sent there awaits its ack: that tells the
        node this client has moved away, so its shutdown need not wait any longer."""
        if conn.leaving and not self._engine.busy_on(conn):
            conn.retire()

    def _rename(self, old: str, new: str) -> None:
        """Move one connection object from ``old`` to ``new`` in one step, keeping its place
        in the preference order (reference §6.3)."""
        self._conns = {(new if k == old else k): c for k, c in self._conns.items()}
        self._conns[new].id = new
        self._seed_ids.discard(old)
        self._breakers.rename(old, new)

    def _on_events(self, message: ServerBatchEvent) -> None:
        if message.timestamp is not None:  # only real HLC timestamp objects (§6.4-G)
            with contextlib.suppress(ProtocolError, ClockSkewError):
                self._hlc.update(Timestamp.from_wire(message.timestamp))
        for event in message.events:
            handle = self._maps.get(event.map_name)
            if handle is not None and event.record is not None:
                handle.merge(event.key, event.record)

    def _on_error(self, conn: NodeConnection, message: ErrorMessage) -> None:
        log.warning("server error %s from %s: %s", message.code, conn.id, message.message)
        self._oneshot.on_error(conn, message)

    # --- background ----------------------------------------------------------------------

    def _signal(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def _on_progress(self) -> None:
        self._signal()

    def _kick_sync(self) -> None:
        if self._kick is not None and not self._closed:
            self._kick.set()

    async def _background(self) -> None:
        assert self._kick is not None
        while not self._closed:
            now = self._mono()
            due = (self._engine.next_wakeup(), self._msync.next_retry())
            wakes = [w for w in due if w is not None]
            wake = min(wakes) if wakes else None
            wait = MAX_LOOP_WAIT_S if wake is None else max(0.0, min(MAX_LOOP_WAIT_S, wake - now))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), wait)
            self._kick.clear()
            try:
                self._step()
            except Exception:  # never let one bad step kill the client
                log.exception("client background step failed")

    def _step(self) -> None:
        now = self._mono()
        if self._router is not None:
            if self._table_request_due:
                self.request_table("deferred request")
            if now - self._last_stale_check >= self._config.partition_map_refresh_s:
                self._last_stale_check = now
                if self._router.is_stale():
                    self.request_table("the table is stale")
        if self._engine.tick():
            self._signal()
        self._engine.sync()
        usable = self.usable_nodes()
        if usable:
            self._msync.retry_failed(self._conns[usable[0]])
            self._subs.reregister()
