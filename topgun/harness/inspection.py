"""How the acceptance suite reads what a cluster serves and holds, whoever built the cluster.

Three questions — which members does node X see, which partition table does it serve, what
does it hold for one key — answered from whatever the cluster offers:

- :class:`NodeObjectInspector`: the node objects of an in-process cluster;
- :class:`AdminRoutesInspector`: our nodes' admin HTTP routes (processes, hosts, an external
  cluster of ours);
- :class:`RustAdminInspector`: TopGun Rust's ``/api/admin/cluster/status`` for members, the
  protocol for the rest (that API lists no records and no backups);
- :class:`ProtocolInspector`: the protocol alone, so any TopGun server: the table is the
  ``PARTITION_MAP`` the node sends an authenticated client, and "node X holds K" is what a
  single-server client connected to X reads by Merkle sync. TopGun servers answer Merkle sync
  from the node's own store; ours answer for the whole map, which is why our clusters are read
  through the admin routes instead.

Every :meth:`Inspector.inspect` answer names its source (``method``), so a report can say
which evidence a check used. A node that gives no answer raises :class:`InspectionFailed`
(an ``AssertionError``, so bounded waits try again); :class:`Refused` and
:class:`Unsupported` say why, for a controller that must tell "refused" from "not offered".
"""

from __future__ import annotations

import asyncio
import http.client
import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from websockets.exceptions import WebSocketException

from topgun.core.errors import ProtocolError
from topgun.core.hashing import partition_id
from topgun.core.table import NodeStatus, PartitionTable
from topgun.harness.loop import LoopThread
from topgun.harness.wire import CALL_MARGIN_S, ServerError, WireClient
from topgun.server.http_routes import json_safe

T = TypeVar("T")

HTTP_TIMEOUT_S = 5.0
ANSWER_TIMEOUT_S = 5.0
"""How long a protocol inspection waits for each answer of a node that is up."""
MAP_TIMEOUT_S = 2.0
"""How long to wait for a ``PARTITION_MAP``: a node without one (a single server, a node still
forming) never answers the request."""
CLOSE_TIMEOUT_S = 0.25
"""How long a protocol inspection waits for the server's side of the closing handshake
(TopGun Rust 2.2.0 sends it only after 2 s); the answer is in by then."""
SESSION_TIMEOUT_S = 20.0
"""The bound on one whole protocol inspection (connect, sign in, ask, close)."""
REFUSED = (401, 403)
NOT_OFFERED = (404, 405, 501)

UrlOf = Mapping[str, str] | Callable[[str], str]
"""How to reach node X: its client URL (``ws://host:port``) by node id."""


class InspectionFailed(AssertionError):
    """A node gave no usable answer (down, still forming, or an error status)."""


class Refused(InspectionFailed):
    """The node refused the suite's credentials (HTTP 401/403, ``AUTH_FAIL``, ``ERROR 403``)."""


class Unsupported(InspectionFailed):
    """The node does not offer this way of inspecting it (no such route or message)."""


def role_in(table: PartitionTable | None, node_id: str, pid: int) -> str:
    """``owner``, ``backup`` or ``none``: what ``node_id`` is for partition ``pid`` in a table."""
    if table is None or pid >= table.partition_count:
        return "none"
    if table.owner(pid) == node_id:
        return "owner"
    return "backup" if node_id in table.backups_of(pid) else "none"


def live_nodes_of(table: PartitionTable | None) -> list[str]:
    """The nodes a table lists, but those it marks FAILED."""
    if table is None:
        return []
    return [n.node_id for n in table.nodes if n.status is not NodeStatus.FAILED]


class Inspector(ABC):
    """Answers, for one node, the questions the suite asks about what it serves and holds."""

    name: str
    """A short phrase for reports: where the answers come from."""

    @abstractmethod
    def members(self, node_id: str) -> list[str]:
        """The members ``node_id`` sees (itself included)."""

    @abstractmethod
    def table(self, node_id: str) -> PartitionTable | None:
        """The partition table ``node_id`` serves, or None while it has none."""

    @abstractmethod
    def _read(self, node_id: str, map_name: str, key: str) -> dict[str, Any]:
        """What the source says ``node_id`` holds for ``key``: at least ``record``."""

    def inspect(self, node_id: str, map_name: str, key: str) -> dict[str, Any]:
        """``{nodeId, partitionId, role, record, method}``; ``record`` is a dict with
        ``value`` (None for a tombstone) or None when the node holds nothing for ``key``;
        ``role`` comes from the node's own table when the source does not say it."""
        held = self._read(node_id, map_name, key)
        pid = partition_id(key)
        held.setdefault("nodeId", node_id)
        held.setdefault("partitionId", pid)
        if "role" not in held:
            held["role"] = role_in(self.table(node_id), node_id, pid)
        held["method"] = self.name
        return held

    def probe(self, node_id: str) -> None:
        """Raise :class:`Unsupported` if ``node_id`` does not offer this source,
        :class:`Refused` if it refuses the suite, :class:`InspectionFailed` if it is silent."""
        self.members(node_id)

    def close(self) -> None:  # noqa: B027 - most inspectors hold nothing to release
        """Release what the inspector holds (its own event loop)."""


def _resolver(url_of: UrlOf) -> Callable[[str], str]:
    if isinstance(url_of, Mapping):
        return lambda node_id: url_of[node_id]
    return url_of


# --- in-process nodes -----------------------------------------------------------------


class NodeObjectInspector(Inspector):
    """Reads :class:`~topgun.server.ServerNode` objects on the harness loop."""

    name = "the node objects (in process)"

    def __init__(self, loop: LoopThread, node_of: Callable[[str], Any]) -> None:
        self.loop = loop
        self.node_of = node_of

    def members(self, node_id: str) -> list[str]:
        return list(self.loop.call(self.node_of(node_id).members))

    def table(self, node_id: str) -> PartitionTable | None:
        node = self.node_of(node_id)
        return self.loop.call(lambda: node.table)  # type: ignore[no-any-return]

    def _read(self, node_id: str, map_name: str, key: str) -> dict[str, Any]:
        return dict(self.loop.call(self.node_of(node_id).inspect, map_name, key))


# --- HTTP routes ----------------------------------------------------------------------


class HttpSource:
    """``GET`` on a node's client port with a bearer token; errors say who answered what."""

    def __init__(
        self,
        url_of: UrlOf,
        token: str,
        *,
        source_address: tuple[str, int] | None = None,
        timeout: float = HTTP_TIMEOUT_S,
    ) -> None:
        self.url_of = _resolver(url_of)
        self.token = token
        self.source_address = source_address
        self.timeout = timeout

    def text(self, node_id: str, path: str) -> str:
        """The body of a 200 answer to ``GET path``."""
        split = urlsplit(self.url_of(node_id))
        secure = split.scheme in ("wss", "https")
        connection = http.client.HTTPSConnection if secure else http.client.HTTPConnection
        conn = connection(
            split.hostname or "",
            split.port,
            timeout=self.timeout,
            source_address=self.source_address,
        )
        try:
            conn.request("GET", path, headers={"Authorization": f"Bearer {self.token}"})
            response = conn.getresponse()
            body = response.read().decode("utf-8", errors="replace")
        except (http.client.HTTPException, OSError, ValueError) as exc:
            raise InspectionFailed(f"{node_id} did not answer GET {path}: {exc}") from exc
        finally:
            conn.close()
        if response.status == 200:
            return body
        said = f"{node_id} answered GET {path} with HTTP {response.status}: {body[:500]}"
        if response.status in REFUSED:
            raise Refused(said)
        if response.status in NOT_OFFERED:
            raise Unsupported(said)
        raise InspectionFailed(said)

    def json(self, node_id: str, path: str) -> Any:
        body = self.text(node_id, path)
        try:
            return json.loads(body)
        except ValueError as exc:
            raise Unsupported(
                f"{node_id} answered GET {path} with something other than JSON: {body[:80]!r}"
            ) from exc


class AdminRoutesInspector(Inspector):
    """Our nodes' routes: ``/health``, ``/admin/partitions``, ``/admin/maps/<map>/<key>``."""

    name = "our admin routes"

    def __init__(
        self,
        url_of: UrlOf,
        token: str,
        *,
        source_address: tuple[str, int] | None = None,
        timeout: float = HTTP_TIMEOUT_S,
    ) -> None:
        self.http = HttpSource(url_of, token, source_address=source_address, timeout=timeout)

    def members(self, node_id: str) -> list[str]:
        health = self.http.json(node_id, "/health")
        members = health.get("members") if isinstance(health, dict) else None
        if not isinstance(members, list):  # another server's /health (TopGun Rust has one)
            raise Unsupported(f"{node_id} answers GET /health without a members list: {health}")
        return [str(m) for m in members]

    def table(self, node_id: str) -> PartitionTable | None:
        payload = self.http.json(node_id, "/admin/partitions")
        if payload is None:
            return None
        try:
            return PartitionTable.from_wire(payload)
        except ProtocolError as exc:
            raise Unsupported(
                f"{node_id} serves /admin/partitions that is no table: {exc}"
            ) from exc

    def _read(self, node_id: str, map_name: str, key: str) -> dict[str, Any]:
        path = f"/admin/maps/{quote(map_name, safe='')}/{quote(key, safe='')}"
        return dict(self.http.json(node_id, path))


# --- the protocol ---------------------------------------------------------------------


class ProtocolInspector(Inspector):
    """What a plain TopGun client sees: a fresh, authenticated connection to the node for
    every question, on the given loop (or one of its own), every wait bounded."""

    name = (
        "the protocol: PARTITION_MAP from the node, "
        "Merkle sync on a single-server client on the node"
    )

    def __init__(
        self,
        url_of: UrlOf,
        token: str,
        *,
        loop: LoopThread | None = None,
        answer_timeout: float = ANSWER_TIMEOUT_S,
        map_timeout: float = MAP_TIMEOUT_S,
    ) -> None:
        self.url_of = _resolver(url_of)
        self.token = token
        self.answer_timeout = answer_timeout
        self.map_timeout = map_timeout
        self._own_loop = loop is None
        self.loop = loop if loop is not None else LoopThread("topgun-inspector")

    def members(self, node_id: str) -> list[str]:
        """The nodes of the node's map that it does not list as FAILED (TopGun Rust keeps
        dead members there, marked so)."""
        return live_nodes_of(self.table(node_id))

    def table(self, node_id: str) -> PartitionTable | None:
        return self._session(node_id, "PARTITION_MAP", self._table_on)

    def _read(self, node_id: str, map_name: str, key: str) -> dict[str, Any]:
        async def read(client: WireClient) -> dict[str, Any]:
            table = await self._table_on(client, node_id)
            record = await client.read_key(map_name, key, self.answer_timeout)
            pid = partition_id(key)
            return {
                "nodeId": node_id,
                "partitionId": pid,
                "role": role_in(table, node_id, pid),
                "record": None if record is None else json_safe(record),
            }

        return self._session(node_id, f"{map_name}/{key}", lambda c, _: read(c))

    def probe(self, node_id: str) -> None:
        async def signed_in(client: WireClient, _: str) -> None:
            return None

        self._session(node_id, "a signed-in connection", signed_in)

    def close(self) -> None:
        if self._own_loop:
            self.loop.close()

    async def _table_on(self, client: WireClient, node_id: str) -> PartitionTable | None:
        payload = await client.partition_map(self.map_timeout)
        if payload is None:
            return None
        try:
            return PartitionTable.from_wire(payload)
        except ProtocolError as exc:
            raise InspectionFailed(
                f"{node_id} sent a PARTITION_MAP the suite cannot read: {exc}"
            ) from exc

    def _session(
        self, node_id: str, what: str, ask: Callable[[WireClient, str], Awaitable[T]]
    ) -> T:
        """Connect to ``node_id``, sign in, ``ask``, close; failures as inspection errors."""
        url = self.url_of(node_id)
        who = node_id if node_id == url else f"{node_id} ({url})"

        async def session() -> T:
            async with asyncio.timeout(SESSION_TIMEOUT_S):
                client = await WireClient.open(url, self.token, close_timeout=CLOSE_TIMEOUT_S)
                try:
                    return await ask(client, node_id)
                finally:
                    await client.close()

        try:
            return self.loop.run(session(), SESSION_TIMEOUT_S + CALL_MARGIN_S)
        except ServerError as exc:
            said = f"{who} answered the suite's protocol client with {exc}"
            if exc.code in REFUSED:
                raise Refused(said) from exc
            if exc.code in NOT_OFFERED:
                raise Unsupported(said) from exc
            raise InspectionFailed(said) from exc
        except (OSError, TimeoutError, WebSocketException, ProtocolError) as exc:
            raise InspectionFailed(
                f"{who} gave the suite's protocol client no {what}: {type(exc).__name__} {exc}"
            ) from exc


class RustAdminInspector(ProtocolInspector):
    """TopGun Rust's admin API (``/api/admin/cluster/status``, roles with lowercase
    ``admin``) for members; it lists no backups, table version or records, so the table and
    what a node holds come from the protocol."""

    name = (
        "TopGun Rust admin API (members), the protocol (PARTITION_MAP from the node, "
        "Merkle sync on a single-server client on the node)"
    )
    STATUS = "/api/admin/cluster/status"

    def __init__(
        self,
        url_of: UrlOf,
        token: str,
        *,
        loop: LoopThread | None = None,
        answer_timeout: float = ANSWER_TIMEOUT_S,
        map_timeout: float = MAP_TIMEOUT_S,
        http_timeout: float = HTTP_TIMEOUT_S,
    ) -> None:
        super().__init__(
            url_of, token, loop=loop, answer_timeout=answer_timeout, map_timeout=map_timeout
        )
        self.http = HttpSource(url_of, token, timeout=http_timeout)

    def members(self, node_id: str) -> list[str]:
        """The nodes of the node's cluster view that it does not hold dead."""
        status = self.http.json(node_id, self.STATUS)
        nodes = status.get("nodes") if isinstance(status, dict) else None
        if not isinstance(nodes, list):
            raise Unsupported(f"{node_id} answers GET {self.STATUS} without a nodes list")
        return [
            str(n["nodeId"])
            for n in nodes
            if isinstance(n, dict) and "nodeId" in n and n.get("status") != "dead"
        ]

    def probe(self, node_id: str) -> None:
        """The admin API is what this source adds to the protocol's."""
        self.members(node_id)
