"""ServerNode: one cluster member, composed of services on the loop that started it.

* client port: WebSocket client endpoint (:mod:`client_endpoint`) plus HTTP routes
  (:mod:`http_routes`), both talking to the node through :class:`~topgun.server.facade.NodeFacade`;
* cluster port: authenticated peer links owned by :mod:`membership`, whose messages the
  services handle: :mod:`partitions` (table authority, planning, migration),
  :mod:`replication`, :mod:`operations` (the write path) and :mod:`queries`.

The node itself owns the lifecycle (start, graceful shutdown, kill), the client sessions and
the maintenance tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve

from topgun.core.codec import pack, unpack
from topgun.core.concern import Concern
from topgun.core.errors import ProtocolError
from topgun.core.hashing import partition_id
from topgun.core.messages import ClientOp, Query
from topgun.core.table import PartitionTable
from topgun.server.auth import Principal, short_secret_warning, verify_token
from topgun.server.auth_gate import AuthGate
from topgun.server.client_endpoint import ClientSession
from topgun.server.config import NodeConfig
from topgun.server.context import NodeContext
from topgun.server.healing import Healing
from topgun.server.http_routes import HttpRoutes
from topgun.server.membership import Membership
from topgun.server.migration import Migrations
from topgun.server.operations import DEFAULT, Operations, Outcome
from topgun.server.paging import Page
from topgun.server.partitions import PartitionService
from topgun.server.peer_link import Member
from topgun.server.queries import Origin, QueryService
from topgun.server.replication import Replication
from topgun.server.storage import StorageError
from topgun.server.sync import Level, SyncService

__all__ = ["Outcome", "ServerNode"]


class ServerNode:
    """One node; see the module docstring. Public API used by the harness and tests."""

    def __init__(self, config: NodeConfig) -> None:
        config.validate()
        self.config = config
        self.node_id = config.node_id
        self._jwt_secret, cluster_secret = config.resolved_secrets()
        self.ctx = ctx = NodeContext(config)
        self.log, self.hlc, self.store, self.metrics = ctx.log, ctx.hlc, ctx.store, ctx.metrics
        self.incarnation = ctx.incarnation
        self.membership = Membership(ctx, cluster_secret)
        self.replication = Replication(ctx, self.membership)
        self.partitions = PartitionService(ctx, self.membership)
        self.queries = QueryService(ctx, self.membership)
        self.operations = Operations(
            ctx, self.membership, self.partitions, self.replication, self.queries
        )
        self.sync = SyncService(ctx, self.membership)
        self.migrations = Migrations(ctx, self.membership, self.partitions, self.replication)
        self.healing = Healing(ctx, self.membership, self.partitions, self.migrations)
        self.replication.table_of = self.queries.table_of = lambda: self.partitions.table
        self.sync.table_of = lambda: self.partitions.table
        self.queries.listeners = lambda: self._sessions
        self.partitions.on_table.append(self._push_table)
        if ctx.commit is not None:
            self.partitions.on_table.append(self._keep_table)
        self.client_url = ""
        self.cluster_address = ""
        self._sessions: set[ClientSession] = set()
        self._gate = AuthGate(config, self.log)
        self._sessions_changed = asyncio.Event()
        self._client_server: Server | None = None
        self._cluster_server: Server | None = None
        self._safe: bool | None = None
        self._last_safe = time.monotonic()

    # ------------------------------------------------------------------ state

    @property
    def state(self) -> str:
        return self.ctx.state

    @state.setter
    def state(self, value: str) -> None:
        self.ctx.state = value

    @property
    def table(self) -> PartitionTable | None:
        return self.partitions.table

    @property
    def me(self) -> Member | None:
        return self.membership.me

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        return self.ctx.spawn(coro)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load the node's store (a data dir or PostgreSQL, if any), then listen on both
        ports; joining the cluster proceeds in the background. Raises :class:`StorageError`
        for a store that cannot be used (the message names the file, or the server)."""
        cfg = self.config
        if self.ctx.commit is not None:
            await self._load()
        tls = cfg.node_tls()
        self._cluster_server = await serve(
            self.membership.on_peer_socket, cfg.host, cfg.cluster_port,
            compression=None, ping_interval=None, max_size=self.membership.max_frame_bytes(),
            **tls.cluster_listen,
        )  # fmt: skip
        routes = HttpRoutes(self)
        self._client_server = await serve(
            self._on_client_socket, cfg.host, cfg.port,
            compression=None, ping_interval=None, max_size=cfg.max_frame_bytes,
            process_request=routes.process_request, open_timeout=cfg.handshake_timeout_s,
            **tls.client_listen,
        )  # fmt: skip
        cport = self._cluster_server.sockets[0].getsockname()[1]
        port = self._client_server.sockets[0].getsockname()[1]
        self.cluster_address = f"{cfg.host}:{cport}"
        self.client_url = cfg.advertise_url or f"{tls.client_scheme}://{cfg.host}:{port}"
        self.membership.me = Member(
            self.node_id, self.cluster_address, self.client_url, self.incarnation
        )
        self.state = "running"
        self.partitions.bootstrap_at = time.monotonic() + (
            cfg.failure_timeout_s if cfg.peers else 0.0
        )
        self.metrics.members.set(1)
        self.log.info("listening: client %s, cluster %s", self.client_url, self.cluster_address)
        if plain := tls.plain_text_warning():
            self.log.warning("%s", plain)
        weak = short_secret_warning(self._jwt_secret)
        if weak and not cfg.dev:
            self.log.warning("%s", weak)
        self._maintenance_task = self.ctx.spawn(self._maintenance_loop())
        self.ctx.spawn(self.healing.run(max(0.2, 2 * cfg.heartbeat_interval_s)))
        self.partitions.maybe_plan()
        self.membership.dial_targets()

    async def _load(self) -> None:
        """Held copies and the last partition table from the store, as they were kept.

        The table comes back as this node last applied it; it is served only once a
        quorum of its nodes is linked (and newer tables from peers replace it), and no copy
        counts as ready or synced on it: this incarnation's backups are copied to again
        before the cluster is safe (see :mod:`partitions`)."""
        commit = self.ctx.commit
        assert commit is not None
        try:
            loaded = await asyncio.get_running_loop().run_in_executor(None, commit.engine.load)
        except StorageError:
            await commit.close(flush=False)
            raise
        self.store.packer.adopt(loaded.nodes)
        self.store.install(loaded.rows)
        commit.set_nodes_written(len(loaded.nodes))
        if loaded.table is not None:
            try:
                self.partitions.restore(unpack(loaded.table))
            except (ProtocolError, TypeError, ValueError) as exc:
                await commit.close(flush=False)
                raise StorageError(f"{commit.engine.where}: bad partition table: {exc}") from None
        self.log.info(
            "loaded %d records from %s%s", len(loaded.rows), commit.engine.where,
            " and the last partition table" if loaded.table is not None else "",
        )  # fmt: skip

    def _keep_table(self, _table: PartitionTable) -> None:
        """Every applied table goes into the next group commit, ahead of any ``PERSISTED``
        ack made under it."""
        assert self.ctx.commit is not None
        self.ctx.commit.put_meta(b"table", pack(self.partitions.table_msg()))

    async def kill(self) -> None:
        """Abrupt stop: drop every socket at once, no handover, no goodbye."""
        if self.state == "stopped":
            return
        self.state = "stopped"
        self.log.warning("killed")
        self.membership.abort_all()
        for session in list(self._sessions):
            session.abort()
        await self._stop_everything(graceful=False)

    async def shutdown(self) -> None:
        """Graceful stop: hand partitions over, then SHUTDOWN_PENDING and close 1001."""
        if self.state != "running":
            if self.state == "new":
                self.state = "stopped"
            return
        self.state = "leaving"
        self.log.info("leaving the cluster")
        await self._announce_shutdown()
        self.membership.announce_leaving()
        self.partitions.maybe_plan()
        deadline = time.monotonic() + self.config.shutdown_timeout_s
        changed = self.partitions.table_changed
        while time.monotonic() < deadline and self.partitions.holds_partitions():
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), 0.05)
        if self.partitions.holds_partitions():
            self.log.warning("shutdown timeout: partitions still assigned here")
        self.state = "stopped"
        await asyncio.gather(
            *(s.close_for_shutdown() for s in list(self._sessions)), return_exceptions=True
        )
        for link in self.membership.all_links():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(link.ws.close(1001, "leaving"), 1.0)
            link.abort()
        await self._stop_everything(graceful=True)
        self.log.info("stopped")

    async def _announce_shutdown(self) -> None:
        """Send SHUTDOWN_PENDING, then wait until the clients have moved away (or the notice
        period ends) before the table changes.

        A client routes around a node from its notice on and closes its connection once
        nothing is in flight there, so every write it makes meanwhile already goes to the
        other nodes, and this node still serves what was sent to it before the notice.
        """
        sessions = list(self._sessions)
        await asyncio.gather(*(s.announce_shutdown() for s in sessions), return_exceptions=True)
        deadline = time.monotonic() + self.config.shutdown_notice_s
        while any(s.authenticated for s in self._sessions) and time.monotonic() < deadline:
            self._sessions_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._sessions_changed.wait(), deadline - time.monotonic())

    async def _stop_everything(self, *, graceful: bool) -> None:
        for server in (self._client_server, self._cluster_server):
            if server is not None:
                server.close(close_connections=graceful)
        await self.ctx.cancel_tasks(2.0)
        for server in (self._client_server, self._cluster_server):
            if server is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(server.wait_closed(), 2.0)
        self.membership.clear()
        self.metrics.connections.set(0)
        if self.ctx.commit is not None:  # a kill drops what is not committed, as a crash would
            await self.ctx.commit.close(flush=graceful)

    async def _maintenance_loop(self) -> None:
        cfg = self.config
        while self.ctx.serving:
            await asyncio.sleep(cfg.heartbeat_interval_s)
            now = time.monotonic()
            self.membership.heartbeat(now)
            for session in list(self._sessions):
                session.check_idle(now, cfg.client_idle_timeout_s)
            self.membership.dial_targets()
            self.partitions.maybe_plan()
            self.migrations.kick()
            self._observe_safety(now)

    def _observe_safety(self, now: float) -> None:
        """Metrics for "safe" (every partition owned and backed up in sync); one log line
        each time the cluster becomes safe again."""
        p, metrics = self.partitions, self.metrics
        safe = p.is_safe()
        if safe:
            self._last_safe = now
            if self._safe is False:
                self.log.info("cluster is safe again: every partition has its owner and backups")
        self._safe = safe
        metrics.safe.set(1 if safe else 0)
        metrics.seconds_since_safe.set(now - self._last_safe)
        metrics.migrations_in_flight.set(len(self.migrations.in_flight))

    # ------------------------------------------------------------------ the facade

    def members(self) -> list[str]:
        """Live member node ids (self included), sorted."""
        return self.membership.live_ids()

    def authority(self) -> str | None:
        return self.partitions.authority()

    def inspect(self, map_name: str, key: str) -> dict[str, Any]:
        pid = partition_id(key)
        rec = self.store.get(map_name, key)
        return {
            "nodeId": self.node_id,
            "partitionId": pid,
            "role": self.partitions.role_of(pid),
            "record": None if rec is None else rec.to_wire(),
        }

    def health(self) -> dict[str, Any]:
        return {
            "nodeId": self.node_id,
            "status": {"running": "UP", "leaving": "LEAVING"}.get(self.state, "DOWN"),
            "members": self.members(),
            "partitionMapVersion": self.table.version if self.table else 0,
            "safe": self.partitions.is_safe(),
            "quorum": self.partitions.has_quorum(),
        }

    def verify_client_token(self, token: str) -> Principal:
        cfg = self.config
        return verify_token(
            token, self._jwt_secret, policies=cfg.policies, require_exp=cfg.require_token_exp
        )

    async def execute(
        self,
        ops: list[ClientOp],
        *,
        forwarded: bool = False,
        origin: Origin | None = None,
        concern: Concern = DEFAULT,
    ) -> list[Outcome]:
        return await self.operations.execute(
            ops, forwarded=forwarded, origin=origin, concern=concern
        )

    async def run_page(self, map_name: str, query: Query) -> Page:
        return await self.queries.run_page(map_name, query)

    async def sync_level(self, map_name: str, path: str) -> Level:
        return await self.sync.level(map_name, path)

    def sync_needs_reset(self, last_sync_ms: float | None) -> bool:
        return self.sync.needs_reset(last_sync_ms)

    def add_interest(self, map_name: str) -> None:
        self.queries.add_interest(map_name)

    def remove_interest(self, map_name: str) -> None:
        self.queries.remove_interest(map_name)

    # ------------------------------------------------------------------ client sessions

    async def _on_client_socket(self, ws: ServerConnection) -> None:
        session = ClientSession(self, ws, self._gate)
        self._sessions.add(session)
        self.metrics.connections.set(len(self._sessions))
        try:
            await session.run()
        finally:
            self._sessions.discard(session)
            self._sessions_changed.set()
            self.metrics.connections.set(len(self._sessions))

    def _push_table(self, table: PartitionTable) -> None:
        for session in list(self._sessions):
            session.push_table(table)
