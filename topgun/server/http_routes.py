"""HTTP routes served on the client port next to the WebSocket endpoint.

``GET /health`` and ``GET /metrics`` are open; ``/admin/partitions`` and
``/admin/maps/<map>/<key>`` need ``Authorization: Bearer <token>`` whose principal
:func:`~topgun.server.auth.authorize` lets ``ADMINISTER`` (the ADMIN role only).
Any other request goes on to the WebSocket handshake.

Stored values are whatever msgpack carried, so they are rendered to JSON with markers for
what JSON lacks (:func:`json_safe`): ``{"$bytes": base64}``, ``{"$msgpackTimestamp":
{seconds, nanoseconds, iso}}``, ``{"$ext": {code, base64}}``, ``{"$float": "nan"}``,
``{"$map": [[key, value], …]}`` for maps with non-string keys, ``{"$truncated": depth}``
past :data:`MAX_RENDER_DEPTH` levels.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import msgpack
from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from topgun.server.auth import ADMINISTER, AuthError, authorize

if TYPE_CHECKING:
    from topgun.server.facade import NodeFacade


def _respond(conn: ServerConnection, status: int, body: str, content_type: str) -> Response:
    response = conn.respond(status, body)
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = content_type
    return response


MAX_RENDER_DEPTH = 64


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def json_safe(value: Any, depth: int = 0) -> Any:
    """Any stored value as plain JSON (markers described in the module docstring)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": str(value)}
    if depth >= MAX_RENDER_DEPTH:
        return {"$truncated": depth}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value):
            return {k: json_safe(v, depth + 1) for k, v in value.items()}
        return {
            "$map": [[json_safe(k, depth + 1), json_safe(v, depth + 1)] for k, v in value.items()]
        }
    if isinstance(value, list | tuple):
        return [json_safe(v, depth + 1) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": _b64(bytes(value))}
    if isinstance(value, msgpack.Timestamp):
        stamp = {"seconds": value.seconds, "nanoseconds": value.nanoseconds, "iso": None}
        with contextlib.suppress(OverflowError, ValueError, OSError):
            stamp["iso"] = value.to_datetime().isoformat()
        return {"$msgpackTimestamp": stamp}
    if isinstance(value, msgpack.ExtType):
        return {"$ext": {"code": value.code, "base64": _b64(value.data)}}
    return {"$repr": repr(value)[:200]}


def _json(conn: ServerConnection, status: int, obj: Any) -> Response:
    return _respond(conn, status, json.dumps(json_safe(obj), allow_nan=False), "application/json")


class HttpRoutes:
    def __init__(self, node: NodeFacade) -> None:
        self.node = node

    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/health":
            return _json(conn, 200, self.node.health())
        if path == "/metrics":
            return _respond(
                conn, 200, self.node.metrics.render().decode(), "text/plain; version=0.0.4"
            )
        if path == "/admin" or path.startswith("/admin/"):
            return self._admin(conn, request, path)
        if self.node.state in ("leaving", "stopped"):
            return _json(conn, HTTPStatus.SERVICE_UNAVAILABLE, {"error": "node is shutting down"})
        return None

    def _admin(self, conn: ServerConnection, request: Request, path: str) -> Response:
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        try:
            if scheme.lower() != "bearer":
                raise AuthError("missing bearer token")
            principal = self.node.verify_client_token(token.strip())
        except AuthError as exc:
            return _json(conn, HTTPStatus.UNAUTHORIZED, {"error": str(exc)})
        if not authorize(principal, ADMINISTER):
            return _json(conn, HTTPStatus.FORBIDDEN, {"error": "ADMIN role required"})
        if path == "/admin/partitions":
            table = self.node.table
            if table is None:
                return _json(conn, HTTPStatus.SERVICE_UNAVAILABLE, {"error": "no table yet"})
            return _json(conn, 200, table.to_wire())
        if path.startswith("/admin/maps/"):
            parts = path[len("/admin/maps/") :].split("/", 1)
            if len(parts) == 2 and parts[0] and parts[1]:
                return _json(conn, 200, self.node.inspect(unquote(parts[0]), unquote(parts[1])))
        return _json(conn, HTTPStatus.NOT_FOUND, {"error": f"no route {path}"})
