"""The scale check of issue 11, on ``topgun node`` processes on loopback (figures, not a test).

1. fill: ``--keys`` keys written in batches to their owners (acked ops/s; every ack counted,
   and how many said ``REPLICATED``);
2. memory: RSS growth of the node processes over the fill / copies held (keys x 2), at the
   end of the fill and again after the first read (by then anti-entropy has built the Merkle
   trees of every partition it compares);
3. a paged read of every key (``QUERY_SUB`` ``limit`` + ``cursor``) through one node, while a
   watcher samples every node's ``/health`` and ``/metrics`` at a bounded interval: no member
   may be declared dead (``topgun_members_declared_dead``, members in ``/health``) and the
   table version may not move;
4. SIGKILL of one node: the time until every survivor's ``/health`` lists exactly the
   survivors and says ``"safe": true``;
5. a second paged read of every key through a survivor.

Every key and value read is compared with what was written (:func:`value_for`). Progress goes
to stderr, a JSON summary to stdout (``--json PATH`` writes it too). Exit 1 when a check fails.

    .venv/bin/python benchmarks/scale.py [--keys 1000000] [--nodes 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from topgun.bench import machine
from topgun.bench.load import LoadResult, drive, routed_frames
from topgun.bench.read import PAGE, paged_read
from topgun.bench.run import Progress
from topgun.bench.stats import rate
from topgun.harness.cluster import ClusterSettings, ProcessCluster, admin_get

FORM_TIMEOUT_S = 60.0
PAGE_TIMEOUT_S = 60.0
"""Longest wait for one page (or one ack) before the run counts it as failed."""
HTTP_TIMEOUT_S = 5.0
COPIES = 2


@dataclass
class NodeWatch:
    """What the watcher saw of one node."""

    samples: int = 0
    unanswered: int = 0
    slowest_health_s: float = 0.0
    versions: set[int] = field(default_factory=set)
    member_views: set[tuple[str, ...]] = field(default_factory=set)
    unsafe_samples: int = 0
    metrics_first: dict[str, float] = field(default_factory=dict)
    metrics_last: dict[str, float] = field(default_factory=dict)

    def delta(self, name: str) -> float:
        return self.metrics_last.get(name, 0.0) - self.metrics_first.get(name, 0.0)


WATCHED = ("topgun_members_declared_dead_total", "topgun_node_stalls_total")


def parse_metrics(text: str, names: tuple[str, ...] = WATCHED) -> dict[str, float]:
    """The values of unlabelled series ``names`` on a Prometheus text page."""
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in names:
            out[name] = float(value)
    return out


class Watcher:
    """Samples every given node's ``/health`` and ``/metrics`` each ``interval`` seconds on a
    thread (each request bounded by :data:`HTTP_TIMEOUT_S`) until stopped."""

    def __init__(self, cluster: ProcessCluster, nodes: list[str], interval: float) -> None:
        self.cluster = cluster
        self.nodes = nodes
        self.interval = interval
        self.seen = {n: NodeWatch() for n in nodes}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scale-watcher", daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(len(self.nodes) * 2 * HTTP_TIMEOUT_S + self.interval + 1)
        self.sample()  # the state after the phase, counters included

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> None:
        token = self.cluster.admin_token()
        for node in self.nodes:
            w = self.seen[node]
            url = self.cluster.client_url(node)
            t0 = time.monotonic()
            try:
                health = admin_get(url, "/health", token, HTTP_TIMEOUT_S)
                w.slowest_health_s = max(w.slowest_health_s, time.monotonic() - t0)
                metrics = parse_metrics(self.cluster.metrics_text(node))
            except (OSError, AssertionError, ValueError):
                w.unanswered += 1
                continue
            w.samples += 1
            w.versions.add(int(health["partitionMapVersion"]))
            w.member_views.add(tuple(health["members"]))
            w.unsafe_samples += health.get("safe") is not True
            if not w.metrics_first:
                w.metrics_first = metrics
            w.metrics_last = metrics

    def summary(self) -> dict[str, Any]:
        return {
            node: {
                "samples": w.samples,
                "unanswered": w.unanswered,
                "slowest_health_ms": round(w.slowest_health_s * 1000, 1),
                "table_versions": sorted(w.versions),
                "member_views": [list(v) for v in sorted(w.member_views)],
                "unsafe_samples": w.unsafe_samples,
                "declared_dead": w.delta(WATCHED[0]),
                "stalls": w.delta(WATCHED[1]),
            }
            for node, w in self.seen.items()
        }


class Scale:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        secret = secrets.token_hex(32)
        self.cluster = ProcessCluster(ClusterSettings(jwt_secret=secret, cluster_secret=secret))
        self.progress = Progress()
        self.token = self.cluster.token("scale")
        self.checks: list[dict[str, Any]] = []
        self.rss_before = 0

    def check(self, name: str, ok: bool, detail: Any) -> None:
        self.checks.append({"check": name, "ok": bool(ok), "detail": detail})
        self.progress(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")

    def rss(self) -> int:
        procs = self.cluster.procs
        return sum(machine.rss_bytes(procs[n].popen.pid) for n in self.cluster.live_nodes())

    def health(self, node: str) -> dict[str, Any] | None:
        try:
            url = self.cluster.client_url(node)
            return dict(admin_get(url, "/health", self.cluster.admin_token(), HTTP_TIMEOUT_S))
        except (OSError, ValueError):
            return None

    def wait_safe(self, within: float, since: float | None = None) -> float | None:
        """Seconds since ``since`` (monotonic; default now) until every live node's ``/health``
        lists exactly the live nodes and says safe, polled every 0.1 s; None if that is not
        seen within ``within`` seconds."""
        live = sorted(self.cluster.live_nodes())
        started = time.monotonic() if since is None else since
        while time.monotonic() - started < within:
            answers = [self.health(n) for n in live]
            if all(
                h is not None and h.get("safe") is True and sorted(h["members"]) == live
                for h in answers
            ):
                return time.monotonic() - started
            time.sleep(0.1)  # the polling period; the answers decide
        return None

    def fill(self) -> dict[str, Any]:
        a, c = self.args, self.cluster
        urls = {n: c.client_url(n) for n in c.live_nodes()}
        targets = routed_frames(
            c.any_table(), urls, range(a.keys), a.batch_size, int(time.time() * 1000)
        )
        self.rss_before = before = self.rss()

        def report(done: LoadResult) -> None:
            self.progress(f"  fill: {done.acked:,}/{a.keys:,} acked")

        done = asyncio.run(
            drive(
                targets,
                self.token,
                connections=a.connections,
                step_s=PAGE_TIMEOUT_S,
                progress=report,
            )
        )
        del targets
        grown = self.rss() - before
        held = a.keys * COPIES
        figures: dict[str, Any] = {
            "acked": done.acked,
            "replicated_at_ack": done.replicated,
            "seconds": round(done.seconds, 2),
            "acked_ops_per_s": rate(done.acked, done.seconds),
            "rss_growth_mb": round(grown / 1e6, 1),
            "held_records": held,
            "bytes_per_held_record": round(grown / held, 1),
        }
        self.check("every write acked", done.acked == a.keys, f"{done.acked:,}/{a.keys:,}")
        self.check("<= 300 B per held record", grown / held <= 300, f"{grown / held:.0f} B")
        return figures

    def memory_now(self, label: str) -> dict[str, Any]:
        grown = self.rss() - self.rss_before
        per = grown / (self.args.keys * COPIES)
        self.check(f"<= 300 B per held record {label}", per <= 300, f"{per:.0f} B")
        return {"rss_growth_mb": round(grown / 1e6, 1), "bytes_per_held_record": round(per, 1)}

    def read(self, through: str, label: str) -> dict[str, Any]:
        live = self.cluster.live_nodes()
        self.progress(f"{label}: paged read of {self.args.keys:,} keys through {through}")
        with Watcher(self.cluster, live, self.args.watch_interval) as watcher:
            url = self.cluster.client_url(through)
            figures = asyncio.run(
                paged_read(url, self.token, self.args.keys, PAGE_TIMEOUT_S, self.progress)
            )
        watched = watcher.summary()
        faults = ("found", "missing", "wrong_values", "other_keys", "duplicates", "error")
        shown = {k: figures[k] for k in faults}
        complete = figures["complete"] and figures["other_keys"] == 0  # it wrote no others
        self.check(f"{label}: every key and value read", complete, shown)
        dead = {n: w["declared_dead"] for n, w in watched.items() if w["declared_dead"]}
        views = {
            n: w["member_views"] for n, w in watched.items() if w["member_views"] != [sorted(live)]
        }
        self.check(
            f"{label}: no member declared dead",
            not dead and not views,
            {"declared_dead": dead, "other_member_views": views},
        )
        versions = {n: w["table_versions"] for n, w in watched.items()}
        one_version = len({v for vs in versions.values() for v in vs}) == 1
        self.check(f"{label}: table version unchanged", one_version, versions)
        unanswered = {n: w["unanswered"] for n, w in watched.items() if w["unanswered"]}
        self.check(f"{label}: /health always answered", not unanswered, unanswered or "yes")
        return {**figures, "watched": watched}

    def run(self) -> dict[str, Any]:
        a, c = self.args, self.cluster
        self.progress(f"starting {a.nodes} node processes")
        ids = c.start(a.nodes, prefix="scale")
        c.wait_until_formed(FORM_TIMEOUT_S)
        self.progress(
            f"fill: {a.keys:,} keys, {a.connections} connections x {a.batch_size}-op batches"
        )
        fill = self.fill()
        settled = self.wait_safe(a.safe_timeout)
        self.check("safe after the fill", settled is not None, f"after {settled} s")
        first = self.read(ids[0], "read 1")
        memory_after_read = self.memory_now("after read 1")
        victim, through = ids[-1], ids[0]
        self.progress(f"SIGKILL {victim}")
        killed_at = time.monotonic()
        c.kill(victim)
        to_safe = self.wait_safe(a.safe_timeout, killed_at)
        within = to_safe is not None and to_safe <= a.safe_within
        shown = "never" if to_safe is None else f"{to_safe:.2f} s"
        self.check(f"survivors safe within {a.safe_within:.0f} s of the kill", within, shown)
        second = self.read(through, "read 2")
        return {
            "machine": machine.describe(),
            "cluster": {"nodes": a.nodes, "keys": a.keys, "copies": COPIES, "page": PAGE},
            "fill": fill,
            "memory_after_read_1": memory_after_read,
            "read_before_kill": first,
            "kill": {
                "victim": victim,
                "seconds_to_safe": None if to_safe is None else round(to_safe, 2),
            },
            "read_after_kill": second,
            "checks": self.checks,
            "passed": all(ch["ok"] for ch in self.checks),
        }

    def keep_logs(self, into: Path) -> None:
        into.mkdir(parents=True, exist_ok=True)
        for node, proc in self.cluster.procs.items():
            if proc.log_path.exists():
                shutil.copy(proc.log_path, into / f"{node}.log")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--watch-interval", type=float, default=0.5, help="seconds between samples")
    parser.add_argument("--safe-within", type=float, default=30.0, help="the check's limit")
    parser.add_argument("--safe-timeout", type=float, default=120.0, help="longest wait for safe")
    parser.add_argument("--json", type=Path, default=None, metavar="PATH")
    parser.add_argument("--logs", type=Path, default=None, metavar="DIR", help="keep node logs")
    args = parser.parse_args()
    if args.nodes < 3 or args.keys < args.batch_size:
        parser.error("need --nodes >= 3 (a kill leaves a majority) and --keys >= --batch-size")
    scale = Scale(args)
    try:
        summary = scale.run()
    finally:
        if args.logs is not None:
            scale.keep_logs(args.logs)
        scale.cluster.close()
    text = json.dumps(summary, indent=2)
    print(text)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
