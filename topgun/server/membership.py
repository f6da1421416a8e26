"""Membership: authenticated peer links, gossip of who is there, heartbeats, failure detection.

It knows who is alive and how to reach them; it decides nothing about partitions. Other
services register message handlers by type and listen for members coming and going.

Every heartbeat (``HB``) carries our send time and is answered (``HB_ACK``) with it: the
answers confirm the owner lease (:class:`~topgun.core.lease.Lease`), dated by when we *sent*.
Each link has a phi accrual detector (:mod:`topgun.core.failure_detector`). A node that
finds its own heartbeat tick late (it stalled: SIGSTOP, a long GC, a busy loop) restarts
every detector instead of blaming its peers for its own silence: a peer is declared dead
only after it stays silent for the detection time *after* we are back.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection

from topgun.core.errors import ProtocolError
from topgun.core.failure_detector import PhiAccrualDetector
from topgun.core.lease import Lease
from topgun.server.context import NodeContext
from topgun.server.peer_link import HandshakeError, Member, PeerGone, PeerLink

PEER_MAX_FRAME_BYTES = 256 * 1024 * 1024
GOSSIP_MAX_ENTRIES = 1000

MessageHandler = Callable[[PeerLink, dict[str, Any]], Awaitable[None] | None]
UpListener = Callable[[PeerLink, Member, bool], None]
"""(link, member, is_new): a link came up; ``is_new`` when the member (incarnation) is new."""
DownListener = Callable[[str], None]


async def send_quiet(link: PeerLink, msg: dict[str, Any]) -> None:
    """Send if the link is still there; a gone peer is membership's business, not the caller's."""
    with contextlib.suppress(PeerGone):
        await link.send(msg)


class Membership:
    def __init__(self, ctx: NodeContext, cluster_secret: str) -> None:
        self.ctx = ctx
        self._secret = cluster_secret
        self.me: Member | None = None
        self.members: dict[str, Member] = {}
        self.links: dict[str, list[PeerLink]] = {}
        self.leaving: set[str] = set()
        self._known: dict[str, tuple[str, float]] = {}  # gossip: id → (cluster addr, seen at)
        self._dialing: set[str] = set()
        # member id → the member ids it last reported (gossip), for view_settled()
        self.peer_views: dict[str, set[str]] = {}
        # node id → monotonic time before which a node we declared dead is not re-dialled
        self._quarantine: dict[str, float] = {}
        self.handlers: dict[str, MessageHandler] = {}
        self.on_up: list[UpListener] = []
        self.on_down: list[DownListener] = []
        self.on_change: list[Callable[[], None]] = []
        self.handshake_extra: Callable[[], dict[str, Any]] = dict
        self.heartbeat_extra: Callable[[], dict[str, Any]] = dict
        self.peer_status: dict[str, dict[str, Any]] = {}
        """member id → the extra fields of its last heartbeat (for example its unsafe count)."""
        self.lease = Lease(ctx.config.lease_s)
        self.on_lease: list[Callable[[], None]] = []
        self._detectors: dict[PeerLink, PhiAccrualDetector] = {}
        self._last_tick: float | None = None

    def max_frame_bytes(self) -> int:
        # peer frames carry whole client batches and migration chunks
        return max(PEER_MAX_FRAME_BYTES, 8 * self.ctx.config.max_frame_bytes)

    # ------------------------------------------------------------------ views

    def live_ids(self) -> list[str]:
        """Live member node ids (self included), sorted; empty once stopped."""
        if self.ctx.state == "stopped":
            return []
        return sorted({self.ctx.node_id, *self.members})

    def all_links(self) -> list[PeerLink]:
        return [link for links in self.links.values() for link in links]

    def link_for(self, node_id: str) -> PeerLink | None:
        for link in reversed(self.links.get(node_id, [])):
            if not link.closed:
                return link
        return None

    def url_of(self, node_id: str) -> str:
        if self.me is not None and node_id == self.ctx.node_id:
            return self.me.client_url
        m = self.members.get(node_id)
        return m.client_url if m else ""

    def incarnation_of(self, node_id: str) -> str | None:
        if node_id == self.ctx.node_id:
            return self.ctx.incarnation
        m = self.members.get(node_id)
        return m.incarnation if m else None

    def reported_by_peers(self, node_id: str) -> bool:
        """Whether any linked peer still lists ``node_id`` in its last gossip."""
        return any(
            node_id in view for peer, view in self.peer_views.items() if peer in self.members
        )

    def broadcast(self, msg: dict[str, Any]) -> None:
        for node_id in list(self.links):
            link = self.link_for(node_id)
            if link is not None:
                self.ctx.spawn(send_quiet(link, msg))

    def _changed(self) -> None:
        for listener in self.on_change:
            listener()

    # ------------------------------------------------------------------ links

    async def on_peer_socket(self, ws: ServerConnection) -> None:
        if not self.ctx.serving:
            return
        await self._run_link(PeerLink(ws, outbound=False))

    async def _dial(self, addr: str) -> None:
        try:
            tls = self.ctx.config.node_tls()
            ws = await connect(
                tls.peer_url(addr), ssl=tls.cluster_dial, compression=None, ping_interval=None,
                max_size=self.max_frame_bytes(),
                open_timeout=self.ctx.config.failure_timeout_s,
            )  # fmt: skip
        except Exception as exc:
            self.ctx.log.debug("dial %s failed: %r", addr, exc)
            return
        finally:
            self._dialing.discard(addr)
        if not self.ctx.serving:
            await ws.close()
            return
        await self._run_link(PeerLink(ws, outbound=True))

    async def _run_link(self, link: PeerLink) -> None:
        assert self.me is not None
        try:
            remote = await link.handshake(self.me, self._secret, self.handshake_extra())
        except HandshakeError as exc:
            self.ctx.log.warning("peer handshake failed: %s", exc)
            if not link.outbound:
                self.ctx.metrics.peer_auth_failures.inc()
            with contextlib.suppress(Exception):
                await link.ws.close(4003, "handshake failed")
            return
        if not self.ctx.serving:
            link.abort()
            return
        self.link_up(link, remote)
        try:
            await link.run(self._dispatch)
        finally:
            self.link_down(link)

    def link_up(self, link: PeerLink, remote: Member) -> None:
        old = self.members.get(remote.node_id)
        if old is not None and old.incarnation != remote.incarnation:
            self.ctx.log.info("%s restarted; dropping its old incarnation", remote.node_id)
            for stale in self.links.pop(remote.node_id, []):
                stale.abort()
            self.member_left(remote.node_id)
            old = None
        self.links.setdefault(remote.node_id, []).append(link)
        cfg = self.ctx.config
        self._detectors[link] = PhiAccrualDetector(
            cfg.heartbeat_interval_s, threshold=cfg.phi_threshold,
            min_silence_s=cfg.min_silence_s, max_silence_s=cfg.max_silence_s,
        )  # fmt: skip
        self._detectors[link].heartbeat(time.monotonic())
        self.members[remote.node_id] = remote
        self._known[remote.node_id] = (remote.cluster_address, time.monotonic())
        if old is None:
            self.ctx.log.info("member joined: %s (%s)", remote.node_id, remote.client_url)
            self.ctx.metrics.members.set(len(self.members) + 1)
        self.ctx.spawn(send_quiet(link, self.gossip_msg("MEMBERS")))
        self.ctx.spawn(send_quiet(link, self.heartbeat_msg(time.monotonic())))  # lease at once
        if self.ctx.state == "leaving":
            self.ctx.spawn(send_quiet(link, {"t": "LEAVING", "nodeId": self.ctx.node_id}))
        for listener in self.on_up:
            listener(link, remote, old is None)

    def link_down(self, link: PeerLink) -> None:
        remote = link.remote
        if remote is None:
            return
        self._detectors.pop(link, None)
        links = self.links.get(remote.node_id)
        if links is None or link not in links:
            return
        links.remove(link)
        member = self.members.get(remote.node_id)
        if not links and member is not None and member.incarnation == remote.incarnation:
            del self.links[remote.node_id]
            self.member_left(remote.node_id)

    def member_left(self, node_id: str) -> None:
        if self.members.pop(node_id, None) is None:
            return
        self.leaving.discard(node_id)
        self._known.pop(node_id, None)
        self.peer_views.pop(node_id, None)
        self.peer_status.pop(node_id, None)
        self.lease.forget(node_id)
        self.ctx.metrics.members.set(len(self.members) + 1)
        for listener in self.on_down:
            listener(node_id)
        if self.ctx.serving:
            self.ctx.log.info("member left: %s", node_id)
            self.broadcast(self.gossip_msg("MEMBERS"))  # peers' views settle sooner
            self._changed()
            self.dial_targets()  # a link that dropped under us (not a death) comes back now

    def abort_all(self) -> None:
        for link in self.all_links():
            link.abort()

    def clear(self) -> None:
        self.members.clear()
        self.links.clear()
        self._detectors.clear()

    # ------------------------------------------------------------------ messages

    def _dispatch(self, link: PeerLink, msg: dict[str, Any]) -> Awaitable[None] | None:
        kind = msg.get("t")
        try:
            if kind in {"HB", "MEMBERS"}:
                if self._on_gossip(link, msg.get("members")):
                    self._changed()  # a peer's view changed: planning may proceed now
                if kind == "MEMBERS":
                    self.dial_targets()
                else:
                    self._on_heartbeat(link, msg)
            elif kind == "HB_ACK":
                self._on_heartbeat_ack(link, msg.get("at"))
            elif kind == "LEAVING":
                if msg.get("nodeId") == link.node_id:
                    self.ctx.log.info("%s announced it is leaving", link.node_id)
                    self.leaving.add(link.node_id)
                    self._changed()
            elif isinstance(kind, str) and (handler := self.handlers.get(kind)) is not None:
                return handler(link, msg)
        except (ProtocolError, ValueError, TypeError) as exc:
            self.ctx.log.warning("bad %s from %s: %s", kind, link.node_id, exc)
        return None

    def gossip_msg(self, kind: str) -> dict[str, Any]:
        assert self.me is not None
        members = [self.me.to_wire()] + [m.to_wire() for m in self.members.values()]
        return {"t": kind, "members": members}

    def _on_heartbeat(self, link: PeerLink, msg: dict[str, Any]) -> None:
        detector = self._detectors.get(link)
        if detector is not None:
            detector.heartbeat(time.monotonic())
        status = msg.get("status")
        if isinstance(status, dict) and link.remote is not None:
            self.peer_status[link.remote.node_id] = status
        at = msg.get("at")
        if isinstance(at, int | float) and not isinstance(at, bool):
            self.ctx.spawn(send_quiet(link, {"t": "HB_ACK", "at": at}))

    def _on_heartbeat_ack(self, link: PeerLink, at: object) -> None:
        """A peer answered our heartbeat sent at ``at``: that renews the lease (dated ``at``)."""
        now = time.monotonic()
        if not isinstance(at, float) or not 0 < at <= now or link.remote is None:
            return
        if self.members.get(link.remote.node_id) != link.remote:
            return
        self.lease.confirm(link.remote.node_id, at)
        for listener in self.on_lease:
            listener()

    def _on_gossip(self, link: PeerLink, raw: object) -> bool:
        """Record a peer's member list; True when its view of who is there changed."""
        if not isinstance(raw, list):
            return False
        entries = raw[:GOSSIP_MAX_ENTRIES]
        changed = False
        if link.remote is not None:
            view = {e["nodeId"] for e in entries if isinstance(e, dict) and "nodeId" in e}
            changed = self.peer_views.get(link.remote.node_id) != view
            self.peer_views[link.remote.node_id] = view
        now = time.monotonic()
        for entry in entries:
            try:
                m = Member.from_wire(entry)
            except HandshakeError:
                continue
            if m.node_id != self.ctx.node_id:
                self._known[m.node_id] = (m.cluster_address, now)
        return changed

    def announce_leaving(self) -> None:
        for link in self.all_links():
            self.ctx.spawn(send_quiet(link, {"t": "LEAVING", "nodeId": self.ctx.node_id}))

    # ------------------------------------------------------------------ maintenance

    def dial_targets(self) -> None:
        if self.ctx.state != "running" or self.me is None:
            return
        now = time.monotonic()
        connected = {m.cluster_address for m in self.members.values()}
        targets = set(self.ctx.config.peers)
        for node_id, (addr, seen) in self._known.items():
            fresh = now - seen < self.ctx.config.failure_timeout_s
            quarantined = self._quarantine.get(node_id, 0.0) > now
            if (
                node_id not in self.members
                and fresh
                and not quarantined
                and self.ctx.node_id < node_id
            ):
                targets.add(addr)
        for addr in targets - connected - self._dialing - {self.me.cluster_address}:
            self._dialing.add(addr)
            self.ctx.spawn(self._dial(addr))

    def heartbeat_msg(self, now: float) -> dict[str, Any]:
        hb = self.gossip_msg("HB")
        hb["at"] = now
        hb["status"] = self.heartbeat_extra()
        return hb

    def stalled(self, now: float) -> float:
        """How long our own heartbeat tick was late (0 if on time); a late tick restarts every
        detector, so nobody is declared dead for a silence that was ours."""
        last, self._last_tick = self._last_tick, now
        if last is None:
            return 0.0
        cfg = self.ctx.config
        late = now - last - cfg.heartbeat_interval_s
        if late <= cfg.min_silence_s / 4:
            return 0.0
        log = self.ctx.log.warning if late > cfg.lease_s else self.ctx.log.info
        log("stalled for %.1fs: re-checking peers before believing any died", late)
        self.ctx.metrics.stalls.inc()
        for detector in self._detectors.values():
            detector.restart(now)
        return late

    def heartbeat(self, now: float) -> None:
        """Send a heartbeat on every link; drop links the detector declares dead."""
        cfg = self.ctx.config
        stalled = self.stalled(now)
        hb = self.heartbeat_msg(now)
        for link in self.all_links():
            detector = self._detectors.get(link)
            if detector is not None:
                detector.restart(max(detector.last or 0.0, link.last_recv))
            if not stalled and detector is not None and detector.is_dead(now):
                silence = now - link.last_recv
                self.ctx.log.warning(
                    "%s silent for %.1fs (phi %.1f): declared dead",
                    link.node_id, silence, detector.phi(now),
                )  # fmt: skip
                self._quarantine[link.node_id] = now + 2 * cfg.failure_timeout_s
                self.ctx.metrics.declared_dead.inc()
                link.abort()
            else:
                self.ctx.spawn(send_quiet(link, hb))
