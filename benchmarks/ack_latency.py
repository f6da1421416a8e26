"""Write-ack latency and batch throughput of a 3-node in-process cluster.

Starts three ``ServerNode`` s on 127.0.0.1 (ports chosen by the OS) in this process, talks to
them with a plain websockets + msgpack client (AUTH, then OP_BATCH), and prints:

* the ack latency of single-op writes to the owner of ``key-1`` (p50/p90/p99), and
* the throughput of ``--batch-size`` op batches over distinct keys (hence every owner),
  sent over a few concurrent connections spread over the nodes.

At the end it checks that every acknowledged write is held by its owner and its backup.
Figures depend on the machine; no test asserts them. Every wait is bounded.

    .venv/bin/python benchmarks/ack_latency.py [--writes N] [--batch-size N] ...
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import sys
import time
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect

from topgun.core.codec import decode_frame, encode
from topgun.core.hashing import partition_id
from topgun.core.hlc import Timestamp
from topgun.core.messages import (
    Auth,
    AuthAck,
    AuthFail,
    AuthRequired,
    ClientOp,
    Message,
    OpAck,
    OpBatch,
)
from topgun.core.records import LWWRecord
from topgun.harness.nodes import kill_nodes, start_nodes
from topgun.server import ServerNode
from topgun.server.auth import make_token

JWT_SECRET = "bench-jwt-secret-0123456789abcdef01234"
CLUSTER_SECRET = "bench-cluster-secret-0123456789abcdef"
MAP = "bench"
HOT_KEY = "key-1"
STEP_TIMEOUT_S = 10.0  # any single connect, send, receive, start or stop
FORM_TIMEOUT_S = 20.0  # the cluster agreeing on its table

M = TypeVar("M", bound=Message)


class WireClient:
    """One client connection: AUTH once, then one OP_BATCH in flight at a time."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(cls, url: str, token: str) -> WireClient:
        ws = await asyncio.wait_for(
            connect(url, compression=None, open_timeout=STEP_TIMEOUT_S), STEP_TIMEOUT_S
        )
        client = cls(ws)
        await client.expect(AuthRequired)
        await client.send(Auth(token))
        reply = await client.expect(AuthAck, AuthFail)
        if isinstance(reply, AuthFail):
            raise RuntimeError(f"AUTH refused by {url}: {reply.error}")
        return client

    async def send(self, msg: Message) -> None:
        await asyncio.wait_for(self.ws.send(encode(msg)), STEP_TIMEOUT_S)

    async def expect(self, *kinds: type[M]) -> M:
        """The next message of one of ``kinds``; anything else (pushes) is skipped."""
        deadline = time.monotonic() + STEP_TIMEOUT_S
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {[k.__name__ for k in kinds]} within {STEP_TIMEOUT_S}s")
            for item in decode_frame(await asyncio.wait_for(self.ws.recv(), left)):
                if isinstance(item, Exception):
                    raise item
                if isinstance(item, kinds):
                    return item

    async def write(self, ops: list[ClientOp]) -> OpAck:
        await self.send(OpBatch(tuple(ops)))
        return await self.expect(OpAck)

    async def close(self) -> None:
        await asyncio.wait_for(self.ws.close(), STEP_TIMEOUT_S)


def put(op_id: int, key: str, value: Any, millis: int, counter: int) -> ClientOp:
    record = LWWRecord(value, Timestamp(millis, counter, "bench"))
    return ClientOp(MAP, key, record, "PUT", str(op_id))


def ms_percentiles(seconds: list[float]) -> str:
    cuts = statistics.quantiles([s * 1000 for s in seconds], n=100, method="inclusive")
    return f"p50 {cuts[49]:.3f} ms  p90 {cuts[89]:.3f} ms  p99 {cuts[98]:.3f} ms"


def acked(ack: OpAck, ops: list[ClientOp], written: dict[str, Any]) -> int:
    """Record the successfully acked ops' values in ``written``; return how many failed."""
    by_id = {r.op_id: r for r in ack.results or ()}
    failed = 0
    for op in ops:
        result = by_id.get(op.id or "")
        if result is not None and result.success:
            assert op.record is not None
            written[op.key] = op.record.value
        else:
            failed += 1
    return failed


async def single_writes(
    nodes: list[ServerNode], token: str, count: int, warmup: int, written: dict[str, Any]
) -> tuple[list[float], int, int]:
    """Sequential one-op writes to the owner of HOT_KEY: (latencies, failed, backup stale)."""
    t = nodes[0].table
    assert t is not None
    pid = partition_id(HOT_KEY)
    owner = next(n for n in nodes if n.node_id == t.owners[pid])
    backup = next(n for n in nodes if n.node_id == t.backups[pid][0])
    client = await WireClient.open(owner.client_url, token)
    latencies: list[float] = []
    failed = stale = 0
    base = int(time.time() * 1000)
    try:
        for i in range(warmup + count):
            ops = [put(i + 1, HOT_KEY, i, base, i)]
            started = time.perf_counter()
            ack = await client.write(ops)
            elapsed = time.perf_counter() - started
            failed += acked(ack, ops, written)
            held = backup.inspect(MAP, HOT_KEY)["record"]
            stale += held is None or held["value"] != i
            if i >= warmup:
                latencies.append(elapsed)
    finally:
        await client.close()
    return latencies, failed, stale


async def batch_writes(
    nodes: list[ServerNode],
    token: str,
    *,
    batches: int,
    batch_size: int,
    connections: int,
    written: dict[str, Any],
) -> tuple[float, list[float], int]:
    """``batches`` batches of distinct keys over ``connections`` connections, spread over the
    nodes: (elapsed seconds, per-batch ack latencies, failed ops)."""
    clients = []
    try:
        for c in range(connections):
            clients.append(await WireClient.open(nodes[c % len(nodes)].client_url, token))
        latencies: list[float] = []
        failed = 0
        base = int(time.time() * 1000)

        async def sender(c: int, client: WireClient) -> None:
            nonlocal failed
            for b in range(c, batches, connections):
                ops = [
                    put(b * batch_size + i + 1, f"batch-{b}-{i}", [b, i], base, 0)
                    for i in range(batch_size)
                ]
                started = time.perf_counter()
                ack = await client.write(ops)
                latencies.append(time.perf_counter() - started)
                failed += acked(ack, ops, written)

        started = time.perf_counter()
        await asyncio.gather(*(sender(c, client) for c, client in enumerate(clients)))
        return time.perf_counter() - started, latencies, failed
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


def missing_replicas(nodes: list[ServerNode], written: dict[str, Any]) -> list[str]:
    """Acked writes whose value is not on the key's owner and every backup."""
    by_id = {n.node_id: n for n in nodes}
    t = nodes[0].table
    assert t is not None
    missing = []
    for key, value in written.items():
        pid = partition_id(key)
        for holder in (t.owners[pid], *t.backups[pid]):
            record = by_id[holder].inspect(MAP, key)["record"]
            if record is None or record["value"] != value:
                missing.append(f"{key} on {holder}")
    return missing


async def bench(args: argparse.Namespace) -> int:
    token = make_token(JWT_SECRET, sub="bench")
    nodes: list[ServerNode] = []
    try:
        await start_nodes(
            [f"node-{i}" for i in (1, 2, 3)],
            jwt_secret=JWT_SECRET,
            cluster_secret=CLUSTER_SECRET,
            into=nodes,
            within=FORM_TIMEOUT_S,
        )
        written: dict[str, Any] = {}
        lat, failed_a, stale = await single_writes(nodes, token, args.writes, args.warmup, written)
        elapsed, batch_lat, failed_b = await batch_writes(
            nodes,
            token,
            batches=args.batches,
            batch_size=args.batch_size,
            connections=args.connections,
            written=written,
        )
        missing = missing_replicas(nodes, written)
    finally:
        await kill_nodes(nodes, STEP_TIMEOUT_S)
    ops = args.batches * args.batch_size
    python = sys.version.split()[0]
    print(f"cluster: 3 in-process nodes on 127.0.0.1, one event loop, Python {python}")
    print(
        f"single-op write ack to the owner of {HOT_KEY}"
        f" ({args.writes} writes after {args.warmup} warm-up):"
    )
    print(f"  {ms_percentiles(lat)}  mean {statistics.fmean(lat) * 1000:.3f} ms")
    print(f"  failed {failed_a}, backup not current at ack {stale}")
    print(
        f"batches of {args.batch_size} ops over {args.connections} connections"
        f" ({args.batches} batches, {ops} ops):"
    )
    print(f"  {ops / elapsed:,.0f} ops/s ({elapsed:.3f} s)")
    print(f"  batch ack {ms_percentiles(batch_lat)}")
    print(f"  failed {failed_b}")
    print(f"acked writes checked on owner and backup: {len(written)} keys, missing {len(missing)}")
    for line in missing[:10]:
        print(f"  missing: {line}")
    return 1 if failed_a or failed_b or stale or missing else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=2000, help="timed single-op writes")
    parser.add_argument("--warmup", type=int, default=100, help="untimed writes first")
    parser.add_argument("--batches", type=int, default=300, help="batches in the throughput run")
    parser.add_argument("--batch-size", type=int, default=100, help="ops per batch")
    parser.add_argument("--connections", type=int, default=4, help="concurrent connections")
    parser.add_argument("--timeout", type=float, default=300.0, help="bound on the whole run (s)")
    args = parser.parse_args()
    if args.writes < 2 or args.batches < 2 or args.batch_size < 1 or args.connections < 1:
        parser.error("need at least 2 writes, 2 batches, 1 op per batch and 1 connection")
    logging.basicConfig(level=logging.ERROR)  # node chatter (e.g. "killed") is not a figure
    return asyncio.run(asyncio.wait_for(bench(args), args.timeout))


if __name__ == "__main__":
    sys.exit(main())
