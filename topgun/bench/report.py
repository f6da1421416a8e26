"""Turning the figures of a bench run into the text a user reads and the JSON kept."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def _n(count: int, noun: str, plural: str = "") -> str:
    return f"{count:,} {noun if count == 1 else plural or noun + 's'}"


def _lat(fig: dict[str, Any] | None) -> str:
    if not fig:
        return "n/a"
    return (
        f"p50 {fig['p50_ms']:.2f} ms  p99 {fig['p99_ms']:.2f} ms  ({_n(fig['samples'], 'write')})"
    )


def _fail(fig: dict[str, Any] | None) -> str:
    if not fig:
        return "n/a"
    return (
        f"p50 {fig['p50_ms'] / 1000:.2f} s  max {fig['max_ms'] / 1000:.2f} s"
        f"  ({_n(fig['samples'], 'kill')})"
    )


def format_report(figures: dict[str, Any]) -> str:
    """A two-column table of what was measured, with the machine and cluster on top."""
    m, c = figures["machine"], figures["cluster"]
    w, r = figures["writes"], figures.get("read") or {}
    mem = figures.get("memory") or {}
    kills = figures.get("kills") or {}
    backed = (
        f"backups current at ack {w['replicated']:,}/{w['acked']:,}"
        if c["copies"] > 1
        else "no backups on one node"
    )
    per_record = "n/a"
    if mem:
        per_record = f"{mem['bytes_per_record']:,} B"
        if c["keys"] < 100_000:
            per_record += " (RSS growth: fixed costs weigh below ~100,000 keys)"
    rows = [
        ("machine", f"{m['cores']} cores, {m['cpu']}; {m['python']}; {m['os']}"),
        (
            "cluster",
            f"{_n(c['nodes'], 'node')} ({c['mode']}), {_n(c['keys'], 'key')}, "
            f"{_n(c['copies'], 'copy', 'copies')}",
        ),
        (
            "batched writes",
            f"{w['batched_ops_per_s']:,.0f} acked ops/s ({c['connections']} conns x "
            f"{c['batch_size']}-op batches; failed {w['failed']}, {backed})",
        ),
        ("single writes", f"{w['single_ops_per_s']:,.0f} acked ops/s (one at a time)"),
        ("ack to owner", _lat(w.get("owner_latency"))),
        ("ack via forwarding node", _lat(w.get("forwarded_latency"))),
        ("memory per held record", per_record),
        (
            f"read of {r.get('keys', 0):,} keys",
            f"{r['seconds']:.2f} s, {r['found']:,} found in {r['pages']:,} pages, "
            f"{r['wrong_values']} wrong values, error: {r['error'] or 'none'} ({r['method']})"
            if r
            else "n/a",
        ),
        ("failover (kill → first ack)", _fail(kills.get("failover"))),
        ("stable after kill", _fail(kills.get("stable"))),
    ]
    if kills.get("stable_method"):
        rows.append(("  stable means", kills["stable_method"]))
    width = max(len(k) for k, _ in rows)
    lines = [f"topgun bench ({figures['started']})"]
    lines += [f"  {k.ljust(width)}  {v}" for k, v in rows]
    return "\n".join(lines)


def write_json(figures: dict[str, Any], directory: Path) -> Path:
    """``reports/bench-<UTC time>.json``; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = directory / f"bench-{stamp}.json"
    path.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return path
