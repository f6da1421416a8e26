"""The bench's pure pieces: percentiles, rates, the report and its JSON (no timing)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topgun.bench.load import routed_frames
from topgun.bench.report import format_report, write_json
from topgun.bench.stats import latency_ms, percentile, rate
from topgun.bench.workload import key_for
from topgun.core.codec import decode_frame
from topgun.core.hashing import partition_id
from topgun.core.messages import OpBatch
from topgun.core.table import PartitionTable, ideal_assignment


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 99) == 5
    assert percentile([3, 1, 2], 0) == 1 and percentile([3, 1, 2], 100) == 3
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1], 101)


@given(st.lists(st.floats(0, 1e6), min_size=1), st.floats(0, 100))
def test_percentile_lies_within_the_samples(samples: list[float], q: float) -> None:
    assert min(samples) <= percentile(samples, q) <= max(samples)


def test_latency_figures_are_milliseconds() -> None:
    fig = latency_ms([0.001, 0.002, 0.003])
    assert fig == {"p50_ms": 2.0, "p99_ms": 2.98, "max_ms": 3.0, "samples": 3}
    assert rate(10, 2.0) == 5.0 and rate(10, 0.0) == 0.0


def figures() -> dict[str, Any]:
    lat = {"p50_ms": 0.25, "p99_ms": 1.5, "max_ms": 2.0, "samples": 300}
    return {
        "started": "2026-12-01 21:00:00 UTC",
        "machine": {"cores": 2, "cpu": "CPU", "python": "CPython 3.11.7", "os": "Linux 6"},
        "cluster": {
            "nodes": 3, "mode": "in-process", "keys": 20000, "copies": 2,
            "connections": 16, "batch_size": 100,
        },
        "writes": {
            "acked": 20000, "replicated": 20000, "failed": 0, "batched_ops_per_s": 20000.0,
            "single_ops_per_s": 3500.0, "owner_latency": lat, "forwarded_latency": None,
        },
        "memory": {"bytes_per_record": 190},
        "read": {
            "keys": 20000, "found": 20000, "seconds": 1.5, "pages": 20, "wrong_values": 0,
            "error": None, "method": "paged",
        },
        "kills": {"failover": {**lat, "samples": 2}, "stable": None, "stable_method": "table"},
    }  # fmt: skip


def test_report_shows_every_figure_and_says_what_is_missing() -> None:
    text = format_report(figures())
    assert "2 cores, CPU; CPython 3.11.7; Linux 6" in text
    assert "20,000 acked ops/s (16 conns x 100-op batches; failed 0" in text
    assert "p50 0.25 ms  p99 1.50 ms  (300 writes)" in text
    assert "ack via forwarding node      n/a" in text
    assert (
        "190 B" in text and "20,000 found in 20 pages, 0 wrong values, error: none (paged)" in text
    )
    assert "p50 0.00 s  max 0.00 s  (2 kills)" in text
    assert "stable after kill            n/a" in text


def test_json_lands_under_the_given_directory(tmp_path: Path) -> None:
    path = write_json(figures(), tmp_path / "reports")
    assert path.parent == tmp_path / "reports" and path.name.startswith("bench-")
    assert json.loads(path.read_text())["memory"]["bytes_per_record"] == 190


def test_report_words_one_node_and_small_runs() -> None:
    fig = figures()
    fig["cluster"].update(nodes=1, copies=1, keys=5000)
    text = format_report(fig)
    assert "1 node (in-process), 5,000 keys, 1 copy" in text
    assert "no backups on one node" in text
    assert "190 B (RSS growth: fixed costs weigh below ~100,000 keys)" in text


def test_routed_frames_send_each_key_to_its_owner_once() -> None:
    nodes = ["a", "b", "c"]
    owners, backups = ideal_assignment(nodes)
    urls = {n: f"ws://{n}" for n in nodes}
    table = PartitionTable(1, (), tuple(owners), tuple(tuple(b) for b in backups))
    plan = routed_frames(table, urls, range(500), 100, 1000)
    seen: list[str] = []
    for url, frames in plan.items():
        for frame in frames:
            (batch,) = decode_frame(frame)
            assert isinstance(batch, OpBatch) and len(batch.ops) <= 100
            for op in batch.ops:
                assert urls[owners[partition_id(op.key)]] == url
                seen.append(op.key)
    assert sorted(seen) == sorted(key_for(i) for i in range(500))
