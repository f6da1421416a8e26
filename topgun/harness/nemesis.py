"""The nemesis: faults done to a running cluster, each logged with its time.

Process faults (SIGKILL, of one node or of several at once, a graceful shutdown, restart,
SIGSTOP and SIGCONT, a lost disk) work on any cluster of OS processes; network faults
(isolate, split, one-way cuts, client cuts, a slow lossy link) need a
:class:`~topgun.harness.hosts.HostCluster`, where each node is a network host.
:meth:`Nemesis.heal` undoes every network fault and resumes every paused node. The timeline
goes into the scenario's report next to the set checker's result.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from topgun.harness.cluster import ClusterController, ClusterError, ProcessCluster
from topgun.harness.durability import node_data_dir
from topgun.harness.hosts import HostCluster


class Nemesis:
    def __init__(
        self, cluster: ClusterController, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.cluster = cluster
        self.clock = clock
        self.started_at = clock()
        self.timeline: list[dict[str, Any]] = []
        self.paused: set[str] = set()

    def log(self, fault: str, nodes: Iterable[str] = (), **detail: Any) -> None:
        self.timeline.append(
            {
                "t": round(self.clock() - self.started_at, 3),
                "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "fault": fault,
                "nodes": sorted(nodes),
                **detail,
            }
        )

    # --- process faults --------------------------------------------------------------

    def kill(self, node: str) -> None:
        self.cluster.kill(node)
        self.log("kill", [node], signal="SIGKILL")

    def kill_at_once(self, nodes: Iterable[str]) -> None:
        """SIGKILL every one of ``nodes`` before reaping any: none outlives another by
        more than the time it takes to send a signal."""
        nodes = sorted(nodes)
        for node in nodes:
            self._process(node).kill()
        for node in nodes:
            self.cluster.kill(node)  # reaps it and marks it down
        self.log("kill at once", nodes, signal="SIGKILL")

    def shutdown(self, node: str) -> None:
        """A graceful stop (SIGTERM): the node hands its partitions over first."""
        self.cluster.shutdown(node)
        self.log("shutdown", [node], signal="SIGTERM")

    def restart(self, node: str) -> None:
        self.cluster.restart(node, same_address=True)
        self.log("restart", [node])

    def lose_disk(self, node: str) -> None:
        """Delete a stopped node's data dir, as a replaced disk would leave it."""
        if node not in self.cluster.down:
            raise ClusterError(f"{node} is running: stop it before deleting its data")
        folder = node_data_dir(self.cluster, node)
        existed = folder.is_dir()
        shutil.rmtree(folder, ignore_errors=True)
        self.log("data dir deleted", [node], existed=existed)

    def pause(self, node: str) -> None:
        self._process(node).send_signal(signal.SIGSTOP)
        self.paused.add(node)
        self.log("pause", [node], signal="SIGSTOP")

    def resume(self, node: str) -> None:
        self._process(node).send_signal(signal.SIGCONT)
        self.paused.discard(node)
        self.log("resume", [node], signal="SIGCONT")

    def _process(self, node: str) -> Any:
        if not isinstance(self.cluster, ProcessCluster) or node not in self.cluster.procs:
            raise ClusterError(f"pausing needs {node} to be an OS process (processes/hosts mode)")
        return self.cluster.procs[node].popen

    # --- network faults --------------------------------------------------------------

    def _hosts(self) -> HostCluster:
        if not isinstance(self.cluster, HostCluster):
            raise ClusterError("network faults need hosts mode (-D cluster=hosts)")
        return self.cluster

    def cut(self, source: str, target: str) -> None:
        """Packets from ``source`` to ``target`` are dropped; the other way still flows."""
        hosts = self._hosts()
        lab = hosts.lab
        lab.block(hosts.host(source), hosts.host(target).address, inbound=False, outbound=True)
        self.log("cut one way", [source, target], source=source, target=target)

    def isolate(self, node: str) -> None:
        """``node`` and every other node no longer reach each other (clients still do)."""
        self._split([[node], [n for n in self.cluster.order if n != node]])
        self.log("isolate", [node])

    def split(self, *sides: list[str]) -> None:
        """Nodes on different sides no longer reach each other, both ways."""
        self._split([list(side) for side in sides])
        self.log("split", [n for side in sides for n in side], sides=[sorted(s) for s in sides])

    def _split(self, sides: list[list[str]]) -> None:
        hosts = self._hosts()
        for side in sides:
            others = [n for other in sides if other is not side for n in other]
            for node in side:
                for other in others:
                    address = hosts.host(other).address
                    hosts.lab.block(hosts.host(node), address, inbound=True, outbound=True)

    def cut_clients(self, node: str) -> None:
        """The clients (root namespace) and ``node`` no longer reach each other."""
        hosts = self._hosts()
        lab = hosts.lab
        lab.block(hosts.host(node), lab.client_address, inbound=True, outbound=True)
        self.log("cut clients", [node])

    def slow(self, node: str, *, loss_percent: int, kbit: int) -> None:
        """``node``'s link drops ``loss_percent`` % of what it sends and carries ``kbit``."""
        hosts = self._hosts()
        host = hosts.host(node)
        hosts.lab.set_loss(host, loss_percent)
        hosts.lab.set_rate(host, kbit)
        self.log("slow link", [node], lossPercent=loss_percent, kbit=kbit)

    def heal(self) -> None:
        """Every link whole again and every paused node running."""
        for node in sorted(self.paused):
            self.resume(node)
        if isinstance(self.cluster, HostCluster):
            for host in self.cluster.lab.hosts.values():
                self.cluster.lab.heal(host)
        self.log("heal", self.cluster.order)
