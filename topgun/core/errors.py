"""Typed errors raised by the pure core."""

from __future__ import annotations


class TopGunError(Exception):
    """Base class of every error topgun raises on purpose."""


class ProtocolError(TopGunError):
    """A frame or message that does not follow the TopGun wire protocol.

    ``fatal`` is true when the bytes could not be decoded at all (the connection should be
    closed with 1002); otherwise the message was well-formed msgpack/JSON but had the wrong
    shape, and the peer gets an ``ERROR 400`` while the connection stays usable.
    """

    def __init__(self, message: str, *, fatal: bool = False, msg_type: str | None = None) -> None:
        super().__init__(message)
        self.fatal = fatal
        self.msg_type = msg_type


class ClockSkewError(TopGunError):
    """A remote timestamp lies further in the future than the allowed drift."""
