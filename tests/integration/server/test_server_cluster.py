"""Cluster behaviour of in-process nodes, checked over the wire with a plain client."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request

import pytest
from server_testkit import (
    CLUSTER_SECRET,
    WireClient,
    make_node,
    owner_of,
    put,
    run,
    start_cluster,
    stop_all,
    token,
)
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from topgun.core.codec import decode_frame, pack
from topgun.core.hashing import partition_id
from topgun.core.hlc import Timestamp
from topgun.core.messages import ClientOp, PartitionMap
from topgun.core.record_wire import encode_records
from topgun.core.records import LWWRecord
from topgun.harness.nodes import formed
from topgun.harness.waiting import wait_until

pytestmark = pytest.mark.timeout(90)

KEY1_PID = partition_id("key-1")


def _http(url: str, path: str, bearer: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url.replace("ws://", "http://") + path)
    if bearer:
        req.add_header("Authorization", f"Bearer {bearer}")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def http(url: str, path: str, bearer: str | None = None) -> tuple[int, bytes]:
    return await asyncio.to_thread(_http, url, path, bearer)


def test_table_is_shared_and_advertises_client_urls() -> None:
    async def scenario() -> None:
        nodes = await start_cluster(["node-a", "node-b", "node-c"])
        try:
            versions = {n.table.version for n in nodes if n.table}
            assert len(versions) == 1
            t = nodes[0].table
            assert t is not None
            urls = {n.node_id: n.client_url for n in nodes}
            assert {i.node_id: i.websocket for i in t.nodes} == urls
            assert all(len(t.backups_of(p)) == 1 for p in range(t.partition_count))
            # every node answers PARTITION_MAP_REQUEST with the same version
            for n in nodes:
                c = await WireClient.open(n.client_url, token())
                await c.send({"type": "PARTITION_MAP_REQUEST", "payload": {"currentVersion": 0}})
                pm = await c.recv("PARTITION_MAP")
                assert pm["payload"]["version"] == t.version
                owner = pm["payload"]["partitions"][KEY1_PID]["ownerNodeId"]
                assert owner == t.owners[KEY1_PID]
                # not newer than the client's: no answer; a PING gets through instead
                await c.send(
                    {"type": "PARTITION_MAP_REQUEST", "payload": {"currentVersion": t.version}}
                )
                await c.send({"type": "PING", "timestamp": 1.0})
                assert (await c.recv())["type"] == "PONG"
                await c.close()
            assert sorted(nodes[1].members()) == ["node-a", "node-b", "node-c"]
        finally:
            await stop_all(nodes)

    run(scenario())


def test_write_via_any_node_lands_on_owner_and_backup_then_survives_owner_kill() -> None:
    async def scenario() -> None:
        nodes = await start_cluster(["node-a", "node-b", "node-c"])
        try:
            t = nodes[0].table
            assert t is not None
            owner = owner_of(nodes, "key-1")
            backup = next(n for n in nodes if n.node_id == t.backups[KEY1_PID][0])
            other = next(n for n in nodes if n not in (owner, backup))
            c = await WireClient.open(other.client_url, token())  # forwarded write
            ack = await c.write([put("7", "key-1", {"v": 1})])
            assert ack["lastId"] == "7" and ack["results"][0]["success"] is True
            for n in (owner, backup):
                assert n.inspect("m", "key-1")["record"]["value"] == {"v": 1}
            assert other.inspect("m", "key-1") == {
                "nodeId": other.node_id,
                "partitionId": KEY1_PID,
                "role": "none",
                "record": None,
            }
            admin = token(["ADMIN"])
            status, body = await http(backup.client_url, "/admin/maps/m/key-1", admin)
            assert status == 200 and json.loads(body)["role"] == "backup"

            killed_at = time.monotonic()
            await owner.kill()
            survivors = [backup, other]
            await wait_until(
                lambda: all(
                    s.table is not None and s.table.version > t.version
                    and s.table.owners[KEY1_PID] == backup.node_id
                    for s in survivors
                ),
                2.0, "former backup promoted everywhere",
            )  # fmt: skip
            assert time.monotonic() - killed_at < 2.0
            assert backup.inspect("m", "key-1")["record"]["value"] == {"v": 1}
            await c.recv("PARTITION_MAP")  # pushed to connected clients
            for i, s in enumerate(survivors):
                c2 = await WireClient.open(s.client_url, token())
                ack = await c2.write([put(str(10 + i), "key-1", {"v": 2 + i})])
                assert ack["results"][0]["success"] is True, ack
                t2 = backup.table
                assert t2 is not None
                replicas = t2.replicas_of(KEY1_PID)
                assert len(replicas) >= 2
                for n in survivors:
                    if n.node_id in replicas:
                        assert n.inspect("m", "key-1")["record"]["value"] == {"v": 2 + i}
                await c2.close()
            await c.close()
        finally:
            await stop_all(nodes)

    run(scenario())


def test_join_migrates_data_before_ownership_moves() -> None:
    async def scenario() -> None:
        nodes = await start_cluster(["node-b", "node-c"])
        try:
            c = await WireClient.open(nodes[0].client_url, token())
            keys = [f"k{i}" for i in range(300)]
            ack = await c.write([put(str(i + 1), k, i) for i, k in enumerate(keys)])
            assert all(r["success"] for r in ack["results"])
            # the newcomer has the smallest id (it becomes the authority once in the table) and
            # knows only node-c: it must meet node-b before planning anything
            newcomer = make_node("node-a", [nodes[1].cluster_address])
            await newcomer.start()
            nodes.append(newcomer)

            seen_owner_without_data = []

            dropped = []

            def check() -> bool:
                for n in nodes:
                    if n.table is not None and not {"node-b", "node-c"} <= set(n.table.node_ids()):
                        dropped.append((n.node_id, n.table.version))
                t = newcomer.table
                if t is not None:
                    for k in keys:
                        if (
                            t.owners[partition_id(k)] == "node-a"
                            and newcomer.store.get("m", k) is None
                        ):
                            seen_owner_without_data.append(k)
                return formed(nodes)

            await wait_until(check, 10.0, "converged with the newcomer")
            assert not seen_owner_without_data
            assert not dropped
            for k in keys:
                t = newcomer.table
                assert t is not None
                for rid in t.replicas_of(partition_id(k)):
                    holder = next(n for n in nodes if n.node_id == rid)
                    assert holder.store.get("m", k) is not None, (k, rid)
            await c.close()
        finally:
            await stop_all(nodes)

    run(scenario())


def test_graceful_shutdown_hands_over_and_closes_clients_1001() -> None:
    async def scenario() -> None:
        nodes = await start_cluster(["node-a", "node-b", "node-c"])
        try:
            owner = owner_of(nodes, "key-1")
            c = await WireClient.open(owner.client_url, token())
            ack = await c.write([put("1", "key-1", "x")])
            assert ack["results"][0]["success"]
            await owner.shutdown()
            assert (await c.recv("SHUTDOWN_PENDING"))["retryAfter"] == 5000
            # a client that ignores the notice still gets the table changes, then 1001
            with pytest.raises(ConnectionClosed) as info:
                for _ in range(10):
                    extra = decode_frame(await asyncio.wait_for(c.ws.recv(), 5))
                    assert all(isinstance(m, PartitionMap) for m in extra), extra
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001
            rest = [n for n in nodes if n is not owner]
            t = rest[0].table
            assert t is not None and owner.node_id not in t.node_ids()
            assert all(n.table and n.table.version == t.version for n in rest)
            new_owner = next(n for n in rest if n.node_id == t.owners[KEY1_PID])
            assert new_owner.inspect("m", "key-1")["record"]["value"] == "x"
            assert not owner.ctx.tasks
        finally:
            await stop_all(nodes)

    run(scenario())


def test_stranger_without_cluster_secret_cannot_join() -> None:
    async def scenario() -> None:
        nodes = await start_cluster(["node-a", "node-b"])
        stranger = make_node(
            "node-x",
            [nodes[0].cluster_address],
            cluster_secret="wrong-secret-xxxxxxxxxxxxxxxxxxxxxx",
        )
        try:
            await stranger.start()
            registry = nodes[0].metrics.registry
            await wait_until(
                lambda: (registry.get_sample_value("topgun_peer_auth_failures_total") or 0) >= 1,
                what="node-a refused the stranger's handshake",
            )
            assert "node-x" not in nodes[0].members()
            assert stranger.members() == ["node-x"]
            # a raw peer connection that does not authenticate gets nothing done
            async with connect(f"ws://{nodes[0].cluster_address}") as ws:
                await ws.recv()  # CHALLENGE
                evil = encode_records([("m", "evil", LWWRecord(1, Timestamp(1, 0, "x")))])
                await ws.send(pack({"t": "REPL", "id": 1, "recs": evil}))
                with pytest.raises(ConnectionClosed):
                    for _ in range(3):
                        await asyncio.wait_for(ws.recv(), 3)
            assert all(n.store.get("m", "evil") is None for n in nodes)
            assert CLUSTER_SECRET not in repr(nodes[0].health())
        finally:
            await stop_all([*nodes, stranger])

    run(scenario())


def test_query_sub_merges_across_owners() -> None:
    async def scenario() -> None:
        nodes = await start_cluster(["node-a", "node-b", "node-c"])
        try:
            c = await WireClient.open(nodes[0].client_url, token())
            ops = [
                put(
                    str(i + 1),
                    f"u{i}",
                    {"team": "red" if i % 2 else "blue", "n": i},
                    map_name="users",
                )
                for i in range(30)
            ]
            ack = await c.write(ops)
            assert all(r["success"] for r in ack["results"])
            tomb = put("99", "u1", None, map_name="users", millis=int(time.time() * 1000) + 5)
            tomb["opType"] = "REMOVE"
            await c.write([tomb])
            c2 = await WireClient.open(nodes[2].client_url, token())
            await c2.send(
                {
                    "type": "QUERY_SUB",
                    "payload": {
                        "queryId": "q1",
                        "mapName": "users",
                        "query": {"where": {"team": "red"}},
                    },
                }
            )
            resp = (await c2.recv("QUERY_RESP"))["payload"]
            keys = sorted(r["key"] for r in resp["results"])
            assert keys == sorted(f"u{i}" for i in range(30) if i % 2 and i != 1)
            await c2.send(
                {
                    "type": "QUERY_SUB",
                    "payload": {
                        "queryId": "q2",
                        "mapName": "users",
                        "query": {"where": {"_key": "u4"}},
                    },
                }
            )
            resp = (await c2.recv("QUERY_RESP"))["payload"]
            assert resp["results"] == [{"key": "u4", "value": {"team": "blue", "n": 4}}]
            await c2.send({"type": "QUERY_UNSUB", "payload": {"queryId": "q2"}})
            await c.close()
            await c2.close()
        finally:
            await stop_all(nodes)

    run(scenario())


def test_http_routes() -> None:
    async def scenario() -> None:
        nodes = await start_cluster(["node-a", "node-b"])
        try:
            url = nodes[1].client_url
            status, body = await http(url, "/health")
            health = json.loads(body)
            assert status == 200 and health["nodeId"] == "node-b"
            assert health["members"] == ["node-a", "node-b"] and health["status"] == "UP"
            assert health["partitionMapVersion"] == nodes[1].table.version  # type: ignore[union-attr]
            status, body = await http(url, "/metrics")
            assert status == 200 and b"topgun_partition_table_version" in body
            assert b"\ntopgun_peer_auth_failures_total " in body
            assert (await http(url, "/admin/partitions"))[0] == 401
            assert (await http(url, "/admin/partitions", "garbage"))[0] == 401
            assert (await http(url, "/admin/partitions", token()))[0] == 403
            status, body = await http(url, "/admin/partitions", token(["ADMIN"]))
            assert status == 200 and json.loads(body)["version"] == nodes[1].table.version  # type: ignore[union-attr]
            assert (await http(url, "/admin/maps/m/nokey"))[0] == 401
        finally:
            await stop_all(nodes)

    run(scenario())


def test_thousand_writes_across_kill_restart_cycles_are_all_readable() -> None:
    """The victim is killed and restarted (same id, empty memory) while writes go on and
    before the cluster settled; refused ops are retried like a client would."""

    async def scenario() -> None:

        nodes = await start_cluster(["node-a", "node-b", "node-c"])
        acked: dict[str, int] = {}
        errors: set[str] = set()
        try:
            victim_id = "node-b"
            entry = nodes[0]
            c = await WireClient.open(entry.client_url, token())
            seq = 0
            for cycle in range(4):
                for batch in range(5):
                    if batch == 1:
                        victim = next(n for n in nodes if n.node_id == victim_id)
                        await victim.kill()
                        nodes.remove(victim)
                    if batch == 3:
                        reborn = make_node(victim_id, [n.cluster_address for n in nodes])
                        await reborn.start()
                        nodes.append(reborn)
                    ops = []
                    for _ in range(50):
                        seq += 1
                        ops.append(put(str(seq), f"key-{seq}", seq))
                    deadline = time.monotonic() + 10
                    while ops:
                        assert time.monotonic() < deadline, (cycle, batch, errors)
                        ack = await c.write(ops, timeout=10)
                        retry = []
                        for op, r in zip(ops, ack["results"], strict=True):
                            if r["success"]:
                                acked[op["key"]] = op["record"]["value"]
                            else:
                                errors.add(r["error"])
                                retry.append(op)
                        ops = retry
                        if ops:
                            await asyncio.sleep(0.02)  # a client's retry back-off
            assert len(acked) == 1000
            # refusals (not applied) and unknown outcomes (resent): never a final rejection
            retryable = {"NOT_OWNER", "CLUSTER_MINORITY", "OUTCOME_UNKNOWN", "REPLICATION_TIMEOUT"}
            assert {e.split(":")[0] for e in errors} <= retryable, errors
            await wait_until(lambda: formed(nodes), 15.0, "converged at the end")
            q = await WireClient.open(nodes[1].client_url, token())
            await q.send(
                {"type": "QUERY_SUB", "payload": {"queryId": "all", "mapName": "m", "query": {}}}
            )
            resp = (await q.recv("QUERY_RESP"))["payload"]["results"]
            rows = {r["key"]: r["value"] for r in resp}
            missing = [k for k in acked if rows.get(k) != acked[k]]
            assert not missing, missing[:10]
            t = nodes[0].table
            assert t is not None
            for k in acked:
                for rid in t.replicas_of(partition_id(k)):
                    holder = next(n for n in nodes if n.node_id == rid)
                    assert holder.store.get("m", k) is not None, (k, rid)
            await c.close()
            await q.close()
        finally:
            await stop_all(nodes)

    run(scenario(), timeout=80)


def test_forwarded_op_to_non_owner_is_refused_not_dropped() -> None:
    async def scenario() -> None:
        nodes = await start_cluster(["node-a", "node-b", "node-c"])
        try:
            owner = owner_of(nodes, "key-1")
            non_owner = next(n for n in nodes if n is not owner)
            op = ClientOp.from_wire(put("1", "key-1", 1))
            [outcome] = await non_owner.execute([op], forwarded=True)
            assert outcome.error == "NOT_OWNER" and outcome.hint is not None
            assert outcome.hint.current_owner == owner.node_id
            assert non_owner.store.get("m", "key-1") is None
        finally:
            await stop_all(nodes)

    run(scenario())


def test_live_query_updates_follow_writes_on_any_owner() -> None:
    async def scenario() -> None:
        nodes = await start_cluster(["node-a", "node-b", "node-c"])
        try:
            sub = await WireClient.open(nodes[0].client_url, token())
            query = {"where": {"team": "red"}}
            await sub.send(
                {
                    "type": "QUERY_SUB",
                    "payload": {"queryId": "live", "mapName": "p", "query": query},
                }
            )
            assert (await sub.recv("QUERY_RESP"))["payload"]["results"] == []
            w = await WireClient.open(nodes[2].client_url, token())
            keys = ["key-0", "key-1", "key-4", "key-5", "key-10", "key-11"]  # all three owners
            assert {owner_of(nodes, k).node_id for k in keys} == {"node-a", "node-b", "node-c"}
            ack = await w.write(
                [put(str(i + 1), k, {"team": "red"}, map_name="p") for i, k in enumerate(keys)]
            )
            assert all(r["success"] for r in ack["results"])
            got = [(await sub.recv("QUERY_UPDATE"))["payload"] for _ in keys]
            assert sorted(u["key"] for u in got) == sorted(keys) and {u["type"] for u in got} == {
                "ENTER"
            }
            await w.write([put("9", "key-0", {"team": "blue"}, map_name="p")])
            leave = (await sub.recv("QUERY_UPDATE"))["payload"]
            assert (leave["key"], leave["type"], leave["value"]) == ("key-0", "LEAVE", None)
            await sub.send({"type": "QUERY_UNSUB", "payload": {"queryId": "live"}})
            await sub.send({"type": "PING", "timestamp": 1.0})
            await sub.recv("PONG")
            await w.write([put("10", "key-1", {"team": "red", "v": 2}, map_name="p")])
            await sub.send({"type": "PING", "timestamp": 2.0})
            await sub.recv("PONG")
            assert not [m for m in sub.inbox if m["type"] == "QUERY_UPDATE"]
            await wait_until(lambda: not any(n.queries.wants("p") for n in nodes), 2.0)
            await sub.close()
            await w.close()
        finally:
            await stop_all(nodes)

    run(scenario())


def test_silent_peer_is_declared_dead_after_the_failure_timeout() -> None:
    async def scenario() -> None:
        nodes = await start_cluster(["node-a", "node-b", "node-c"])
        try:
            hung = nodes[2]
            t = nodes[0].table
            assert t is not None
            # freeze node-c as a hung process would be: no heartbeats, no reads, no accepts
            hung._maintenance_task.cancel()
            for link in hung.membership.all_links():
                link.ws.transport.pause_reading()
            assert hung._cluster_server is not None
            hung._cluster_server.close(close_connections=False)
            started = time.monotonic()
            await wait_until(
                lambda: all("node-c" not in n.members() for n in nodes[:2]), 3.0, "c declared dead"
            )
            elapsed = time.monotonic() - started
            cfg = nodes[0].config  # phi may declare it before max_silence, never before min
            assert cfg.min_silence_s - 0.05 <= elapsed < cfg.max_silence_s + 1.5, elapsed
            await wait_until(
                lambda: all(
                    n.table is not None and "node-c" not in n.table.node_ids() for n in nodes[:2]
                ),
                2.0,
            )
        finally:
            await stop_all(nodes)

    run(scenario())


def test_authority_and_then_another_node_leave_gracefully_without_loss() -> None:
    async def scenario() -> None:
        nodes = await start_cluster(["node-a", "node-b", "node-c"])
        try:
            c = await WireClient.open(nodes[2].client_url, token())
            ops = [put(str(i + 1), f"g{i}", i) for i in range(100)]
            assert all(r["success"] for r in (await c.write(ops))["results"])
            assert nodes[0].authority() == "node-a"
            await nodes[0].shutdown()
            rest = nodes[1:]

            await wait_until(lambda: formed(rest), 5.0, "b+c converged")
            assert rest[0].authority() == "node-b"
            await nodes[1].shutdown()
            last = nodes[2]
            await wait_until(lambda: formed([last]), 5.0, "c alone")
            assert all(last.store.get("m", f"g{i}") is not None for i in range(100))
            ack = await c.write([put("500", "g1", "after")])
            assert ack["results"][0]["success"]
            await c.close()
        finally:
            await stop_all(nodes)

    run(scenario())


def test_every_single_write_is_acked_replicated_with_the_backup_current_at_ack_time() -> None:
    """Ack latency is measured by benchmarks/ack_latency.py, not asserted here."""

    async def scenario() -> None:
        nodes = await start_cluster(["node-a", "node-b", "node-c"])
        try:
            owner = owner_of(nodes, "key-1")
            t = owner.table
            assert t is not None
            backup = next(n for n in nodes if n.node_id == t.backups[KEY1_PID][0])
            c = await WireClient.open(owner.client_url, token())
            base = int(time.time() * 1000)
            for i in range(400):
                ack = await c.write([put(str(i + 1), "key-1", i, millis=base, counter=i)])
                assert ack["results"][0]["achievedLevel"] == "REPLICATED"
                assert backup.store.get("m", "key-1").value == i  # type: ignore[union-attr]
            await c.close()
        finally:
            await stop_all(nodes)

    run(scenario())


def test_a_backup_that_missed_a_replication_is_copied_to_again() -> None:
    """A ``REPL`` that goes unanswered leaves the backup behind: the owner must not go on
    counting its copy as current (nor say "safe"), and copies the partition to it again."""

    async def scenario() -> None:
        nodes = await start_cluster(["node-a", "node-b"], request_timeout_s=0.5)
        try:
            owner = owner_of(nodes, "key-1")
            backup = next(n for n in nodes if n is not owner)
            await wait_until(owner.partitions.is_safe, 5.0, "safe before the write")
            handlers = backup.membership.handlers
            answers = {kind: handlers[kind] for kind in ("REPL", "MIGRATE")}
            for kind in answers:
                handlers[kind] = lambda _link, _msg: None  # heard, never answered
            c = await WireClient.open(owner.client_url, token())
            ack = await c.write([put("1", "key-1", "missed")])
            assert ack["results"][0]["error"] == "REPLICATION_TIMEOUT"
            assert backup.store.get("m", "key-1") is None
            assert not owner.partitions.is_safe()
            handlers.update(answers)
            await wait_until(
                lambda: backup.store.get("m", "key-1") is not None, 5.0, "the copy on the backup"
            )
            await wait_until(owner.partitions.is_safe, 5.0, "safe again")
            await c.close()
        finally:
            await stop_all(nodes)

    run(scenario())
