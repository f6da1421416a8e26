"""The external-cluster controller against real nodes it did not start (in-process here):
it finds them through the admin routes, answers the same questions as the local
controllers, and says "cannot run here" instead of pretending."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from topgun.harness import ClusterSettings, EmbeddedCluster, LoopThread
from topgun.harness.external import CannotRunHere, ExternalCluster, NodeCommands
from topgun.harness.world import require_plain_nodes

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def nodes() -> Iterator[EmbeddedCluster]:
    loop = LoopThread()
    cluster = EmbeddedCluster(loop)
    try:
        cluster.start(3)
        cluster.wait_until_formed(10)
        yield cluster
    finally:
        cluster.close()
        loop.close()


def _external(nodes: EmbeddedCluster, commands: NodeCommands | None = None) -> ExternalCluster:
    return ExternalCluster(nodes.seeds()[:1], ClusterSettings(nodes.settings.jwt_secret), commands)


def test_finds_the_nodes_and_answers_like_a_local_controller(nodes: EmbeddedCluster) -> None:
    external = _external(nodes)
    assert external.start(3) == ["node-1", "node-2", "node-3"]
    assert external.seeds() == nodes.seeds()
    table = external.wait_until_formed(5)
    assert table.version == nodes.any_table().version
    assert external.owner_of("key-1") == nodes.owner_of("key-1")
    held = external.inspect("node-1", "test", "absent")
    assert held["record"] is None and held["nodeId"] == "node-1"
    external.close()  # stopped nothing, starts nothing


def test_what_it_cannot_do_is_said_not_pretended(nodes: EmbeddedCluster) -> None:
    external = _external(nodes)
    with pytest.raises(CannotRunHere, match="needs a cluster of 1 node"):
        external.start(1)
    external.start(3)
    with pytest.raises(CannotRunHere, match="not run here: needs nodes started with"):
        require_plain_nodes("external", {"forward_writes": False}, None)
    with pytest.raises(CannotRunHere, match="not run here: needs a node started with a policy"):
        require_plain_nodes("external", {}, Path("policies.json"))
    with pytest.raises(CannotRunHere, match=r"needs node control.*stop_cmd"):
        external.shutdown("node-2")
    with pytest.raises(CannotRunHere, match="needs a new node node-4"):
        external.start_node("node-4")
    assert external.live_nodes() == ["node-1", "node-2", "node-3"]


def test_a_token_the_cluster_refuses_makes_checks_not_checkable(nodes: EmbeddedCluster) -> None:
    wrong = ExternalCluster(nodes.seeds(), ClusterSettings("another-secret-0123456789abcdef0123"))
    with pytest.raises(CannotRunHere, match=r"the cluster refused the suite's user: .*HTTP 401"):
        wrong.start(3)


def test_node_commands_get_the_node_id_quoted_and_restart_what_was_stopped(
    nodes: EmbeddedCluster, tmp_path: Path
) -> None:
    log = tmp_path / "commands"
    record = f"printf '%s %s\\n' {{node_id}} {{client_url}} >> {log}"
    commands = NodeCommands(stop=f"echo stop; {record}", start=f"echo start; {record}")
    external = _external(nodes, commands)
    external.start(3)
    external.shutdown("node-2")  # the command only records: node-2 keeps running
    assert external.live_nodes() == ["node-1", "node-3"]
    external.close()  # starts node-2 again and waits until the cluster has formed
    url = nodes.client_url("node-2")
    assert log.read_text().splitlines() == [f"node-2 {url}", f"node-2 {url}"]
    with pytest.raises(Exception, match="exited 3"):
        NodeCommands(stop="exit 3").run("stop", "node-1", url)
