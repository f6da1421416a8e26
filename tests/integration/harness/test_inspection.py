"""The inspectors against real in-process nodes.

On a single node its own store is the whole map, so what a plain client reads through the
protocol must equal what the admin routes and the node object say; on three nodes the
protocol's tables and members must equal the admin routes'. The external controller, pointed
at our nodes, must choose our admin routes, name a refusal as such, and give up waiting for a
cluster that never settles with a message that says what the seeds served.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from topgun.harness import ClusterSettings, EmbeddedCluster, LoopThread
from topgun.harness.cluster import DEFAULT_SECRET
from topgun.harness.external import CannotRunHere, ClusterNotSettled, ExternalCluster
from topgun.harness.inspection import (
    AdminRoutesInspector,
    InspectionFailed,
    Inspector,
    ProtocolInspector,
    Refused,
)
from topgun.harness.security import put_op
from topgun.harness.wire import WireClient
from topgun.server.auth import make_token
from topgun.server.http_routes import json_safe

pytestmark = pytest.mark.timeout(90)

MAP = "inspected"


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    loop = LoopThread()
    try:
        yield loop
    finally:
        loop.close()


def _cluster(loop: LoopThread, count: int, prefix: str) -> Iterator[EmbeddedCluster]:
    cluster = EmbeddedCluster(loop)
    try:
        cluster.start(count, prefix)
        cluster.wait_until_formed(10)
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(scope="module")
def single(loop: LoopThread) -> Iterator[EmbeddedCluster]:
    yield from _cluster(loop, 1, "solo")


@pytest.fixture(scope="module")
def trio(loop: LoopThread) -> Iterator[EmbeddedCluster]:
    yield from _cluster(loop, 3, "node")


def _write(cluster: EmbeddedCluster, loop: LoopThread, ops: list[dict[str, Any]]) -> None:
    async def write() -> None:
        client = await WireClient.open(cluster.seeds()[0], cluster.admin_token())
        try:
            ack = await client.write(ops)
            assert all(r.get("success") for r in ack.get("results", [])), ack
        finally:
            await client.close()

    loop.run(write(), 15)


def _inspectors(cluster: EmbeddedCluster, loop: LoopThread) -> tuple[Inspector, Inspector]:
    token = cluster.admin_token()
    return (
        AdminRoutesInspector(cluster.client_url, token),
        ProtocolInspector(cluster.client_url, token, loop=loop),
    )


def test_on_a_single_node_the_protocol_reads_what_the_admin_routes_read(
    single: EmbeddedCluster, loop: LoopThread
) -> None:
    _write(
        single,
        loop,
        [
            put_op("1", MAP, "key-1", {"v": 1, "tags": ["a", "b"]}),
            put_op("2", MAP, "blob", b"\x00\xffbytes"),
            put_op("3", MAP, "gone", "soon removed"),
        ],
    )
    _write(single, loop, [put_op("4", MAP, "gone", None)])
    admin, protocol = _inspectors(single, loop)
    node = single.order[0]
    for key in ("key-1", "blob", "gone", "never-written"):
        by_admin = admin.inspect(node, MAP, key)
        by_protocol = protocol.inspect(node, MAP, key)
        by_object = single.inspect(node, MAP, key)
        assert by_admin.pop("method") == "our admin routes"
        assert by_protocol.pop("method") == protocol.name
        assert by_object.pop("method") == "the node objects (in process)"
        assert by_protocol == by_admin, key
        assert json_safe(by_object) == by_admin, key
    assert admin.inspect(node, MAP, "key-1")["record"]["value"] == {"v": 1, "tags": ["a", "b"]}
    assert admin.inspect(node, MAP, "gone")["record"]["value"] is None  # a tombstone
    assert admin.inspect(node, MAP, "never-written")["record"] is None
    assert protocol.table(node) == admin.table(node)
    assert protocol.members(node) == admin.members(node) == [node]


def test_on_three_nodes_tables_and_members_agree_and_roles_come_from_the_table(
    trio: EmbeddedCluster, loop: LoopThread
) -> None:
    admin, protocol = _inspectors(trio, loop)
    for node in trio.live_nodes():
        table = protocol.table(node)
        assert table is not None
        assert table == admin.table(node)
        in_node = trio.table(node)  # it also knows the epoch, which the wire does not carry
        assert in_node is not None and in_node.same_contents(table)
        assert in_node.version == table.version
        assert sorted(protocol.members(node)) == sorted(admin.members(node)) == trio.live_nodes()
        held = protocol.inspect(node, MAP, "key-1")
        assert held["role"] == admin.inspect(node, MAP, "key-1")["role"]
        assert (
            held["nodeId"] == node
            and held["partitionId"] == trio.inspect(node, MAP, "key-1")["partitionId"]
        )


def test_a_refused_or_silent_node_is_said_so(trio: EmbeddedCluster, loop: LoopThread) -> None:
    strangers = ProtocolInspector(trio.client_url, trio.token("stranger", ("USER",)), loop=loop)
    with pytest.raises(Refused, match=r"answered GET /admin/partitions with HTTP 403"):
        AdminRoutesInspector(trio.client_url, trio.token("stranger")).table("node-1")
    forged = make_token("another-secret-0123456789abcdef0123", sub="x", roles=["ADMIN"])
    with pytest.raises(Refused, match="AUTH_FAIL"):
        ProtocolInspector(trio.client_url, forged, loop=loop).table("node-1")
    assert strangers.table("node-1") is not None  # the map is for every signed-in client
    with socket.socket() as closed:  # bound, not listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"ws://127.0.0.1:{closed.getsockname()[1]}"
        nowhere = ProtocolInspector({"gone": url}, trio.admin_token(), loop=loop)
        with pytest.raises(InspectionFailed, match="gave the suite's protocol client no"):
            nowhere.table("gone")


def test_external_mode_chooses_our_admin_routes_on_our_nodes(trio: EmbeddedCluster) -> None:
    external = ExternalCluster(trio.seeds(), ClusterSettings(DEFAULT_SECRET))
    try:
        assert external.start(3) == trio.live_nodes()
        assert isinstance(external.inspector, AdminRoutesInspector)
        assert external.inspector_choice == "chose our admin routes"
        assert external.inspect("node-2", MAP, "absent")["method"] == "our admin routes"
        [wait] = external.settle_waits
        assert wait.who == "seeds" and wait.members == ("node-1", "node-2", "node-3")
        assert 0 < wait.seconds < 30 and wait.method == "our admin routes"
        assert "agreed on members [node-1, node-2, node-3]" in str(wait)
    finally:
        external.close()


def test_external_mode_reports_a_refused_user_as_not_run(trio: EmbeddedCluster) -> None:
    external = ExternalCluster(trio.seeds(), ClusterSettings(DEFAULT_SECRET), roles=("USER",))
    try:
        with pytest.raises(CannotRunHere) as refused:
            external.start(3)
    finally:
        external.close()
    assert str(refused.value).startswith("the cluster refused the suite's user: ")
    assert "HTTP 403" in str(refused.value)


def test_external_mode_uses_a_given_token_as_it_is(trio: EmbeddedCluster) -> None:
    token = trio.admin_token()
    external = ExternalCluster(trio.seeds()[:1], ClusterSettings(""), token=token)
    try:
        assert external.admin_token() == token
        assert external.start(3) == trio.live_nodes()
        with pytest.raises(CannotRunHere, match="no TOPGUN_JWT_SECRET"):
            external.token("writer")
    finally:
        external.close()


def test_external_mode_gives_up_on_a_cluster_that_never_settles(
    single: EmbeddedCluster, trio: EmbeddedCluster
) -> None:
    """Two clusters given as one: the seeds serve maps over different members for good."""
    seeds = single.seeds() + trio.seeds()[:1]
    external = ExternalCluster(seeds, ClusterSettings(DEFAULT_SECRET), form_timeout=1.0)
    try:
        with pytest.raises(ClusterNotSettled) as never:
            external.start(3)
    finally:
        external.close()
    message = str(never.value)
    assert message.startswith("the cluster did not settle within 1 s: seeds serve maps v")
    assert " over [solo-1] (" in message and " over [node-1, node-2, node-3] (" in message
    assert external.settle_waits == []
