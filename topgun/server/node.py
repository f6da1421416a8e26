"""ServerNode: one cluster member as a set of asyncio services on the loop that started it.

* client port: WebSocket client endpoint (:mod:`client_endpoint`) plus HTTP routes
  (:mod:`http_routes`);
* cluster port: authenticated peer links (:mod:`peer_link`) carrying membership (handshake,
  gossip, heartbeats), the partition table, replication, forwarding, migration and queries.

Partition-table authority: the smallest live, non-leaving node id among the members of the
current table (or among all live nodes before there is a table). It plans with the pure
:func:`topgun.core.rebalance.plan` and publishes ``max(seen version) + 1``; every node applies a
table only when its version is newer, so the version is strictly increasing cluster-wide.

Write path (owner): HLC drift check per op, LWW merge, one ``REPL`` per backup for the whole
client batch, await every live backup's ack, then ack the client. A non-owner forwards the
ops (one ``FWD`` per owner) and acks only what the owner confirmed; otherwise NOT_OWNER.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve

from topgun.core.errors import ClockSkewError, ProtocolError
from topgun.core.hashing import PARTITION_COUNT, partition_id
from topgun.core.hlc import HLC
from topgun.core.messages import ClientOp, NotOwnerHint, Query
from topgun.core.rebalance import plan
from topgun.core.records import LWWRecord
from topgun.core.table import NodeInfo, NodeStatus, PartitionTable
from topgun.server import query as q
from topgun.server.config import NodeConfig
from topgun.server.logutil import node_logger
from topgun.server.metrics import NodeMetrics
from topgun.server.peer_link import HandshakeError, Member, PeerGone, PeerLink
from topgun.server.store import PartitionStore, Triple, triples_from_wire, triples_to_wire

MIGRATION_CHUNK_RECORDS = 5000
PEER_MAX_FRAME_BYTES = 256 * 1024 * 1024
FORWARD_RETRIES = 2


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one op: applied (and replicated), or why not."""

    ok: bool
    error: str | None = None
    hint: NotOwnerHint | None = None
    level: str = "APPLIED"

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"ok": self.ok, "level": self.level}
        if self.error is not None:
            wire["error"] = self.error
        if self.hint is not None:
            wire["hint"] = self.hint.to_wire()
        return wire

    @classmethod
    def from_wire(cls, obj: object) -> Outcome:
        if not isinstance(obj, dict) or not isinstance(obj.get("ok"), bool):
            raise ProtocolError("bad op outcome")
        err = obj.get("error")
        level = obj.get("level")
        return cls(
            obj["ok"],
            err if isinstance(err, str) else None,
            NotOwnerHint.from_wire(obj.get("hint")),
            level if isinstance(level, str) else "APPLIED",
        )


class ServerNode:
    """One node; see the module docstring. Public API used by the harness and tests."""

    def __init__(self, config: NodeConfig) -> None:
        config.validate()
        self.config = config
        self.node_id = config.node_id
        self._jwt_secret, self._cluster_secret = config.resolved_secrets()
        self.log = node_logger(config.node_id)
        self.hlc = HLC(config.node_id, config.clock_ms, max_drift_ms=config.max_drift_ms)
        self.store = PartitionStore()
        self.metrics = NodeMetrics(config.node_id)
        self.incarnation = secrets.token_hex(8)
        self.table: PartitionTable | None = None
        self.client_url = ""
        self.cluster_address = ""
        self.me: Member | None = None
        self.state = "new"  # new → running → leaving → stopped
        self._max_version = 0
        self._ready: set[tuple[int, str]] = set()
        self._members: dict[str, Member] = {}
        self._links: dict[str, list[PeerLink]] = {}
        self._leaving: set[str] = set()
        self._known: dict[str, tuple[str, float]] = {}  # gossip: id → (cluster addr, seen at)
        self._dialing: set[str] = set()
        self._synced: dict[int, set[str]] = {}
        self._migrating: set[tuple[int, str]] = set()
        self._sessions: set[Any] = set()
        self._sessions_changed = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._client_server: Server | None = None
        self._cluster_server: Server | None = None
        self._bootstrap_at = 0.0
        self._table_changed = asyncio.Event()
        self._interest_local: dict[str, int] = {}
        # member id → the member ids it last reported (gossip), for _view_settled()
        self._peer_views: dict[str, set[str]] = {}
        # node id → monotonic time before which a node we declared dead is not re-dialled
        self._quarantine: dict[str, float] = {}
        self._interest_remote: dict[str, set[str]] = {}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Listen on both ports; joining the cluster proceeds in the background."""
        from topgun.server.client_endpoint import ClientSession
        from topgun.server.http_routes import HttpRoutes

        cfg = self.config
        self._session_cls = ClientSession
        self._cluster_server = await serve(
            self._on_peer_socket, cfg.host, cfg.cluster_port,
            compression=None, ping_interval=None, max_size=self._peer_max_size(),
        )  # fmt: skip
        routes = HttpRoutes(self)
        self._client_server = await serve(
            self._on_client_socket, cfg.host, cfg.port,
            compression=None, ping_interval=None, max_size=cfg.max_frame_bytes,
            process_request=routes.process_request,
        )  # fmt: skip
        cport = self._cluster_server.sockets[0].getsockname()[1]
        port = self._client_server.sockets[0].getsockname()[1]
        self.cluster_address = f"{cfg.host}:{cport}"
        self.client_url = cfg.advertise_url or f"ws://{cfg.host}:{port}"
        self.me = Member(self.node_id, self.cluster_address, self.client_url, self.incarnation)
        self.state = "running"
        self._bootstrap_at = time.monotonic() + (cfg.failure_timeout_s if cfg.peers else 0.0)
        self.metrics.members.set(1)
        self.log.info("listening: client %s, cluster %s", self.client_url, self.cluster_address)
        self._maintenance_task = self._spawn(self._maintenance_loop())
        self._maybe_plan()
        self._dial_targets()

    def _peer_max_size(self) -> int:
        # peer frames carry whole client batches and migration chunks
        return max(PEER_MAX_FRAME_BYTES, 8 * self.config.max_frame_bytes)

    async def kill(self) -> None:
        """Abrupt stop: drop every socket at once, no handover, no goodbye."""
        if self.state == "stopped":
            return
        self.state = "stopped"
        self.log.warning("killed")
        for links in list(self._links.values()):
            for link in links:
                link.abort()
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
        for link in self._all_links():
            self._spawn(self._send_quiet(link, {"t": "LEAVING", "nodeId": self.node_id}))
        self._maybe_plan()
        deadline = time.monotonic() + self.config.shutdown_timeout_s
        while time.monotonic() < deadline and self._holds_partitions():
            self._table_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._table_changed.wait(), 0.05)
        if self._holds_partitions():
            self.log.warning("shutdown timeout: partitions still assigned here")
        self.state = "stopped"
        await asyncio.gather(
            *(s.close_for_shutdown() for s in list(self._sessions)), return_exceptions=True
        )
        for link in self._all_links():
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

    def _holds_partitions(self) -> bool:
        t = self.table
        if t is None or not self._members:
            return False
        return any(
            o == self.node_id or self.node_id in b for o, b in zip(t.owners, t.backups, strict=True)
        )

    async def _stop_everything(self, *, graceful: bool) -> None:
        for server in (self._client_server, self._cluster_server):
            if server is not None:
                server.close(close_connections=graceful)
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=2.0)
        for server in (self._client_server, self._cluster_server):
            if server is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(server.wait_closed(), 2.0)
        self._members.clear()
        self._links.clear()
        self.metrics.connections.set(0)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("task failed: %r", task.exception())

    # ------------------------------------------------------------------ public views

    def members(self) -> list[str]:
        """Live member node ids (self included), sorted."""
        if self.state == "stopped":
            return []
        return sorted({self.node_id, *self._members})

    def inspect(self, map_name: str, key: str) -> dict[str, Any]:
        pid = partition_id(key)
        role = "none"
        t = self.table
        if t is not None:
            if t.owners[pid] == self.node_id:
                role = "owner"
            elif self.node_id in t.backups[pid]:
                role = "backup"
        rec = self.store.get(map_name, key)
        return {
            "nodeId": self.node_id,
            "partitionId": pid,
            "role": role,
            "record": None if rec is None else rec.to_wire(),
        }

    def health(self) -> dict[str, Any]:
        return {
            "nodeId": self.node_id,
            "status": {"running": "UP", "leaving": "LEAVING"}.get(self.state, "DOWN"),
            "members": self.members(),
            "partitionMapVersion": self.table.version if self.table else 0,
        }

    def verify_client_token(self, token: str) -> Any:
        from topgun.server.auth import verify_token

        return verify_token(token, self._jwt_secret)

    # ------------------------------------------------------------------ client side hooks

    async def _on_client_socket(self, ws: ServerConnection) -> None:
        session = self._session_cls(self, ws)
        self._sessions.add(session)
        self.metrics.connections.set(len(self._sessions))
        try:
            await session.run()
        finally:
            self._sessions.discard(session)
            self._sessions_changed.set()
            self.metrics.connections.set(len(self._sessions))

    def _push_table(self) -> None:
        if self.table is None:
            return
        for session in list(self._sessions):
            session.push_table(self.table)

    # ------------------------------------------------------------------ membership

    def _all_links(self) -> list[PeerLink]:
        return [link for links in self._links.values() for link in links]

    def _link_for(self, node_id: str) -> PeerLink | None:
        for link in reversed(self._links.get(node_id, [])):
            if not link.closed:
                return link
        return None

    async def _on_peer_socket(self, ws: ServerConnection) -> None:
        if self.state not in ("running", "leaving"):
            return
        await self._run_link(PeerLink(ws, outbound=False))

    async def _dial(self, addr: str) -> None:
        try:
            ws = await connect(
                f"ws://{addr}", compression=None, ping_interval=None,
                max_size=self._peer_max_size(),
                open_timeout=self.config.failure_timeout_s,
            )  # fmt: skip
        except Exception as exc:
            self.log.debug("dial %s failed: %r", addr, exc)
            return
        finally:
            self._dialing.discard(addr)
        if self.state not in ("running", "leaving"):
            await ws.close()
            return
        await self._run_link(PeerLink(ws, outbound=True))

    async def _run_link(self, link: PeerLink) -> None:
        assert self.me is not None
        try:
            extra = self._table_msg() if self.table is not None else {}
            remote = await link.handshake(self.me, self._cluster_secret, extra)
        except HandshakeError as exc:
            self.log.warning("peer handshake failed: %s", exc)
            if not link.outbound:
                self.metrics.peer_auth_failures.inc()
            with contextlib.suppress(Exception):
                await link.ws.close(4003, "handshake failed")
            return
        if self.state not in ("running", "leaving"):
            link.abort()
            return
        self._link_up(link, remote)
        try:
            await link.run(self._on_peer_message)
        finally:
            self._link_down(link)

    def _link_up(self, link: PeerLink, remote: Member) -> None:
        old = self._members.get(remote.node_id)
        if old is not None and old.incarnation != remote.incarnation:
            self.log.info("%s restarted; dropping its old incarnation", remote.node_id)
            for stale in self._links.pop(remote.node_id, []):
                stale.abort()
            self._member_left(remote.node_id)
            old = None
        self._links.setdefault(remote.node_id, []).append(link)
        self._members[remote.node_id] = remote
        self._known[remote.node_id] = (remote.cluster_address, time.monotonic())
        if old is None:
            # A (re)joining node holds nothing we can vouch for: forget stale readiness.
            self._ready = {r for r in self._ready if r[1] != remote.node_id}
            self.log.info("member joined: %s (%s)", remote.node_id, remote.client_url)
            self.metrics.members.set(len(self._members) + 1)
        if link.remote_extra.get("table") is not None:
            try:
                self._accept_ready(link.remote_extra.get("ready"))
                self._apply_table(PartitionTable.from_wire(link.remote_extra["table"]))
            except ProtocolError as exc:
                self.log.warning("bad table from %s: %s", remote.node_id, exc)
        self._spawn(self._send_quiet(link, self._gossip_msg("MEMBERS")))
        if self.table is not None:
            self._spawn(self._send_quiet(link, self._table_msg()))
        if self.state == "leaving":
            self._spawn(self._send_quiet(link, {"t": "LEAVING", "nodeId": self.node_id}))
        if self._interest_local:
            maps = sorted(self._interest_local)
            self._spawn(self._send_quiet(link, {"t": "INTEREST", "maps": maps, "on": True}))
        self._maybe_plan()
        self._kick_migrations()

    def _link_down(self, link: PeerLink) -> None:
        remote = link.remote
        if remote is None:
            return
        links = self._links.get(remote.node_id)
        if links is None or link not in links:
            return
        links.remove(link)
        member = self._members.get(remote.node_id)
        if not links and member is not None and member.incarnation == remote.incarnation:
            del self._links[remote.node_id]
            self._member_left(remote.node_id)

    def _member_left(self, node_id: str) -> None:
        if self._members.pop(node_id, None) is None:
            return
        self._leaving.discard(node_id)
        self._known.pop(node_id, None)
        self._peer_views.pop(node_id, None)
        self._ready = {r for r in self._ready if r[1] != node_id}
        self._migrating = {m for m in self._migrating if m[1] != node_id}
        for nodes in self._interest_remote.values():
            nodes.discard(node_id)
        self.metrics.members.set(len(self._members) + 1)
        if self.state in ("running", "leaving"):
            self.log.info("member left: %s", node_id)
            self._broadcast(self._gossip_msg("MEMBERS"))  # peers' views settle sooner
            self._maybe_plan()

    def _gossip_msg(self, kind: str) -> dict[str, Any]:
        assert self.me is not None
        members = [self.me.to_wire()] + [m.to_wire() for m in self._members.values()]
        return {"t": kind, "members": members}

    def _on_gossip(self, link: PeerLink, raw: object) -> None:
        if not isinstance(raw, list):
            return
        if link.remote is not None:
            self._peer_views[link.remote.node_id] = {
                e["nodeId"] for e in raw[:1000] if isinstance(e, dict) and "nodeId" in e
            }
        now = time.monotonic()
        for entry in raw[:1000]:
            try:
                m = Member.from_wire(entry)
            except HandshakeError:
                continue
            if m.node_id != self.node_id:
                self._known[m.node_id] = (m.cluster_address, now)

    def _dial_targets(self) -> None:
        if self.state != "running":
            return
        now = time.monotonic()
        connected = {m.cluster_address for m in self._members.values()}
        targets = set(self.config.peers)
        for node_id, (addr, seen) in self._known.items():
            fresh = now - seen < self.config.failure_timeout_s
            quarantined = self._quarantine.get(node_id, 0.0) > now
            if (
                node_id not in self._members
                and fresh
                and not quarantined
                and self.node_id < node_id
            ):
                targets.add(addr)
        for addr in targets - connected - self._dialing - {self.cluster_address}:
            self._dialing.add(addr)
            self._spawn(self._dial(addr))

    async def _maintenance_loop(self) -> None:
        cfg = self.config
        while self.state in ("running", "leaving"):
            await asyncio.sleep(cfg.heartbeat_interval_s)
            now = time.monotonic()
            hb = self._gossip_msg("HB")
            for link in self._all_links():
                if now - link.last_recv > cfg.failure_timeout_s:
                    self.log.warning("%s silent for %.1fs: declared dead", link.node_id,
                                     now - link.last_recv)  # fmt: skip
                    self._quarantine[link.node_id] = now + 2 * cfg.failure_timeout_s
                    link.abort()
                else:
                    self._spawn(self._send_quiet(link, hb))
            for session in list(self._sessions):
                session.check_idle(now, cfg.client_idle_timeout_s)
            self._dial_targets()
            self._maybe_plan()
            self._kick_migrations()

    @staticmethod
    async def _send_quiet(link: PeerLink, msg: dict[str, Any]) -> None:
        with contextlib.suppress(PeerGone):
            await link.send(msg)

    def _broadcast(self, msg: dict[str, Any]) -> None:
        for node_id in list(self._links):
            link = self._link_for(node_id)
            if link is not None:
                self._spawn(self._send_quiet(link, msg))

    # ------------------------------------------------------------------ table authority

    def authority(self) -> str | None:
        live = [n for n in self.members() if n not in self._leaving]
        if self.state == "leaving":
            live = [n for n in live if n != self.node_id]
        if not live:
            return None
        if self.table is not None:
            in_table = [n for n in live if self.table.node(n) is not None]
            if in_table:
                return min(in_table)
        return min(live)

    def _view_settled(self) -> bool:
        """Whether our member view can be trusted for planning: every node of the current
        table is either linked to us or reported by none of our peers (so it is gone). A node
        that just joined and is still meeting the others must not plan them out."""
        t = self.table
        if t is None:
            return True
        for n in t.node_ids():
            if n == self.node_id or n in self._members:
                continue
            if any(n in view for peer, view in self._peer_views.items() if peer in self._members):
                return False
        return True

    def _maybe_plan(self) -> None:
        if self.state != "running" or self.authority() != self.node_id:
            return
        if not self._view_settled():
            return
        if self.table is None and not self._members and time.monotonic() < self._bootstrap_at:
            return  # give the configured peers a chance before founding a cluster alone
        live = [n for n in self.members() if n not in self._leaving]
        draining = [n for n in self._leaving if n in self._members]
        assignment = plan(self.table, live, self._ready, draining=draining)
        holders = {n for o, b in zip(*assignment, strict=True) for n in (o, *b)}
        nodes = tuple(
            NodeInfo(n, self._url_of(n), NodeStatus.LEAVING if n in draining else NodeStatus.ACTIVE)
            for n in sorted({*live, *(d for d in draining if d in holders)})
        )
        old = self.table
        if old is not None and (old.owners, old.backups) == assignment and old.nodes == nodes:
            return
        owners, backups = assignment
        if old is None:
            self._ready |= {(p, n) for p in range(len(owners)) for n in (owners[p], *backups[p])}
        self._ready |= {(p, o) for p, o in enumerate(owners)}
        table = PartitionTable(
            self._max_version + 1, nodes, owners, backups, self.config.clock_ms()
        )
        self.log.info("publishing partition table v%d for %s", table.version, sorted(live))
        self._apply_table(table)
        self._broadcast(self._table_msg())

    def _url_of(self, node_id: str) -> str:
        if node_id == self.node_id:
            return self.client_url
        m = self._members.get(node_id)
        return m.client_url if m else ""

    def _incarnation_of(self, node_id: str) -> str | None:
        if node_id == self.node_id:
            return self.incarnation
        m = self._members.get(node_id)
        return m.incarnation if m else None

    def _ready_wire(self, items: set[tuple[int, str]]) -> list[list[Any]]:
        return [[p, n, self._incarnation_of(n)] for p, n in sorted(items)]

    def _accept_ready(self, raw: object) -> bool:
        if not isinstance(raw, list):
            return False
        added = False
        for item in raw[: PARTITION_COUNT * 16]:
            if not isinstance(item, list) or len(item) != 3:
                continue
            p, n, inc = item
            if (
                isinstance(p, int) and 0 <= p < PARTITION_COUNT and isinstance(n, str)
                and inc is not None and inc == self._incarnation_of(n)
                and (p, n) not in self._ready
            ):  # fmt: skip
                self._ready.add((p, n))
                added = True
        return added

    def _table_msg(self) -> dict[str, Any]:
        assert self.table is not None
        return {"t": "TABLE", "table": self.table.to_wire(), "ready": self._ready_wire(self._ready)}

    def _apply_table(self, new: PartitionTable) -> bool:
        old = self.table
        if old is not None and new.version <= old.version:
            return False
        self.table = new
        self._max_version = max(self._max_version, new.version)
        self.metrics.table_version.set(new.version)
        for p in range(new.partition_count):
            if new.owners[p] == self.node_id:
                if old is None or old.owners[p] != self.node_id or p not in self._synced:
                    self._synced[p] = set()
                else:
                    self._synced[p] &= set(new.backups[p])
            else:
                self._synced.pop(p, None)
        self.log.info("serving partition table v%d", new.version)
        self._table_changed.set()
        self._push_table()
        self._kick_migrations()
        return True

    # ------------------------------------------------------------------ migration

    def _kick_migrations(self) -> None:
        t = self.table
        if t is None or self.state not in ("running", "leaving"):
            return
        todo: dict[str, list[int]] = defaultdict(list)
        for p, synced in self._synced.items():
            for b in t.backups[p]:
                if (
                    b != self.node_id
                    and b not in synced
                    and (p, b) not in self._migrating
                    and self._link_for(b) is not None
                ):
                    todo[b].append(p)
        for b, pids in todo.items():
            chunk: list[int] = []
            size = 0
            for p in pids:
                chunk.append(p)
                size += self.store.partition_size(p)
                if size >= MIGRATION_CHUNK_RECORDS or p == pids[-1]:
                    self._migrating.update((p, b) for p in chunk)
                    self._spawn(self._migrate(b, chunk))
                    chunk, size = [], 0

    async def _migrate(self, target: str, pids: list[int]) -> None:
        try:
            link = self._link_for(target)
            incarnation = self._incarnation_of(target)
            if link is None:
                return
            parts = [[p, triples_to_wire(self.store.partition_records(p))] for p in pids]
            await link.request({"t": "MIGRATE", "parts": parts}, self.config.request_timeout_s)
            t = self.table
            if self._incarnation_of(target) != incarnation or link.closed:
                return  # the target died (or restarted) meanwhile: its copy does not count
            done = {
                (p, target)
                for p in pids
                if t is not None and t.owners[p] == self.node_id and target in t.backups[p]
            }
            for p, b in done:
                self._synced.setdefault(p, set()).add(b)
            self.metrics.migrations.inc(len(done))
            if done:
                self._ready |= done
                self._broadcast({"t": "READY", "items": self._ready_wire(done)})
                self._maybe_plan()
        except (PeerGone, TimeoutError) as exc:
            self.log.info("migration to %s interrupted: %r", target, exc)
        finally:
            self._migrating.difference_update((p, target) for p in pids)

    # ------------------------------------------------------------------ peer messages

    def _on_peer_message(
        self, link: PeerLink, msg: dict[str, Any]
    ) -> Coroutine[Any, Any, None] | None:
        kind = msg.get("t")
        try:
            if kind in {"HB", "MEMBERS"}:
                self._on_gossip(link, msg.get("members"))
                if kind == "MEMBERS":
                    self._dial_targets()
            elif kind == "REPL":
                return self._on_repl(link, msg)
            elif kind == "FWD":
                self._spawn(self._on_fwd(link, msg))
            elif kind == "TABLE":
                self._accept_ready(msg.get("ready"))
                self._apply_table(PartitionTable.from_wire(msg.get("table")))
                self._maybe_plan()
            elif kind == "READY":
                if self._accept_ready(msg.get("items")):
                    self._maybe_plan()
            elif kind == "LEAVING":
                if msg.get("nodeId") == link.node_id:
                    self.log.info("%s announced it is leaving", link.node_id)
                    self._leaving.add(link.node_id)
                    self._maybe_plan()
            elif kind == "INTEREST":
                maps = msg.get("maps")
                for name in maps[:10_000] if isinstance(maps, list) else []:
                    if isinstance(name, str):
                        holders = self._interest_remote.setdefault(name, set())
                        if msg.get("on"):
                            holders.add(link.node_id)
                        else:
                            holders.discard(link.node_id)
            elif kind == "CHANGES":
                self._on_changes(triples_from_wire(msg.get("recs")))
            elif kind == "MIGRATE":
                return self._on_migrate(link, msg)
            elif kind == "QEXEC":
                return self._on_qexec(link, msg)
        except (ProtocolError, ValueError, TypeError) as exc:
            self.log.warning("bad %s from %s: %s", kind, link.node_id, exc)
        return None

    def _merge_records(self, raw: object) -> list[Triple]:
        triples = triples_from_wire(raw)
        for name, key, rec in triples:
            with contextlib.suppress(ClockSkewError):
                self.hlc.update(rec.timestamp)
            self.store.merge(name, key, rec)
        return triples

    async def _on_repl(self, link: PeerLink, msg: dict[str, Any]) -> None:
        try:
            triples = self._merge_records(msg.get("recs"))
            self.metrics.ops_replicated.inc(len(triples))
            ok = True if msg.get("hop") else await self._pass_on(triples, link.node_id)
            await link.reply(msg, {"t": "REPL_ACK", "ok": ok})
        except (ProtocolError, ValueError) as exc:
            await link.reply(msg, {"t": "REPL_ACK", "ok": False, "error": str(exc)})

    async def _pass_on(self, triples: list[Triple], sender: str) -> bool:
        """Copy records replicated to us onward to our backups where we now own them.

        The sender replicated by the table it had; if ownership has meanwhile moved here
        (a promotion during failover or shutdown), our backups may have been filled by a
        migration that predates these records. Passing them on before acking makes the
        sender's client ack cover every current replica. One hop only (``hop``), so nodes
        whose tables briefly disagree cannot bounce records between them.
        """
        t = self.table
        if t is None:
            return True
        onward: dict[str, list[Triple]] = defaultdict(list)
        for triple in triples:
            pid = partition_id(triple[1])
            if t.owners[pid] == self.node_id:
                for b in t.backups[pid]:
                    if b not in (self.node_id, sender):
                        onward[b].append(triple)
        if not onward:
            return True
        oks = await asyncio.gather(
            *(
                self._send_repl(b, {"t": "REPL", "hop": 1, "recs": triples_to_wire(recs)})
                for b, recs in onward.items()
            )
        )
        return all(ok is not None for ok in oks)

    async def _on_migrate(self, link: PeerLink, msg: dict[str, Any]) -> None:
        parts = msg.get("parts")
        ok = True
        if isinstance(parts, list):
            for part in parts:
                if isinstance(part, list) and len(part) == 2:
                    try:
                        self._merge_records(part[1])
                    except (ProtocolError, ValueError):
                        ok = False
        await link.reply(msg, {"t": "MIGRATE_ACK", "ok": ok})

    async def _on_fwd(self, link: PeerLink, msg: dict[str, Any]) -> None:
        raw = msg.get("ops")
        ops: list[ClientOp | None] = []
        for item in raw if isinstance(raw, list) else []:
            try:
                ops.append(ClientOp.from_wire(item))
            except ProtocolError:
                ops.append(None)
        valid = [op for op in ops if op is not None]
        outcomes = iter(await self.execute(valid, forwarded=True))
        results = [
            next(outcomes).to_wire() if op is not None else Outcome(False, "INVALID_OP").to_wire()
            for op in ops
        ]
        await link.reply(msg, {"t": "FWD_RESP", "results": results})

    async def _on_qexec(self, link: PeerLink, msg: dict[str, Any]) -> None:
        try:
            query = Query.from_wire(msg.get("query") or {})
            name = msg.get("mapName")
            if not isinstance(name, str):
                raise ProtocolError("mapName must be a string")
            rows = self._local_query(name, query)
            wire = [[k, r.to_wire()] for k, r in rows.items()]
            await link.reply(msg, {"t": "QRESP", "rows": wire})
        except ProtocolError as exc:
            await link.reply(msg, {"t": "QRESP", "rows": [], "error": str(exc)})

    # ------------------------------------------------------------------ write path

    def _not_owner(self, pid: int, message: str = "not the owner of this partition") -> Outcome:
        t = self.table
        hint = NotOwnerHint(pid, t.owners[pid] if t else None, t.version if t else 0, message)
        return Outcome(False, "NOT_OWNER", hint)

    async def execute(
        self, ops: list[ClientOp], *, forwarded: bool = False, attempt: int = 0
    ) -> list[Outcome]:
        """Apply/forward a batch of ops; one outcome per op, in order."""
        t = self.table
        out: list[Outcome | None] = [None] * len(ops)
        local: list[tuple[int, int]] = []  # (op index, partition id)
        remote: dict[str, list[int]] = defaultdict(list)
        serving = self.state in ("running", "leaving")
        for i, op in enumerate(ops):
            pid = partition_id(op.key)
            if op.record is None:
                out[i] = Outcome(False, f"UNSUPPORTED: opType {op.op_type} needs an LWW record")
            elif t is None or not serving:
                out[i] = self._not_owner(pid, "no partition table yet")
            elif t.owners[pid] == self.node_id:
                local.append((i, pid))
            elif forwarded:
                out[i] = self._not_owner(pid)
            elif not self.config.forward_writes:
                out[i] = self._not_owner(pid, "this node does not forward writes")
            elif self._link_for(t.owners[pid]) is not None:
                remote[t.owners[pid]].append(i)
            else:
                out[i] = self._not_owner(pid, "owner unreachable")
        waits: list[Any] = []
        if local:
            assert t is not None
            waits.append(self._apply_local(ops, local, out, t))
        for owner, idx in remote.items():
            waits.append(self._forward(owner, ops, idx, out))
        if waits:
            await asyncio.gather(*waits)
        results = [o if o is not None else Outcome(False, "INTERNAL") for o in out]
        # A refusal caused by a table change while we forwarded: retry on the newer table.
        retry = [
            i
            for i, o in enumerate(results)
            if o.error == "NOT_OWNER" and o.hint is not None and not forwarded
            and self.table is not None and self.table.version > (t.version if t else 0)
        ]  # fmt: skip
        if retry and attempt < FORWARD_RETRIES:
            again = await self.execute([ops[i] for i in retry], attempt=attempt + 1)
            for i, o in zip(retry, again, strict=True):
                results[i] = o
        if attempt == 0:
            rejected = sum(not o.ok for o in results)
            if rejected:
                self.metrics.ops_rejected.inc(rejected)
        return results

    async def _apply_local(
        self,
        ops: list[ClientOp],
        idx: list[tuple[int, int]],
        out: list[Outcome | None],
        t: PartitionTable,
    ) -> None:
        per_backup: dict[str, list[int]] = defaultdict(list)
        applied: list[int] = []
        changed: list[Triple] = []
        for i, pid in idx:
            op = ops[i]
            rec = op.record
            assert rec is not None
            try:
                self.hlc.update(rec.timestamp)
            except ClockSkewError as exc:
                out[i] = Outcome(False, f"CLOCK_SKEW: {exc}")
                continue
            if self.store.merge(op.map_name, op.key, rec, pid) and (
                op.map_name in self._interest_local or self._interest_remote.get(op.map_name)
            ):
                changed.append((op.map_name, op.key, rec))
            applied.append(i)
            for b in t.backups[pid]:
                if b != self.node_id:
                    per_backup[b].append(i)
        self.metrics.ops_applied.inc(len(applied))
        failed: set[int] = set()
        replicated: set[int] = set()
        if per_backup:
            oks = await asyncio.gather(
                *(self._replicate(b, [ops[i] for i in ii]) for b, ii in per_backup.items())
            )
            for (_, ii), ok in zip(per_backup.items(), oks, strict=True):
                if ok is None:
                    failed.update(ii)
                elif ok:
                    replicated.update(ii)
        if changed:
            self._publish_changes(changed)
        for i in applied:
            if i in failed:
                out[i] = Outcome(False, "REPLICATION_TIMEOUT")
            else:
                out[i] = Outcome(True, level="REPLICATED" if i in replicated else "APPLIED")

    async def _replicate(self, backup: str, ops: list[ClientOp]) -> bool | None:
        """True: the backup confirmed; False: it is gone (dead); None: no answer in time."""
        recs = [[op.map_name, op.key, op.record.to_wire()] for op in ops if op.record]
        return await self._send_repl(backup, {"t": "REPL", "recs": recs})

    async def _send_repl(self, backup: str, msg: dict[str, Any]) -> bool | None:
        link = self._link_for(backup)
        if link is None:
            return False
        started = time.perf_counter()
        self.metrics.replication_pending.inc()
        try:
            reply = await link.request(msg, self.config.request_timeout_s)
            self.metrics.replication_lag.set(time.perf_counter() - started)
            return bool(reply.get("ok", False)) or None
        except PeerGone:
            return False
        except TimeoutError:
            self.log.warning("replication to %s timed out", backup)
            return None
        finally:
            self.metrics.replication_pending.dec()

    async def _forward(
        self, owner: str, ops: list[ClientOp], idx: list[int], out: list[Outcome | None]
    ) -> None:
        link = self._link_for(owner)
        self.metrics.ops_forwarded.inc(len(idx))
        try:
            if link is None:
                raise PeerGone(owner)
            reply = await link.request(
                {"t": "FWD", "ops": [ops[i].to_wire() for i in idx]},
                self.config.request_timeout_s,
            )
            results = reply.get("results")
            if not isinstance(results, list) or len(results) != len(idx):
                raise ProtocolError("bad FWD_RESP")
            for i, r in zip(idx, results, strict=True):
                out[i] = Outcome.from_wire(r)
        except (PeerGone, TimeoutError, ProtocolError) as exc:
            self.log.info("forward to %s failed: %r", owner, exc)
            for i in idx:
                out[i] = self._not_owner(partition_id(ops[i].key), "owner unreachable")

    # ------------------------------------------------------------------ queries

    def _local_query(self, map_name: str, query: Query) -> dict[str, LWWRecord]:
        t = self.table
        pids = set(t.partitions_of(self.node_id)) if t is not None else None
        return q.select(self.store.map_records(map_name, pids), query, self.config.clock_ms())

    async def run_query(self, map_name: str, query: Query) -> list[tuple[str, Any]]:
        """Ask every owner for its partitions' matches and merge them by LWW."""
        partials = [self._local_query(map_name, query)]
        links = [link for n in list(self._links) if (link := self._link_for(n)) is not None]

        async def ask(link: PeerLink) -> dict[str, LWWRecord]:
            try:
                reply = await link.request(
                    {"t": "QEXEC", "mapName": map_name, "query": query.to_wire()},
                    self.config.query_timeout_s,
                )
                rows = reply.get("rows")
                out: dict[str, LWWRecord] = {}
                for row in rows if isinstance(rows, list) else []:
                    if isinstance(row, list) and len(row) == 2 and isinstance(row[0], str):
                        out[row[0]] = LWWRecord.from_wire(row[1])
                return out
            except (PeerGone, TimeoutError, ProtocolError) as exc:
                self.log.info("query part from %s failed: %r", link.node_id, exc)
                return {}

        partials.extend(await asyncio.gather(*(ask(link) for link in links)))
        return q.finish(q.merge_partials(partials), query, self.config.clock_ms())

    # ------------------------------------------------------------------ live queries

    def add_interest(self, map_name: str) -> None:
        n = self._interest_local.get(map_name, 0)
        self._interest_local[map_name] = n + 1
        if n == 0:
            self._broadcast({"t": "INTEREST", "maps": [map_name], "on": True})

    def remove_interest(self, map_name: str) -> None:
        n = self._interest_local.get(map_name, 0) - 1
        if n > 0:
            self._interest_local[map_name] = n
        elif map_name in self._interest_local:
            del self._interest_local[map_name]
            self._broadcast({"t": "INTEREST", "maps": [map_name], "on": False})

    def _publish_changes(self, changed: list[Triple]) -> None:
        """Tell live queries here and on interested nodes about records the owner merged."""
        self._on_changes(changed)
        by_node: dict[str, list[Triple]] = defaultdict(list)
        for t in changed:
            for node_id in self._interest_remote.get(t[0], ()):
                by_node[node_id].append(t)
        for node_id, triples in by_node.items():
            link = self._link_for(node_id)
            if link is not None:
                msg = {"t": "CHANGES", "recs": triples_to_wire(triples)}
                self._spawn(self._send_quiet(link, msg))

    def _on_changes(self, changed: list[Triple]) -> None:
        if not self._interest_local:
            return
        now = self.config.clock_ms()
        for session in list(self._sessions):
            session.on_changes(changed, now)
