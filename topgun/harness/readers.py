"""What any TopGun client can see of a key: a new single-server client on each node reads it.

This is the one check of "is the write still there" that needs nothing from the cluster but
the protocol, so it judges every implementation alike. A node that answers for the whole map
(ours) and one that answers from its own store (TopGun's servers) differ here exactly where a
user would notice: a write acknowledged by one node and not read through another.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from topgun.harness.client_driver import ClientDriver
from topgun.harness.loop import LoopThread


@dataclass(frozen=True)
class Reading:
    """What a new client connected to one node read for one key."""

    node_id: str
    found: bool
    value: Any = None
    error: str | None = None

    def words(self) -> str:
        if self.error is not None:
            return f"{self.node_id}: no answer ({self.error})"
        if not self.found:
            return f"{self.node_id}: nothing"
        return f"{self.node_id}: {json.dumps(self.value)}"


class NodeReaders:
    """One single-server client per node, kept open while a check polls them."""

    def __init__(self, loop: LoopThread, urls: dict[str, str], token: str) -> None:
        self.loop = loop
        self.drivers = {
            node: ClientDriver.for_server(loop, url, token) for node, url in urls.items()
        }
        self._started: set[str] = set()

    def read(self, map_name: str, key: str, within: float) -> list[Reading]:
        """Each node's answer for ``key``."""
        return [self._read_one(node, map_name, key, within) for node in sorted(self.drivers)]

    def _read_one(self, node: str, map_name: str, key: str, within: float) -> Reading:
        driver = self.drivers[node]
        try:
            if node not in self._started:
                driver.start(within)
                self._started.add(node)
            value = driver.read_from_cluster(map_name, key, within)
        except Exception as exc:  # an answer we could not get is reported, not hidden
            return Reading(node, False, error=f"{type(exc).__name__}: {exc}")
        return Reading(node, value is not None, value)

    def close(self) -> None:
        for driver in self.drivers.values():
            try:
                driver.close()
            except Exception:  # closing a reader of a dead node may fail; nothing to keep
                continue


def missing(readings: Iterable[Reading], value: Any) -> list[Reading]:
    """The readings that did not give ``value``."""
    return [r for r in readings if r.error is not None or not r.found or r.value != value]
