"""Verdicts per criterion and implementation, the checks beyond the spec beside them, and
the evidence of each verdict in words."""

from __future__ import annotations

import json
from pathlib import Path

from topgun.reporting import overview
from topgun.reporting.results import read_results
from topgun.reporting.verdicts import (
    AS_WRITTEN,
    EVIDENCE_LIMIT,
    MET,
    NOT_MET,
    NOT_RUN,
    PARTLY,
    in_one_line,
    judge,
    tree_groups,
)

from .synthetic import run, verdicts_of

LOST = "AssertionError: lost 1 of 1 acknowledged writes: key-1 (acknowledged by node-1)\n"


def test_a_check_beyond_the_spec_is_judged_beside_its_criterion_never_in_it(
    tmp_path: Path,
) -> None:
    rust = run(
        tmp_path / "rust",
        "topgun-rust",
        [
            ("owner", "passed", ("AC-1", "AC-3"), ""),
            ("backup", "failed", ("AC-1", "AC-3", "beyond:held-by-a-backup"), LOST),
        ],
    )
    ac1, ac3 = (verdicts_of(rust)[c] for c in ("AC-1", "AC-3"))
    assert ac3.verdict == MET and [s.name for s in ac3.scenarios] == ["owner"]
    [backup] = ac3.beyond
    assert (backup.name, backup.verdict) == ("held by a backup", NOT_MET)
    assert ac1.verdict == MET and not ac1.beyond  # AC-1 is the feature's tag, not the check's home
    assert f"{ac3.name} {ac3.verdict} · {backup.name}: {backup.verdict}" == (
        "AC-3 met · held by a backup: not met"
    )


def test_scenarios_sharing_a_check_meet_it_only_together(tmp_path: Path) -> None:
    shared = ("AC-4", "beyond:kept-by-new-owner-and-backup")
    ours = run(
        tmp_path / "ours", "embedded", [("a", "passed", shared, ""), ("b", "passed", shared, "")]
    )
    rust = run(
        tmp_path / "rust",
        "topgun-rust",
        [("a", "passed", shared, ""), ("b", "skipped", shared, "not checkable here")],
    )
    [check] = verdicts_of(ours, rust)["AC-4"].beyond
    assert [(c.implementation, c.verdict) for c in check.cells] == [
        ("topgun (embedded)", MET),
        ("TopGun Rust 2.2.0", PARTLY),
    ]
    assert check.cells[1].evidence == "1 of 2 skipped: not checkable here"
    assert verdicts_of(ours, rust)["AC-4"].cells == ()  # no scenario proves AC-4 as written


def test_implementations_in_report_order_and_two_external_clusters_apart(tmp_path: Path) -> None:
    one = [("s", "passed", ("AC-2",), "")]
    dirs = [
        run(tmp_path / "ext-a", "external", one, implementation="acme staging"),
        run(tmp_path / "rust", "topgun-rust", one),
        run(tmp_path / "ext-b", "external", one),
        run(tmp_path / "proc", "processes", one),
        run(tmp_path / "emb", "embedded", one),
    ]
    ac2 = verdicts_of(*dirs)["AC-2"]
    assert [c.implementation for c in ac2.cells] == [
        "topgun (embedded)",
        "topgun (processes)",
        "TopGun Rust 2.2.0",
        "acme staging",
        "external cluster",
    ]
    assert ac2.verdict_in_words().startswith("MET in topgun (embedded), topgun (processes), ")
    a, b = (json.loads(next(d.glob("*-result.json")).read_text()) for d in dirs[0:3:2])
    assert (a["name"], b["name"]) == ("s [acme staging]", "s [external]")
    assert a["historyId"] != b["historyId"]  # two runs, not a retry of one
    assert {r.name for d in dirs for r in read_results(d)} == {"s"}


def test_evidence_says_what_the_implementation_did_in_one_line(tmp_path: Path) -> None:
    hamcrest = "AssertionError: owners at client vs node-2\nExpected: <3>\n     but: was <1>\n"
    undefined = (
        "\nYou can implement step definitions for undefined steps with these snippets:\n\n"
        "@then(u'the backup holds it')\ndef step_impl(context):\n"
        "    raise StepNotImplementedError(u'Then the backup holds it')\n"
    )
    results = run(
        tmp_path / "r",
        "topgun-rust",
        [
            ("lost", "failed", ("AC-3",), LOST),
            ("maps", "failed", ("AC-3",), hamcrest),
            ("ok", "passed", ("AC-3",), ""),
            ("undefined", "broken", ("AC-5",), undefined),
            ("skip", "skipped", ("AC-6",), "needs a node started with a policy file: not run here"),
            ("quiet", "failed", ("AC-7",), ""),
        ],
    )
    verdicts = verdicts_of(results)
    assert verdicts["AC-3"].cells[0].evidence == (
        "2 of 3 failed: lost 1 of 1 acknowledged writes: key-1 (acknowledged by node-1); "
        "owners at client vs node-2: expected <3> but was <1>"
    )
    assert verdicts["AC-5"].cells[0].evidence == "failed: undefined step: Then the backup holds it"
    assert verdicts["AC-6"].cells[0].verdict == NOT_RUN
    assert verdicts["AC-6"].cells[0].evidence.startswith("skipped: needs a node started with")
    assert verdicts["AC-7"].cells[0].evidence == "failed: no message"
    long = in_one_line("x " * EVIDENCE_LIMIT)
    assert len(long) == EVIDENCE_LIMIT and long.endswith("…")
    assert in_one_line("TimeoutError: no PARTITION_MAP from node-2") == (
        "TimeoutError: no PARTITION_MAP from node-2"  # this class says what kind of failure
    )
    assert in_one_line("topgun.harness.waiting.WaitTimeout: a map without node-3 not reached") == (
        "a map without node-3 not reached"  # a bounded wait's message says it all
    )
    assert in_one_line("builtins.KeyError: 'owner'") == "KeyError: 'owner'"
    assert in_one_line("example.com: refused") == "example.com: refused"


def test_the_tree_puts_checks_beyond_the_spec_under_their_criterion(tmp_path: Path) -> None:
    results = run(
        tmp_path / "r",
        "embedded",
        [
            ("owner", "passed", ("AC-1", "AC-3"), ""),
            ("backup", "failed", ("AC-1", "AC-3", "beyond:held-by-a-backup"), LOST),
            ("single", "passed", ("AC-6",), ""),
        ],
    )
    verdicts = overview.label_tree(results)
    groups = {
        data["name"].removesuffix(" [embedded]"): [
            lb["value"] for lb in data["labels"] if lb["name"] in overview.TREE_LABELS
        ]
        for data in (json.loads(p.read_text()) for p in results.glob("*-result.json"))
    }
    ac1, ac3 = groups["owner"][0], groups["owner"][1]
    assert ac1.startswith("AC-1 · MET in topgun (embedded) · inside: AC-3 met ·")
    assert ac3.startswith("AC-3 · MET in topgun (embedded) · ")
    assert groups["owner"] == [ac1, ac3, AS_WRITTEN]
    assert groups["backup"] == [
        ac1,
        ac3,
        "beyond the spec: held by a backup · NOT MET in topgun (embedded)",
    ]
    assert groups["single"] == [verdicts[5].heading()]  # no check beyond AC-6: no extra level
    assert sorted([AS_WRITTEN, groups["backup"][2]])[0] == AS_WRITTEN  # the letter first
    by_result = {
        r.name: tree_groups(r, judge(read_results(results))) for r in read_results(results)
    }
    assert by_result == groups
