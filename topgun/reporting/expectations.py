"""Does the suite still see what is known about an implementation? Its verdicts against an
expectation file (``features/expectations/*.toml``) kept in the repository.

Usage: ``python -m topgun.reporting.expectations FILE RESULTS_DIR [RESULTS_DIR ...]
[--junit OUT.xml] [--only AC-3 ...]``.
Prints one line per criterion and check beyond it: ``agrees`` or ``DIFFERS: expected X,
suite said Y``. Exits 1 on any difference in either direction (a suite that stops seeing a
real failure is as broken as one that invents one), when the results hold a criterion or
check the file does not mention or the other way round, and when the file still holds a
placeholder instead of a verdict; 2 when the file or the results cannot be read.

The file (TOML)::

    implementation = "topgun-rust"   # the cluster mode (or implementation name) its runs carry
    [criteria.AC-2]
    verdict = "met"                  # met | not met | not run | partly run
    why = "what plain clients show"
    [criteria.AC-3.beyond]
    "held by a backup" = "not met"   # or { verdict = "not met", why = "…" }
    [criteria.AC-5]
    verdict = ["met", "not met"]     # when the peer's own timing decides: why = … is required
    why = "what decides between them"
"""

from __future__ import annotations

import argparse
import sys
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from topgun.reporting.results import ScenarioResult, read_results
from topgun.reporting.verdicts import (
    VERDICTS,
    CriterionVerdict,
    implementations_of,
    judge,
    rows,
)


@dataclass(frozen=True)
class Expected:
    verdict: str
    """One verdict, or several joined by `` or `` when the peer's own timing decides between
    them (each such entry says why in ``why``)."""
    why: str = ""

    def allows(self, observed: str | None) -> bool:
        return observed in self.verdict.split(" or ")

    @property
    def valid(self) -> bool:
        return all(v in VERDICTS for v in self.verdict.split(" or "))


@dataclass(frozen=True)
class ExpectationFile:
    implementation: str
    """The cluster mode, or the implementation's name, of the runs the file describes."""
    checks: Mapping[str, Expected]
    """``AC-3`` or ``AC-3 · held by a backup`` → the verdict the suite must reach."""

    def describes(self, result: ScenarioResult) -> bool:
        return self.implementation in (result.mode, result.implementation)


@dataclass(frozen=True)
class Comparison:
    check: str
    expected: Expected | None
    """None: the file does not mention the check."""
    observed: str | None
    """None: the results hold no scenario of the check."""

    @property
    def agrees(self) -> bool:
        return self.expected is not None and self.expected.allows(self.observed)

    def line(self, width: int = 0) -> str:
        """``AC-3 · held by a backup  agrees: not met``, the name padded to ``width``."""
        name = f"{self.check:<{width}}"
        said = f"suite said {self.observed}" if self.observed else "the results hold none of it"
        if self.expected is None:
            return f"{name} DIFFERS: not in the expectation file, {said}"
        if self.agrees:
            return f"{name} agrees: {self.observed}"
        why = f" ({self.expected.why})" if self.expected.why else ""
        if not self.expected.valid:
            return f"{name} DIFFERS: no expectation yet ({self.expected.verdict!r}), {said}"
        return f"{name} DIFFERS: expected {self.expected.verdict}{why}, {said}"


def check_name(criterion: str, beyond: str | None = None) -> str:
    return f"{criterion} · {beyond}" if beyond else criterion


def _expected(value: Any, where: str) -> Expected:
    if isinstance(value, str):
        return Expected(value)
    if isinstance(value, Mapping) and isinstance(value.get("verdict"), str | list):
        verdict = value["verdict"]
        why = str(value.get("why", ""))
        if isinstance(verdict, list):
            if not why or not all(isinstance(v, str) for v in verdict):
                raise ValueError(f"{where}: several verdicts need a why = … saying what decides")
            verdict = " or ".join(verdict)
        return Expected(verdict, why)
    raise ValueError(f"{where}: expected a verdict or {{ verdict = …, why = … }}")


def load(path: Path) -> ExpectationFile:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    implementation = data.get("implementation")
    if not isinstance(implementation, str) or not implementation:
        raise ValueError(f'{path}: no implementation = "<cluster mode>"')
    checks: dict[str, Expected] = {}
    for criterion, entry in (data.get("criteria") or {}).items():
        where = f"{path}: criteria.{criterion}"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where}: expected a table")
        if "verdict" in entry:
            checks[criterion] = _expected(entry, where)
        for name, value in (entry.get("beyond") or {}).items():
            checks[check_name(criterion, name)] = _expected(value, f"{where}.beyond.{name}")
    return ExpectationFile(implementation, checks)


def compare(expected: ExpectationFile, verdicts: Sequence[CriterionVerdict]) -> list[Comparison]:
    """One comparison per check the file or the results hold, in the table's order.
    ``verdicts`` are those of the file's implementation alone."""
    observed = {
        check_name(v.name, None if check is v else check.name): check.verdict
        for v, check in rows(verdicts)
        if check.cells
    }
    names = list(observed) + [n for n in expected.checks if n not in observed]
    return [Comparison(n, expected.checks.get(n), observed.get(n)) for n in names]


def lines(comparisons: Sequence[Comparison]) -> list[str]:
    """One line per comparison, the verdicts aligned."""
    width = max((len(c.check) for c in comparisons), default=0)
    return [c.line(width) for c in comparisons]


@dataclass(frozen=True)
class Outcome:
    """The suite's verdicts about one expectation file's implementation, against the file."""

    path: Path
    expected: ExpectationFile
    implementations: list[str]
    """The names of the runs the file describes, in report order (none: no such run)."""
    comparisons: list[Comparison]

    @property
    def agrees(self) -> bool:
        return bool(self.implementations) and all(c.agrees for c in self.comparisons)

    def summary(self) -> str:
        who = ", ".join(self.implementations) or self.expected.implementation
        if not self.implementations:
            return f"{who}: no results to compare with {self.path}"
        differ = [c.check for c in self.comparisons if not c.agrees]
        if differ:
            return (
                f"{who}: the suite's verdicts differ from {self.path} in {len(differ)} of "
                f"{len(self.comparisons)}: {', '.join(differ)}"
            )
        n = len(self.comparisons)
        return f"{who}: the suite's verdicts agree with {self.path} ({n} check{'s' * (n != 1)})"


def check(path: Path, results: Sequence[ScenarioResult]) -> Outcome:
    """Compare the verdicts on the results the file at ``path`` describes with the file.
    Raises OSError or ValueError when the file cannot be read."""
    expected = load(path)
    theirs = [r for r in results if expected.describes(r)]
    comparisons = compare(expected, judge(theirs))
    return Outcome(path, expected, implementations_of(theirs), comparisons)


def write_junit(outcome: Outcome, path: Path) -> None:
    """One test case per comparison, failed where the suite and the file differ, so the
    comparison counts in CI's ``N passed, N failed`` line like any other check."""
    suite = ET.Element("testsuite", name=f"expectations {outcome.expected.implementation}")
    for comparison in outcome.comparisons:
        case = ET.SubElement(suite, "testcase", classname=str(outcome.path), name=comparison.check)
        if not comparison.agrees:
            ET.SubElement(case, "failure", message=comparison.line())
    if not outcome.implementations:
        case = ET.SubElement(suite, "testcase", classname=str(outcome.path), name="results")
        ET.SubElement(case, "failure", message=outcome.summary())
    failures = len(suite.findall("testcase/failure"))
    suite.set("tests", str(len(suite)))
    suite.set("failures", str(failures))
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)


def only(outcome: Outcome, prefixes: Sequence[str]) -> Outcome:
    """The outcome restricted to the checks of the criteria named (a run of part of the
    features, e.g. the mutation check's ``AC-3`` scenarios)."""
    kept = [c for c in outcome.comparisons if c.check.split(" · ")[0] in prefixes]
    return Outcome(outcome.path, outcome.expected, outcome.implementations, kept)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="the expectation file (TOML)")
    parser.add_argument("results", nargs="+", type=Path, help="Allure results directories")
    parser.add_argument("--junit", type=Path, help="also write the comparisons as JUnit XML")
    parser.add_argument(
        "--only", action="append", default=[], help="compare only this criterion's checks"
    )
    args = parser.parse_args(argv)
    missing = [str(d) for d in args.results if not d.is_dir()]
    if missing:
        print(f"no results directory: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        outcome = check(args.file, [r for d in args.results for r in read_results(d)])
    except (OSError, ValueError) as exc:  # tomllib's decode error is a ValueError
        print(f"cannot read the expectation file: {exc}", file=sys.stderr)
        return 2
    if args.only:
        outcome = only(outcome, args.only)
    if args.junit:
        write_junit(outcome, args.junit)
    if outcome.implementations:
        for line in lines(outcome.comparisons):
            print(line)
    print(outcome.summary())
    return 0 if outcome.agrees else 1


if __name__ == "__main__":
    raise SystemExit(main())
