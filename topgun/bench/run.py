"""``topgun bench``: start a local cluster, measure it as a user would, report the figures.

Phases, each bounded: fill ``keys`` keys with batched writes over several connections
(acked writes/s, and how many acks the backups had confirmed), single writes to the owner
and through a forwarding node (ack latency), memory per held record (RSS growth over the
fill), a read of every key, then repeated kills: the time from a kill to the first acked
write of the victim's keys, and to a stable cluster again; the victim is restarted and the
cluster re-checked before the next kill.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from topgun.bench import machine
from topgun.bench.load import LoadResult, drive, routed_frames
from topgun.bench.read import PAGE, paged_read
from topgun.bench.report import format_report, write_json
from topgun.bench.stats import latency_ms, rate
from topgun.bench.wire import MAP, WireClient, batch_frame, succeeded
from topgun.bench.workload import key_for, value_for
from topgun.core.hashing import partition_id
from topgun.core.table import PartitionTable
from topgun.harness.cluster import (
    ClusterController,
    ClusterSettings,
    EmbeddedCluster,
    ProcessCluster,
)
from topgun.harness.loop import LoopThread

FORM_TIMEOUT_S = 60.0
FAILOVER_TIMEOUT_S = 30.0
STABLE_TIMEOUT_S = 120.0
REPLICA_SAMPLE = 50
T = TypeVar("T")


@dataclass
class BenchOptions:
    nodes: int = 3
    processes: bool = False
    keys: int = 20_000
    batch_size: int = 100
    connections: int = 16
    singles: int = 300
    kills: int = 2
    json_dir: Path | None = None
    step_s: float = 10.0


class Progress:
    """One line per step on stderr, prefixed with the seconds since the run began."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, text: str) -> None:
        sys.stderr.write(f"[{time.monotonic() - self.started:6.1f}s] {text}\n")
        sys.stderr.flush()


def _poll(check: Callable[[], T | None], within: float, what: str) -> T:
    """Call ``check`` until it returns a value; at most ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {within:.0f} s")
        time.sleep(0.01)  # a polling period, not a synchronisation: the check decides


class Bench:
    def __init__(self, opts: BenchOptions, cluster: ClusterController) -> None:
        self.opts = opts
        self.cluster = cluster
        self.progress = Progress()
        self.token = cluster.token("bench")
        self.millis = int(time.time() * 1000)
        self.counter = itertools.count(1)
        self.started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())

    # --- measurements -----------------------------------------------------------------

    def held_rss(self) -> int:
        """Bytes resident in the processes that hold the records."""
        if isinstance(self.cluster, ProcessCluster):
            procs = self.cluster.procs
            return sum(machine.rss_bytes(procs[n].popen.pid) for n in self.cluster.live_nodes())
        gc.collect()
        return machine.rss_bytes()

    async def fill(self) -> dict[str, Any]:
        o = self.opts
        urls = {n: self.cluster.client_url(n) for n in self.cluster.live_nodes()}
        table = self.cluster.any_table()
        targets = routed_frames(table, urls, range(o.keys), o.batch_size, self.millis)
        before = self.held_rss()

        def report(done: LoadResult) -> None:
            self.progress(f"fill: {done.acked:,}/{o.keys:,} keys acked")

        done = await drive(
            targets, self.token, connections=o.connections, step_s=o.step_s, progress=report
        )
        del targets
        grown = self.held_rss() - before
        copies = self.copies()
        return {
            "acked": done.acked,
            "replicated": done.replicated,
            "failed": o.keys - done.acked,
            "batched_ops_per_s": rate(done.acked, done.seconds),
            "fill_seconds": round(done.seconds, 2),
            "memory": {
                "rss_growth_mb": round(grown / 1e6, 1),
                "held_records": o.keys * copies,
                "bytes_per_record": round(grown / (o.keys * copies)),
            },
        }

    def health(self, node_id: str) -> dict[str, Any]:
        c = self.cluster
        if isinstance(c, ProcessCluster):
            return dict(c._http(node_id, "/health"))
        assert isinstance(c, EmbeddedCluster)
        return dict(c.loop.call(c.nodes[node_id].health))

    def copies(self) -> int:
        return min(2, len(self.cluster.live_nodes()))

    async def singles(self, url: str, key: str) -> tuple[list[float], int]:
        """Sequential one-op writes of ``key`` at ``url``: (latencies, failed)."""
        client = await WireClient.open(url, self.token, self.opts.step_s)
        latencies, failed = [], 0
        try:
            for _ in range(self.opts.singles):
                frame = batch_frame([key], ["v"], self.millis, next(self.counter))
                t0 = time.perf_counter()
                acked, _ = succeeded(await client.write(frame))
                latencies.append(time.perf_counter() - t0)
                failed += 1 - acked
        finally:
            await client.close()
        return latencies, failed

    async def read_all(self) -> dict[str, Any]:
        """Every key through QUERY_SUB pages (``limit`` + ``nextCursor``), each key and value
        checked against what the fill wrote."""
        url = self.cluster.client_url(self.cluster.live_nodes()[0])
        read = await paged_read(url, self.token, self.opts.keys, self.opts.step_s, self.progress)
        return {**read, "method": f"paged QUERY_SUB, {PAGE} rows per page"}

    # --- kills ------------------------------------------------------------------------

    def stable(self, sample: list[int]) -> PartitionTable | None:
        """Survivors agree on one table over exactly themselves, every sampled key is on
        its owner and backups with the value written, and ``/health`` says ``safe`` if
        the nodes report it."""
        live = sorted(self.cluster.live_nodes())
        try:
            tables = [self.cluster.table(n) for n in live]
            if any(t is None or sorted(t.node_ids()) != live for t in tables):
                return None
            if len({t.version for t in tables if t}) != 1:
                return None
            table = tables[0]
            assert table is not None
            for i in sample:
                key = key_for(i)
                pid = partition_id(key)
                for holder in (table.owners[pid], *table.backups[pid]):
                    rec = self.cluster.inspect(holder, MAP, key).get("record")
                    if rec is None or rec.get("value") != value_for(i):
                        return None
            if any(self.health(n).get("safe") is False for n in live):
                return None
        except (AssertionError, OSError, TimeoutError):
            return None  # a node busy or between tables: not stable yet
        return table

    async def first_ack(self, url: str, key: str, within: float) -> float:
        """Write ``key`` through ``url`` until one write is acked; when (monotonic) it was."""
        client = await WireClient.open(url, self.token, self.opts.step_s)
        started = time.monotonic()
        try:
            while time.monotonic() - started < within:
                frame = batch_frame([key], ["failover"], self.millis, next(self.counter))
                acked, _ = succeeded(await client.write(frame))
                if acked:
                    return time.monotonic()
                await asyncio.sleep(0.005)  # polling period between refused attempts
        finally:
            await client.close()
        raise TimeoutError(f"no acked write of {key} within {within:.0f} s")

    def kills(self) -> dict[str, Any]:
        ids = list(self.cluster.live_nodes())
        sample = [i * self.opts.keys // REPLICA_SAMPLE for i in range(REPLICA_SAMPLE)]
        failover, stable = [], []
        for k in range(self.opts.kills):
            victim, survivor = ids[1 + k % (len(ids) - 1)], ids[0]
            owners = self.cluster.any_table().owners
            # a key of the victim's partitions that the replica check does not sample
            key = next(
                f"failover-{j}"
                for j in itertools.count()
                if owners[partition_id(f"failover-{j}")] == victim
            )
            url = self.cluster.client_url(survivor)
            kill_at = time.monotonic()
            self.cluster.kill(victim)
            acked_at = asyncio.run(self.first_ack(url, key, FAILOVER_TIMEOUT_S))
            failover.append(acked_at - kill_at)
            _poll(lambda: self.stable(sample), STABLE_TIMEOUT_S, "a stable cluster")
            stable.append(time.monotonic() - kill_at)
            self.progress(
                f"kill {k + 1}/{self.opts.kills} of {victim}: first ack after "
                f"{failover[-1]:.2f} s, stable after {stable[-1]:.2f} s; restarting it"
            )
            self.cluster.restart(victim)
            _poll(lambda: self.stable(sample), STABLE_TIMEOUT_S, "the cluster re-formed")
        method = "survivors agree on a table over themselves + sampled keys on owner and backups"
        return {
            "failover": latency_ms(failover),
            "stable": latency_ms(stable),
            "stable_method": method + " (admin routes), and /health says safe on every survivor",
        }

    # --- the run ----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        o, c = self.opts, self.cluster
        mode = "processes" if isinstance(c, ProcessCluster) else "in-process"
        self.progress(f"starting {o.nodes} nodes ({mode})")
        c.start(o.nodes, prefix="bench")
        c.wait_until_formed(FORM_TIMEOUT_S)
        self.progress(f"writing {o.keys:,} keys in {o.batch_size}-op batches")
        fill = asyncio.run(self.fill())
        table = c.any_table()
        key = "single-0"
        owner = table.owners[partition_id(key)]
        self.progress(f"{o.singles} single writes to the owner, then via a forwarding node")
        owner_lat, failed_owner = asyncio.run(self.singles(c.client_url(owner), key))
        others = [n for n in c.live_nodes() if n != owner]
        fwd_lat: list[float] = []
        failed_fwd = 0
        if others:
            fwd_lat, failed_fwd = asyncio.run(self.singles(c.client_url(others[0]), key))
        self.progress(f"reading {o.keys:,} keys")
        read = asyncio.run(self.read_all())
        kills: dict[str, Any] = {}
        if o.kills and o.nodes > 1:
            self.progress(f"{o.kills} kills (failure timeout applies)")
            kills = self.kills()
        memory = fill.pop("memory")
        return {
            "started": self.started,
            "machine": machine.describe(),
            "cluster": {
                "nodes": o.nodes,
                "mode": mode,
                "keys": o.keys,
                "copies": self.copies(),
                "connections": o.connections,
                "batch_size": o.batch_size,
            },
            "writes": {
                **fill,
                "failed": fill["failed"] + failed_owner + failed_fwd,
                "single_ops_per_s": rate(len(owner_lat), sum(owner_lat)),
                "owner_latency": latency_ms(owner_lat),
                "forwarded_latency": latency_ms(fwd_lat) if fwd_lat else None,
            },
            "memory": memory,
            "read": read,
            "kills": kills,
        }


def run(opts: BenchOptions) -> int:
    """Run the bench, print the report; 1 if any write failed or a key was not read."""
    settings = ClusterSettings(
        jwt_secret=secrets.token_hex(32), cluster_secret=secrets.token_hex(32)
    )
    loop: LoopThread | None = None
    if opts.processes:
        cluster: ClusterController = ProcessCluster(settings)
    else:
        loop = LoopThread("topgun-bench")
        cluster = EmbeddedCluster(loop, settings)
    try:
        figures = Bench(opts, cluster).run()
    finally:
        cluster.close()
        if loop is not None:
            loop.close()
    print(format_report(figures))
    if opts.json_dir is not None:
        print(f"figures written to {write_json(figures, opts.json_dir)}")
    read, failed = figures["read"], figures["writes"]["failed"]
    if failed:
        print(f"FAILED: {failed} writes were not acknowledged", file=sys.stderr)
    if not read["complete"]:
        faults = {k: read[k] for k in ("missing", "wrong_values", "duplicates", "error")}
        print(f"FAILED: the read of {read['keys']} written keys found {faults}", file=sys.stderr)
    return 1 if failed or not read["complete"] else 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``topgun bench`` flags (kept here so the CLI module only wires them in)."""
    d = BenchOptions()
    parser.add_argument("--nodes", type=int, default=d.nodes, help="cluster size")
    parser.add_argument(
        "--processes",
        action="store_true",
        help="run nodes as `topgun node` processes (default: in this process)",
    )
    parser.add_argument("--keys", type=int, default=d.keys, help="keys written, read, killed at")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--connections", type=int, default=d.connections)
    parser.add_argument(
        "--singles", type=int, default=d.singles, help="single writes per latency figure"
    )
    parser.add_argument("--kills", type=int, default=d.kills, help="kills for failover figures")
    parser.add_argument("--json", action="store_true", help="also write the figures to reports/")


def from_args(args: argparse.Namespace) -> BenchOptions:
    if args.nodes < 1 or args.keys < args.batch_size or args.batch_size < 1:
        raise ValueError("need --nodes >= 1 and --keys >= --batch-size >= 1")
    if args.connections < 1 or args.singles < 2 or args.kills < 0:
        raise ValueError("need --connections >= 1, --singles >= 2, --kills >= 0")
    return BenchOptions(
        nodes=args.nodes,
        processes=args.processes,
        keys=args.keys,
        batch_size=args.batch_size,
        connections=args.connections,
        singles=args.singles,
        kills=args.kills,
        json_dir=Path("reports") if args.json else None,
    )
