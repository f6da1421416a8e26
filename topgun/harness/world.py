"""Everything one acceptance scenario starts, in one place, so that it can all be stopped.

A :class:`World` is created before each scenario and closed after it, whatever happened:
clusters are torn down and clients closed, so no scenario depends on another and no
process or task outlives its scenario.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from topgun.harness.client_driver import ClientDriver
from topgun.harness.cluster import (
    ClusterController,
    ClusterSettings,
    EmbeddedCluster,
    ProcessCluster,
)
from topgun.harness.loop import LoopThread
from topgun.harness.wire_client import WireDriver

log = logging.getLogger(__name__)

MODES = ("embedded", "processes")


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
    clusters: list[ClusterController] = field(default_factory=list)
    clients: list[ClientDriver] = field(default_factory=list)
    wire_clients: list[WireDriver] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)
    last_write: LastWrite | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"cluster mode must be one of {MODES}, not {self.mode!r}")

    def limit(self, seconds: float) -> float:
        """A time limit from a feature sentence, stretched by ``-D timeout_multiplier``."""
        return seconds * self.timeout_multiplier

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

    def start_cluster(self, count: int, **node_options: Any) -> ClusterController:
        settings = ClusterSettings(node_options=node_options)
        cluster: ClusterController = (
            EmbeddedCluster(self.loop, settings)
            if self.mode == "embedded"
            else ProcessCluster(settings)
        )
        self.clusters.append(cluster)
        cluster.start(count)
        cluster.wait_until_formed(self.limit(10))
        return cluster

    def add_client(self, driver: ClientDriver) -> ClientDriver:
        self.clients.append(driver)
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
