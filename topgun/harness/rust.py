"""TopGun's Rust server 2.2.0 as a peer: where its binary is, whether it can run here, and
:class:`RustCluster`, which starts, stops, kills and restarts real Rust nodes (``behave
features/ -D cluster=topgun-rust``).

The binary comes from the npm package ``@topgunbuild/server-linux-x64`` (pinned in
``package.json`` as an optional dependency, installed by ``scripts/bootstrap``). It exists for
linux x64 only; elsewhere the Rust runs are skipped with :func:`unavailable_reason`.

How a 2.2.0 cluster is formed here, and why:

- The first node founds the cluster: its ``--seed-nodes`` lists only its own cluster address,
  which it skips, so it wins the election alone after its 3 s election wait ("Self-promoted").
  A seed that is not there yet would cost the ~30 s election budget, and nodes started
  together take ~10 s to elect one and then join it with the same fault as below.
- Every other node joins the running ones, one at a time. Cluster ports are chosen here (a
  port found free just before): the server can pick one itself but announces it nowhere.
- A join that breaks right after "Join accepted" ("frame size too big": 2.2.0 drops the bytes
  the master sent behind its JoinResponse; fixed upstream later) is a visible fault of the peer:
  the node is killed and launched again, and the workaround is recorded in
  :attr:`RustCluster.peer_faults` for the report's evidence. A join counts once the node has
  read a heartbeat over the join's connection: its own view lists every member a few
  milliseconds before the fault can still strike.

Nothing else is retried or repaired: what the nodes serve afterwards (maps of different
versions and assignments, dead members still listed ACTIVE by some) is for the suite to judge.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from topgun.core.table import PartitionTable
from topgun.harness.cluster import (
    STOP_TIMEOUT_S,
    ClusterController,
    ClusterError,
    ClusterSettings,
)
from topgun.harness.inspection import Inspector, RustAdminInspector
from topgun.harness.ports import free_port
from topgun.harness.waiting import eventually
from topgun.server.auth import make_token

log = logging.getLogger(__name__)

PACKAGE = "@topgunbuild/server-linux-x64"
PACKAGE_VERSION = "2.2.0"
CLONE = Path(__file__).resolve().parents[2]
BINARY = CLONE / "node_modules" / PACKAGE / "bin" / "topgun-server"

HOST = "127.0.0.1"
FORM_TIMEOUT_S = 120.0
"""The bound on forming a cluster (every launch and relaunch included), and on one node's join."""
LAUNCH_TIMEOUT_S = 45.0
"""How long one launch may take to found or join: a node that finds no master self-promotes
after its 30 s election budget, so this is longer."""
JOIN_CONFIRM_S = 10.0
"""How long a node that logged "Join accepted" may take to read its first heartbeat (sent
every second) and see every member."""
MAX_LAUNCHES = 25
"""Launches of one node before giving up: about two joins in three break (measured here)."""

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_PORT_LINE = re.compile(r"PORT=(\d+)")
FOUNDED = "Self-promoted as single-node master"
JOINED = "Join accepted by seed node"
JOIN_FAULTS = ("Peer connection read error", "Deserialization failure on cluster frame")
HEARTBEAT = "received heartbeat"
"""Logged (at debug) for each heartbeat a node reads from a peer: the first one after "Join
accepted" proves the join's connection survived the hand-over that 2.2.0 gets wrong."""
LOG_FILTER = "info,topgun_server::cluster::heartbeat=debug"
_KEPT_LINES = 2000
"""Lines a launch keeps in memory to judge its join (the whole output goes to its log file)."""


def unavailable_reason() -> str | None:
    """None when the Rust server can run here; otherwise why it cannot."""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return (
            f"TopGun's Rust server {PACKAGE_VERSION} ships for linux x64 only "
            f"(this is {platform.system()} {platform.machine()})"
        )
    if not BINARY.is_file():
        return (
            f"TopGun's Rust server is not installed ({BINARY} is missing): "
            f"run scripts/bootstrap, which installs {PACKAGE}@{PACKAGE_VERSION}"
        )
    try:
        _make_executable(BINARY)
    except OSError as exc:
        return f"cannot make {BINARY} executable: {exc}"
    return None


def server_binary() -> Path | None:
    """The executable ``topgun-server`` of the clone's node_modules, or None (see
    :func:`unavailable_reason`)."""
    return None if unavailable_reason() is not None else BINARY


def _make_executable(path: Path) -> None:
    """npm ships the package's binary without the execute bit (mode 0644)."""
    mode = path.stat().st_mode
    wanted = mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
    if mode != wanted:
        path.chmod(wanted)
    if not os.access(path, os.X_OK):
        raise PermissionError(f"{path} is not executable by this user")


# --- one run of the binary ---------------------------------------------------------------


class _Launch:
    """One run of ``topgun-server``: its output goes to the node's log file as it comes
    (colours stripped), and its last lines stay here to judge its join."""

    def __init__(self, command: list[str], work_dir: Path, log_path: Path, secret: str) -> None:
        self.lines: deque[str] = deque(maxlen=_KEPT_LINES)
        self.port: int | None = None
        self.exited = False
        self._changed = threading.Condition()
        env = {  # nothing of the caller's may change where it stores or what it logs
            k: v for k, v in os.environ.items() if not k.startswith(("TOPGUN_", "RUST_"))
        }
        # the secret by environment: a command line is visible to every local user
        env.update(JWT_SECRET=secret, RUST_LOG=LOG_FILTER, TOPGUN_BIND_ADDR=HOST, NO_COLOR="1")
        self.popen = subprocess.Popen(
            command,
            cwd=work_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            errors="replace",
            env=env,
        )
        self._pump = threading.Thread(target=self._drain, args=(log_path,), daemon=True)
        self._pump.start()

    def _drain(self, log_path: Path) -> None:
        assert self.popen.stdout is not None
        with log_path.open("a", encoding="utf-8") as out:
            for raw in self.popen.stdout:  # keep draining: a full pipe would block the node
                line = _ANSI.sub("", raw.rstrip("\n"))
                out.write(line + "\n")
                out.flush()
                with self._changed:
                    self.lines.append(line)
                    port = _PORT_LINE.fullmatch(line)
                    if port and self.port is None:
                        self.port = int(port.group(1))
                    self._changed.notify_all()
        with self._changed:
            self.exited = True
            self._changed.notify_all()

    def first(self, text: str) -> str | None:
        """The first kept line containing ``text``."""
        with self._changed:
            return next((line for line in self.lines if text in line), None)

    def wait(self, done: Callable[[], bool], within: float) -> bool:
        """Wait at most ``within`` seconds until ``done()`` or the process ended; ``done()``."""
        with self._changed:
            self._changed.wait_for(lambda: done() or self.exited, max(within, 0.0))
            return done()

    def stop(self, *, graceful: bool) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
        try:
            self.popen.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(STOP_TIMEOUT_S)
            raise ClusterError(
                f"pid {self.popen.pid} ignored SIGTERM for {STOP_TIMEOUT_S} s"
            ) from None
        finally:
            self._pump.join(STOP_TIMEOUT_S)
            if self.popen.stdout is not None:
                self.popen.stdout.close()


class _JoinBroken(Exception):
    """The node logged that its connection to the master broke while joining."""


class _PortTaken(ClusterError):
    """The node could not bind a port: something took it after it was found free."""


@dataclass
class _Node:
    work_dir: Path
    log_path: Path
    launch: _Launch | None = None
    client_port: int = 0
    cluster_port: int = 0


# --- the controller ------------------------------------------------------------------------


class RustCluster(ClusterController):
    """Nodes as ``topgun-server`` 2.2.0 processes, each in a working directory of its own
    (its redb storage lives there and survives a restart); killing is SIGKILL, stopping
    SIGTERM. Members come from the Rust admin API, tables from the ``PARTITION_MAP`` a node
    sends a client (:class:`~topgun.harness.inspection.RustAdminInspector`).
    """

    mode = "topgun-rust"

    def __init__(self, settings: ClusterSettings | None = None) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise ClusterError(reason)
        super().__init__(settings)
        self.root = Path(tempfile.mkdtemp(prefix="topgun-rust-"))
        self.nodes: dict[str, _Node] = {}
        self.peer_faults: list[str] = []
        """Every visible fault of the peer the controller worked around, in order."""
        self.launches: list[_Launch] = []
        """Every process started, relaunches included: :meth:`close` ends them all."""
        self._deadline: float | None = None

    def _suite_token(self) -> str:
        """The Rust admin API wants a lowercase ``admin`` role (ours: ``ADMIN``)."""
        return make_token(self.settings.jwt_secret, sub="harness", roles=["admin"])

    def _make_inspector(self) -> Inspector:
        return RustAdminInspector(self.client_url, self._admin_token)

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, count: int, prefix: str = "node") -> list[str]:
        """Start ``count`` nodes one at a time and wait until every one sees all of them as
        members: at most :data:`FORM_TIMEOUT_S` in all, relaunches included."""
        self._deadline = time.monotonic() + FORM_TIMEOUT_S
        try:
            names = super().start(count, prefix)
            self.wait_until_formed(self._deadline - time.monotonic())
        finally:
            self._deadline = None
        return names

    def wait_until_formed(self, within: float) -> PartitionTable:
        """Every live node sees exactly the live nodes as members and serves a partition
        map; the first live node's map is returned. Unlike our nodes, 2.2.0 nodes never agree
        on one map version, nor always on one assignment: judging that is the suite's job, so
        it is not waited for here."""
        live = sorted(self.live_nodes())

        def formed() -> PartitionTable:
            tables = {}
            for node in live:
                members = sorted(self.members(node))
                assert members == live, f"{node} sees members {members}, expected {live}"
                table = self.table(node)
                assert table is not None, f"{node} serves no partition map"
                tables[node] = table
            return tables[live[0]]

        what = f"a cluster of {', '.join(live)} (TopGun Rust {PACKAGE_VERSION})"
        return eventually(formed, within, what)

    def _launch(self, node_id: str, peers: list[str], ports: tuple[int, int]) -> None:
        node = self.nodes.get(node_id)
        if node is None:
            work_dir = self.root / node_id
            work_dir.mkdir()
            node = self.nodes[node_id] = _Node(work_dir, self.root / f"{node_id}.log")
        deadline = self._deadline or time.monotonic() + FORM_TIMEOUT_S
        others = [n for n in self.live_nodes() if n != node_id]
        client_port, cluster_port = ports[0], ports[1] or free_port()
        for attempt in range(1, MAX_LAUNCHES + 1):
            if time.monotonic() >= deadline:
                break
            seeds = peers or [f"{HOST}:{cluster_port}"]  # the founder: only itself
            launch = self._spawn(node_id, node, attempt, seeds, (client_port, cluster_port))
            try:
                fault = self._await_join(node_id, launch, others, deadline)
            except _PortTaken as exc:
                launch.stop(graceful=False)
                if ports[1]:
                    raise
                log.info("%s; %s tries another cluster port", exc, node_id)
                cluster_port = free_port()
                continue
            except BaseException:
                launch.stop(graceful=False)
                raise
            if fault is None:
                node.launch, node.cluster_port = launch, cluster_port
                return
            launch.stop(graceful=False)
            note = f"{node_id}: {fault}, relaunched (launch {attempt + 1})"
            self.peer_faults.append(note)
            log.warning("peer fault worked around: %s", note)
        raise ClusterError(
            f"{node_id} did not join {others or 'as founder'} cleanly within {MAX_LAUNCHES} "
            f"launches and {FORM_TIMEOUT_S} s; peer faults so far: {self.peer_faults}"
        )

    def _spawn(
        self, node_id: str, node: _Node, attempt: int, seeds: list[str], ports: tuple[int, int]
    ) -> _Launch:
        command = [str(BINARY), "--node-id", node_id, "--host", HOST]
        command += ["--port", str(ports[0]), "--cluster-port", str(ports[1])]
        command += ["--seed-nodes", ",".join(seeds)]
        with node.log_path.open("a", encoding="utf-8") as out:
            out.write(f"=== harness: launch {attempt} of {node_id}: {' '.join(command)}\n")
        launch = _Launch(command, node.work_dir, node.log_path, self.settings.jwt_secret)
        self.launches.append(launch)
        return launch

    def _await_join(
        self, node_id: str, launch: _Launch, others: list[str], deadline: float
    ) -> str | None:
        """None once the node founded the cluster, or joined ``others``, read a heartbeat
        over the join's connection and sees them all as members; a description of the peer's
        visible fault if that connection broke. Anything else (the process ended, no outcome
        in time, no master among ``others``) raises :class:`ClusterError`."""
        outcome = FOUNDED if not others else JOINED
        left = min(LAUNCH_TIMEOUT_S, deadline - time.monotonic())
        settled = launch.wait(
            lambda: (
                launch.port is not None and bool(launch.first(outcome) or launch.first(FOUNDED))
            ),
            left,
        )
        tail = "\n".join(list(launch.lines)[-40:])
        if not settled:
            if launch.exited:
                error = _PortTaken if launch.first("Address already in use") else ClusterError
                raise error(f"{node_id} ended before it logged {outcome!r}; log tail:\n{tail}")
            raise ClusterError(
                f"{node_id} did not log {outcome!r} and PORT= within {left:.0f} s; "
                f"log tail:\n{tail}"
            )
        if launch.first(outcome) is None:  # no master among the others: relaunching won't help
            raise ClusterError(
                f"{node_id} could not join {others}: none accepted it, so it self-promoted as "
                f"master of a cluster of its own; log tail:\n{tail}"
            )
        self.nodes[node_id].client_port = launch.port or 0
        expected = sorted([node_id, *others])

        def joined() -> None:
            for fault in filter(None, map(launch.first, JOIN_FAULTS)):
                # "… formation: Peer connection read error: frame size too big peer=Some(…)"
                raise _JoinBroken(fault.split("formation: ", 1)[-1].split(" peer=")[0])
            if others:
                assert launch.first(HEARTBEAT), f"{node_id} has read no heartbeat since it joined"
            members = sorted(self.members(node_id))
            assert members == expected, f"{node_id} sees members {members}, not {expected}"

        try:
            eventually(joined, min(JOIN_CONFIRM_S, max(deadline - time.monotonic(), 0.0)))
        except _JoinBroken as exc:
            return f"join failed ('{exc}' logged right after '{JOINED}')"
        return None

    def _stop(self, node_id: str, *, graceful: bool) -> None:
        launch = self.nodes[node_id].launch
        assert launch is not None
        launch.stop(graceful=graceful)

    def close(self) -> None:
        """Kill every node and remove every working directory and log."""
        for launch in self.launches:
            try:
                launch.stop(graceful=False)
            except ClusterError:  # one stuck node must not keep the others running
                log.exception("could not stop pid %d", launch.popen.pid)
        self.down.update(self.nodes)
        shutil.rmtree(self.root, ignore_errors=True)
        self._close_inspector()

    # --- questions -----------------------------------------------------------------------

    def client_url(self, node_id: str) -> str:
        return f"ws://{HOST}:{self.nodes[node_id].client_port}"

    def cluster_address(self, node_id: str) -> str:
        return f"{HOST}:{self.nodes[node_id].cluster_port}"

    def logs(self, node_id: str) -> str:
        node = self.nodes.get(node_id)
        if node is None:
            return ""
        try:
            return node.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return f"(the log file {node.log_path} was removed by something outside the harness)"
