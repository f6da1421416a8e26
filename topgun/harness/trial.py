"""One fault trial: writers running against a cluster while a nemesis acts, then the check.

Steps drive it in runbook order: start the writers, run fault schedules (each one a loop
bounded by its stated duration), heal, let the cluster settle, read back and check. A trial
whose writers ask for a write concern is checked at that level: only writes acknowledged
at it must survive, lower acks lost are figures (:mod:`topgun.harness.checker`). The
node-side questions a partition scenario asks (did a cut-off node keep applying writes?)
are answered from each node's own ``/metrics`` counters, read over the harness's control
address, which no fault cuts.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from topgun.core.concern import Level
from topgun.core.hashing import partition_id
from topgun.harness.checker import SetCheck, check
from topgun.harness.cluster import ClusterController, ProcessCluster
from topgun.harness.nemesis import Nemesis
from topgun.harness.waiting import WaitTimeout, eventually
from topgun.harness.writers import Writers, WriterSettings, key_of, read_back

PROBE_KEYS_PER_WRITER = 2
"""Never-written keys read back too: a value there is a phantom (unexpected)."""
APPLIED_METRIC = "topgun_ops_applied_total"
READ_TIMEOUT_S = 5.0
"""Limit for each read-back query (one page of keys)."""


@dataclass
class Trial:
    cluster: ClusterController
    writers: Writers
    nemesis: Nemesis
    map_name: str
    result: SetCheck | None = None
    read: dict[str, Any] = field(default_factory=dict)
    applied_marks: dict[str, float] = field(default_factory=dict)
    keep_at: Level | None = None
    """The level whose acks must survive (None: every ack)."""

    @classmethod
    def start(
        cls,
        world: Any,
        *,
        writers: int,
        writes_per_key: int,
        write_timeout_s: float,
        pinned_to: str | None = None,
        levels: list[str | None] | None = None,
    ) -> Trial:
        """``pinned_to`` (a node id): one more writer, talking to that node alone.
        ``levels``: the write concern of each writer, in order (None: the server's
        default); the trial is then checked at the highest of them."""
        cluster = world.cluster
        map_name = f"trial-{uuid.uuid4().hex[:8]}"
        settings = WriterSettings(
            map_name=map_name,
            seeds=cluster.seeds,
            token=cluster.token("writer"),
            writes_per_key=writes_per_key,
            write_timeout_s=write_timeout_s,
        )
        if pinned_to is not None:
            settings.pinned[writers] = cluster.client_url(pinned_to)
            writers += 1
        asked = [Level[name] for name in levels or () if name is not None]
        settings.concern_of = {i: name for i, name in enumerate(levels or ()) if name is not None}
        trial = cls(cluster, Writers(world.loop, settings, writers), Nemesis(cluster), map_name)
        trial.keep_at = max(asked, default=None)
        trial.writers.start()
        return trial

    @staticmethod
    def of(world: Any) -> Trial:
        """The trial a scenario started (``world.notes["trial"]``)."""
        trial = world.notes.get("trial")
        assert isinstance(trial, Trial), "no writers were started in this scenario"
        return trial

    def keys(self) -> list[str]:
        """Every key written, and after each writer's last key a few it never wrote."""
        per_key = self.writers.settings.writes_per_key
        last: dict[int, int] = {}
        for w in self.writers.history:
            last[w.writer] = max(last.get(w.writer, -1), w.seq // per_key)
        slots = {w: last.get(w, -1) + 1 + PROBE_KEYS_PER_WRITER for w in range(self.writers.count)}
        return [key_of(w, k) for w, n in slots.items() for k in range(n)]

    def run_for(self, seconds: float, act: Callable[[float], None] | None = None) -> None:
        """Let the writers write for ``seconds``; ``act(elapsed)`` is called between turns."""
        deadline = time.monotonic() + seconds
        started = time.monotonic()
        while (now := time.monotonic()) < deadline:
            if act is not None:
                act(now - started)
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def wait_for_acks(self, count: int, within: float) -> None:
        """Wait until the writers have ``count`` more acknowledged writes than now."""
        target = self.writers.ok_count() + count

        def acked() -> None:
            ok = self.writers.ok_count()
            assert ok >= target, f"{ok} acknowledged writes, waiting for {target}"

        eventually(acked, within, f"{count} more acknowledged writes")

    def finish(self, within: float, *, once: bool = False) -> SetCheck:
        """Stop the writers, then read back until the check is clean or ``within`` runs out;
        ``once``: the first read is the verdict (what a reader right after a restart sees),
        each page of it given ``within``."""
        self.writers.stop(self.writers.settings.write_timeout_s + 2.0)
        keys = self.keys()

        def read(limit: float) -> SetCheck:
            self.read = read_back(
                self.writers.loop,
                self.cluster.seeds(),
                self.cluster.token("reader"),
                map_name=self.map_name,
                keys=keys,
                within=limit,
            )
            self.result = check(self.writers.history, self.read, self.keep_at)
            return self.result

        if once:
            return read(within)

        def settled() -> None:
            result = read(READ_TIMEOUT_S)
            assert result.valid, f"set check so far: {result.counts()}"

        with contextlib.suppress(WaitTimeout):  # the last check is the verdict; steps assert it
            eventually(settled, within, "a clean read-back")
        assert self.result is not None
        return self.result

    def report(self) -> dict[str, Any]:
        assert self.result is not None, "the trial has not been checked yet"
        return self.result.to_json(self.writers.history, self.nemesis.timeline)

    # --- replicas and node-side counters ----------------------------------------------

    def replica_mismatches(self, at_most: int) -> list[dict[str, Any]]:
        """Keys whose owner or a backup holds something other than the value read back,
        among ``at_most`` of the keys read (evenly spread over the history)."""
        table = self.cluster.any_table()
        wrong = []
        present = [(k, v) for k, v in self.read.items() if v is not None]
        step = max(1, -(-len(present) // at_most))
        for key, value in present[::step]:
            pid = partition_id(key)
            for node in (table.owner(pid), *table.backups_of(pid)):
                held = (self.cluster.inspect(node, self.map_name, key).get("record") or {}).get(
                    "value"
                )
                if held != value:
                    wrong.append({"key": key, "node": node, "holds": held, "expected": value})
        return wrong

    def applied_during(self, nodes: list[str], seconds: float, after: float) -> dict[str, float]:
        """Let the writers write for ``seconds``; how many writes each of ``nodes`` applied
        as an owner from ``after`` seconds on (logged in the timeline too)."""
        self.run_for(after)
        before = {n: self.applied(n) for n in nodes}
        self.run_for(seconds - after)
        counts = {n: self.applied(n) - before[n] for n in nodes}
        self.nemesis.log("applied as owner", nodes, fromSecond=after, writes=counts)
        return counts

    def applied(self, node: str) -> float:
        """How many writes ``node`` has applied as an owner so far (its own counter)."""
        if not isinstance(self.cluster, ProcessCluster):
            raise AssertionError("node counters are read over HTTP: processes or hosts mode")
        for line in self.cluster.metrics_text(node).splitlines():
            if line.startswith(APPLIED_METRIC + " "):
                return float(line.split()[1])
        raise AssertionError(f"{node} reports no {APPLIED_METRIC}")
