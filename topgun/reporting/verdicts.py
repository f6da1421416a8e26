"""Verdicts per acceptance criterion and implementation, from the scenario results.

A scenario tagged ``@AC-3`` proves the criterion as SPEC-048c writes it, and only those
decide the criterion's verdict. A scenario tagged ``@AC-3 @beyond:held-by-a-backup`` is one
of the project's stronger guarantees under that criterion: the named check "held by a
backup", judged beside the criterion and never part of its verdict, so a reader sees
"AC-3 met · held by a backup: not met" rather than one mixed verdict.

An implementation is what one run judged (``topgun (embedded)``, ``TopGun Rust 2.2.0``, …;
:mod:`topgun.reporting.results`). A check is *met* there when every one of its scenarios
ran and passed; *not met* when any failed; *not run* when none ran (skipped, e.g. a
node-control scenario against an external cluster); *partly run* when some passed and the
rest were skipped. Not run and partly run are *not judged*. Across implementations it is
met only if met in each one whose run held any of its scenarios (the hosts run holds only
the reliability features). The report's tree, its first page, ``traceability.md`` and the
expectation check are all rendered from :func:`judge`, so they cannot disagree.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass

from topgun.reporting.results import FAILED, IMPLEMENTATIONS, ScenarioResult

CRITERIA = {
    "AC-1": "There is an end-to-end test of the cluster and its client (cluster_e2e.feature)",
    "AC-2": "A client in cluster mode signs in to a 3-node cluster and receives the partition map",
    "AC-3": "A write made through get_map() reaches the node that owns the key's partition",
    "AC-4": "After the owner is shut down or killed, writes still succeed through fallback routing",
    "AC-5": "The routing metrics show both direct and fallback routes",
    "AC-6": "Single-server mode still works",
    "AC-7": "The cluster building blocks still work",
}
MET, NOT_MET, NOT_RUN, PARTLY = "met", "not met", "not run", "partly run"
VERDICTS = (MET, NOT_MET, NOT_RUN, PARTLY)
NOT_JUDGED = frozenset({NOT_RUN, PARTLY})
EVIDENCE_LIMIT = 300
"""Characters of one failure message or skip reason kept in a cell's evidence."""

AS_WRITTEN = "as SPEC-048c writes it"
"""The tree group of a criterion's own scenarios, where it has checks beyond the spec."""

_UNDEFINED = re.compile(r"StepNotImplementedError\(u?'(.*?)'\)")
_EXCEPTION = re.compile(r"^(?:[a-z_]\w*\.)*([A-Z]\w*): ")
_SAYS_IT_ALL = ("AssertionError", "WaitTimeout")
"""Exception classes whose message alone says what did not hold (the harness's bounded
waits raise ``WaitTimeout`` with what was awaited and what was seen); other classes, a
harness defect's ``KeyError`` say, are kept, without their module path."""


@dataclass(frozen=True)
class Cell:
    """One check's verdict for one implementation, and what that implementation did."""

    implementation: str
    verdict: str
    evidence: str


@dataclass(frozen=True)
class Check:
    """A criterion as written, or a named check beyond it: one cell per implementation whose
    run held any of its scenarios, in report order."""

    name: str
    cells: tuple[Cell, ...]
    scenarios: tuple[ScenarioResult, ...]

    @property
    def verdict(self) -> str:
        return overall(c.verdict for c in self.cells)

    def among(self, implementations: Collection[str]) -> str:
        """The verdict across some implementations only (those expected to pass)."""
        return overall(c.verdict for c in self.cells if c.implementation in implementations)

    def cell(self, implementation: str) -> Cell | None:
        return next((c for c in self.cells if c.implementation == implementation), None)

    def verdict_in_words(self) -> str:
        """``MET in topgun (embedded) and topgun (processes)``; grouped by verdict when the
        implementations disagree."""
        if not self.cells:
            return f"{self.verdict.upper()} (no results)"
        groups: dict[str, list[str]] = {}
        for c in self.cells:
            groups.setdefault(c.verdict, []).append(c.implementation)
        return "; ".join(f"{v.upper()} in {_and(names)}" for v, names in groups.items())


@dataclass(frozen=True, kw_only=True)
class CriterionVerdict(Check):
    text: str
    """What the criterion asks, in words."""
    beyond: tuple[Check, ...]
    """The project's stronger checks under this criterion, by name."""

    def heading(self) -> str:
        """The tree group's name: the criterion, its verdict and what it asks."""
        return f"{self.name} · {self.verdict_in_words()} · {self.text}"


def rows(verdicts: Sequence[CriterionVerdict]) -> Iterator[tuple[CriterionVerdict, Check]]:
    """The rows of every table of verdicts: each criterion, then its checks beyond it."""
    for v in verdicts:
        yield v, v
        for b in v.beyond:
            yield v, b


def overall(verdicts: Iterable[str]) -> str:
    kinds = set(verdicts)
    if NOT_MET in kinds:
        return NOT_MET
    if kinds == {MET}:
        return MET
    if kinds <= {NOT_RUN}:
        return NOT_RUN
    return PARTLY


def implementations_of(results: Sequence[ScenarioResult]) -> list[str]:
    """The implementations in report order: ours by mode, then the others by name."""
    order = list(IMPLEMENTATIONS)
    first: dict[str, str] = {}
    for r in results:
        first.setdefault(r.implementation, r.mode)
    return sorted(
        first,
        key=lambda i: (order.index(first[i]) if first[i] in order else len(order), i),
    )


def in_one_line(message: str) -> str:
    """A failure message or skip reason as one readable line: hamcrest's three lines
    joined, an undefined step named, the exception's class dropped or shortened."""
    undefined = _UNDEFINED.search(message)
    if undefined:
        line = f"undefined step: {undefined.group(1)}"
    else:
        line = " ".join(message.split())
        kind = _EXCEPTION.match(line)
        if kind:
            plain = kind.group(1) in _SAYS_IT_ALL
            line = line[kind.end() :] if plain else f"{kind.group(1)}: {line[kind.end() :]}"
        line = line.replace(" Expected: ", ": expected ").replace(" but: ", " but ")
    line = line or "no message"
    return line if len(line) <= EVIDENCE_LIMIT else line[: EVIDENCE_LIMIT - 1].rstrip() + "…"


def evidence(results: Sequence[ScenarioResult]) -> str:
    """What one implementation did for one check, in words: its failure messages, its
    skip reasons, or how many scenarios passed."""
    failed = [r for r in results if r.status in FAILED]
    skipped = [r for r in results if r.status not in FAILED and r.status != "passed"]
    parts = []
    for word, group in (("failed", failed), ("skipped", skipped)):
        if group:
            reasons = "; ".join(dict.fromkeys(in_one_line(r.reason) for r in group))
            count = f"{len(group)} of {len(results)} {word}" if len(results) > 1 else word
            parts.append(f"{count}: {reasons}")
    return " · ".join(parts) or f"{len(results)} passed"


def _cell(implementation: str, results: Sequence[ScenarioResult]) -> Cell:
    passed = sum(r.status == "passed" for r in results)
    failed = sum(r.status in FAILED for r in results)
    skipped = len(results) - passed - failed
    if failed:
        verdict = NOT_MET
    elif not passed:
        verdict = NOT_RUN
    else:
        verdict = PARTLY if skipped else MET
    return Cell(implementation, verdict, evidence(results))


def _cells(results: Sequence[ScenarioResult], order: Sequence[str]) -> tuple[Cell, ...]:
    """One cell per implementation whose run held any of ``results`` (the hosts run holds
    none of AC-2's scenarios, so it says nothing about AC-2)."""
    by_implementation = {i: [r for r in results if r.implementation == i] for i in order}
    return tuple(_cell(i, here) for i, here in by_implementation.items() if here)


def home_criteria(result: ScenarioResult) -> list[str]:
    """The criteria a beyond-the-spec scenario stands under: its own, not AC-1's (which
    every scenario of the end-to-end feature carries) unless it has no other."""
    mine = [c for c in result.criteria if c in CRITERIA]
    return [c for c in mine if c != "AC-1"] or mine


def judge(results: Sequence[ScenarioResult]) -> list[CriterionVerdict]:
    order = implementations_of(results)
    verdicts = []
    for criterion, text in CRITERIA.items():
        letter = tuple(r for r in results if criterion in r.tags and not r.beyond)
        beyond_of = [r for r in results if r.beyond and criterion in home_criteria(r)]
        names = sorted({name for r in beyond_of for name in r.beyond})
        beyond = []
        for name in names:
            these = tuple(r for r in beyond_of if name in r.beyond)
            beyond.append(Check(name, _cells(these, order), these))
        verdicts.append(
            CriterionVerdict(
                name=criterion,
                cells=_cells(letter, order),
                scenarios=letter,
                text=text,
                beyond=tuple(beyond),
            )
        )
    return verdicts


def tree_groups(result: ScenarioResult, verdicts: Sequence[CriterionVerdict]) -> list[str]:
    """Where a scenario sits in the report's tree: under AC-1 (the end-to-end feature) and
    then its own criterion, or directly under its criterion; one level further down, under
    :data:`AS_WRITTEN` or a check's name, where the criterion has checks beyond the spec.
    Each scenario sits in one place, so the tree counts what the report counts. AC-1's name
    also lists the verdicts of the criteria inside it."""
    by_id = {v.name: v for v in verdicts}
    mine = [c for c in result.criteria if c in by_id]
    if not mine:
        return [result.epic or "Not linked to an acceptance criterion"]
    rest = [c for c in mine if c != "AC-1"]
    groups = [_end_to_end_heading(verdicts)] if "AC-1" in mine else []
    if rest:
        groups.append(" + ".join(by_id[c].heading() for c in rest))
    if not result.beyond:
        if any(by_id[c].beyond for c in home_criteria(result)):
            groups.append(AS_WRITTEN)  # beside its checks beyond the spec, and sorted first
        return groups
    checks = [
        f"beyond the spec: {b.name} · {b.verdict_in_words()}"
        for c in home_criteria(result)
        for b in by_id[c].beyond
        if b.name in result.beyond
    ]
    return [*groups, " + ".join(dict.fromkeys(checks))]


def _end_to_end_heading(verdicts: Sequence[CriterionVerdict]) -> str:
    """AC-1's group, which holds the criteria its feature proves, names their verdicts."""
    top = next(v for v in verdicts if v.name == "AC-1")
    inner = [v for v in verdicts if v.name != "AC-1" and any("AC-1" in s.tags for s in v.scenarios)]
    if not inner:
        return top.heading()
    within = " · ".join(f"{v.name} {_short(v)}" for v in inner)
    return f"AC-1 · {top.verdict_in_words()} · inside: {within} · {top.text}"


def _short(check: Check) -> str:
    """One word per implementation, in report order, or one word when they agree."""
    words = list(dict.fromkeys(c.verdict for c in check.cells))
    return "/".join(c.verdict for c in check.cells) if len(words) > 1 else check.verdict


def _and(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
