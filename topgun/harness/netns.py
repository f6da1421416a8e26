"""Network hosts for tests: one Linux network namespace per host, joined by a bridge.

A :class:`NetworkLab` owns a bridge in the root namespace (the harness and its clients sit
there, at the bridge's address) and, per host, a namespace with a veth pair and an address of
its own in a private /24 (``10.77.S.0/24``, ``S`` chosen free at start). Links are cut by
``nftables`` rules inside a host's namespace (drop by source on input, by destination on
output), so a cut can be one-way, both ways, between two nodes or between a node and the
clients. Traffic goes only to loopback and to the lab's own addresses.

Everything a lab creates carries the harness's pid in its name (``tg-<pid>-…`` namespaces,
``tg<pid>…`` links), so :func:`sweep_stale` can remove what a killed run left behind, and
every lab is closed at exit and on SIGTERM/SIGHUP as well as by its owner.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import ipaddress
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

NETWORK = "10.77.0.0/16"
"""The private range labs take their /24s from; nothing outside the lab uses it."""
CLIENT_HOST = 1
"""The bridge's (root namespace, clients') address is ``.1`` of the lab's /24."""
CONTROL_HOST = 2
"""A second bridge address for the harness's own inspection, never cut by a fault."""
FIRST_NODE_HOST = 11
COMMAND_TIMEOUT_S = 10.0
LOCK_PATH = "/run/lock/topgun-netlab.lock"
NFT_TABLE = "topgun"

_NS_RE = re.compile(r"^tg-(\d+)-")
_LINK_RE = re.compile(r"^tg(\d+)l\d+")


class LabUnavailable(RuntimeError):
    """Network namespaces cannot be made here (not root, or ``ip``/``nft`` missing)."""


def unavailable_reason() -> str | None:
    """Why hosts mode cannot run on this machine, or None when it can."""
    if os.geteuid() != 0:
        return "hosts mode needs root (network namespaces, veth pairs, a bridge)"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"hosts mode needs the '{tool}' command (Debian package {package})"
    try:
        _run(["ip", "netns", "list"])
    except LabUnavailable as exc:
        return f"'ip netns' does not work here: {exc}"
    return None


def _run(cmd: list[str], *, check: bool = True) -> str:
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LabUnavailable(f"{' '.join(cmd)}: {exc}") from exc
    if check and done.returncode != 0:
        raise LabUnavailable(f"{' '.join(cmd)} failed: {done.stderr.strip()}")
    return done.stdout


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_namespace_processes(ns: str) -> None:
    for pid in _run(["ip", "netns", "pids", ns], check=False).split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


def _delete_namespace(ns: str) -> None:
    _kill_namespace_processes(ns)
    _run(["ip", "netns", "del", ns], check=False)


def sweep_stale() -> list[str]:
    """Remove namespaces and links of harness runs whose process is gone; returns names."""
    removed = []
    for line in _run(["ip", "netns", "list"], check=False).splitlines():
        ns = line.split(" ", 1)[0]
        match = _NS_RE.match(ns)
        if match and not _pid_alive(int(match.group(1))):
            _delete_namespace(ns)
            removed.append(ns)
    for line in _run(["ip", "-o", "link", "show"], check=False).splitlines():
        parts = line.split(":", 2)
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@", 1)[0]
        match = _LINK_RE.match(name)
        if match and not _pid_alive(int(match.group(1))):
            _run(["ip", "link", "del", name], check=False)
            removed.append(name)
    return removed


@dataclass
class Host:
    """One network host: its namespace, its address, and its end of the bridge."""

    name: str
    namespace: str
    address: str
    bridge_port: str
    blocked_in: set[str] = field(default_factory=set)
    blocked_out: set[str] = field(default_factory=set)
    loss_percent: int = 0

    def exec_prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.namespace]


def nft_script(host: Host) -> str:
    """The nftables transaction that replaces ``host``'s whole rule set (declare, delete,
    define: atomic, and valid whether or not the table existed)."""
    lines = [f"table inet {NFT_TABLE}", f"delete table inet {NFT_TABLE}"]
    lines += [f"table inet {NFT_TABLE} {{", " chain input {"]
    lines.append("  type filter hook input priority 0;")
    lines += [f"  ip saddr {a} drop" for a in sorted(host.blocked_in)]
    lines += [" }", " chain output {", "  type filter hook output priority 0;"]
    lines += [f"  ip daddr {a} drop" for a in sorted(host.blocked_out)]
    if host.loss_percent:
        lines.append(f"  oifname eth0 numgen random mod 100 < {host.loss_percent} drop")
    lines += [" }", "}"]
    return "\n".join(lines) + "\n"


class NetworkLab:
    """A bridge and a namespace per host; closed (everything removed) by :meth:`close`."""

    _serial = 0

    def __init__(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise LabUnavailable(reason)
        sweep_stale()
        NetworkLab._serial += 1
        pid = os.getpid()
        self.tag = f"tg{pid}l{NetworkLab._serial % 100}"
        self.ns_prefix = f"tg-{pid}-{NetworkLab._serial}"
        self.bridge = f"{self.tag}b"
        self.hosts: dict[str, Host] = {}
        self._closed = False
        _register(self)
        try:
            self.subnet = self._claim_subnet()
        except BaseException:
            self.close()
            raise

    # --- addresses -------------------------------------------------------------------

    def address(self, host_number: int) -> str:
        return str(self.subnet.network_address + host_number)

    @property
    def client_address(self) -> str:
        """Where the clients' traffic comes from (the bridge, root namespace)."""
        return self.address(CLIENT_HOST)

    @property
    def control_address(self) -> str:
        """The source address the harness inspects nodes from; no fault cuts it."""
        return self.address(CONTROL_HOST)

    def _claim_subnet(self) -> ipaddress.IPv4Network:
        """Take the first /24 of :data:`NETWORK` no interface uses, under a machine-wide lock."""
        os.makedirs(os.path.dirname(LOCK_PATH), exist_ok=True)
        with open(LOCK_PATH, "w", encoding="utf-8") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            used = _run(["ip", "-o", "-4", "addr", "show"])
            for subnet in list(ipaddress.IPv4Network(NETWORK).subnets(new_prefix=24))[1:]:
                if f" {subnet.network_address + CLIENT_HOST}/" in used:
                    continue
                _run(["ip", "link", "add", self.bridge, "type", "bridge"])
                for number in (CLIENT_HOST, CONTROL_HOST):
                    addr = f"{subnet.network_address + number}/24"
                    _run(["ip", "addr", "add", addr, "dev", self.bridge])
                _run(["ip", "link", "set", self.bridge, "up"])
                return subnet
        raise LabUnavailable(f"every /24 of {NETWORK} is in use")

    # --- hosts -----------------------------------------------------------------------

    def add_host(self, name: str) -> Host:
        """A namespace with loopback, one veth on the bridge and the next free address."""
        if name in self.hosts:
            return self.hosts[name]
        index = len(self.hosts) + 1
        host = Host(
            name,
            f"{self.ns_prefix}-{index}",
            self.address(FIRST_NODE_HOST + index - 1),
            f"{self.tag}v{index}",
        )
        self.hosts[name] = host
        inner = f"{self.tag}i{index}"
        ns = host.namespace
        _run(["ip", "netns", "add", ns])
        _run(["ip", "link", "add", host.bridge_port, "type", "veth", "peer", "name", inner])
        _run(["ip", "link", "set", inner, "netns", ns])
        _run(["ip", "link", "set", host.bridge_port, "master", self.bridge, "up"])
        _run(["ip", "-n", ns, "link", "set", inner, "name", "eth0"])
        _run(["ip", "-n", ns, "addr", "add", f"{host.address}/24", "dev", "eth0"])
        _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        _run(["ip", "-n", ns, "link", "set", "lo", "up"])
        self._apply_rules(host)
        return host

    # --- link faults (nftables rules inside the receiving/sending host) ----------------

    def block(self, host: Host, peer_address: str, *, inbound: bool, outbound: bool) -> None:
        """Drop packets from (``inbound``) and/or to (``outbound``) ``peer_address``."""
        if inbound:
            host.blocked_in.add(peer_address)
        if outbound:
            host.blocked_out.add(peer_address)
        self._apply_rules(host)

    def set_loss(self, host: Host, percent: int) -> None:
        """Drop ``percent`` % of the packets ``host`` sends (random, independent)."""
        if not 0 <= percent < 100:
            raise ValueError("loss is a percentage in 0..99")
        host.loss_percent = percent
        self._apply_rules(host)

    def set_rate(self, host: Host, kbit: int | None) -> None:
        """Limit what ``host`` sends to ``kbit`` kbit/s (a queue: packets wait), or lift it."""
        ns = host.namespace
        _run(["ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", "eth0", "root"], check=False)
        if kbit is not None:
            tbf = ["tbf", "rate", f"{kbit}kbit", "burst", "16kb", "latency", "2s"]
            _run(["ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", "eth0", "root", *tbf])

    def heal(self, host: Host) -> None:
        host.blocked_in.clear()
        host.blocked_out.clear()
        host.loss_percent = 0
        self._apply_rules(host)
        self.set_rate(host, None)

    def _apply_rules(self, host: Host) -> None:
        script = nft_script(host)
        done = subprocess.run(
            [*host.exec_prefix(), "nft", "-f", "-"],
            input=script,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise LabUnavailable(f"nft in {host.namespace} failed: {done.stderr.strip()}")

    # --- teardown --------------------------------------------------------------------

    def close(self) -> None:
        """Kill what runs in the lab's namespaces and remove every namespace and link."""
        if self._closed:
            return
        self._closed = True
        for host in self.hosts.values():
            _delete_namespace(host.namespace)
            _run(["ip", "link", "del", host.bridge_port], check=False)
        _run(["ip", "link", "del", self.bridge], check=False)
        self.hosts.clear()
        _unregister(self)


# --- cleanup at exit and on termination signals ------------------------------------------

_open_labs: list[NetworkLab] = []
_labs_lock = threading.Lock()
_handlers_installed = False


def _register(lab: NetworkLab) -> None:
    global _handlers_installed  # noqa: PLW0603 - one set of process-wide handlers
    with _labs_lock:
        _open_labs.append(lab)
        if _handlers_installed:
            return
        _handlers_installed = True
    atexit.register(close_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous = signal.getsignal(sig)
            signal.signal(sig, _closing_handler(previous))


def _unregister(lab: NetworkLab) -> None:
    with _labs_lock, contextlib.suppress(ValueError):
        _open_labs.remove(lab)


def close_all() -> None:
    """Close every lab still open in this process (atexit, signals)."""
    with _labs_lock:
        labs = list(_open_labs)
    for lab in labs:
        try:
            lab.close()
        except Exception:  # closing the others matters more than this one's error
            log.exception("could not remove network lab %s", lab.tag)


def _closing_handler(previous: Any) -> Callable[[int, FrameType | None], None]:
    def handler(signum: int, frame: FrameType | None) -> None:
        close_all()
        if callable(previous):
            previous(signum, frame)
        else:
            raise SystemExit(128 + signum)

    return handler
