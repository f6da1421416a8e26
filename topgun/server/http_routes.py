"""HTTP routes served on the client port next to the WebSocket endpoint.

``GET /health`` and ``GET /metrics`` are open; ``/admin/partitions`` and
``/admin/maps/<map>/<key>`` need ``Authorization: Bearer <token>`` with the ADMIN role.
Any other request goes on to the WebSocket handshake.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from topgun.server.auth import AuthError

if TYPE_CHECKING:
    from topgun.server.facade import NodeFacade


def _respond(conn: ServerConnection, status: int, body: str, content_type: str) -> Response:
    response = conn.respond(status, body)
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = content_type
    return response


def _json(conn: ServerConnection, status: int, obj: Any) -> Response:
    return _respond(conn, status, json.dumps(obj), "application/json")


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
        if not principal.is_admin:
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
