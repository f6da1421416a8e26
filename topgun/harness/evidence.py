"""What a scenario saw, in forms a reader takes in at a glance: a timeline of events, a
summary of a partition map, and a picture of who owns which partition.

Pure functions over plain data; attaching them to the report is the behave hooks' job.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass, field
from typing import Any

from topgun.core.table import PartitionTable

_PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1")
_CELL, _COLUMNS = 14, 28


@dataclass
class Timeline:
    """Events of one scenario, each stamped with the seconds since the scenario began."""

    started: float = field(default_factory=time.monotonic)
    events: list[dict[str, Any]] = field(default_factory=list)

    def record(self, event: str, **details: Any) -> None:
        entry = {"t_s": round(time.monotonic() - self.started, 3), "event": event}
        entry.update({k: v for k, v in details.items() if v is not None})
        self.events.append(entry)

    def as_csv(self) -> str:
        """One row per event (Allure shows CSV attachments as a table)."""
        rows = ["seconds,event,details"]
        for e in self.events:
            details = {k: v for k, v in e.items() if k not in ("t_s", "event")}
            text = "; ".join(f"{k}={_plain(v)}" for k, v in details.items())
            rows.append(",".join(_csv_cell(str(x)) for x in (e["t_s"], e["event"], text)))
        return "\n".join(rows) + "\n"


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _csv_cell(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def table_summary(table: PartitionTable) -> dict[str, Any]:
    """A partition map in a few lines: its version, nodes and how many partitions each
    owns and backs up (the full map goes into a separate attachment)."""
    counts = {n: {"owns": 0, "backs up": 0} for n in table.node_ids()}
    for owner, backups in zip(table.owners, table.backups, strict=True):
        counts.setdefault(owner, {"owns": 0, "backs up": 0})["owns"] += 1
        for b in backups:
            counts.setdefault(b, {"owns": 0, "backs up": 0})["backs up"] += 1
    return {
        "version": table.version,
        "partitions": table.partition_count,
        "nodes": {n.node_id: {"address": n.websocket, **counts[n.node_id]} for n in table.nodes},
    }


def ownership_svg(tables: list[tuple[str, PartitionTable]], marked: int | None = None) -> str:
    """Side-by-side grids, one per table, one square per partition coloured by its owner;
    ``marked`` outlines one partition (the key the scenario is about)."""
    nodes = sorted({n for _, t in tables for n in (*t.node_ids(), *t.owners)})
    colour = {n: _PALETTE[i % len(_PALETTE)] for i, n in enumerate(nodes)}
    rows = -(-max(t.partition_count for _, t in tables) // _COLUMNS)
    width, height = _COLUMNS * _CELL + 20, rows * _CELL + 40
    parts = []
    for i, (title, table) in enumerate(tables):
        x0 = i * width
        parts.append(f'<text x="{x0}" y="14" font-size="13">{html.escape(title)}</text>')
        for pid, owner in enumerate(table.owners):
            x = x0 + (pid % _COLUMNS) * _CELL
            y = 24 + (pid // _COLUMNS) * _CELL
            stroke = ' stroke="#000" stroke-width="2"' if pid == marked else ""
            parts.append(
                f'<rect x="{x}" y="{y}" width="{_CELL - 1}" height="{_CELL - 1}" '
                f'fill="{colour[owner]}"{stroke}><title>partition {pid}: {owner}</title></rect>'
            )
    legend_y = height + 4
    for i, node in enumerate(nodes):
        x = i * 120
        parts.append(f'<rect x="{x}" y="{legend_y}" width="12" height="12" fill="{colour[node]}"/>')
        parts.append(
            f'<text x="{x + 16}" y="{legend_y + 11}" font-size="12">{html.escape(node)}</text>'
        )
    total_w, total_h = width * len(tables), legend_y + 20
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{total_h}" '
        f'font-family="sans-serif">{"".join(parts)}</svg>'
    )
