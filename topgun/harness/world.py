"""Everything one acceptance scenario starts, in one place, so that it can all be stopped.

A :class:`World` is created before each scenario and closed after it, whatever happened:
clusters are torn down and clients closed, so no scenario depends on another and no
process or task outlives its scenario. It also keeps the scenario's :class:`Timeline`
(nodes started and stopped, partition maps, writes, acks, what the client noticed) and the
partition maps it saw, which the behave hooks attach to the report.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from topgun.client import ClusterEvent
from topgun.core.table import PartitionTable
from topgun.harness.client_driver import ClientDriver
from topgun.harness.cluster import (
    ClusterController,
    ClusterSettings,
    EmbeddedCluster,
    ProcessCluster,
)
from topgun.harness.evidence import Timeline
from topgun.harness.external import CannotRunHere, ExternalCluster, NodeCommands
from topgun.harness.hosts import HostCluster
from topgun.harness.loop import LoopThread
from topgun.harness.netns import unavailable_reason
from topgun.harness.rust import RustCluster
from topgun.harness.wire import WireDriver

log = logging.getLogger(__name__)

MODES = ("embedded", "processes", "external", "hosts", "topgun-rust")
STARTS_ITS_OWN_NODES = ("embedded", "processes", "hosts")
"""Modes whose nodes are ``topgun node``s the suite starts with whatever options a scenario
names; in the others the nodes run as their own implementation or operator started them."""


@dataclass(frozen=True)
class ExternalOptions:
    """Where the external cluster is, how to act on its nodes, and who the suite signs in as
    (``-D`` options)."""

    seeds: tuple[str, ...] = ()
    commands: NodeCommands = field(default_factory=NodeCommands)
    token: str = ""
    """A token the operator issued for the suite (``-D token=``), used as it is."""
    roles: tuple[str, ...] = ()
    """The roles of the tokens the suite signs itself (``-D roles=``), when no token is given."""
    form_timeout: float = 30.0
    """How long the suite waits for the cluster to settle before judging (``-D form_timeout=``)."""


def require_plain_nodes(mode: str, node_options: dict[str, Any], policy_file: Path | None) -> None:
    """A scenario about nodes started with options is not run against nodes the suite
    cannot start that way, rather than run against nodes without them."""
    if policy_file is not None:
        raise CannotRunHere(
            f"not run here: needs a node started with a policy file of its own "
            f"({policy_file.name}); the {mode} cluster runs with the policies it was started with"
        )
    if node_options:
        options = ", ".join(f"{k}={v}" for k, v in sorted(node_options.items()))
        raise CannotRunHere(
            f"not run here: needs nodes started with {options}; "
            f"the {mode} cluster runs as it was started"
        )


def skip_reason(mode: str, tags: set[str]) -> str | None:
    """Why a scenario tagged ``tags`` cannot run in cluster ``mode``, or None if it can."""
    if "hosts" in tags:
        if mode != "hosts":
            return "needs each node on its own network host: run with -D cluster=hosts (root)"
        return unavailable_reason()
    if "os_processes" in tags and mode in ("embedded", "external"):
        return (
            "needs nodes as OS processes the suite can freeze, kill and start again "
            "(SIGSTOP, SIGKILL, a data dir): run with -D cluster=processes or hosts"
        )
    return None


@dataclass
class LastWrite:
    map_name: str
    key: str
    value: Any
    metrics_before: dict[str, int] | None
    owner_before: str | None = None


@dataclass
class World:
    loop: LoopThread
    mode: str = "embedded"
    timeout_multiplier: float = 1.0
    external: ExternalOptions = field(default_factory=ExternalOptions)
    soak_seconds: float | None = None
    """``-D soak_seconds=N``: how long fault loops run, instead of each scenario's own."""
    clusters: list[ClusterController] = field(default_factory=list)
    clients: list[ClientDriver] = field(default_factory=list)
    wire_clients: list[WireDriver] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    last_write: LastWrite | None = None
    timeline: Timeline = field(default_factory=Timeline)
    tables: list[tuple[str, PartitionTable]] = field(default_factory=list)
    """Partition maps worth showing, with a caption (first and last are compared)."""
    _scratch: Path | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"cluster mode must be one of {MODES}, not {self.mode!r}")

    def limit(self, seconds: float) -> float:
        """A time limit from a feature sentence, stretched by ``-D timeout_multiplier``."""
        return seconds * self.timeout_multiplier

    def record(self, event: str, **details: Any) -> None:
        self.timeline.record(event, **details)

    def soak(self, seconds: float) -> float:
        """How long a fault loop stated as ``seconds`` runs (``-D soak_seconds`` stretches it)."""
        return self.soak_seconds if self.soak_seconds is not None else seconds

    @property
    def cluster(self) -> ClusterController:
        if not self.clusters:
            raise AssertionError("this scenario has not started a cluster")
        return self.clusters[-1]

    @property
    def client(self) -> ClientDriver:
        if not self.clients:
            raise AssertionError("this scenario has not created a client")
        return self.clients[-1]

    def scratch(self) -> Path:
        """A folder of this scenario's own (policy files…), removed when it ends."""
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="topgun-scenario-"))
        return self._scratch

    def start_cluster(
        self, count: int, *, policy_file: Path | None = None, **node_options: Any
    ) -> ClusterController:
        cluster = self._controller(node_options, policy_file)
        self.clusters.append(cluster)
        cluster.start(count)
        table = cluster.wait_until_formed(self.limit(10))
        self.record(
            "cluster formed", mode=self.mode, nodes=cluster.live_nodes(), map_version=table.version
        )
        self.keep_table("when the cluster formed", table)
        return cluster

    def _controller(
        self, node_options: dict[str, Any], policy_file: Path | None
    ) -> ClusterController:
        if self.mode not in STARTS_ITS_OWN_NODES:
            require_plain_nodes(self.mode, node_options, policy_file)
        if self.mode == "topgun-rust":
            return RustCluster(ClusterSettings())
        if self.mode == "external":
            options = self.external
            settings = ClusterSettings(
                jwt_secret=os.environ.get("TOPGUN_JWT_SECRET", ""),
                cluster_secret=os.environ.get("TOPGUN_CLUSTER_SECRET", ""),
            )
            if not (settings.jwt_secret or options.token):
                raise AssertionError(
                    "cluster=external needs -D token=… or TOPGUN_JWT_SECRET in the environment"
                )
            return ExternalCluster(
                list(options.seeds),
                settings,
                options.commands,
                token=options.token or None,
                roles=options.roles,
                form_timeout=options.form_timeout,
                loop=self.loop,
            )
        settings = ClusterSettings(node_options=node_options)
        if policy_file is not None:
            settings.policy_file = policy_file
        if self.mode == "embedded":
            return EmbeddedCluster(self.loop, settings)
        if self.mode == "hosts":
            return HostCluster(settings)
        return ProcessCluster(settings)

    def routing_table(self) -> PartitionTable:
        """The partition map owners and backups are judged by: the one the scenario's client
        routes by (what a TopGun client sees), else the one the cluster serves."""
        table = self.client.table() if self.clients else None
        return table if table is not None else self.cluster.any_table()

    def owner_of(self, key: str) -> str:
        return self.routing_table().owner_of_key(key)

    def keep_table(self, caption: str, table: PartitionTable | None) -> None:
        if table is not None and all(t.version != table.version for _, t in self.tables):
            self.tables.append((f"{caption} (v{table.version})", table))

    # --- what happens to nodes, recorded on the timeline ---------------------------------

    def shutdown(self, node_id: str) -> None:
        self.record("node shutting down (SIGTERM, graceful)", node=node_id)
        self.cluster.shutdown(node_id)
        self.record("node stopped", node=node_id)

    def kill(self, node_id: str) -> None:
        self.record("node killed (no notice)", node=node_id)
        self.cluster.kill(node_id)

    def restart(self, node_id: str, *, same_address: bool = False) -> None:
        self.cluster.restart(node_id, same_address=same_address)
        self.record("node started again", node=node_id, same_address=same_address)

    def add_node(self, node_id: str) -> None:
        self.cluster.start_node(node_id)
        self.record("node joined", node=node_id)

    def add_client(self, driver: ClientDriver) -> ClientDriver:
        self.clients.append(driver)
        number = len(self.clients)

        def on_event(event: ClusterEvent) -> None:  # runs on the loop thread
            self.record(
                f"client {number}: {event.kind.value.replace('_', ' ')}",
                node=event.node_id,
                map_version=event.map_version,
            )

        self.loop.call(driver.client.add_listener, on_event)
        return driver

    def close(self) -> None:
        for wire in self.wire_clients:
            try:
                wire.close()
            except Exception:
                log.exception("could not close a raw protocol client")
        self.wire_clients.clear()
        for driver in reversed(self.clients):
            try:
                driver.close()
            except Exception:  # keep tearing down; the scenario's verdict is already made
                log.exception("could not close a client")
        for cluster in reversed(self.clusters):
            try:
                cluster.close()
            except Exception:
                log.exception("could not stop a cluster")
        self.clients.clear()
        self.clusters.clear()
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
