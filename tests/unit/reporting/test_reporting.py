"""The report tooling: verdicts, the traceability table, mode stamping, the report's tree
and the CI summary line."""

from __future__ import annotations

import json
from pathlib import Path

from topgun.reporting import junit_summary, overview, traceability
from topgun.reporting.html import _ANALYTICS
from topgun.reporting.results import mark_cluster_mode, read_results
from topgun.reporting.verdicts import CRITERIA, MET, NOT_MET, NOT_RUN, PARTLY, judge

from .synthetic import write_result as _result


def test_every_criterion_met_exits_zero(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    for i in range(1, 8):
        _result(tmp_path, f"s{i}", "passed", f"AC-{i}", "critical")
    out = tmp_path / "t.md"
    assert traceability.main([str(tmp_path), "-o", str(out)]) == 0
    assert out.read_text(encoding="utf-8").count("**MET**") == 7
    printed = capsys.readouterr().out.splitlines()
    assert len([line for line in printed if line.startswith("AC-")]) == 7  # one line each
    assert printed[-1] == (
        "7 criteria met, 0 not met, 0 not judged (implementations: topgun (embedded))"
    )


def test_uncovered_or_failing_criterion_exits_nonzero(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    for i in range(1, 7):
        _result(tmp_path, f"s{i}", "passed", f"AC-{i}")
    _result(tmp_path, "s4b", "failed", "AC-4")
    out = tmp_path / "t.md"
    assert traceability.main([str(tmp_path), "-o", str(out)]) == 1
    text = out.read_text(encoding="utf-8")
    assert f"| AC-7 | {CRITERIA['AC-7']} | — |" in text  # no run held any of its scenarios
    assert "**NOT MET** — 1 of 2 failed" in text  # AC-4: one of its scenarios failed
    closing = capsys.readouterr().out.splitlines()[-1]
    assert closing.startswith("5 criteria met, 1 not met, 1 not judged")


def test_verdict_per_mode_and_skips_with_their_reason(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    for d in (a, b):
        _result(d, "ok", "passed", "AC-2")
        _result(d, "blocks", "passed", "AC-7")
    _result(a, "kill", "passed", "AC-4")
    _result(b, "kill", "skipped", "AC-4")
    _result(b, "join", "skipped", "AC-7")
    mark_cluster_mode(a, "embedded")
    mark_cluster_mode(b, "external", {"kill": "needs node control"})
    results = read_results(a) + read_results(b)
    verdicts = {v.name: v for v in judge(results)}
    assert verdicts["AC-2"].verdict == MET
    assert [c.verdict for c in verdicts["AC-4"].cells] == [MET, NOT_RUN]
    assert verdicts["AC-4"].verdict == PARTLY
    assert verdicts["AC-7"].cells[1].verdict == PARTLY
    assert verdicts["AC-1"].verdict == NOT_RUN
    skipped = next(r for r in results if r.status == "skipped" and r.name == "kill")
    assert skipped.reason == "needs node control"
    table = traceability.render(results)
    assert "external cluster: skipped (needs node control)" in table
    assert "**NOT RUN** — skipped: needs node control" in table


def test_a_run_without_a_criterions_scenarios_does_not_judge_it(tmp_path: Path) -> None:
    """The hosts run holds only the reliability features: it says nothing about AC-2."""
    a, hosts = tmp_path / "a", tmp_path / "hosts"
    a.mkdir()
    hosts.mkdir()
    _result(a, "ok", "passed", "AC-2")
    labels = [{"name": "epic", "value": "Reliability_under_faults"}]
    _result(hosts, "soak", "passed", "soak", labels=labels)
    mark_cluster_mode(a, "embedded")
    mark_cluster_mode(hosts, "hosts")
    results = read_results(a) + read_results(hosts)
    ac2 = next(v for v in judge(results) if v.name == "AC-2")
    assert ac2.verdict == MET and [c.implementation for c in ac2.cells] == ["topgun (embedded)"]
    overview.label_tree(hosts)
    [soak] = [json.loads(p.read_text()) for p in hosts.glob("*-result.json")]
    assert [lb["value"] for lb in soak["labels"] if lb["name"] in overview.TREE_LABELS] == [
        "Reliability under faults"
    ]


def test_marking_a_run_keeps_two_modes_apart_and_is_idempotent(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _result(a, "same", "passed", "AC-1", parameters=[{"name": "key", "value": ""}])
    _result(b, "same", "failed", "AC-1")
    assert mark_cluster_mode(a, "embedded") == 1
    mark_cluster_mode(a, "embedded")
    assert mark_cluster_mode(b, "processes") == 1
    data = [json.loads(p.read_text()) for d in (a, b) for p in d.glob("*.json")]
    assert len({d["historyId"] for d in data}) == 2
    assert sorted(d["name"] for d in data) == ["same [embedded]", "same [processes]"]
    assert data[0]["parameters"][0] == {"name": "key", "value": '""'}
    modes = {r.cluster: (r.name, r.status) for d in (a, b) for r in read_results(d)}
    assert modes == {"embedded": ("same", "passed"), "processes": ("same", "failed")}
    names = [r.implementation for d in (a, b) for r in read_results(d)]
    assert names == ["topgun (embedded)", "topgun (processes)"]


def test_tree_places_each_scenario_once_under_its_criterion(tmp_path: Path) -> None:
    _result(tmp_path, "e2e", "passed", "AC-1", "AC-3")
    _result(tmp_path, "single", "failed", "AC-6")
    verdicts = overview.label_tree(tmp_path)
    groups = {
        json.loads(p.read_text())["name"]: [
            lb["value"]
            for lb in json.loads(p.read_text())["labels"]
            if lb["name"] in overview.TREE_LABELS
        ]
        for p in tmp_path.glob("*-result.json")
    }
    assert groups["e2e"][0].startswith("AC-1 · MET in topgun (embedded) · inside: AC-3 met")
    assert groups["e2e"][1].startswith("AC-3 · MET in topgun (embedded) · ")
    assert groups["single"] == [f"AC-6 · NOT MET in topgun (embedded) · {verdicts[5].text}"]
    assert {v.name: v.verdict for v in verdicts}["AC-6"] == NOT_MET
    page = overview.verdict_page(verdicts)
    assert page.count("<tr><th>AC-") == 7


def test_analytics_tags_are_stripped_but_not_the_inlined_app() -> None:
    app = '<script src="data:text/javascript;base64,QUFgtagQkI="></script>'
    tags = (
        '<script async src="https://www.googletagmanager.com/gtag/js?id=G-X"></script>'
        "<script>window.dataLayer = window.dataLayer || []; gtag('js', new Date());</script>"
    )
    assert _ANALYTICS.sub("", app + tags) == app


def test_summary_line_counts_errors_as_failed(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "a.xml").write_text(
        '<testsuites><testsuite tests="5" failures="1" errors="1" skipped="1"/></testsuites>'
    )
    (tmp_path / "b.xml").write_text('<testsuite tests="3" failures="0" errors="0"/>')
    assert junit_summary.main([str(tmp_path), "--extra-failed", "2"]) == 0
    assert capsys.readouterr().out.strip() == "5 passed, 4 failed, 1 skipped"
