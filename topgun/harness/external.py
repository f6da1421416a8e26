"""A cluster the suite did not start: a staging cluster, or another TopGun implementation.

``behave -D cluster=external -D seeds=ws://h1:p1,ws://h2:p2,...`` points the features at it.
The suite signs in with the token the operator gives (used as it is), or signs its own with
``TOPGUN_JWT_SECRET`` from the environment (subject and roles chosen by the operator; by
default roles ``ADMIN`` and ``admin``, as our nodes and TopGun Rust's admin API spell it).

How the suite reads what nodes serve and hold is chosen by probing the seeds, best first
(:mod:`topgun.harness.inspection`): our admin routes, then TopGun Rust's admin API, then the
protocol alone, which every TopGun server speaks. :attr:`ExternalCluster.inspector_choice`
says which one was chosen and why the better ones were not. The nodes are those of the
partition maps the seeds serve. Before judging, the controller waits (at most
``form_timeout`` seconds) until the seeds agree on one set of members and that has stayed
unchanged for a moment, so that a cluster still forming is not judged as a smaller one; each
such wait is kept in :attr:`ExternalCluster.settle_waits` for the report.

Whatever this cluster cannot do or show raises :class:`CannotRunHere`, and the behave hooks
report the scenario as *skipped with that reason* — never as passed:

- stopping, killing or starting a node needs a shell command template (``-D stop_cmd='…
  {node_id}'``, ``-D kill_cmd=…``, ``-D start_cmd=…``; ``{node_id}`` and ``{client_url}`` are
  filled in, shell-quoted); a start command must return once the node is started;
- a cluster that refuses the suite's user: "the cluster refused the suite's user: …";
- what no inspection method can show: "not checkable: …";
- a scenario that needs another cluster size cannot run against this one.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from topgun.core.table import PartitionTable
from topgun.harness.cluster import ClusterController, ClusterError, ClusterSettings
from topgun.harness.inspection import (
    AdminRoutesInspector,
    InspectionFailed,
    Inspector,
    ProtocolInspector,
    Refused,
    RustAdminInspector,
    Unsupported,
    live_nodes_of,
)
from topgun.harness.loop import LoopThread
from topgun.harness.waiting import WaitTimeout, eventually
from topgun.server.auth import make_token

log = logging.getLogger(__name__)
COMMAND_TIMEOUT_S = 60.0
FORM_TIMEOUT_S = 30.0
SETTLE_QUIET_S = 0.5
"""How long the seeds' answers must stay the same before the cluster counts as settled."""
SUITE_ROLES = ("ADMIN", "admin")


class CannotRunHere(ClusterError):
    """This cluster cannot do or show what the step needs: the scenario is skipped, with
    this message as the reason."""


class ClusterNotSettled(ClusterError):
    """The external cluster's nodes did not come to agree on their members in time."""


@dataclass(frozen=True)
class NodeCommands:
    """Shell command templates that act on one node of an external cluster."""

    stop: str = ""
    kill: str = ""
    start: str = ""

    def run(self, which: str, node_id: str, client_url: str) -> None:
        template = getattr(self, which)
        if not template:
            raise CannotRunHere(
                f"needs node control: this step must {which} {node_id}; "
                f"run with -D {which}_cmd='… {{node_id}} …'"
            )
        # the values come from the cluster's partition map: quoted, never shell syntax
        command = template.format(node_id=shlex.quote(node_id), client_url=shlex.quote(client_url))
        done = subprocess.run(
            command,
            shell=True,  # the template is the user's own command line, pipes and all
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise ClusterError(
                f"{which}_cmd for {node_id} exited {done.returncode}: {command}\n"
                f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
            )


@dataclass(frozen=True)
class _Seen:
    """What one node said in one poll of a settle wait."""

    version: int | None
    members: tuple[str, ...]
    problem: str = ""
    """Why this node's answer does not count (silent, no map, map and members differ)."""
    table: PartitionTable | None = field(default=None, compare=False)


@dataclass(frozen=True)
class SettleWait:
    """One wait for the cluster to settle, for the report."""

    who: str
    seconds: float
    limit: float
    members: tuple[str, ...]
    versions: dict[str, int | None]
    """The map version each asked node served (they may differ: that is judged later)."""
    method: str
    """The inspector the answers came from."""

    def __str__(self) -> str:
        served = ", ".join(f"v{v} by {url}" for url, v in self.versions.items())
        return (
            f"the {self.who} agreed on members [{', '.join(self.members)}] after "
            f"{self.seconds:.2f} s (limit {self.limit:g} s); maps served: {served}; "
            f"read through {self.method}"
        )


class ExternalCluster(ClusterController):
    """Answers the controller's questions about nodes the suite did not start."""

    mode = "external"

    def __init__(
        self,
        seeds: list[str],
        settings: ClusterSettings,
        commands: NodeCommands | None = None,
        *,
        token: str | None = None,
        subject: str = "harness",
        roles: tuple[str, ...] = (),
        form_timeout: float = FORM_TIMEOUT_S,
        loop: LoopThread | None = None,
    ) -> None:
        """``token``: the operator's token for the suite, used as it is; otherwise one is
        signed with ``settings.jwt_secret`` for ``subject`` with ``roles`` (default
        :data:`SUITE_ROLES`). ``loop``: where protocol inspection runs (default: a loop of
        this controller's own)."""
        if not seeds:
            raise ClusterError("cluster=external needs -D seeds=ws://host:port,...")
        self._given_token = token or ""
        self.subject = subject
        self.roles = tuple(roles) or SUITE_ROLES
        super().__init__(settings)
        self.seed_urls = list(seeds)
        self.commands = commands or NodeCommands()
        self.form_timeout = form_timeout
        self.urls: dict[str, str] = {}
        self.stopped_by_us: set[str] = set()
        self.settle_waits: list[SettleWait] = []
        self.inspector_choice = ""
        """Which inspection method was chosen, and why not the better ones (for the report)."""
        self._loop = loop
        self._own_loop: LoopThread | None = None
        self._last_settled: dict[str, _Seen] = {}

    def _suite_token(self) -> str:
        if self._given_token:
            return self._given_token
        if not self.settings.jwt_secret:
            raise ClusterError(
                "cluster=external needs a token for the suite (-D token=…) or "
                "TOPGUN_JWT_SECRET to sign one"
            )
        return make_token(self.settings.jwt_secret, sub=self.subject, roles=list(self.roles))

    def token(self, subject: str = "test-user", roles: tuple[str, ...] = ("USER",)) -> str:
        if not self.settings.jwt_secret:
            raise CannotRunHere(
                f"needs a token for {subject} with roles {list(roles)}: the suite was given "
                "its own token but no TOPGUN_JWT_SECRET to sign others"
            )
        return super().token(subject, roles)

    # --- lifecycle: nothing is started, only discovered ----------------------------------

    def start(self, count: int, prefix: str = "node") -> list[str]:
        """Wait until the seeds settle, then take the nodes of their maps as the cluster."""
        table = self._settle(self.seed_urls, "seeds", self.form_timeout)
        missing = [n.node_id for n in table.nodes if not n.websocket]
        if missing:
            raise CannotRunHere(
                f"not checkable: the partition map does not say how clients reach {missing}"
            )
        self.urls = {n.node_id: n.websocket for n in table.nodes}
        self.order = sorted(live_nodes_of(table))
        if len(self.order) != count:
            raise CannotRunHere(
                f"needs a cluster of {count} node(s); the external cluster has "
                f"{len(self.order)} ({', '.join(self.order)})"
            )
        return list(self.order)

    def start_node(self, node_id: str, ports: tuple[int, int] = (0, 0)) -> None:
        if node_id not in self.urls:
            raise CannotRunHere(f"needs a new node {node_id} to join; the suite cannot add one")
        self.commands.run("start", node_id, self.urls[node_id])
        self.down.discard(node_id)
        self.stopped_by_us.discard(node_id)

    def restart(self, node_id: str, *, same_address: bool = False) -> None:
        if node_id not in self.down:
            raise ClusterError(f"{node_id} is running; stop it before restarting it")
        self.start_node(node_id)

    def _launch(self, node_id: str, peers: list[str], ports: tuple[int, int]) -> None:
        raise AssertionError("unreachable: start_node is overridden")  # pragma: no cover

    def _stop(self, node_id: str, *, graceful: bool) -> None:
        self.commands.run("stop" if graceful else "kill", node_id, self.urls[node_id])
        self.stopped_by_us.add(node_id)

    def close(self) -> None:
        """Start again what this scenario stopped, so the next one finds the whole cluster."""
        try:
            for node_id in sorted(self.stopped_by_us):
                try:
                    self.start_node(node_id)
                except ClusterError:
                    log.exception("could not start %s again", node_id)
            if self.order and not self.down:
                self.wait_until_formed(self.form_timeout)
        finally:
            self._close_inspector()
            if self._own_loop is not None:
                self._own_loop.close()

    def wait_until_formed(self, within: float) -> PartitionTable:
        """Every live node sees exactly the live nodes, and that has settled; their maps'
        versions may differ (whether every node serves one map is for the criteria to
        judge, not a reason to stop here)."""
        return self._settle(self.live_nodes(), "live nodes", within, expect=self.live_nodes())

    # --- questions -----------------------------------------------------------------------

    def client_url(self, node_id: str) -> str:
        return self.urls[node_id]

    def cluster_address(self, node_id: str) -> str:
        raise CannotRunHere(f"the cluster address of external node {node_id} is not known")

    def members(self, node_id: str) -> list[str]:
        with self._checkable():
            return super().members(node_id)

    def table(self, node_id: str) -> PartitionTable | None:
        with self._checkable():
            return super().table(node_id)

    def inspect(self, node_id: str, map_name: str, key: str) -> dict[str, Any]:
        with self._checkable():
            return super().inspect(node_id, map_name, key)

    def logs(self, node_id: str) -> str:
        return "(the log of an external node is not available to the suite)"

    @contextmanager
    def _checkable(self) -> Iterator[None]:
        """A refusal or a missing capability is the cluster's answer, not a failed check."""
        try:
            yield
        except Refused as exc:
            raise CannotRunHere(f"the cluster refused the suite's user: {exc}") from exc
        except Unsupported as exc:
            raise CannotRunHere(f"not checkable with {self.inspector.name}: {exc}") from exc

    def _url(self, node: str) -> str:
        """A node's client URL, by its id or by the URL itself (the seeds are known by their
        URLs only until discovery)."""
        if node in self.urls:
            return self.urls[node]
        if node in self.seed_urls or node in self.urls.values():
            return node
        raise CannotRunHere(f"{node} is not a node of the external cluster's partition map")

    # --- choosing how to inspect ---------------------------------------------------------

    def _make_inspector(self) -> Inspector:
        """The best inspector the seeds offer: ours, then TopGun Rust's admin API, then the
        protocol. A refusal of our routes or of the protocol ends the search: the cluster
        refused the suite's user (a fallback would read whole-map answers as one node's)."""
        token = self._admin_token
        candidates: list[tuple[Callable[[], Inspector], bool]] = [
            (lambda: AdminRoutesInspector(self._url, token), True),
            (lambda: RustAdminInspector(self._url, token, loop=self._protocol_loop()), False),
            (lambda: ProtocolInspector(self._url, token, loop=self._protocol_loop()), True),
        ]
        passed_over: list[str] = []
        for make, refusal_is_final in candidates:
            inspector = make()
            why_not = self._probe(inspector, refusal_is_final)
            if why_not is None:
                self.inspector_choice = "; ".join([f"chose {inspector.name}", *passed_over])
                log.info("external cluster: %s", self.inspector_choice)
                return inspector
            inspector.close()
            passed_over.append(f"not {inspector.name}: {why_not}")
        raise CannotRunHere("not checkable: " + "; ".join(passed_over))

    def _probe(self, inspector: Inspector, refusal_is_final: bool) -> str | None:
        """None if a seed offers ``inspector``'s source; otherwise why not."""
        silent = []
        for seed in self.seed_urls:
            try:
                inspector.probe(seed)
            except Refused as exc:
                if refusal_is_final:
                    raise CannotRunHere(f"the cluster refused the suite's user: {exc}") from exc
                return f"refused the suite's user ({exc})"
            except Unsupported as exc:
                return f"not offered ({exc})"
            except InspectionFailed as exc:
                silent.append(str(exc))
                continue
            return None
        return "no seed answered: " + "; ".join(silent)

    def _protocol_loop(self) -> LoopThread:
        if self._loop is not None:
            return self._loop
        if self._own_loop is None:
            self._own_loop = LoopThread("topgun-external-inspection")
        return self._own_loop

    # --- waiting for the cluster to settle -----------------------------------------------

    def _settle(
        self, nodes: list[str], who: str, within: float, expect: list[str] | None = None
    ) -> PartitionTable:
        """Wait until ``nodes`` (node ids or seed URLs) all see one set of members (equal
        to ``expect`` if given), each serving a map over it, unchanged for
        :data:`SETTLE_QUIET_S`; keep the wait in :attr:`settle_waits` and return the first
        node's map. Raises :class:`ClusterNotSettled` with what they said last."""
        if not nodes:
            raise ClusterError(f"no {who} to wait for")
        urls = [self._url(n) for n in nodes]
        method = self.inspector.name  # chosen before the clock starts: probing is not settling
        began = time.monotonic()
        last: dict[str, _Seen] = self._last_settled
        stable_since = float("-inf")  # what settled before needs no new quiet period

        def settled() -> dict[str, _Seen]:
            nonlocal last, stable_since
            seen = {url: self._seen(url) for url in urls}
            now = time.monotonic()
            if seen != {url: last.get(url) for url in urls}:
                last, stable_since = seen, now
            trouble = _trouble(seen, expect)
            assert not trouble, f"{who} {trouble}"
            quiet = now - stable_since
            assert quiet >= SETTLE_QUIET_S, (
                f"{who} {_describe(seen)}, unchanged for only {quiet:.2f} s"
            )
            return seen

        try:
            seen = eventually(settled, within, f"the {who} settling")
        except WaitTimeout as exc:
            cause = exc.__cause__ or exc
            raise ClusterNotSettled(
                f"the cluster did not settle within {within:g} s: {cause}"
            ) from None
        self._last_settled = seen
        first = seen[urls[0]]
        assert first.table is not None
        versions = {url: s.version for url, s in seen.items()}
        wait = SettleWait(who, time.monotonic() - began, within, first.members, versions, method)
        self.settle_waits.append(wait)
        log.info("external cluster: %s", wait)
        return first.table

    def _seen(self, url: str) -> _Seen:
        try:
            table = self.table(url)
            members = tuple(sorted(self.members(url)))
        except InspectionFailed as exc:
            return _Seen(None, (), f"gives no answer ({exc})")
        if table is None:
            return _Seen(None, members, "serves no partition map yet")
        in_map = tuple(sorted(live_nodes_of(table)))
        if in_map != members:
            problem = f"sees members [{', '.join(members)}], its map [{', '.join(in_map)}]"
            return _Seen(table.version, members, problem, table)
        return _Seen(table.version, members, "", table)


def _trouble(seen: dict[str, _Seen], expect: list[str] | None) -> str:
    """Why ``seen`` is not settled, or "" if it is."""
    if any(s.problem for s in seen.values()) or len({s.members for s in seen.values()}) > 1:
        return _describe(seen)
    members = next(iter(seen.values())).members
    if expect is not None and list(members) != sorted(expect):
        return f"{_describe(seen)}, expected [{', '.join(sorted(expect))}]"
    return ""


def _describe(seen: dict[str, _Seen]) -> str:
    """ "serve maps v3 over [a, b] (ws://…) and v4 over [a, b, c] (ws://…); ws://… gives …"."""
    groups: dict[tuple[int | None, tuple[str, ...]], list[str]] = {}
    troubles = []
    for url, s in seen.items():
        if s.table is not None:
            over = tuple(sorted(live_nodes_of(s.table)))
            groups.setdefault((s.version, over), []).append(url)
        if s.problem:
            troubles.append(f"{url} {s.problem}")
    maps = " and ".join(
        f"v{version} over [{', '.join(over)}] ({', '.join(urls)})"
        for (version, over), urls in groups.items()
    )
    parts = [f"serve maps {maps}"] if maps else []
    return "; ".join([*parts, *troubles]) or "say nothing"
