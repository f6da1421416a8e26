"""One client connection: the TopGun client protocol (reference §1, §2), fixed per §6.

Handshake: ``AUTH_REQUIRED`` at once; before ``AUTH_ACK`` only ``AUTH`` and ``PING`` are
accepted (anything else closes 4001), within the limits of :mod:`auth_gate` (deadline 4001
"Authentication timeout", byte budget 1009, eviction 1013). A second ``AUTH`` on an
authenticated socket is answered ``ERROR 409`` and changes nothing: a connection keeps the
identity it first proved. Shape errors get ``ERROR 400`` and the socket stays usable;
undecodable bytes close 1002; a silent client is closed 4002.

Permissions (:func:`~topgun.server.auth.authorize`): a write needs PUT (or REMOVE for a
removal) on its map, else it is refused on its own with ``OP_REJECTED`` code 403
``Access Denied for map <name>`` and ``FORBIDDEN: …`` in its ``OP_ACK`` result; an op that
breaks a field rule gets code 400 and ``INVALID_OP: …``. A query needs READ (else
``ERROR 403 "Access Denied for map <name>"``), may not refer to fields the reader cannot
see, and its results and updates show only the allowed fields.

Write concern (:mod:`topgun.core.concern`): ops are executed in groups of the same level and
timeout (an op's own ``writeConcern``/``timeout`` win over its batch's), and one ``OP_ACK``
answers the batch once every group is answered. ``FIRE_AND_FORGET`` and ``MEMORY`` ops are
answered as soon as they passed validation and permissions; they are then executed in the
background, and what becomes of them is not reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from topgun.core.codec import decode_frame, encode
from topgun.core.concern import PERSISTENCE_UNAVAILABLE, Concern, Level
from topgun.core.errors import ProtocolError
from topgun.core.merkle import DEPTH
from topgun.core.messages import (
    Auth,
    AuthAck,
    AuthFail,
    AuthRequired,
    ClientOp,
    ClientOpMessage,
    ErrorMessage,
    InvalidOp,
    Message,
    OpAck,
    OpBatch,
    OpRejected,
    OpResult,
    PartitionMap,
    PartitionMapRequest,
    Ping,
    Pong,
    Query,
    QueryResp,
    QuerySub,
    QueryUnsub,
    QueryUpdate,
    ServerBatchEvent,
    ServerEventPayload,
    ShutdownPending,
    Unsupported,
)
from topgun.core.policy import EVERYTHING, FieldView
from topgun.core.records import LWWRecord
from topgun.core.sync_messages import (
    MerkleReqBucket,
    ServerEvent,
    SyncInit,
    SyncResetRequired,
    SyncRespBuckets,
    SyncRespLeaf,
    SyncRespRoot,
)
from topgun.core.table import PartitionTable
from topgun.server import query as q
from topgun.server import scope
from topgun.server.auth import PUT, READ, REMOVE, AuthError, Principal, authorize, field_view
from topgun.server.auth_gate import AuthGate
from topgun.server.operations import Outcome
from topgun.server.queries import Origin, QueryFailed
from topgun.server.sync import SyncUnavailable

if TYPE_CHECKING:
    from topgun.server.facade import NodeFacade

CLOSE_PROTOCOL_ERROR = 1002
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_BIG = 1009
CLOSE_OVERLOADED = 1013
CLOSE_UNAUTHORIZED = 4001
CLOSE_IDLE = 4002
UNAVAILABLE = 503
SYNC_UNAVAILABLE = "SYNC_UNAVAILABLE"
_session_ids = itertools.count(1)


def _sync_unavailable(map_name: str, exc: Exception) -> ErrorMessage:
    """No complete sync answer now: ``ERROR 503`` naming the map, so the client retries."""
    details = {"code": SYNC_UNAVAILABLE, "mapName": map_name}
    return ErrorMessage(UNAVAILABLE, f"sync of {map_name}: {exc}", details)


FORBIDDEN = "FORBIDDEN"
REJECT_CODES = {FORBIDDEN: 403, "INVALID_OP": 400, PERSISTENCE_UNAVAILABLE: 501}
"""Refusals caused by the op itself: each gets its own OP_REJECTED, in a batch too."""
MAX_QUERY_FIELDS = 1000


_DEFAULT = Concern()
_BACKGROUND = Concern(Level.APPLIED)


def _batch_wire(batch: Concern) -> tuple[str | None, float]:
    """A batch's concern as the fallback of its ops' own."""
    return (None if batch.level is None else batch.level.name), batch.timeout_ms


def _query_fields(query: Query) -> set[str]:
    """Every value field a query refers to (where, predicate, sort), ``_key`` left out.
    Iterative and bounded, since a predicate tree comes from the client."""
    names = set(query.where or ()) | set(query.sort or ())
    stack = [query.predicate] if query.predicate else []
    while stack and len(names) <= MAX_QUERY_FIELDS:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        if isinstance(node.get("attribute"), str):
            names.add(node["attribute"])
        children = node.get("children")
        if isinstance(children, list):
            stack.extend(children[:MAX_QUERY_FIELDS])
    names.discard(q.KEY_FIELD)
    return {str(n) for n in names}


def _seen(rec: LWWRecord, view: FieldView) -> LWWRecord:
    """A record as a reader with ``view`` may see it (allowedFields trim object values)."""
    if view.fields is None or rec.value is None:
        return rec
    return msgspec.structs.replace(rec, value=view.apply(rec.value))


@dataclass
class LiveQuery:
    sub: QuerySub
    keys: set[str] = field(default_factory=set)
    view: FieldView = EVERYTHING


class ClientSession:
    def __init__(self, node: NodeFacade, ws: ServerConnection, gate: AuthGate) -> None:
        self.node = node
        self.ws = ws
        self.gate = gate
        self.principal: Principal | None = None
        self.last_activity = time.monotonic()
        self.subscriptions: dict[str, LiveQuery] = {}
        self.session_id = str(next(_session_ids))
        self._closing = False
        self._announced = False
        self._bytes_before_auth = 0
        self._deadline: asyncio.TimerHandle | None = None

    # --------------------------------------------------------------- sending

    async def send(self, msg: Message) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(encode(msg))

    def push_table(self, table: PartitionTable) -> None:
        if self.principal is None or self._closing:
            return
        self.node.spawn(self.send(PartitionMap(table)))

    def abort(self) -> None:
        self._closing = True
        transport = self.ws.transport
        if transport is not None:
            transport.abort()

    def check_idle(self, now: float, limit: float) -> None:
        if not self._closing and now - self.last_activity > limit:
            self._closing = True
            self.node.log.info("closing idle client (%.1fs silent)", now - self.last_activity)
            self.node.spawn(self._close(CLOSE_IDLE, "Heartbeat timeout"))

    async def _close(self, code: int, reason: str, wait_s: float = 2.0) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code, reason), wait_s)
        self.abort()

    def _shut(self, code: int, reason: str, wait_s: float) -> None:
        if not self._closing:
            self._closing = True
            self.node.spawn(self._close(code, reason, wait_s))

    def evict(self) -> None:
        """Too many sockets wait to authenticate: this one, the oldest, makes room."""
        self.node.log.debug("evicting the oldest unauthenticated socket")
        self._shut(CLOSE_OVERLOADED, "Server overloaded", 0.5)

    def _auth_expired(self) -> None:
        if self.principal is None:
            self.node.log.info("closing a socket that did not authenticate in time")
            self._shut(CLOSE_UNAUTHORIZED, "Authentication timeout", 1.0)

    @property
    def authenticated(self) -> bool:
        return self.principal is not None and not self._closing

    async def announce_shutdown(self) -> None:
        if not self._announced:
            self._announced = True
            await self.send(ShutdownPending(self.node.config.shutdown_retry_after_ms))

    async def close_for_shutdown(self) -> None:
        await self.announce_shutdown()
        self._closing = True
        await self._close(CLOSE_GOING_AWAY, "Server Shutdown")

    # --------------------------------------------------------------- receiving

    async def run(self) -> None:
        self.gate.admit(self)
        self._deadline = asyncio.get_running_loop().call_later(
            self.gate.timeout_s, self._auth_expired
        )
        # Until AUTH_ACK no frame may exceed the byte budget (websockets closes 1009).
        self.ws.protocol.max_message_size = min(
            self.gate.max_bytes, self.node.config.max_frame_bytes
        )
        try:
            await self.send(AuthRequired())
            async for frame in self.ws:
                if self._closing:
                    continue  # closing: the close handshake is under way, nothing more is read
                self.last_activity = time.monotonic()
                if self.principal is None:
                    self._bytes_before_auth += len(frame)
                    if self._bytes_before_auth > self.gate.max_bytes:
                        await self._close(CLOSE_TOO_BIG, "Too much data before authentication")
                        return
                try:
                    items = decode_frame(frame)
                except ProtocolError as exc:
                    self.node.log.info("undecodable client frame: %s", exc)
                    await self._close(CLOSE_PROTOCOL_ERROR, "Protocol Error")
                    return
                for item in items:
                    try:
                        keep = await self._handle(item)
                    except ConnectionClosed:
                        raise
                    except Exception as exc:  # never let one message kill the node
                        self.node.log.exception("error handling client message")
                        await self.send(ErrorMessage(500, f"internal error: {type(exc).__name__}"))
                        keep = True
                    if not keep:
                        return
        except ConnectionClosed:
            pass
        finally:
            self._deadline.cancel()
            self.gate.release(self)
            for live in self.subscriptions.values():
                self.node.remove_interest(live.sub.map_name)
            self.subscriptions.clear()

    def on_changes(
        self, changed: list[tuple[str, str, Any]], now_ms: int, origin: Origin | None
    ) -> None:
        """QUERY_UPDATE for every live query whose result a changed record enters/leaves,
        and the change events (§2.7) for every watched map, unless this client wrote them."""
        if not self.subscriptions or self._closing:
            return
        self._send_events(changed, origin)
        for live in list(self.subscriptions.values()):
            name, query = live.sub.map_name, live.sub.query
            for map_name, key, rec in changed:
                if map_name != name:
                    continue
                if rec.is_live(now_ms) and q.matches(key, rec.value, query):
                    kind = "UPDATE" if key in live.keys else "ENTER"
                    live.keys.add(key)
                    value = live.view.apply(rec.value)
                elif key in live.keys:
                    live.keys.discard(key)
                    kind, value = ("REMOVE" if rec.value is None else "LEAVE"), None
                else:
                    continue
                msg = QueryUpdate(live.sub.query_id, key, value, kind)
                self.node.spawn(self.send(msg))

    def _send_events(self, changed: list[tuple[str, str, Any]], origin: Origin | None) -> None:
        if origin is not None and (origin.node_id, origin.session_id) == (
            self.node.config.node_id,
            self.session_id,
        ):
            return
        watched = {live.sub.map_name for live in self.subscriptions.values()}
        views = {m: field_view(self.principal, m) for m in watched if self._may_read(m)}
        events = tuple(
            ServerEventPayload(
                name, key, "PUT" if rec.value is not None else "REMOVE", _seen(rec, views[name])
            )
            for name, key, rec in changed
            if name in views
        )
        if not events:
            return
        ts = self.node.hlc.now().to_wire()
        single = origin is not None and origin.single and len(events) == 1
        msg = ServerEvent(events, ts) if single else ServerBatchEvent(events, ts)
        self.node.spawn(self.send(msg))

    async def _handle(self, item: Message | ProtocolError) -> bool:
        if isinstance(item, ProtocolError):
            await self.send(
                ErrorMessage(400, f"Invalid message format: {item}", {"type": item.msg_type})
            )
            return True
        if isinstance(item, Ping):
            now = float(self.node.config.clock_ms())
            await self.send(Pong(item.timestamp, now))
            return True
        if isinstance(item, Auth):
            return await self._on_auth(item)
        if self.principal is None:
            await self._close(CLOSE_UNAUTHORIZED, "Auth required")
            return False
        if isinstance(item, OpBatch):
            batch = _DEFAULT
            if item.write_concern is not None or item.timeout is not None:
                batch = Concern.of(None, None, item.write_concern, item.timeout)
            await self._on_ops(list(item.ops), batch, single=False)
        elif isinstance(item, ClientOpMessage):
            await self._on_ops([item.op], _DEFAULT, single=True)
        elif isinstance(item, PartitionMapRequest):
            table = self.node.table
            if table is not None and item.current_version < table.version:
                await self.send(PartitionMap(table))
        elif isinstance(item, QuerySub):
            await self._on_query(item)
        elif isinstance(item, QueryUnsub):
            live = self.subscriptions.pop(item.query_id, None)
            if live is not None:
                self.node.remove_interest(live.sub.map_name)
        elif isinstance(item, SyncInit):
            await self._on_sync_init(item)
        elif isinstance(item, MerkleReqBucket):
            await self._on_bucket(item)
        elif isinstance(item, Unsupported):
            refusal = scope.refusal(item.msg_type)
            if refusal is None:
                await self.send(ErrorMessage(400, f"{item.msg_type} is not sent by clients"))
            else:
                await self.send(ErrorMessage(*refusal))
        else:
            await self.send(ErrorMessage(400, f"unexpected message type {item.TYPE} from a client"))
        return True

    async def _on_auth(self, item: Auth) -> bool:
        if self.principal is not None:
            await self.send(
                ErrorMessage(409, "Already authenticated: a connection keeps its first identity")
            )
            return True
        try:
            self.principal = self.node.verify_client_token(item.token)
        except AuthError as exc:
            await self.send(AuthFail(str(exc), CLOSE_UNAUTHORIZED))
            await self._close(CLOSE_UNAUTHORIZED, "Unauthorized")
            return False
        if self._deadline is not None:
            self._deadline.cancel()
        self.gate.release(self)
        self.ws.protocol.max_message_size = self.node.config.max_frame_bytes
        await self.send(AuthAck())
        return True

    async def _on_ops(
        self, ops: list[ClientOp | InvalidOp], batch: Concern, *, single: bool
    ) -> None:
        limit = self.node.config.max_batch_ops
        if len(ops) > limit:
            self.node.metrics.ops_rejected.inc(len(ops))
            await self.send(
                ErrorMessage(413, f"batch of {len(ops)} ops exceeds the limit of {limit}")
            )
            return
        outcomes: list[Outcome | None] = [None] * len(ops)
        allowed: list[tuple[int, ClientOp]] = []
        may: dict[tuple[bool, str], bool] = {}  # a batch mostly writes one or two maps
        for i, op in enumerate(ops):
            if isinstance(op, InvalidOp):
                outcomes[i] = Outcome(False, op.error)
                continue
            what = (op.is_remove, op.map_name)
            ok = may.get(what)
            if ok is None:
                ok = may[what] = authorize(self.principal, REMOVE if what[0] else PUT, what[1])
            if ok:
                allowed.append((i, op))
            else:
                outcomes[i] = Outcome(False, f"{FORBIDDEN}: Access Denied for map {op.map_name}")
        refused = len(ops) - len(allowed)
        if refused:
            self.node.metrics.ops_rejected.inc(refused)
        if allowed:
            origin = Origin(self.node.config.node_id, self.session_id, single)
            await self._execute(allowed, batch, origin, outcomes)
        final = [o if o is not None else Outcome(False, "INTERNAL") for o in outcomes]
        await self._reply(ops, final, single=single)

    async def _execute(
        self,
        allowed: list[tuple[int, ClientOp]],
        batch: Concern,
        origin: Origin,
        outcomes: list[Outcome | None],
    ) -> None:
        """Execute the allowed ops, a group per write concern; early levels are answered
        now and executed in the background (at ``APPLIED``, the least that applies them)."""
        groups: dict[Concern, list[tuple[int, ClientOp]]]
        if all(op.write_concern is None and op.timeout is None for _, op in allowed):
            if not batch.early:  # the common case: one group, awaited without a task
                await self._group(allowed, batch, origin, outcomes)
                return
            groups = {batch: allowed}
        else:
            groups = {}
            for i, op in allowed:
                own = Concern.of(op.write_concern, op.timeout, *_batch_wire(batch))
                groups.setdefault(own, []).append((i, op))
        waits = []
        for concern, members in groups.items():
            if concern.early:
                assert concern.level is not None
                for i, _ in members:
                    outcomes[i] = Outcome(True, level=concern.level.name)
                later = [op for _, op in members]
                self.node.spawn(self.node.execute(later, origin=origin, concern=_BACKGROUND))
            else:
                waits.append(self._group(members, concern, origin, outcomes))
        if waits:
            await asyncio.gather(*waits)

    async def _group(
        self,
        members: list[tuple[int, ClientOp]],
        concern: Concern,
        origin: Origin,
        outcomes: list[Outcome | None],
    ) -> None:
        done = await self.node.execute([op for _, op in members], origin=origin, concern=concern)
        for (i, _), o in zip(members, done, strict=True):
            outcomes[i] = o

    async def _reply(
        self, ops: list[ClientOp | InvalidOp], outcomes: list[Outcome], *, single: bool
    ) -> None:
        results = []
        last_id = "0"
        prefix_ok = True
        not_owner = False
        for n, (op, o) in enumerate(zip(ops, outcomes, strict=True)):
            op_id = op.id if op.id is not None else str(n)
            results.append(OpResult(op_id, o.ok, o.level, o.error))
            if o.ok and prefix_ok:
                if op.id is not None:
                    last_id = op.id
            else:
                prefix_ok = False
            if not o.ok:
                not_owner = not_owner or o.hint is not None
                kind = (o.error or "").partition(":")[0]
                if o.hint is not None or single or kind in REJECT_CODES:
                    code = 409 if o.hint is not None else REJECT_CODES.get(kind, 400)
                    reason = (o.error or "REJECTED").removeprefix(f"{FORBIDDEN}: ")
                    await self.send(OpRejected(op_id, reason, code, o.hint))
        await self.send(OpAck(last_id, tuple(results)))
        table = self.node.table
        if not_owner and table is not None:
            await self.send(PartitionMap(table))

    async def _on_query(self, sub: QuerySub) -> None:
        if not authorize(self.principal, READ, sub.map_name):
            await self.send(ErrorMessage(403, f"Access Denied for map {sub.map_name}"))
            return
        view = field_view(self.principal, sub.map_name)
        hidden = sorted(f for f in _query_fields(sub.query) if not view.shows(f))
        if hidden:
            await self.send(
                ErrorMessage(403, f"Access Denied for field {hidden[0]} of map {sub.map_name}")
            )
            return
        previous = self.subscriptions.pop(sub.query_id, None)
        if previous is not None:
            self.node.remove_interest(previous.sub.map_name)
        live = LiveQuery(sub, view=view)
        # Register first so that changes racing with the initial answer are not missed.
        self.subscriptions[sub.query_id] = live
        self.node.add_interest(sub.map_name)
        try:
            page = await self.node.run_page(sub.map_name, sub.query)
        except QueryFailed as exc:
            self.node.log.info("query on %s failed: %s", sub.map_name, exc)
            await self.send(QueryResp(sub.query_id, (), False, f"query failed: {exc}"))
            return
        live.keys.update(k for k, _ in page.rows)
        resp = QueryResp(
            sub.query_id, tuple((k, view.apply(v)) for k, v in page.rows), page.has_more,
            None, page.next_cursor, page.cursor_status,
        )  # fmt: skip
        await self.send(resp)

    def _may_read(self, map_name: str) -> bool:
        return authorize(self.principal, READ, map_name)

    async def _on_sync_init(self, msg: SyncInit) -> None:
        if not self._may_read(msg.map_name):
            await self.send(ErrorMessage(403, f"Access Denied for map {msg.map_name}"))
        elif self.node.sync_needs_reset(msg.last_sync_timestamp):
            await self.send(SyncResetRequired(msg.map_name))
        else:
            try:
                level = await self.node.sync_level(msg.map_name, "")
            except SyncUnavailable as exc:
                await self.send(_sync_unavailable(msg.map_name, exc))
                return
            await self.send(SyncRespRoot(msg.map_name, level.hash, self.node.hlc.now()))

    async def _on_bucket(self, msg: MerkleReqBucket) -> None:
        if not self._may_read(msg.map_name):
            await self.send(ErrorMessage(403, f"Access Denied for map {msg.map_name}"))
            return
        try:
            level = await self.node.sync_level(msg.map_name, msg.path)
        except SyncUnavailable as exc:
            await self.send(_sync_unavailable(msg.map_name, exc))
            return
        if len(msg.path) == DEPTH:
            view = field_view(self.principal, msg.map_name)
            records = tuple((k, _seen(r, view)) for k, r in level.records)
            await self.send(SyncRespLeaf(msg.map_name, msg.path, records))
        else:
            await self.send(SyncRespBuckets(msg.map_name, msg.path, level.buckets))
