"""Scenario evidence: the timeline table, partition-map summaries and the ownership picture."""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET

from topgun.core.table import NodeInfo, build_table, ideal_assignment
from topgun.harness.evidence import Timeline, ownership_svg, table_summary


def _table(version: int, nodes: list[str]):  # type: ignore[no-untyped-def]
    infos = [NodeInfo(n, f"ws://{n}:1") for n in nodes]
    return build_table(version, infos, ideal_assignment(nodes))


def test_timeline_is_a_csv_table_with_readable_details() -> None:
    timeline = Timeline(started=0.0)
    timeline.record("write test/key-1", value={"a": 1}, note='say "hi", then go', skipped=None)
    rows = list(csv.reader(io.StringIO(timeline.as_csv())))
    assert rows[0] == ["seconds", "event", "details"]
    assert rows[1][1] == "write test/key-1"
    assert rows[1][2] == 'value={"a": 1}; note=say "hi", then go'


def test_summary_counts_what_each_node_owns_and_backs_up() -> None:
    summary = table_summary(_table(4, ["a", "b", "c"]))
    assert summary["version"] == 4 and summary["partitions"] == 271
    assert {n: s["owns"] for n, s in summary["nodes"].items()} == {"a": 91, "b": 90, "c": 90}
    assert sum(s["backs up"] for s in summary["nodes"].values()) == 271


def test_ownership_picture_has_one_square_per_partition_and_outlines_the_key() -> None:
    before, after = _table(1, ["a", "b", "c"]), _table(2, ["a", "b"])
    svg = ET.fromstring(ownership_svg([("before", before), ("after", after)], marked=236))
    squares = [e for e in svg.iter("{http://www.w3.org/2000/svg}rect") if e.find("*") is not None]
    assert len(squares) == 2 * 271
    outlined = [e for e in squares if e.get("stroke")]
    assert [e.find("*").text for e in outlined] == ["partition 236: c", "partition 236: a"]
