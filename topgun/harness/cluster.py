"""Local clusters for tests and demos: in-process nodes or ``topgun node`` processes.

Both controllers answer the same questions (who owns a key, what does a node hold, which
table does it serve) and do the same things to nodes (start, shut down, kill, restart),
so a feature file passes against either unchanged. The questions go to the controller's
:attr:`~ClusterController.inspector` (:mod:`topgun.harness.inspection`): in-process
inspection reads the node objects; process inspection goes through the node's admin HTTP
routes.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from topgun.core.hashing import partition_id
from topgun.core.table import PartitionTable
from topgun.harness.inspection import AdminRoutesInspector, Inspector, NodeObjectInspector
from topgun.harness.loop import LoopThread
from topgun.harness.nodes import HARNESS_POLICY_FILE, local_config
from topgun.harness.waiting import eventually
from topgun.server import ServerNode
from topgun.server.auth import make_token
from topgun.server.policy_file import load_policy_file

DEFAULT_SECRET = "topgun-harness-secret-for-local-tests"  # HS256 wants >= 32 bytes
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0


class ClusterError(RuntimeError):
    """The harness could not do what a step asked of the cluster."""


@dataclass
class ClusterSettings:
    jwt_secret: str = DEFAULT_SECRET
    cluster_secret: str = DEFAULT_SECRET
    node_options: dict[str, Any] = field(default_factory=dict)
    policy_file: Path = HARNESS_POLICY_FILE
    """The map permissions of every node (``topgun node --policies``)."""


class ClusterController(ABC):
    """What a test can do to a local cluster, whatever runs its nodes."""

    mode: str

    def __init__(self, settings: ClusterSettings | None = None) -> None:
        self.settings = settings or ClusterSettings()
        self.order: list[str] = []
        self.down: set[str] = set()
        self._admin_token = self._suite_token()
        self._inspector: Inspector | None = None

    def _suite_token(self) -> str:
        """The token the harness inspects and administers with."""
        return make_token(self.settings.jwt_secret, sub="harness", roles=["ADMIN"])

    @property
    def inspector(self) -> Inspector:
        """Where this controller's answers about nodes come from (chosen on first use)."""
        if self._inspector is None:
            self._inspector = self._make_inspector()
        return self._inspector

    @abstractmethod
    def _make_inspector(self) -> Inspector: ...

    def _close_inspector(self) -> None:
        if self._inspector is not None:
            self._inspector.close()

    # --- lifecycle ---------------------------------------------------------------------

    def start(self, count: int, prefix: str = "node") -> list[str]:
        """Start ``count`` nodes named ``prefix-1`` … and wait until they agree on a table."""
        for i in range(1, count + 1):
            self.start_node(f"{prefix}-{i}")
        return list(self.order)

    def start_node(self, node_id: str, ports: tuple[int, int] = (0, 0)) -> None:
        """Start one node; ``ports`` (client, cluster) 0 lets the OS choose."""
        peers = [self.cluster_address(n) for n in self.live_nodes() if n != node_id]
        self._launch(node_id, peers, ports)
        if node_id not in self.order:
            self.order.append(node_id)
        self.down.discard(node_id)

    def shutdown(self, node_id: str) -> None:
        self._require_live(node_id)
        self._stop(node_id, graceful=True)
        self.down.add(node_id)

    def kill(self, node_id: str) -> None:
        self._require_live(node_id)
        self._stop(node_id, graceful=False)
        self.down.add(node_id)

    def restart(self, node_id: str, *, same_address: bool = False) -> None:
        """Start a stopped node again, on new ports or on the ones it had."""
        if node_id not in self.down:
            raise ClusterError(f"{node_id} is running; stop it before restarting it")
        ports = (0, 0)
        if same_address:
            client_port = int(self.client_url(node_id).rsplit(":", 1)[1])
            cluster_port = int(self.cluster_address(node_id).rsplit(":", 1)[1])
            ports = (client_port, cluster_port)
        self.start_node(node_id, ports)

    @abstractmethod
    def close(self) -> None: ...

    # --- questions ---------------------------------------------------------------------

    def live_nodes(self) -> list[str]:
        return [n for n in self.order if n not in self.down]

    def seeds(self) -> list[str]:
        return [self.client_url(n) for n in self.live_nodes()]

    def admin_token(self) -> str:
        return self._admin_token

    def token(self, subject: str = "test-user", roles: tuple[str, ...] = ("USER",)) -> str:
        return make_token(self.settings.jwt_secret, sub=subject, roles=list(roles))

    def wait_until_formed(self, within: float) -> PartitionTable:
        """Every live node sees exactly the live nodes and serves one and the same table."""
        live = sorted(self.live_nodes())

        def formed() -> PartitionTable:
            tables = {}
            for node in live:
                members = sorted(self.members(node))
                assert members == live, f"{node} sees members {members}, expected {live}"
                table = self.table(node)
                assert table is not None, f"{node} has no partition table yet"
                assert sorted(table.node_ids()) == live, (
                    f"{node} serves table v{table.version} over {sorted(table.node_ids())}"
                )
                tables[node] = table
            versions = {t.version for t in tables.values()}
            assert len(versions) == 1, f"nodes serve different table versions {versions}"
            return next(iter(tables.values()))

        return eventually(formed, within, "a cluster of " + ", ".join(live))

    def any_table(self) -> PartitionTable:
        for node in self.live_nodes():
            table = self.table(node)
            if table is not None:
                return table
        raise ClusterError("no live node serves a partition table")

    def owner_of(self, key: str) -> str:
        return self.any_table().owner(partition_id(key))

    def backups_of(self, key: str) -> tuple[str, ...]:
        return self.any_table().backups_of(partition_id(key))

    def holdings(self, map_name: str, key: str) -> dict[str, dict[str, Any]]:
        """What every live node holds for one key (evidence for reports)."""
        return {n: self.inspect(n, map_name, key) for n in self.live_nodes()}

    def _require_live(self, node_id: str) -> None:
        if node_id not in self.live_nodes():
            raise ClusterError(f"{node_id} is not running (running: {self.live_nodes()})")

    @abstractmethod
    def _launch(self, node_id: str, peers: list[str], ports: tuple[int, int]) -> None: ...

    @abstractmethod
    def _stop(self, node_id: str, *, graceful: bool) -> None: ...

    @abstractmethod
    def client_url(self, node_id: str) -> str: ...

    @abstractmethod
    def cluster_address(self, node_id: str) -> str: ...

    def members(self, node_id: str) -> list[str]:
        return self.inspector.members(node_id)

    def table(self, node_id: str) -> PartitionTable | None:
        return self.inspector.table(node_id)

    def inspect(self, node_id: str, map_name: str, key: str) -> dict[str, Any]:
        """What ``node_id`` holds for ``key``: ``{nodeId, partitionId, role, record,
        method}`` (see :meth:`~topgun.harness.inspection.Inspector.inspect`)."""
        return self.inspector.inspect(node_id, map_name, key)

    @abstractmethod
    def logs(self, node_id: str) -> str: ...


# --- in-process nodes -----------------------------------------------------------------


class _NodeLogBuffer(logging.Handler):
    """Keeps the last log lines of each embedded node, for reports of failed scenarios."""

    def __init__(self, capacity: int = 2000) -> None:
        super().__init__(logging.DEBUG)
        self.lines: dict[str, deque[str]] = {}
        self.capacity = capacity
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        node = getattr(record, "node_id", None) or "-"
        self.lines.setdefault(node, deque(maxlen=self.capacity)).append(self.format(record))


class EmbeddedCluster(ClusterController):
    """Nodes as :class:`~topgun.server.ServerNode` objects on the harness's event loop."""

    mode = "embedded"

    def __init__(self, loop: LoopThread, settings: ClusterSettings | None = None) -> None:
        super().__init__(settings)
        self.loop = loop
        self.nodes: dict[str, Any] = {}
        self._logs = _NodeLogBuffer()
        self._logger = logging.getLogger("topgun")
        self._logger.addHandler(self._logs)
        self._level = self._logger.level
        if self._level == logging.NOTSET or self._level > logging.INFO:
            self._logger.setLevel(logging.INFO)

    def _launch(self, node_id: str, peers: list[str], ports: tuple[int, int]) -> None:
        config = local_config(
            node_id,
            peers,
            jwt_secret=self.settings.jwt_secret,
            cluster_secret=self.settings.cluster_secret,
            ports=ports,
            policies=load_policy_file(self.settings.policy_file),
            **self.settings.node_options,
        )
        node = ServerNode(config)
        self.loop.run(node.start(), START_TIMEOUT_S)
        self.nodes[node_id] = node

    def _stop(self, node_id: str, *, graceful: bool) -> None:
        node = self.nodes[node_id]
        self.loop.run(node.shutdown() if graceful else node.kill(), STOP_TIMEOUT_S)

    def client_url(self, node_id: str) -> str:
        return str(self.nodes[node_id].client_url)

    def cluster_address(self, node_id: str) -> str:
        return str(self.nodes[node_id].cluster_address)

    def _make_inspector(self) -> Inspector:
        return NodeObjectInspector(self.loop, self.nodes.__getitem__)

    def logs(self, node_id: str) -> str:
        return "\n".join(self._logs.lines.get(node_id, ()))

    def close(self) -> None:
        for node_id in self.live_nodes():
            try:
                self._stop(node_id, graceful=False)
            except Exception:  # a node that fails to stop must not keep others running
                logging.getLogger(__name__).exception("could not stop %s", node_id)
            self.down.add(node_id)
        self._logger.removeHandler(self._logs)
        self._logger.setLevel(self._level)
        self._close_inspector()


# --- OS processes ---------------------------------------------------------------------


@dataclass
class _Process:
    popen: subprocess.Popen[str]
    client_url: str
    cluster_address: str
    log_path: Path


class ProcessCluster(ClusterController):
    """Nodes as ``topgun node`` OS processes; killing one is SIGKILL, stopping SIGTERM."""

    mode = "processes"
    source_address: tuple[str, int] | None = None
    """Where the harness's own admin requests come from (None: the OS chooses)."""

    def __init__(self, settings: ClusterSettings | None = None) -> None:
        super().__init__(settings)
        self.procs: dict[str, _Process] = {}
        self.log_dir = Path(tempfile.mkdtemp(prefix="topgun-nodes-"))
        self.routes = AdminRoutesInspector(
            self.client_url, self._admin_token, source_address=self.source_address
        )

    def _bind_host(self, node_id: str) -> str:
        """The address ``node_id`` listens on (hosts mode: its own network host)."""
        return "127.0.0.1"

    def _command(self, node_id: str, peers: list[str], ports: tuple[int, int]) -> list[str]:
        cmd = [sys.executable, "-m", "topgun", "node", "--node-id", node_id]
        cmd += ["--host", self._bind_host(node_id)]
        cmd += ["--port", str(ports[0]), "--cluster-port", str(ports[1])]
        cmd += ["--policies", str(self.settings.policy_file)]
        for peer in peers:
            cmd += ["--peer", peer]
        for name, value in self.settings.node_options.items():
            flag = name.removesuffix("_s").replace("_", "-")  # failure_timeout_s: --failure-timeout
            if isinstance(value, bool):
                cmd.append(f"--{flag}" if value else f"--no-{flag}")
            else:
                cmd += [f"--{flag}", str(value)]
        return cmd

    def _launch(self, node_id: str, peers: list[str], ports: tuple[int, int]) -> None:
        log_path = self.log_dir / f"{node_id}.log"
        log = log_path.open("a", encoding="utf-8")
        popen = subprocess.Popen(
            self._command(node_id, peers, ports),
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
            env={  # secrets by environment: a command line is visible to every local user
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "TOPGUN_JWT_SECRET": self.settings.jwt_secret,
                "TOPGUN_CLUSTER_SECRET": self.settings.cluster_secret,
            },
        )
        log.close()
        ready = _read_ready_line(popen, START_TIMEOUT_S)
        if ready is None:
            popen.kill()
            popen.wait(STOP_TIMEOUT_S)
            raise ClusterError(
                f"{node_id} did not print READY within {START_TIMEOUT_S} s; "
                f"log:\n{log_path.read_text(encoding='utf-8')[-4000:]}"
            )
        self.procs[node_id] = _Process(popen, ready["clientUrl"], ready["clusterAddress"], log_path)

    def _stop(self, node_id: str, *, graceful: bool) -> None:
        proc = self.procs[node_id].popen
        proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT_S)
            raise ClusterError(f"{node_id} ignored SIGTERM for {STOP_TIMEOUT_S} s") from None

    def client_url(self, node_id: str) -> str:
        return self.procs[node_id].client_url

    def cluster_address(self, node_id: str) -> str:
        return self.procs[node_id].cluster_address

    def _make_inspector(self) -> Inspector:
        return self.routes

    def _http(self, node_id: str, path: str) -> Any:
        """``GET path`` on the node's client port as the harness's admin, as JSON."""
        return self.routes.http.json(node_id, path)

    def metrics_text(self, node_id: str) -> str:
        """The node's Prometheus ``/metrics`` page."""
        return self.routes.http.text(node_id, "/metrics")

    def logs(self, node_id: str) -> str:
        proc = self.procs.get(node_id)
        if proc is None:
            return ""
        try:
            return proc.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:  # evidence must not mask the verdict; say what happened
            return f"(the log file {proc.log_path} was removed by something outside the harness)"

    def close(self) -> None:
        for node_id, proc in self.procs.items():
            if proc.popen.poll() is None:
                proc.popen.kill()
                proc.popen.wait(STOP_TIMEOUT_S)
            self.down.add(node_id)
        for proc in self.procs.values():
            if proc.popen.stdout is not None:
                proc.popen.stdout.close()
        shutil.rmtree(self.log_dir, ignore_errors=True)  # logs were attached if they mattered
        self._close_inspector()


def admin_get(client_url: str, path: str, token: str, timeout: float = 5.0) -> Any:
    """GET one of a node's HTTP routes (on its client port) with a bearer token, as JSON.

    Raises :class:`urllib.error.HTTPError` for an error status, ``URLError``/``OSError``
    when the node does not answer.
    """
    url = client_url.replace("ws://", "http://", 1).replace("wss://", "https://", 1) + path
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read().decode("utf-8"))


def _read_ready_line(popen: subprocess.Popen[str], within: float) -> dict[str, Any] | None:
    """Wait at most ``within`` seconds for the node's ``READY {json}`` line."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert popen.stdout is not None
        for line in popen.stdout:  # keep draining so a chatty node never blocks on a full pipe
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        while True:
            line = lines.get(timeout=within)
            if line is None:
                return None
            if line.startswith("READY "):
                return dict(json.loads(line[len("READY ") :]))
    except queue.Empty:
        return None
