"""The acceptance-criteria traceability table: AC-1 … AC-7 → verdict per mode → scenarios.

Usage: ``python -m topgun.reporting.traceability RESULTS_DIR [RESULTS_DIR ...] -o FILE``.
Prints one line per criterion and writes the whole table to FILE. Exits 1 unless every
criterion is met (see :mod:`topgun.reporting.verdicts`); a criterion that is only partly
green, or was not run, is not met.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from topgun.reporting.results import ScenarioResult, read_results
from topgun.reporting.verdicts import MET, CriterionVerdict, judge


def _scenario_cells(verdict: CriterionVerdict) -> str:
    by_name: dict[tuple[str, str], list[str]] = {}
    for r in verdict.scenarios:
        outcome = r.status if not r.reason or r.status == "passed" else f"{r.status} ({r.reason})"
        by_name.setdefault((r.feature, r.name), []).append(f"{r.cluster or 'embedded'}: {outcome}")
    return "<br>".join(
        f"{feature} / {name} ({', '.join(sorted(modes))})"
        for (feature, name), modes in sorted(by_name.items())
    )


def render(results: Sequence[ScenarioResult]) -> tuple[str, bool]:
    """The markdown table and whether every criterion is met."""
    verdicts = judge(results)
    lines = [
        "# Acceptance criteria traceability (SPEC-048c)",
        "",
        "| Criterion | What it asks | Verdict | Per cluster mode | Scenarios (mode: status) |",
        "|---|---|---|---|---|",
    ]
    for v in verdicts:
        lines.append(
            f"| {v.criterion} | {v.text} | **{v.verdict.upper()}** | {v.modes_in_words()} "
            f"| {_scenario_cells(v) or '—'} |"
        )
    passed = sum(r.status == "passed" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    lines += [
        "",
        f"{len(results)} scenario results read: {passed} passed, {skipped} skipped, "
        f"{len(results) - passed - skipped} failed.",
    ]
    return "\n".join(lines) + "\n", all(v.verdict == MET for v in verdicts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="Allure results directories")
    parser.add_argument("-o", "--output", type=Path, default=Path("reports/traceability.md"))
    args = parser.parse_args(argv)
    results = [r for d in args.results for r in read_results(d)]
    table, all_met = render(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(table, encoding="utf-8")
    for v in judge(results):
        print(v.one_line())
    print(f"traceability table: {args.output}")
    if not all_met:
        print("traceability: some acceptance criteria are not met", file=sys.stderr)
    return 0 if all_met else 1


if __name__ == "__main__":
    raise SystemExit(main())
