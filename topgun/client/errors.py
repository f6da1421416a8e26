"""Typed errors the client raises; each message says what went wrong and what to do."""

from __future__ import annotations

from topgun.core.errors import TopGunError


class TopGunClientError(TopGunError):
    """Base class of every error raised by :mod:`topgun.client`."""


class ConfigError(TopGunClientError, ValueError):
    """The client was constructed with an impossible configuration."""


class NotConnectedError(TopGunClientError):
    """No usable (authenticated) connection exists for what was asked."""


class AuthError(TopGunClientError):
    """The server refused the token (AUTH_FAIL), or no token was set."""


class StartTimeout(TopGunClientError, TimeoutError):
    """``start()`` did not reach a usable state (authenticated, and a table in cluster mode)."""


class FlushTimeout(TopGunClientError, TimeoutError):
    """``flush()`` gave up with operations still unacknowledged."""

    def __init__(self, message: str, pending: int) -> None:
        super().__init__(message)
        self.pending = pending


class WriteRejected(TopGunClientError):
    """The server refused one or more writes for a reason retrying cannot fix."""

    def __init__(self, message: str, rejections: list[tuple[int, str]]) -> None:
        super().__init__(message)
        self.rejections = rejections


class QueryError(TopGunClientError):
    """The server answered a query with an error (for example 403 Access Denied)."""


class QueryTimeout(QueryError, TimeoutError):
    """No QUERY_RESP arrived in time."""


class ClientClosedError(TopGunClientError):
    """The client was closed; create a new one."""
