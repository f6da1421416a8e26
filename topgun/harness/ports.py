"""Free ports for servers that must be told their port before they start."""

from __future__ import annotations

import socket

HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A port free on ``host`` right now. Only for a server that cannot choose its own and say
    which (the bind may still race with another process: callers retry on a bind failure)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
