"""Split-brain and failover check with node processes on loopback (issue 8's done-when runs).

Starts three ``topgun node`` processes (the harness's :class:`ProcessCluster`), runs writers
that send single-op writes with unique keys to random nodes (a plain websockets + msgpack
client; a refused or unknown write is simply not counted as acknowledged), and meanwhile:

* ``pause``: SIGSTOPs one node for ``--pause`` s every ``--every`` s, then SIGCONT;
* ``kill``: SIGKILLs one node every ``--every`` s and restarts it on the same ports.

Afterwards it waits for the cluster to be safe, reads the map back (QUERY_SUB) and reports
acknowledged writes lost (must be 0), unexpected records (keys never written, or values that
were never sent; must be 0), and for ``pause`` the writes the paused node acknowledged after
it woke but before it served the majority's table (must be 0). For ``kill`` it reports the
failover time: from each kill to the first acknowledged write on a key the killed node owned,
written by a probe through the surviving nodes from the moment of the kill.

    .venv/bin/python benchmarks/fencing.py pause --runs 3
    .venv/bin/python benchmarks/fencing.py kill

Exit status 0 only if every run lost nothing and found nothing unexpected. Every wait is
bounded; the node processes are stopped at the end whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import statistics
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from topgun.core.codec import decode_frame, encode
from topgun.core.hashing import partition_id
from topgun.core.hlc import Timestamp
from topgun.core.messages import (
    Auth,
    AuthAck,
    ClientOp,
    OpAck,
    OpBatch,
    Query,
    QueryResp,
    QuerySub,
)
from topgun.core.records import LWWRecord
from topgun.core.table import PartitionTable
from topgun.harness.cluster import ClusterSettings, ProcessCluster

MAP = "fencing"
STEP_S = 2.0  # any one write's answer
SETTLE_S = 60.0  # the cluster becoming safe after the run


@dataclass
class Run:
    acked: dict[str, int] = field(default_factory=dict)
    attempted: dict[str, int] = field(default_factory=dict)
    answers: dict[str, int] = field(default_factory=dict)
    ok_by: list[tuple[float, str, str]] = field(default_factory=list)
    """(time the ack arrived, node it was sent to, key)."""
    events: list[tuple[str, str, float, float]] = field(default_factory=list)
    """(kind, node, start, end): pauses (SIGSTOP..SIGCONT) and kills (kill..restarted)."""
    rejoined: dict[float, float] = field(default_factory=dict)
    """pause start → when the paused node served the majority's table again (wall clock)."""
    majority_version: dict[float, int] = field(default_factory=dict)
    tables_at_kill: dict[float, PartitionTable] = field(default_factory=dict)
    failover: list[float] = field(default_factory=list)
    """Per kill: seconds from the kill to the probe's first acknowledged write on its keys."""


class Conn:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, url: str, token: str) -> Conn:
        ws = await asyncio.wait_for(connect(url, compression=None, open_timeout=STEP_S), STEP_S)
        conn = cls(ws)
        await ws.send(encode(Auth(token)))
        await conn.expect(AuthAck)
        return conn

    async def expect(self, kind: type[Any]) -> Any:
        deadline = time.monotonic() + STEP_S
        while (left := deadline - time.monotonic()) > 0:
            for item in decode_frame(await asyncio.wait_for(self.ws.recv(), left)):
                if isinstance(item, kind):
                    return item
                if isinstance(item, Exception):
                    raise item
        raise TimeoutError(kind.__name__)


def http_json(url: str, token: str) -> Any:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=2) as resp:
        return json.loads(resp.read())


async def writer(
    wid: int, cluster: ProcessCluster, token: str, run: Run, *, until: float, rate: float
) -> None:
    conns: dict[str, Conn] = {}
    seq = 0
    gap = 1.0 / rate
    next_at = time.monotonic()
    while (now := time.monotonic()) < until:
        if now < next_at:
            await asyncio.sleep(next_at - now)
        next_at += gap
        node = random.choice(cluster.order)
        seq += 1
        key, value = f"w{wid}-{seq}", seq
        run.attempted[key] = value
        try:
            conn = conns.get(node)
            if conn is None:
                conn = conns[node] = await Conn.open(cluster.client_url(node), token)
            record = LWWRecord(value, Timestamp(int(time.time() * 1000), 0, f"writer-{wid}"))
            await conn.ws.send(encode(OpBatch((ClientOp(MAP, key, record, "PUT", str(seq)),))))
            ack: OpAck = await conn.expect(OpAck)
            result = (ack.results or ())[0]
            code = "ok" if result.success else (result.error or "?").split(":")[0]
        except Exception as exc:  # a paused, killed or restarting node: not acknowledged
            code = type(exc).__name__
            old = conns.pop(node, None)
            if old is not None:
                old.ws.transport.abort()
        run.answers[code] = run.answers.get(code, 0) + 1
        if code == "ok":
            run.acked[key] = value
            run.ok_by.append((time.time(), node, key))
    for conn in conns.values():
        conn.ws.transport.abort()


async def probe(
    cluster: ProcessCluster, run: Run, conns: dict[str, Conn], *, table: PartitionTable,
    victim: str, killed: float,
) -> None:  # fmt: skip
    """Write keys the killed node owned, through the other nodes, until one is acknowledged:
    what a client that routes around the dead node sees of the failover."""
    keys = (f"probe-{killed:.3f}-{i}" for i in range(10**6))
    owned = set(table.partitions_of(victim))
    others = [n for n in cluster.order if n != victim]
    try:
        deadline = killed + 10
        while time.monotonic() < deadline:
            key = next(k for k in keys if partition_id(k) in owned)
            node = random.choice(others)
            run.attempted[key] = 1
            record = LWWRecord(1, Timestamp(int(time.time() * 1000), 0, "probe"))
            await conns[node].ws.send(encode(OpBatch((ClientOp(MAP, key, record, "PUT", "1"),))))
            ack: OpAck = await conns[node].expect(OpAck)
            if (ack.results or ())[0].success:
                run.acked[key] = 1
                run.failover.append(time.monotonic() - killed)
                return
            await asyncio.sleep(0.002)
    finally:
        for conn in conns.values():
            conn.ws.transport.abort()


def served_version(cluster: ProcessCluster, node: str, token: str) -> tuple[bool, int]:
    """(has a quorum, table version) from /health; a node without the quorum field (an older
    build, for before/after figures) counts as having one."""
    url = cluster.client_url(node).replace("ws://", "http://") + "/health"
    try:
        h = http_json(url, token)
        return bool(h.get("quorum", True)), int(h.get("partitionMapVersion", 0))
    except Exception:
        return False, 0


async def nemesis(mode: str, cluster: ProcessCluster, run: Run, args: Any, until: float) -> None:
    token = cluster.admin_token()
    rng = random.Random(args.seed)
    await asyncio.sleep(1.0)
    while time.monotonic() + (args.pause if mode == "pause" else 0) < until:
        victim = rng.choice(cluster.order)
        started, began = time.monotonic(), time.time()
        if mode == "pause":
            pid = cluster.procs[victim].popen.pid
            os.kill(pid, signal.SIGSTOP)
            await asyncio.sleep(args.pause)
            others = [n for n in cluster.order if n != victim]
            majority = max(
                [await asyncio.to_thread(served_version, cluster, n, token) for n in others],
                key=lambda qv: qv[1],
            )[1]
            os.kill(pid, signal.SIGCONT)
            resumed = time.time()
            run.events.append(("pause", victim, began, resumed))
            run.majority_version[began] = majority
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # until it serves the majority's newer table
                quorum, version = await asyncio.to_thread(served_version, cluster, victim, token)
                if quorum and version >= majority:
                    break
                await asyncio.sleep(0.05)
            run.rejoined[began] = time.time()  # an upper bound; the log says exactly
        else:
            table = cluster.any_table()
            others = [n for n in cluster.order if n != victim]
            conns = {n: await Conn.open(cluster.client_url(n), token) for n in others}
            pid = cluster.procs[victim].popen.pid
            os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            probing = asyncio.create_task(
                probe(cluster, run, conns, table=table, victim=victim, killed=killed)
            )
            await asyncio.to_thread(cluster.kill, victim)  # reaps it
            await asyncio.to_thread(cluster.restart, victim, same_address=True)
            run.events.append(("kill", victim, killed, time.monotonic()))
            await probing
        await asyncio.sleep(max(0.0, started + args.every - time.monotonic()))


SERVING = re.compile(
    r"^(\S+ \S+) INFO topgun\.server \[[^]]+\] serving partition table e\d+ v(\d+)"
)


def rejoined_from_logs(cluster: ProcessCluster, run: Run) -> None:
    """When each paused node applied the majority's table after waking, from its own log."""
    for kind, victim, began, resumed in run.events:
        if kind != "pause":
            continue
        for line in cluster.logs(victim).splitlines():
            m = SERVING.match(line)
            if m is None:
                continue
            at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if at >= resumed - 0.001 and int(m.group(2)) >= run.majority_version[began]:
                run.rejoined[began] = min(run.rejoined.get(began, at), at)
                break


READ_PAGE = 1000
MAX_PAGES = 1000


async def read_back(cluster: ProcessCluster, token: str) -> dict[str, Any]:
    """The whole map, page by page (a page holds at most 1000 rows), following nextCursor."""
    conn = await Conn.open(cluster.client_url(cluster.order[0]), token)
    rows: dict[str, Any] = {}
    cursor: str | None = None
    try:
        for page in range(MAX_PAGES):
            query_id = f"page-{page}"
            query = Query(limit=READ_PAGE, cursor=cursor)
            await conn.ws.send(encode(QuerySub(query_id, MAP, query)))
            resp = await _query_resp(conn, query_id, 30)
            rows.update(resp.results)
            if not resp.has_more:
                return rows
            cursor = resp.next_cursor
        raise RuntimeError(f"more than {MAX_PAGES} pages")
    finally:
        conn.ws.transport.abort()


async def _query_resp(conn: Any, query_id: str, within: float) -> QueryResp:
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        for item in decode_frame(await asyncio.wait_for(conn.ws.recv(), left)):
            if isinstance(item, QueryResp) and item.query_id == query_id:
                if item.error:
                    raise RuntimeError(item.error)
                return item
    raise TimeoutError(f"QUERY_RESP {query_id}")


def wait_safe(cluster: ProcessCluster, token: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            healths = [
                http_json(cluster.client_url(n).replace("ws://", "http://") + "/health", token)
                for n in cluster.order
            ]
            versions = {h.get("partitionMapVersion") for h in healths}
            if all(h.get("safe", True) for h in healths) and len(versions) == 1:
                return True  # (a node without the "safe" field: one table everywhere)
        except Exception:
            pass
        time.sleep(0.2)
    return False


async def one_run(mode: str, args: Any, index: int) -> bool:
    cluster = ProcessCluster(ClusterSettings())
    run = Run()
    try:
        await asyncio.to_thread(cluster.start, 3)
        await asyncio.to_thread(cluster.wait_until_formed, 20)
        token = cluster.token()
        until = time.monotonic() + args.duration
        await asyncio.gather(
            nemesis(mode, cluster, run, args, until),
            *(
                writer(w, cluster, token, run, until=until, rate=args.rate)
                for w in range(args.writers)
            ),
        )
        safe = await asyncio.to_thread(wait_safe, cluster, token, SETTLE_S)
        stored = await read_back(cluster, token)
        rejoined_from_logs(cluster, run)
    finally:
        await asyncio.to_thread(cluster.close)
    lost = [k for k, v in run.acked.items() if stored.get(k) != v]
    unexpected = [k for k, v in stored.items() if run.attempted.get(k) != v]
    early = [
        key
        for t, node, key in run.ok_by
        for kind, victim, start, resumed in run.events
        if kind == "pause" and node == victim and resumed <= t < run.rejoined.get(start, 0)
    ]
    print(
        f"run {index + 1} ({mode}): {len(run.attempted)} writes, {len(run.acked)} acknowledged, "
        f"lost {len(lost)}, unexpected {len(unexpected)}, safe at the end: {safe}"
    )
    print(f"  answers: {dict(sorted(run.answers.items()))}")
    if mode == "pause":
        pauses = [(v, round(r - s, 1)) for k, v, s, r in run.events if k == "pause"]
        rejoin = [round(run.rejoined[s] - r, 2) for k, _, s, r in run.events if k == "pause"]
        print(f"  pauses (node, s): {pauses}; rejoined a majority after wake-up (s): {rejoin}")
        print(f"  acknowledged by the paused node after waking, before rejoining: {len(early)}")
    elif run.failover:
        ms = sorted(x * 1000 for x in run.failover)
        print(
            f"  failover (kill → first acked write on its keys) over {len(ms)} kills: "
            f"p50 {statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms"
        )
    if lost:
        print(f"  lost e.g. {lost[:5]}")
    if unexpected:
        print(f"  unexpected e.g. {unexpected[:5]}")
    return not lost and not unexpected and not early


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("pause", "kill"))
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--rate", type=float, default=150.0, help="writes/s per writer")
    parser.add_argument("--every", type=float, default=None, help="s between faults")
    parser.add_argument("--pause", type=float, default=5.0, help="s a paused node stays stopped")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    if args.every is None:
        args.every = 8.0 if args.mode == "pause" else 3.0
    ok = True
    for i in range(args.runs):
        ok = asyncio.run(one_run(args.mode, args, i)) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
