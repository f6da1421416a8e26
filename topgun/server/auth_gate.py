"""The door of the client port: what a socket may do before it authenticates.

Each socket must authenticate within ``auth_timeout_s`` of opening, whatever it sends
meanwhile (a PING does not extend the deadline); it may send at most
``max_unauthenticated_bytes`` before then. At most ``max_unauthenticated`` sockets wait
at once: a newcomer evicts the *oldest* waiting socket (close 1013) rather than being
refused, so a flood of idle sockets cannot lock out a client that authenticates at once.
"""

from __future__ import annotations

import resource
from typing import Protocol

from topgun.server.config import NodeConfig
from topgun.server.logutil import NodeLogger


class Waiting(Protocol):
    def evict(self) -> None: ...


def effective_cap(configured: int, log: NodeLogger) -> int:
    """The configured cap, lowered to a quarter of the open-file limit when that is smaller:
    waiting sockets must never use up the descriptors a real login needs."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and configured > soft // 4:
        cap = max(1, soft // 4)
        log.warning(
            "max_unauthenticated %d lowered to %d (open-file limit %d)", configured, cap, soft
        )
        return cap
    return configured


class AuthGate:
    """The sockets of one node that have not authenticated yet, oldest first."""

    def __init__(self, config: NodeConfig, log: NodeLogger) -> None:
        self.timeout_s = config.auth_timeout_s
        self.max_bytes = config.max_unauthenticated_bytes
        self.cap = effective_cap(config.max_unauthenticated, log)
        self.log = log
        self.evicted = 0
        self._waiting: dict[Waiting, None] = {}  # insertion order = age

    def __len__(self) -> int:
        return len(self._waiting)

    def admit(self, socket: Waiting) -> None:
        while len(self._waiting) >= self.cap:
            oldest = next(iter(self._waiting))
            del self._waiting[oldest]
            self.evicted += 1
            oldest.evict()
        self._waiting[socket] = None

    def release(self, socket: Waiting) -> None:
        """The socket authenticated or closed."""
        self._waiting.pop(socket, None)
