"""Client configuration: the cluster knobs and their defaults (reference §5.1, §7)."""

from __future__ import annotations

from dataclasses import dataclass, field
from ssl import SSLContext, SSLError, create_default_context

from topgun.client.errors import ConfigError
from topgun.client.write_concern import WriteConcern, WriteConcernLike


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """How the client finds and talks to a cluster.

    Times are in seconds. Defaults follow the reference client except where the reference
    misbehaves: reconnects never give up (§6.4-L) and carry jitter.
    """

    seeds: list[str] = field(default_factory=list)
    smart_routing: bool = True
    partition_map_refresh_s: float = 30.0
    """How often the table's staleness is checked (and the table re-requested if stale)."""
    max_map_staleness_s: float = 60.0
    ping_interval_s: float = 5.0
    liveness_timeout_s: float = 15.0
    """A connection that received nothing (not even a PONG) for this long is reconnected."""
    reconnect_base_s: float = 0.25
    reconnect_max_s: float = 30.0
    breaker_failure_threshold: int = 5
    breaker_reset_timeout_s: float = 30.0
    not_owner_max_attempts: int = 8
    not_owner_backoff_s: float = 0.05
    not_owner_deadline_s: float = 15.0
    connect_timeout_s: float = 5.0
    ack_timeout_s: float = 5.0
    """An in-flight batch not acknowledged within this time is sent again (a batch asking
    for a write concern waits for its timeout and a margin, if that is longer)."""
    write_concern: WriteConcernLike = None
    """What every write of this client asks for unless its map or the write itself says
    otherwise: a level name (``"PERSISTED"``) or a
    :class:`~topgun.client.write_concern.WriteConcern` with a timeout; None leaves the
    server's default."""
    ssl: SSLContext | None = None
    """How ``wss://`` seeds and nodes are verified (and, for a node that asks, which client
    certificate is presented); None: against :attr:`ca_file`, else the system's CAs. Host
    names are checked unless the context says otherwise."""
    ca_file: str | None = None
    """A CA certificate (PEM) to verify ``wss://`` nodes with, instead of the system's."""

    def __post_init__(self) -> None:
        if isinstance(self.seeds, str):
            raise ConfigError("ClusterConfig.seeds must be a list of ws:// URLs, not one string")
        if not self.seeds:
            raise ConfigError("ClusterConfig needs at least one seed URL, e.g. ws://127.0.0.1:8080")
        for url in self.seeds:
            if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
                raise ConfigError(f"seed {url!r} is not a ws:// or wss:// URL")
        if self.breaker_failure_threshold < 1:
            raise ConfigError("breaker_failure_threshold must be at least 1")
        if self.not_owner_max_attempts < 1:
            raise ConfigError("not_owner_max_attempts must be at least 1")
        for name in (
            "partition_map_refresh_s", "ping_interval_s", "liveness_timeout_s",
            "reconnect_base_s", "reconnect_max_s", "connect_timeout_s", "ack_timeout_s",
        ):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")
        object.__setattr__(self, "seeds", list(self.seeds))
        if self.ca_file is not None:
            if self.ssl is not None:
                raise ConfigError("give either ssl or ca_file, not both")
            try:
                object.__setattr__(self, "ssl", create_default_context(cafile=self.ca_file))
            except (OSError, SSLError) as exc:
                raise ConfigError(f"ca_file {self.ca_file}: {exc}") from None
        object.__setattr__(self, "write_concern", WriteConcern.of(self.write_concern))
