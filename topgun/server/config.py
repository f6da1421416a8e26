"""Configuration of one server node."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from topgun.core.policy import PolicySet
from topgun.server.tls import NodeTls

DEV_SECRET = "topgun-secret-dev"
"""The reference's development secret; used only when ``dev`` is set."""
STORAGE_KINDS = ("memory", "lmdb", "postgres")


def wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class NodeConfig:
    """Everything a :class:`~topgun.server.ServerNode` needs; timing knobs have defaults.

    ``peers`` are other nodes' *cluster* addresses (``host:port``). ``advertise_url`` is the
    client URL put in the partition table; it defaults to ``ws://HOST:PORT`` with the bound
    client port. With neither secret given the node refuses to start unless ``dev`` is set.
    """

    node_id: str
    host: str = "127.0.0.1"
    port: int = 0
    cluster_port: int = 0
    peers: list[str] = field(default_factory=list)
    advertise_url: str | None = None
    jwt_secret: str | None = field(default=None, repr=False)
    cluster_secret: str | None = field(default=None, repr=False)
    dev: bool = False
    """Use the development secret for a missing secret; it loosens nothing else."""
    policies: PolicySet = field(default_factory=PolicySet)
    """Map permissions (:mod:`topgun.core.policy`); empty: only ADMIN may act."""
    require_token_exp: bool = False
    """Refuse tokens without ``exp``. Off by default because TopGun's own tokens often carry
    none; ``exp`` is always checked when present."""
    auth_timeout_s: float = 10.0
    """A socket must authenticate this long after it opened, whatever it sends meanwhile."""
    max_unauthenticated: int = 256
    """Sockets not yet authenticated, at most; a new one evicts the oldest (close 1013).
    Lowered to a quarter of the open-file limit when that is smaller."""
    max_unauthenticated_bytes: int = 64 * 1024
    """Bytes a socket may send before it authenticates (frames included; close 1009)."""
    handshake_timeout_s: float = 5.0
    """The WebSocket opening handshake must finish within this."""
    heartbeat_interval_s: float = 0.5
    failure_timeout_s: float = 3.0
    """Silence after which a peer is declared dead whatever the phi detector says; the detector
    may declare it sooner, but never before :attr:`min_silence_s`."""
    min_cluster_size: int = 0
    """Split-brain protection: 0 = table changes, writes and the owner lease need a majority
    of the last table's nodes; N > 0 = they need N live nodes of it instead (1 lets a 2-node
    cluster keep writing after a failure, at the price of both halves writing when cut)."""
    phi_threshold: float = 8.0
    client_idle_timeout_s: float = 20.0
    request_timeout_s: float = 5.0
    query_timeout_s: float = 3.0
    shutdown_timeout_s: float = 5.0
    shutdown_notice_s: float = 2.0
    """After SHUTDOWN_PENDING, how long a leaving node waits for its clients to move away
    before the partition table changes (topgun clients go at once; others ignore it)."""
    forward_writes: bool = True
    """Forward writes for partitions owned elsewhere; when off, refuse them with NOT_OWNER
    (the client then retries at the owner), which saves a peer hop per such write."""
    max_frame_bytes: int = 16 * 1024 * 1024
    max_batch_ops: int = 10_000
    max_drift_ms: int = 60_000
    shutdown_retry_after_ms: int = 5000
    data_dir: str | None = None
    """Keep every held copy (owned and backup) on disk under ``DATA_DIR/<node id>`` and load
    it on start (:mod:`topgun.server.storage`); None: in memory only, and ``PERSISTED``
    writes are refused."""
    storage: str | None = None
    """Where held copies are kept: ``memory``, ``lmdb`` (needs :attr:`data_dir`) or
    ``postgres`` (needs :attr:`dsn`); None: ``lmdb`` with a data dir, ``postgres`` with a
    DSN, else ``memory``."""
    dsn: str | None = field(default=None, repr=False)
    """The PostgreSQL connection string (libpq ``key=value`` or a ``postgresql://`` URI)."""
    pg_schema: str | None = None
    """The PostgreSQL schema of this node's tables; None: ``topgun_<node id>``."""
    tls_cert: str | None = None
    """The client port's certificate (PEM, chain included): ``wss://`` and HTTPS
    (:mod:`topgun.server.tls`); with :attr:`tls_key`. None: plain ``ws://`` and HTTP."""
    tls_key: str | None = None
    tls_client_ca: str | None = None
    """Require client certificates signed by this CA (PEM) on the client port."""
    cluster_tls_cert: str | None = None
    """Mutual TLS between nodes: this node's certificate, whose CN or a DNS SAN is its node
    id; with :attr:`cluster_tls_key` and :attr:`cluster_tls_ca`. None: plain peer links."""
    cluster_tls_key: str | None = None
    cluster_tls_ca: str | None = None
    """The cluster CA: every peer's certificate must be signed by it."""
    clock_ms: Callable[[], int] = wall_clock_ms
    _tls: NodeTls | None = field(default=None, init=False, repr=False, compare=False)

    def node_tls(self) -> NodeTls:
        """The TLS contexts of both ports, loaded on first use; raises ValueError naming an
        option or file that cannot be used."""
        if self._tls is None:
            self._tls = NodeTls.load(self)
        return self._tls

    @property
    def storage_kind(self) -> str:
        """``memory``, ``lmdb`` or ``postgres``: :attr:`storage`, or what the options imply."""
        if self.storage is not None:
            return self.storage
        return "postgres" if self.dsn else "lmdb" if self.data_dir else "memory"

    @property
    def lease_s(self) -> float:
        """How long a quorum's heartbeat answers let an owner acknowledge writes."""
        return max(2 * self.heartbeat_interval_s, 0.4 * self.failure_timeout_s)

    @property
    def min_silence_s(self) -> float:
        """No peer is declared dead sooner: longer than the lease, so a stalled or cut-off
        owner has stopped acknowledging before its backups can be promoted."""
        return self.lease_s + self.heartbeat_interval_s

    @property
    def max_silence_s(self) -> float:
        return max(self.failure_timeout_s, self.min_silence_s + self.heartbeat_interval_s)

    def resolved_secrets(self) -> tuple[str, str]:
        """(jwt secret, cluster secret); raises ValueError when missing and not ``dev``."""
        jwt_secret, cluster_secret = self.jwt_secret, self.cluster_secret
        if self.dev:
            jwt_secret = jwt_secret or DEV_SECRET
            cluster_secret = cluster_secret or DEV_SECRET
        if not jwt_secret or not cluster_secret:
            raise ValueError(
                "a JWT secret and a cluster secret are required (or pass dev=True / --dev "
                f"to use the development secret {DEV_SECRET!r})"
            )
        return jwt_secret, cluster_secret

    def validate(self) -> None:
        if not self.node_id or ":" in self.node_id or len(self.node_id) > 128:
            raise ValueError("node_id must be 1-128 characters without ':'")
        if self.heartbeat_interval_s <= 0 or self.failure_timeout_s <= self.heartbeat_interval_s:
            raise ValueError("need 0 < heartbeat_interval_s < failure_timeout_s")
        if self.min_cluster_size < 0 or self.phi_threshold <= 0:
            raise ValueError("min_cluster_size must be >= 0 and phi_threshold > 0")
        if self.max_batch_ops < 1 or self.max_frame_bytes < 1024:
            raise ValueError("max_batch_ops must be >= 1 and max_frame_bytes >= 1024")
        if self.auth_timeout_s <= 0 or self.handshake_timeout_s <= 0:
            raise ValueError("auth_timeout_s and handshake_timeout_s must be > 0")
        if self.max_unauthenticated < 1 or self.max_unauthenticated_bytes < 1024:
            raise ValueError("need max_unauthenticated >= 1 and max_unauthenticated_bytes >= 1024")
        self._validate_storage()
        self.resolved_secrets()
        self.node_tls()

    def _validate_storage(self) -> None:
        kind = self.storage_kind
        if kind not in STORAGE_KINDS:
            raise ValueError(f"storage must be one of {', '.join(STORAGE_KINDS)}, not {kind!r}")
        needs = {"lmdb": ("data dir (--data-dir)", self.data_dir),
                 "postgres": ("DSN (--dsn)", self.dsn)}  # fmt: skip
        for other, (what, given) in needs.items():
            if kind == other and given is None:
                raise ValueError(f"storage {other} needs a {what}")
            if kind != other and given is not None:
                raise ValueError(f"a {what} is for storage {other}, not {kind}")
        if self.pg_schema is not None and kind != "postgres":
            raise ValueError(
                f"a PostgreSQL schema (--pg-schema) is for storage postgres, not {kind}"
            )
