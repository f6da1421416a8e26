"""Acked writes/s at 16 connections x 100-op batches: the Python ceiling, one node, three.

In one run, against OS processes on 127.0.0.1, with the same pre-encoded frames of distinct
keys and the same load client (``topgun.bench.load``):

1. ``benchmarks/ceiling_server.py`` — decode each batch, LWW-merge every op into a dict, ack
   (and once more with its garbage collector off: ``ceiling-no-gc``);
2. one ``topgun node``;
3. three ``topgun node`` s, connections spread over them and each batch sent to the owner
   of its keys, as the smart client does; an op counts as backed up when its ack says
   ``REPLICATED`` (every backup confirmed before the ack);
4. the same after a client synced the map (``SYNC_INIT``, as a TopGun client does for the
   maps it uses), so that every owner keeps its Merkle trees current on each write as well
   (``three-synced``; without a sync, anti-entropy builds trees only on the backups).

``--profile DIR`` samples every node process with py-spy during the timed load and writes
collapsed stacks plus a summary of the hottest functions there. Figures, not assertions.

    .venv/bin/python benchmarks/throughput.py [--batches 3000] [--profile reports/profile]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from topgun.bench import machine
from topgun.bench.load import LoadResult, drive, routed_frames
from topgun.bench.stats import rate
from topgun.bench.wire import WireClient, key_frames
from topgun.core.table import PartitionTable
from topgun.harness.cluster import ClusterSettings, ProcessCluster

HERE = Path(__file__).resolve().parent
SECRET = "throughput-bench-secret-0123456789abcdef"
WARMUP_BATCHES = 200
TARGETS = ["ceiling", "ceiling-no-gc", "one", "three", "three-synced"]


def load(
    urls: dict[str, str],
    token: str,
    args: argparse.Namespace,
    table: PartitionTable | None,
    pids: list[int],
    *,
    synced: bool = False,
    **kw: Any,
) -> tuple[LoadResult, float]:
    """Warm-up, then the timed load; batches routed to their owner when ``table`` is given.
    Also the CPU seconds the server processes ``pids`` used during the timed load.
    ``synced``: a client syncs the map between the two."""
    millis = int(time.time() * 1000)
    keys = range(10_000_000, 10_000_000 + args.batches * args.batch_size)
    warm = range(WARMUP_BATCHES * args.batch_size)
    if table is None:
        (url,) = urls.values()
        plans = [{url: key_frames(r, args.batch_size, millis)} for r in (warm, keys)]
    else:
        plans = [routed_frames(table, urls, r, args.batch_size, millis) for r in (warm, keys)]

    async def both() -> tuple[LoadResult, float]:
        await drive(plans[0], token, connections=args.connections, **kw)
        if synced:
            client = await WireClient.open(next(iter(urls.values())), token)
            try:
                await client.sync_root()
            finally:
                await client.close()
        cpu = sum(machine.cpu_seconds(p) for p in pids)
        done = await drive(plans[1], token, connections=args.connections, **kw)
        return done, sum(machine.cpu_seconds(p) for p in pids) - cpu

    return asyncio.run(both())


def figures(done: LoadResult, cpu_s: float) -> dict[str, Any]:
    """Acked ops/s, and the server CPU per acked op: less sensitive to a busy machine."""
    return {
        "ops_per_s": rate(done.acked, done.seconds),
        "acked": done.acked,
        "server_cpu_us_per_op": round(cpu_s / done.acked * 1e6, 2) if done.acked else None,
    }


def ceiling(args: argparse.Namespace, *flags: str) -> dict[str, Any]:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "ceiling_server.py"), *flags], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("READY "):
            raise RuntimeError(f"ceiling server did not start: {line!r}")
        size = args.batch_size
        url = line.split()[1]
        done, cpu = load({"c": url}, "-", args, None, [proc.pid], count=lambda _: (size, 0))
    finally:
        proc.kill()
        proc.wait(10)
    return figures(done, cpu)


def profiler(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy")
    if spy is None:
        print("py-spy not found: pip install -e '.[bench]'", file=sys.stderr)
        return None
    cmd = [spy, "record", "-p", str(pid), "-o", str(out), "-f", "raw", "-r", "200"]
    return subprocess.Popen([*cmd, "-d", str(int(seconds) + 1), "--nonblocking"])


def _function(frame: str) -> str:
    """``name (path/file.py:line)`` → ``name (file.py)``: a function, whatever its line."""
    name, _, where = frame.partition(" (")
    return f"{name} ({where.rsplit('/', 1)[-1].split(':')[0]})"


def hottest(collapsed: Path, top: int = 25) -> list[str]:
    """Functions by share of samples: own time (leaf) and total (anywhere on the stack)."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text(encoding="utf-8").splitlines():
        stack, _, n = line.rpartition(" ")
        frames = [_function(f) for f in stack.split(";")]
        count = int(n)
        samples += count
        own[frames[-1]] += count
        for f in set(frames):
            total[f] += count
    lines = [f"{samples} samples; own% total% function"]
    for f, n in own.most_common(top):
        lines.append(f"{100 * n / samples:5.1f} {100 * total[f] / samples:5.1f} {f}")
    lines.append("-- by total --")
    for f, n in total.most_common(top):
        lines.append(f"{100 * own[f] / samples:5.1f} {100 * n / samples:5.1f} {f}")
    return lines


def cluster_run(nodes: int, args: argparse.Namespace, *, synced: bool = False) -> dict[str, Any]:
    cluster = ProcessCluster(ClusterSettings(jwt_secret=SECRET, cluster_secret=SECRET))
    try:
        ids = cluster.start(nodes, prefix="tp")
        cluster.wait_until_formed(60)
        urls = {n: cluster.client_url(n) for n in ids}
        token = cluster.token("bench")
        spies = []
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            expected_s = args.batches * args.batch_size / 20_000 + 5
            for n in ids:
                out = args.profile / f"{nodes}-nodes-{n}.txt"
                spies.append((out, profiler(cluster.procs[n].popen.pid, out, expected_s)))
        pids = [cluster.procs[n].popen.pid for n in ids]
        done, cpu = load(urls, token, args, cluster.any_table(), pids, synced=synced)
        for out, spy in spies:
            if spy is not None:
                spy.wait(60)
                if out.exists():
                    summary = out.with_suffix(".top.txt")
                    summary.write_text("\n".join(hottest(out)) + "\n", encoding="utf-8")
    finally:
        cluster.close()
    return {
        **figures(done, cpu),
        "failed": args.batches * args.batch_size - done.acked,
        "replicated_at_ack": done.replicated,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=3000, help="timed batches per target")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR")
    parser.add_argument("--only", choices=TARGETS, action="append")
    args = parser.parse_args()
    only = set(args.only or TARGETS)
    out: dict[str, Any] = {"machine": machine.describe()}
    for name, run in (
        ("ceiling", lambda: ceiling(args)),
        ("ceiling-no-gc", lambda: ceiling(args, "--no-gc")),
        ("one", lambda: cluster_run(1, args)),
        ("three", lambda: cluster_run(3, args)),
        ("three-synced", lambda: cluster_run(3, args, synced=True)),
    ):
        if name in only:
            out[name] = run()
            print(f"{name}: {out[name]}", file=sys.stderr)
    for ceiling_name in ("ceiling", "ceiling-no-gc"):
        if ceiling_name in out and "one" in out:
            top, one = out[ceiling_name], out["one"]
            out[f"one_vs_{ceiling_name}"] = round(one["ops_per_s"] / top["ops_per_s"], 2)
            cpu = top["server_cpu_us_per_op"], one["server_cpu_us_per_op"]
            if all(cpu):
                out[f"one_vs_{ceiling_name}_by_cpu"] = round(cpu[0] / cpu[1], 2)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
