"""Split-brain safety with in-process nodes: a cut-off node refuses writes and rejoins, and
records stranded on a node that no longer owns them reach the owner and its backups."""

from __future__ import annotations

from server_testkit import (
    WireClient,
    owner_of,
    put,
    run,
    start_cluster,
    stop_all,
    token,
)

from topgun.core.hashing import partition_id
from topgun.core.hlc import Timestamp
from topgun.core.records import LWWRecord
from topgun.harness.waiting import wait_until
from topgun.server import ServerNode


def cut_off(node: ServerNode, others: list[ServerNode]) -> list[str]:
    """A network cut around ``node``: nothing flows either way on its peer links and it
    cannot dial anyone; returns its configured peers, for :func:`heal`."""
    for link in node.membership.all_links():
        link.ws.transport.pause_reading()
    for other in others:
        for link in other.membership.links.get(node.node_id, []):
            link.ws.transport.pause_reading()
    peers, node.config.peers = node.config.peers, []
    return peers


def test_cut_off_node_answers_cluster_minority_and_rejoins_when_it_can() -> None:
    async def scenario() -> None:
        nodes = await start_cluster(["node-a", "node-b", "node-c"])
        try:
            a, b, c = nodes
            key = next(f"k{i}" for i in range(1000) if owner_of(nodes, f"k{i}") is c)
            w = await WireClient.open(c.client_url, token())
            assert (await w.write([put("1", key, 1)]))["results"][0]["success"]
            version = c.table.version if c.table else 0
            peers = cut_off(c, [a, b])
            await wait_until(
                lambda: (
                    all("node-c" not in n.members() for n in (a, b)) and not c.membership.members
                ),
                5.0,
                "the majority dropped node-c, and node-c sees it is alone",
            )
            assert c.health()["quorum"] is False and not c.partitions.has_quorum()
            ack = await w.write([put("2", key, 2), put("3", "other", 3)])
            errors = [r["error"] for r in ack["results"]]
            assert all(e.startswith("CLUSTER_MINORITY") for e in errors), errors
            assert c.store.get("m", key).value == 1  # type: ignore[union-attr]  # not applied
            assert c.table is not None and c.table.version == version  # it planned nothing
            assert c.metrics.ops_minority._value.get() == 2  # type: ignore[attr-defined]
            # the majority went on: node-c's partitions were taken over
            await wait_until(
                lambda: a.table is not None and "node-c" not in a.table.node_ids(),
                5.0,
                "the majority published a table without node-c",
            )
            w2 = await WireClient.open(a.client_url, token())
            assert (await w2.write([put("4", key, 4)]))["results"][0]["success"]
            # healed: node-c dials its peers again and serves the majority's table
            c.config.peers = peers
            await wait_until(
                lambda: c.partitions.has_quorum() and c.table is not None
                and a.table is not None and c.table.version >= a.table.version
                and "node-c" in a.members(),
                10.0,
                "node-c rejoined",
            )  # fmt: skip
            await w.close()
            await w2.close()
        finally:
            await stop_all(nodes)

    run(scenario())


def test_records_stranded_on_a_former_owner_reach_the_owner_and_its_backups() -> None:
    """Records a node holds for a partition it does not own (applied while it was cut off,
    never confirmed) are found by digest comparison and merged into every current replica;
    newer records at the owner are not overwritten by older stranded ones."""

    async def scenario() -> None:
        nodes = await start_cluster(["node-a", "node-b", "node-c"])
        try:
            await wait_until(
                lambda: all(n.partitions.is_safe() for n in nodes), 10.0, "a settled cluster"
            )
            t = nodes[0].table
            assert t is not None
            pid = partition_id("stranded-1")
            holder = next(n for n in nodes if n.node_id not in t.replicas_of(pid))
            replicas = [n for n in nodes if n.node_id in t.replicas_of(pid)]
            owner = next(n for n in nodes if n.node_id == t.owners[pid])
            old, new = Timestamp(1000, 0, "x"), Timestamp(2000, 0, "x")
            holder.store.merge("m", "stranded-1", LWWRecord("lost-once", new))
            holder.store.merge("m", "mine-older", LWWRecord("old", old))
            owner.store.merge("m", "mine-older", LWWRecord("newer", new))
            await wait_until(
                lambda: all(
                    (r := n.store.get("m", "stranded-1")) is not None and r.value == "lost-once"
                    for n in replicas
                ),
                10.0,
                "the stranded record is on the owner and its backups",
            )
            got = owner.store.get("m", "mine-older")
            assert got is not None and got.value == "newer"  # LWW: the newer stays
            assert holder.metrics.repaired._value.get() >= 1  # type: ignore[attr-defined]
            pushed = holder.metrics.repaired._value.get()  # type: ignore[attr-defined]
            # reconciled: later turns compare digests and move nothing more
            await wait_until(
                lambda: holder.healing._reconciled.get(pid, ("", {}))[0] == owner.node_id,
                5.0,
                "the holder recorded the partition as reconciled",
            )
            for _ in range(3):
                await holder.healing.turn()
            assert holder.metrics.repaired._value.get() == pushed  # type: ignore[attr-defined]
        finally:
            await stop_all(nodes)

    run(scenario())
