"""The report tooling: traceability verdicts, mode stamping and the CI summary line."""

from __future__ import annotations

import json
from pathlib import Path

from topgun.reporting import junit_summary, traceability
from topgun.reporting.results import mark_cluster_mode, read_results


def _result(directory: Path, name: str, status: str, *tags: str) -> None:
    labels = [{"name": "tag", "value": t} for t in tags]
    labels.append({"name": "feature", "value": "F"})
    body = {"name": name, "status": status, "labels": labels, "historyId": name}
    (directory / f"{name}-result.json").write_text(json.dumps(body), encoding="utf-8")


def test_every_criterion_met_exits_zero(tmp_path: Path) -> None:
    for i in range(1, 8):
        _result(tmp_path, f"s{i}", "passed", f"AC-{i}", "critical")
    out = tmp_path / "t.md"
    assert traceability.main([str(tmp_path), "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.count("**MET**") == 7


def test_uncovered_or_failing_criterion_exits_nonzero(tmp_path: Path) -> None:
    for i in range(1, 7):
        _result(tmp_path, f"s{i}", "passed", f"AC-{i}")
    _result(tmp_path, "s4b", "failed", "AC-4")
    out = tmp_path / "t.md"
    assert traceability.main([str(tmp_path), "-o", str(out)]) == 1
    text = out.read_text(encoding="utf-8")
    assert "| AC-7 |" in text and "NOT COVERED" in text
    assert "**NOT MET**" in text  # AC-4: one of its scenarios failed


def test_marking_a_run_keeps_two_modes_apart(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _result(a, "same", "passed", "AC-1")
    _result(b, "same", "failed", "AC-1")
    assert mark_cluster_mode(a, "embedded") == 1
    assert mark_cluster_mode(b, "processes") == 1
    ids = {json.loads(p.read_text())["historyId"] for d in (a, b) for p in d.glob("*.json")}
    assert len(ids) == 2
    modes = {r.cluster: r.status for d in (a, b) for r in read_results(d)}
    assert modes == {"embedded": "passed", "processes": "failed"}


def test_summary_line_counts_errors_as_failed(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.xml").write_text(
        '<testsuites><testsuite tests="5" failures="1" errors="1" skipped="1"/></testsuites>'
    )
    (tmp_path / "b.xml").write_text('<testsuite tests="3" failures="0" errors="0"/>')
    assert junit_summary.main([str(tmp_path), "--extra-failed", "2"]) == 0
    assert capsys.readouterr().out.strip() == "5 passed, 4 failed, 1 skipped"
