"""A cluster the suite did not start: a staging cluster, or another TopGun implementation.

``behave -D cluster=external -D seeds=ws://h1:p1,ws://h2:p2,...`` points the features at it.
Tokens are signed with ``TOPGUN_JWT_SECRET`` from the environment, as the nodes' own are.
Nodes are known by the partition map the seeds serve (``GET /admin/partitions`` with an
ADMIN token); what a node holds is read with ``GET /admin/maps/<map>/<key>``.

Whatever this cluster cannot do or show raises :class:`CannotRunHere`, and the behave hooks
report the scenario as *skipped with that reason* — never as passed:

- stopping, killing or starting a node needs a shell command template (``-D stop_cmd='…
  {node_id}'``, ``-D kill_cmd=…``, ``-D start_cmd=…``; ``{node_id}`` and ``{client_url}`` are
  filled in, shell-quoted); a start command must return once the node is started;
- a node without the admin routes makes server-side checks "not checkable";
- a scenario that needs another cluster size, or nodes started with other options, cannot
  run against this one.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import urllib.error
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from topgun.core.table import PartitionTable
from topgun.harness.cluster import ClusterController, ClusterError, ClusterSettings, admin_get

log = logging.getLogger(__name__)
COMMAND_TIMEOUT_S = 60.0
FORMED_TIMEOUT_S = 30.0


class CannotRunHere(ClusterError):
    """This cluster cannot do or show what the step needs: the scenario is skipped, with
    this message as the reason."""


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


class ExternalCluster(ClusterController):
    """Answers the controller's questions about nodes the suite did not start."""

    mode = "external"

    def __init__(
        self,
        seeds: list[str],
        settings: ClusterSettings,
        commands: NodeCommands | None = None,
    ) -> None:
        super().__init__(settings)
        if not seeds:
            raise ClusterError("cluster=external needs -D seeds=ws://host:port,...")
        self.seed_urls = list(seeds)
        self.commands = commands or NodeCommands()
        self.urls: dict[str, str] = {}
        self.stopped_by_us: set[str] = set()

    # --- lifecycle: nothing is started, only discovered ----------------------------------

    def start(self, count: int, prefix: str = "node") -> list[str]:
        table = self._discover()
        self.order = sorted(table.node_ids())
        if len(self.order) != count:
            raise CannotRunHere(
                f"needs a cluster of {count} node(s); the external cluster has "
                f"{len(self.order)} ({', '.join(self.order)})"
            )
        return list(self.order)

    def require_default_options(self, options: dict[str, Any]) -> None:
        if options:
            raise CannotRunHere(
                f"needs nodes started with {options}; the external cluster runs as it was started"
            )

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
        for node_id in sorted(self.stopped_by_us):
            try:
                self.start_node(node_id)
            except ClusterError:
                log.exception("could not start %s again", node_id)
        if self.order and not self.down:
            self.wait_until_formed(FORMED_TIMEOUT_S)

    # --- questions -----------------------------------------------------------------------

    def client_url(self, node_id: str) -> str:
        return self.urls[node_id]

    def cluster_address(self, node_id: str) -> str:
        raise CannotRunHere(f"the cluster address of external node {node_id} is not known")

    def members(self, node_id: str) -> list[str]:
        return list(self._get(node_id, "/health")["members"])

    def table(self, node_id: str) -> PartitionTable | None:
        return PartitionTable.from_wire(self._get(node_id, "/admin/partitions"))

    def inspect(self, node_id: str, map_name: str, key: str) -> dict[str, Any]:
        path = f"/admin/maps/{quote(map_name, safe='')}/{quote(key, safe='')}"
        return dict(self._get(node_id, path))

    def logs(self, node_id: str) -> str:
        return "(the log of an external node is not available to the suite)"

    def _discover(self) -> PartitionTable:
        errors = []
        for url in self.seed_urls:
            try:
                table = PartitionTable.from_wire(
                    admin_get(url, "/admin/partitions", self._admin_token)
                )
            except urllib.error.HTTPError as exc:
                errors.append(f"{url}: HTTP {exc.code}")
                continue
            except (urllib.error.URLError, OSError, ValueError) as exc:
                errors.append(f"{url}: {exc}")
                continue
            self.urls = {n.node_id: n.websocket for n in table.nodes}
            return table
        raise CannotRunHere(
            "not checkable: no seed serves GET /admin/partitions to an ADMIN token signed with "
            f"TOPGUN_JWT_SECRET ({'; '.join(errors)})"
        )

    def _get(self, node_id: str, path: str) -> Any:
        try:
            return admin_get(self.client_url(node_id), path, self._admin_token)
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403, 404, 405, 501):
                raise CannotRunHere(
                    f"not checkable: {node_id} answers GET {path} with HTTP {exc.code}"
                ) from exc
            raise AssertionError(f"{node_id} answered GET {path} with HTTP {exc.code}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise AssertionError(f"{node_id} did not answer {path}: {exc}") from exc
