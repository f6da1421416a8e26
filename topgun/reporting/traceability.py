"""The acceptance-criteria traceability table: AC-1 … AC-7, and the checks beyond them, by
implementation, with what each implementation did and the scenarios behind each verdict.

Usage: ``python -m topgun.reporting.traceability RESULTS_DIR [RESULTS_DIR ...] -o FILE
[--expectation FILE ...]``. Prints the table, the evidence of every verdict short of met
and a closing line that tells *not met* from *not judged*; writes the table to FILE.

Exits 1 unless every criterion and every check beyond it is met by each implementation
expected to pass: all of them, except those an expectation file describes (the TopGun Rust
server, a known-flawed peer): those are compared with their file instead
(:mod:`topgun.reporting.expectations`), and any difference exits 1 as well.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from topgun.reporting import expectations
from topgun.reporting.overview import implementation_lines, implementations
from topgun.reporting.results import ScenarioResult, read_results
from topgun.reporting.verdicts import (
    MET,
    NOT_JUDGED,
    NOT_MET,
    Check,
    CriterionVerdict,
    implementations_of,
    judge,
    rows,
)

NAME_WIDTH = 50
"""Characters of the terminal table's first column (a longer check name is cut)."""


def _row_name(v: CriterionVerdict, check: Check) -> str:
    return v.name if check is v else f"{v.name} · {check.name}"


def _markdown(text: str) -> str:
    return text.replace("|", "\\|")


def _scenario_cells(check: Check) -> str:
    by_name: dict[tuple[str, str], list[str]] = {}
    for r in check.scenarios:
        outcome = r.status if not r.reason or r.status == "passed" else f"{r.status} ({r.reason})"
        by_name.setdefault((r.feature, r.name), []).append(f"{r.implementation}: {outcome}")
    return "<br>".join(
        _markdown(f"{feature} / {name} ({', '.join(sorted(outcomes))})")
        for (feature, name), outcomes in sorted(by_name.items())
    )


def render(results: Sequence[ScenarioResult]) -> str:
    """``traceability.md``: the table, per implementation what it met, and the scenarios."""
    verdicts = judge(results)
    columns = implementations(verdicts)
    lines = [
        "# Acceptance criteria traceability (SPEC-048c)",
        "",
        "A criterion's verdict follows SPEC-048c as written; the rows *beyond the spec* are "
        "the project's stronger guarantees under it, judged apart.",
        "",
        f"| Criterion | What it asks | {' | '.join(columns)} |",
        f"|---|---|{'---|' * len(columns)}",
    ]
    for v, check in rows(verdicts):
        cells = []
        for implementation in columns:
            cell = check.cell(implementation)
            cells.append(
                f"**{cell.verdict.upper()}** — {_markdown(cell.evidence)}" if cell else "—"
            )
        first = (
            f"| {v.name} | {v.text} |" if check is v else f"| ↳ | beyond the spec: {check.name} |"
        )
        lines.append(f"{first} {' | '.join(cells)} |")
    lines += ["", *(f"- {line}" for line in implementation_lines(verdicts))]
    lines += ["", "## The scenarios behind each verdict", "", "| Check | Scenarios |", "|---|---|"]
    lines += [f"| {_row_name(v, c)} | {_scenario_cells(c) or '—'} |" for v, c in rows(verdicts)]
    passed = sum(r.status == "passed" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    lines += [
        "",
        f"{len(results)} scenario results read: {passed} passed, {skipped} skipped, "
        f"{len(results) - passed - skipped} failed.",
    ]
    return "\n".join(lines) + "\n"


def terminal(verdicts: Sequence[CriterionVerdict]) -> list[str]:
    """The same table for the terminal, then the evidence of every verdict short of met."""
    columns = implementations(verdicts)
    widths = [max(len(i), len("partly run")) for i in columns]

    def line(name: str, words: Sequence[str]) -> str:
        name = name if len(name) <= NAME_WIDTH else name[: NAME_WIDTH - 1] + "…"
        cells = "  ".join(w.ljust(n) for w, n in zip(words, widths, strict=True))
        return f"{name:<{NAME_WIDTH}}  {cells}".rstrip()

    lines = [line("Criterion", columns)]
    evidence = []
    for v, check in rows(verdicts):
        name = f"{v.name} {v.text}" if check is v else f"  beyond the spec: {check.name}"
        cells = [check.cell(i) for i in columns]
        lines.append(line(name, [c.verdict.upper() if c else "—" for c in cells]))
        evidence += [
            f"  {c.implementation} · {_row_name(v, check)}: {c.evidence}"
            for c in cells
            if c and c.verdict != MET
        ]
    if evidence:
        lines += ["What the implementations did, where a verdict is short of met:", *evidence]
    return lines


def _tally(checks: Sequence[Check], among: Sequence[str], noun: tuple[str, str]) -> str:
    verdicts = [c.among(among) for c in checks]
    met = verdicts.count(MET)
    not_met = verdicts.count(NOT_MET)
    not_judged = sum(v in NOT_JUDGED for v in verdicts)
    return f"{met} {noun[met != 1]} met, {not_met} not met, {not_judged} not judged"


def closing_line(verdicts: Sequence[CriterionVerdict], must_pass: Sequence[str]) -> str:
    """``4 criteria met, 1 not met, 2 not judged (implementations: …)``, across the
    implementations expected to pass; not judged = not run or partly run."""
    if not must_pass:
        return "no implementation here is expected to meet every criterion"
    line = _tally(verdicts, must_pass, ("criterion", "criteria"))
    beyond = [b for v in verdicts for b in v.beyond]
    if beyond:
        line += f"; beyond the spec: {_tally(beyond, must_pass, ('check', 'checks'))}"
    return f"{line} (implementations: {', '.join(must_pass)})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="Allure results directories")
    parser.add_argument("-o", "--output", type=Path, default=Path("reports/traceability.md"))
    parser.add_argument(
        "--expectation",
        action="append",
        type=Path,
        default=[],
        help="an expectation file: its implementation is compared with it, not required to pass",
    )
    args = parser.parse_args(argv)
    results = [r for d in args.results for r in read_results(d)]
    if not results:
        print(f"no scenario results in {', '.join(map(str, args.results))}", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(results), encoding="utf-8")
    verdicts = judge(results)
    for text in terminal(verdicts):
        print(text)
    described: set[str] = set()
    agree = True
    for path in args.expectation:
        try:
            outcome = expectations.check(path, results)
        except (OSError, ValueError) as exc:
            print(f"cannot read the expectation file: {exc}", file=sys.stderr)
            return 2
        described |= set(outcome.implementations)
        for line in expectations.lines(outcome.comparisons) if outcome.implementations else []:
            print(f"{path.name}: {line}")
        print(outcome.summary())
        agree = agree and outcome.agrees
    must_pass = [i for i in implementations_of(results) if i not in described]
    passed = all(check.among(must_pass) == MET for _, check in rows(verdicts))
    print(f"traceability table: {args.output}")
    print(closing_line(verdicts, must_pass))
    if not passed:
        print("traceability: some acceptance checks are not met or not judged", file=sys.stderr)
    return 0 if passed and agree else 1


if __name__ == "__main__":
    raise SystemExit(main())
