"""Change events, cluster-wide Merkle sync and paged queries, over the wire (issue 10)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from server_testkit import WireClient, make_node, put, record, run, start_cluster, stop_all, token

from topgun.core.hashing import partition_id
from topgun.core.hlc import Timestamp
from topgun.core.merkle import MASK32, entry_hash
from topgun.core.records import LWWRecord
from topgun.harness.nodes import formed
from topgun.harness.waiting import wait_until
from topgun.server.paging import MAX_PAGE_SIZE

pytestmark = pytest.mark.timeout(120)

ADMIN = ["ADMIN"]


def non_owner_of(nodes: list[Any], key: str) -> Any:
    t = nodes[0].table
    return next(n for n in nodes if n.node_id not in t.replicas_of(partition_id(key)))


async def subscribe(c: WireClient, map_name: str, query_id: str = "q1") -> dict[str, Any]:
    await c.send({"type": "QUERY_SUB", "payload": {"queryId": query_id, "mapName": map_name,
                                                    "query": {}}})  # fmt: skip
    return (await c.recv("QUERY_RESP"))["payload"]


def test_subscriber_on_a_non_owner_gets_the_event_and_the_writer_does_not() -> None:
    async def scenario() -> None:
        nodes = await start_cluster(["node-a", "node-b", "node-c"])
        try:
            key = "key-1"
            watcher_node = non_owner_of(nodes, key)
            writer_node = next(n for n in nodes if n is not watcher_node)
            watcher = await WireClient.open(watcher_node.client_url, token(ADMIN))
            writer = await WireClient.open(writer_node.client_url, token(ADMIN))
            await subscribe(watcher, "ev")
            await subscribe(writer, "ev", "w1")
            # explicit stamps: two writes within one millisecond would tie, and a tie is no change
            now = int(time.time() * 1000)
            ack = await writer.write([put("1", key, {"n": 1}, map_name="ev", millis=now)])
            assert ack["lastId"] == "1"
            batch = await watcher.recv("SERVER_BATCH_EVENT")
            (event,) = batch["payload"]["events"]
            assert (event["mapName"], event["key"], event["eventType"]) == ("ev", key, "PUT")
            assert event["record"]["value"] == {"n": 1}
            Timestamp.from_wire(batch["timestamp"])  # a real HLC object (§6.4-G)
            # a single CLIENT_OP gives SERVER_EVENT; a removal says REMOVE with the tombstone
            tomb = {**put("2", key, None, map_name="ev", millis=now + 1), "opType": "REMOVE"}
            await writer.send({"type": "CLIENT_OP", "payload": tomb})
            single = await watcher.recv("SERVER_EVENT")
            assert single["payload"]["eventType"] == "REMOVE"
            assert single["payload"]["record"]["value"] is None
            # the writer sees its live query's update, never its own change events
            await writer.recv("QUERY_UPDATE")
            assert not [m for m in writer.inbox if m["type"].startswith("SERVER_")]
            # exactly one event per change: nothing more arrives for the two writes
            await watcher.send({"type": "PING", "timestamp": 1.0})
            await watcher.recv("PONG")
            assert not [m for m in watcher.inbox if m["type"].startswith("SERVER_")]
            await watcher.close()
            await writer.close()
        finally:
            await stop_all(nodes)

    run(scenario())


def test_sync_from_any_node_covers_the_whole_map() -> None:
    async def scenario() -> None:
        nodes = await start_cluster(["node-a", "node-b", "node-c"])
        try:
            w = await WireClient.open(nodes[0].client_url, token(ADMIN))
            now = int(time.time() * 1000)
            ops = [put(str(i), f"k{i}", i, map_name="s", millis=now - 1000 + i)
                   for i in range(1, 121)]  # fmt: skip
            ops.append({**put("121", "k5", None, map_name="s"), "opType": "REMOVE"})
            assert (await w.write(ops))["lastId"] == "121"
            expected: dict[str, LWWRecord] = {}
            for op in ops:
                expected[op["key"]] = LWWRecord.from_wire(op["record"])
            want_root = sum(entry_hash(k, r.timestamp) for k, r in expected.items()) & MASK32
            for node in nodes:
                c = await WireClient.open(node.client_url, token(ADMIN))
                assert await c.sync_root("s") == want_root, node.node_id
                got = await c.walk("s")
                assert {k: LWWRecord.from_wire(r) for k, r in got.items()} == expected
                assert got["k5"]["value"] is None  # the tombstone travels too
                await c.close()
            # a client whose last sync is older than the tombstone GC age must start over
            await w.send({"type": "SYNC_INIT", "mapName": "s", "lastSyncTimestamp": 1000.0})
            assert (await w.recv("SYNC_RESET_REQUIRED"))["payload"] == {"mapName": "s"}
            await w.close()
        finally:
            await stop_all(nodes)

    run(scenario())


async def page(c: WireClient, qid: str, query: dict[str, Any]) -> dict[str, Any]:
    return await c.query(qid, "p", query)


def test_limit_50_pages_through_300_keys_with_cursors() -> None:
    async def scenario() -> None:
        nodes = await start_cluster(["node-a", "node-b", "node-c"])
        try:
            c = await WireClient.open(nodes[1].client_url, token(ADMIN))
            ops = [put(str(i), f"k{i:03d}", {"n": i}, map_name="p") for i in range(300)]
            assert (await c.write(ops))["lastId"] == "299"
            seen: list[str] = []
            query: dict[str, Any] = {"sort": {"n": "desc"}, "limit": 50}
            first = True
            for n in range(10):
                resp = await page(c, f"q{n}", query)
                assert resp["cursorStatus"] == ("none" if first else "valid")
                first = False
                assert len(resp["results"]) <= 50
                seen.extend(r["key"] for r in resp["results"])
                if not resp["hasMore"]:
                    assert "nextCursor" not in resp
                    break
                query = {**query, "cursor": resp["nextCursor"]}
            assert seen == [f"k{i:03d}" for i in reversed(range(300))]
            # another query's cursor is refused, not silently restarted
            other = await page(c, "qx", {"sort": {"n": "asc"}, "limit": 5, "cursor":
                                         query["cursor"]})  # fmt: skip
            assert other["cursorStatus"] == "invalid" and other["results"] == []
            bad = await page(c, "qy", {"limit": 5, "cursor": "not-a-cursor"})
            assert bad["cursorStatus"] == "invalid"
            await c.close()
        finally:
            await stop_all(nodes)

    run(scenario())


def test_without_a_limit_the_answer_is_bounded_pages() -> None:
    async def scenario() -> None:
        nodes = await start_cluster(["node-a"])
        try:
            c = await WireClient.open(nodes[0].client_url, token(ADMIN))
            n = MAX_PAGE_SIZE + 10
            ops = [put(str(i), f"k{i:05d}", i, map_name="p") for i in range(n)]
            assert (await c.write(ops))["lastId"] == str(n - 1)
            resp = await page(c, "q", {})
            assert len(resp["results"]) == MAX_PAGE_SIZE and resp["hasMore"] is True
            rest = await page(c, "q2", {"cursor": resp["nextCursor"]})
            assert len(rest["results"]) == 10 and rest["hasMore"] is False
            await c.close()
        finally:
            await stop_all(nodes)

    run(scenario())


def test_a_silent_part_fails_the_whole_answer() -> None:
    async def scenario() -> None:
        nodes = await start_cluster(["node-a", "node-b", "node-c"], query_timeout_s=1.0)
        try:
            c = await WireClient.open(nodes[0].client_url, token(ADMIN))
            assert (await c.write([put("1", "key-1", 1, map_name="p")]))["lastId"] == "1"
            silent = next(n for n in nodes if n is not nodes[0])
            silent.membership.handlers["QEXEC"] = lambda link, msg: None
            silent.membership.handlers["MSYNC"] = lambda link, msg: None
            resp = await page(c, "q", {})
            assert resp["results"] == [] and "did not answer" in resp["error"]
            await c.send({"type": "SYNC_INIT", "mapName": "p"})
            err = (await c.recv("ERROR"))["payload"]
            assert err["code"] == 503
            assert err["details"] == {"code": "SYNC_UNAVAILABLE", "mapName": "p"}
            await c.close()
        finally:
            await stop_all(nodes)

    run(scenario())


def test_unserved_features_are_refused_with_their_code() -> None:
    async def scenario() -> None:
        nodes = await start_cluster(["node-a"])
        try:
            c = await WireClient.open(nodes[0].client_url, token(ADMIN))
            for kind, code in [("TOPIC_SUB", "TOPICS_NOT_SUPPORTED"),
                               ("LOCK_REQUEST", "LOCKS_NOT_SUPPORTED"),
                               ("COUNTER_REQUEST", "COUNTERS_NOT_SUPPORTED"),
                               ("JOURNAL_READ", "JOURNAL_NOT_SUPPORTED"),
                               ("SEARCH", "SEARCH_NOT_SUPPORTED"),
                               ("ORMAP_SYNC_INIT", "ORMAP_NOT_SUPPORTED")]:  # fmt: skip
                await c.send({"type": kind, "payload": {}})
                err = (await c.recv("ERROR"))["payload"]
                assert err["code"] == 501 and err["details"] == {"code": code, "type": kind}
            # and the connection still serves
            assert (await c.write([put("1", "k", record(1)["value"], map_name="x")]))["lastId"]
            await c.close()
        finally:
            await stop_all(nodes)

    run(scenario())


def test_cursor_survives_a_join_and_migration_sends_no_events() -> None:
    async def scenario() -> None:
        nodes = await start_cluster(["node-b", "node-c"])
        try:
            c = await WireClient.open(nodes[0].client_url, token(ADMIN))
            watcher = await WireClient.open(nodes[1].client_url, token(ADMIN))
            await subscribe(watcher, "p")
            ops = [put(str(i), f"k{i:03d}", {"n": i}, map_name="p") for i in range(300)]
            assert (await c.write(ops))["lastId"] == "299"
            events = await watcher.recv("SERVER_BATCH_EVENT")
            assert len(events["payload"]["events"]) > 0
            first = await page(c, "q1", {"limit": 50})
            keys = [r["key"] for r in first["results"]]
            version = nodes[0].table.version
            newcomer = make_node("node-a", [nodes[1].cluster_address])
            await newcomer.start()
            nodes.append(newcomer)
            await wait_until(lambda: formed(nodes), 10.0, "converged with the newcomer")
            assert nodes[0].table.version > version
            cursor = first["nextCursor"]
            while cursor is not None:
                resp = await page(c, f"q{len(keys)}", {"limit": 50, "cursor": cursor})
                assert resp["cursorStatus"] == "valid"
                keys.extend(r["key"] for r in resp["results"])
                cursor = resp.get("nextCursor")
            assert keys == [f"k{i:03d}" for i in range(300)]
            # moving partitions to the newcomer changed no record: no event for it
            for m in list(watcher.inbox):
                assert m["type"] != "SERVER_EVENT", m
            batches = [m for m in watcher.inbox if m["type"] == "SERVER_BATCH_EVENT"]
            assert (
                sum(len(b["payload"]["events"]) for b in batches) + len(events["payload"]["events"])
                <= 300
            )
            await c.close()
            await watcher.close()
        finally:
            await stop_all(nodes)

    run(scenario())


def test_expired_records_are_not_read_and_sync_carries_their_ttl() -> None:
    async def scenario() -> None:
        nodes = await start_cluster(["node-a"])
        try:
            c = await WireClient.open(nodes[0].client_url, token(ADMIN))
            old = int(time.time() * 1000) - 60_000
            gone = {**put("1", "gone", 1, map_name="t", millis=old)}
            gone["record"]["ttlMs"] = 1000
            kept = put("2", "kept", 2, map_name="t")
            assert (await c.write([gone, kept]))["lastId"] == "2"
            resp = await c.query("q", "t", {})
            assert [r["key"] for r in resp["results"]] == ["kept"]
            records = await c.walk("t")
            assert records["gone"]["ttlMs"] == 1000  # the client's own reads hide it
            rec = LWWRecord.from_wire(records["gone"])
            assert rec.is_expired(int(time.time() * 1000))
            await c.close()
        finally:
            await stop_all(nodes)

    run(scenario())


def test_pong_keeps_the_protocol_number_and_only_hlc_objects_stamp_events() -> None:
    # decision for reference §6.4-G (docs/INTEROPERABILITY.md, "Known client-side limits"):
    # PONG stays as the protocol defines it (the PING's number echoed, plus serverTime);
    # every top-level `timestamp` we send otherwise is a full {millis, counter, nodeId} object
    async def scenario() -> None:
        nodes = await start_cluster(["node-a"])
        try:
            c = await WireClient.open(nodes[0].client_url, token(ADMIN))
            await c.send({"type": "PING", "timestamp": 1795705525501.0})
            pong = await c.recv("PONG")
            assert pong["timestamp"] == 1795705525501.0 and isinstance(pong["serverTime"], float)
            await subscribe(c, "g")
            other = await WireClient.open(nodes[0].client_url, token(ADMIN))
            await other.write([put("1", "k", 1, map_name="g")])
            event = await c.recv("SERVER_BATCH_EVENT")
            assert set(event["timestamp"]) == {"millis", "counter", "nodeId"}
            assert isinstance(event["timestamp"]["millis"], float)
            await other.close()
            await c.close()
        finally:
            await stop_all(nodes)

    run(scenario())
