"""The client's Merkle sync and live subscriptions against a scripted server (no network)."""

from __future__ import annotations

import asyncio
from typing import Any

from topgun import ClusterConfig, MemoryStorage, TopGunClient
from topgun.client.merkle_sync import RETRY_AFTER_S
from topgun.client.subscriptions import RETRY_AFTER_S as SUB_RETRY_S
from topgun.core.hlc import Timestamp
from topgun.core.merkle import DEPTH, MerkleTree
from topgun.core.messages import (
    ErrorMessage,
    Message,
    QueryResp,
    QuerySub,
    QueryUnsub,
    QueryUpdate,
)
from topgun.core.records import LWWRecord
from topgun.core.sync_messages import (
    MerkleReqBucket,
    SyncInit,
    SyncResetRequired,
    SyncRespBuckets,
    SyncRespLeaf,
    SyncRespRoot,
)

NOW = 1_700_000_000_000


class ScriptedServer:
    """Answers sync requests from its own records, on the client's loop; counts requests."""

    def __init__(self, client: TopGunClient, records: dict[str, LWWRecord]) -> None:
        self.client = client
        self.records = records
        self.tree = MerkleTree(lambda k: self.records[k].timestamp)
        for k, r in records.items():
            self.tree.update(k, r.timestamp, None)
        self.sent: list[Message] = []
        self.is_authenticated = True
        self.leaving = False
        self.id = "node-1"
        self.reset_once = False
        self.fail_with: str | None = None

    def send(self, msg: Message) -> bool:
        self.sent.append(msg)
        asyncio.get_running_loop().call_soon(self._answer, msg)
        return True

    def _answer(self, msg: Message) -> None:
        reply: Message | None = None
        if isinstance(msg, SyncInit):
            if self.fail_with:
                details = {"code": "SYNC_UNAVAILABLE", "mapName": msg.map_name}
                reply = ErrorMessage(503, f"sync of {msg.map_name}: {self.fail_with}", details)
            elif self.reset_once and msg.last_sync_timestamp:
                self.reset_once = False
                reply = SyncResetRequired(msg.map_name)
            else:
                reply = SyncRespRoot(msg.map_name, self.tree.root(), Timestamp(NOW, 0, "s"))
        elif isinstance(msg, MerkleReqBucket):
            if len(msg.path) == DEPTH:
                recs = tuple((k, self.records[k]) for k in self.tree.keys_at(msg.path))
                reply = SyncRespLeaf(msg.map_name, msg.path, recs)
            else:
                reply = SyncRespBuckets(msg.map_name, msg.path, self.tree.buckets(msg.path))
        if reply is not None:
            self.client.on_message(self, reply)  # type: ignore[arg-type]


def make_client() -> TopGunClient:
    c = TopGunClient(
        cluster=ClusterConfig(seeds=["ws://127.0.0.1:1"]), storage=MemoryStorage(),
        node_id="c1", clock=lambda: NOW,
    )  # fmt: skip
    return c


def rec(value: Any, millis: int = NOW - 5) -> LWWRecord:
    return LWWRecord(value, Timestamp(millis, 0, "w"))


async def synced(c: TopGunClient, server: ScriptedServer, name: str, runs: int = 1) -> None:
    c._conns[server.id] = server  # type: ignore[assignment]
    c._msync.sync_map(server, name)  # type: ignore[arg-type]
    await c._msync.idle(2.0)
    assert c.sync_runs(name) == runs, server.sent


def test_sync_fetches_only_differing_leaves_and_merges_tombstones() -> None:
    async def main() -> None:
        c = make_client()
        m = c.get_map("users")
        server_records = {f"u{i}": rec({"n": i}) for i in range(50)}
        server_records["u3"] = rec(None, NOW - 1)  # removed on the server
        for k in ("u1", "u2", "u3"):  # the client already holds these
            m.merge(k, rec({"n": 0}, NOW - 100), persist=False)
        server = ScriptedServer(c, server_records)
        await synced(c, server, "users")
        assert m.tree.root() == server.tree.root()
        assert m.get("u3") is None and m.record("u3") is not None
        assert m.get("u10") == {"n": 10} and len(m) == 49
        # a second sync with nothing new costs one round trip
        before = len(server.sent)
        await synced(c, server, "users", runs=2)
        assert [type(x).__name__ for x in server.sent[before:]] == ["SyncInit"]
        assert isinstance(server.sent[-1], SyncInit) and server.sent[-1].last_sync_timestamp == NOW

    asyncio.run(main())


def test_reset_required_clears_and_resyncs_and_errors_are_retried_later() -> None:
    async def main() -> None:
        c = make_client()
        m = c.get_map("users")
        server = ScriptedServer(c, {"a": rec(1)})
        await synced(c, server, "users")
        m.merge("stale", rec(9, NOW - 50), persist=False)
        server.reset_once = True
        await synced(c, server, "users", runs=2)
        assert m.entries() == {"a": 1}  # the stale record the server no longer has is gone
        server.fail_with = "owner node-2 is not reachable"
        c._msync.sync_map(server, "users")  # type: ignore[arg-type]
        await c._msync.idle(2.0)
        assert c._msync.failed_maps() == {"users"} and c.sync_runs("users") == 2
        # retried by itself once the retry time has come (here: a clock moved by hand)
        now = [0.0]
        c._msync._clock = lambda: now[0]
        c._msync._failed["users"] = 0.0
        server.fail_with = None
        c._msync.retry_failed(server)  # type: ignore[arg-type]
        assert not c._msync._running  # too early
        now[0] = RETRY_AFTER_S
        assert c._msync.next_retry() == RETRY_AFTER_S
        c._msync.retry_failed(server)  # type: ignore[arg-type]
        await c._msync.idle(2.0)
        assert c._msync.failed_maps() == set() and c.sync_runs("users") == 3

    asyncio.run(main())


def test_subscription_follows_updates_and_replaces_results_after_failover() -> None:
    async def main() -> None:
        c = make_client()
        conn = ScriptedServer(c, {})
        c._conns[conn.id] = conn  # type: ignore[assignment]
        changes: list[tuple[str, str]] = []
        sub = c.subscribe("orders", {"status": "open"}, on_change=lambda ch: changes.append(
            (ch.kind, ch.key)))  # fmt: skip
        (qsub,) = [m for m in conn.sent if isinstance(m, QuerySub)]
        assert qsub.query.where == {"status": "open"}
        c.on_message(conn, QueryResp(qsub.query_id, (("o1", {"status": "open"}),), False))  # type: ignore[arg-type]
        assert await sub.ready() == {"o1": {"status": "open"}}
        c.on_message(conn, QueryUpdate(qsub.query_id, "o2", {"status": "open"}, "ENTER"))  # type: ignore[arg-type]
        c.on_message(conn, QueryUpdate(qsub.query_id, "o1", None, "LEAVE"))  # type: ignore[arg-type]
        assert sub.results == {"o2": {"status": "open"}}
        # the node goes: registered again elsewhere, the new answer replaces the rows
        other = ScriptedServer(c, {})
        other.id = "node-2"
        c._conns[other.id] = other  # type: ignore[assignment]
        conn.is_authenticated = False
        c._subs.on_connection_lost(conn)  # type: ignore[arg-type]
        assert sub.conn is other
        c.on_message(other, QueryResp(qsub.query_id, (("o3", {"status": "open"}),), False))  # type: ignore[arg-type]
        assert sub.results == {"o3": {"status": "open"}}
        assert changes == [("ENTER", "o1"), ("ENTER", "o2"), ("LEAVE", "o1"), ("LEAVE", "o2"),
                           ("ENTER", "o3")]  # fmt: skip
        # an answer that is an error keeps the rows and registers again a second later
        now = [0.0]
        c._subs._clock = lambda: now[0]
        c.on_message(other, QueryResp(qsub.query_id, (), False, "query failed: x"))  # type: ignore[arg-type]
        assert sub.results == {"o3": {"status": "open"}} and sub.conn is None
        assert isinstance(other.sent[-1], QueryUnsub)
        c._subs.reregister()
        assert sub.conn is None
        now[0] = SUB_RETRY_S
        c._subs.reregister()
        assert sub.conn is not None and isinstance(sub.conn.sent[-1], QuerySub)
        seen = []
        sub.close()
        async for change in sub:
            seen.append(change.key)
        assert seen == ["o1", "o2", "o1", "o2", "o3"]

    asyncio.run(main())
