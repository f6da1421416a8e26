"""The acceptance-criteria traceability table: AC-1 … AC-7 → scenarios → status.

Usage: ``python -m topgun.reporting.traceability RESULTS_DIR [RESULTS_DIR ...] -o FILE``.
Exits 1 when a criterion is not proven: it has no scenario, or any of its scenarios did
not pass in some cluster mode. A criterion that is only partly green is not met.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from topgun.reporting.results import ScenarioResult, read_results

CRITERIA = {
    "AC-1": "The end-to-end cluster test exists (the feature file `cluster_e2e.feature`)",
    "AC-2": "3-node cluster, cluster-mode client authenticates and receives the partition map",
    "AC-3": "A write through `get_map()` reaches the partition owner",
    "AC-4": "After the owner is shut down or killed, writes succeed via fallback routing",
    "AC-5": "Routing metrics show both direct and fallback routes",
    "AC-6": "Single-server mode still works",
    "AC-7": "The cluster building blocks still work",
}


def criterion_verdict(results: Sequence[ScenarioResult]) -> str:
    if not results:
        return "NOT COVERED"
    return "MET" if all(r.status == "passed" for r in results) else "NOT MET"


def render(results: Sequence[ScenarioResult]) -> tuple[str, bool]:
    """The markdown table and whether every criterion is met."""
    lines = [
        "# Acceptance criteria traceability (SPEC-048c)",
        "",
        "| Criterion | What it asks | Verdict | Scenarios (cluster mode: status) |",
        "|---|---|---|---|",
    ]
    all_met = True
    for criterion, text in CRITERIA.items():
        mine = [r for r in results if criterion in r.tags]
        verdict = criterion_verdict(mine)
        all_met &= verdict == "MET"
        by_name: dict[tuple[str, str], list[str]] = {}
        for r in mine:
            by_name.setdefault((r.feature, r.name), []).append(
                f"{r.cluster or 'default'}: {r.status}"
            )
        cells = "<br>".join(
            f"{feature} / {name} ({', '.join(sorted(modes))})"
            for (feature, name), modes in sorted(by_name.items())
        )
        lines.append(f"| {criterion} | {text} | **{verdict}** | {cells or '—'} |")
    passed = sum(r.status == "passed" for r in results)
    lines += ["", f"{len(results)} scenario results read, {passed} passed."]
    return "\n".join(lines) + "\n", all_met


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="Allure results directories")
    parser.add_argument("-o", "--output", type=Path, default=Path("reports/traceability.md"))
    args = parser.parse_args(argv)
    results = [r for d in args.results for r in read_results(d)]
    table, all_met = render(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(table, encoding="utf-8")
    print(table)
    if not all_met:
        print("traceability: some acceptance criteria are not met", file=sys.stderr)
    return 0 if all_met else 1


if __name__ == "__main__":
    raise SystemExit(main())
