"""One verdict per acceptance criterion and cluster mode, from the scenario results.

The report's tree, its verdict page and ``reports/traceability.md`` are all rendered from
:func:`judge`, so they cannot disagree. A criterion is *met* in a mode when every one of
its scenarios ran there and passed; *not met* when any failed; *not run* when none ran
(skipped, e.g. a node-control scenario against an external cluster); *partly run* when
some passed and the rest were skipped. Across modes it is met only if met in every mode
whose run held any of its scenarios (the hosts run holds only the reliability features).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from topgun.reporting.results import FAILED, ScenarioResult

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
MODE_ORDER = ("embedded", "processes", "hosts", "external")


@dataclass(frozen=True)
class ModeVerdict:
    mode: str
    verdict: str
    passed: int
    failed: int
    skipped: int


@dataclass(frozen=True)
class CriterionVerdict:
    criterion: str
    text: str
    verdict: str
    modes: tuple[ModeVerdict, ...]
    scenarios: tuple[ScenarioResult, ...]

    def modes_in_words(self) -> str:
        return ", ".join(f"{m.mode}: {m.verdict}" for m in self.modes) or "no results"

    def verdict_in_words(self) -> str:
        """``MET in embedded and processes``, or per mode when the modes disagree."""
        if len({m.verdict for m in self.modes}) == 1:
            return f"{self.verdict.upper()} in {' and '.join(m.mode for m in self.modes)}"
        return f"{self.verdict.upper()} ({self.modes_in_words()})"

    def heading(self) -> str:
        """The tree group's name: the criterion, its verdict and what it asks."""
        return f"{self.criterion} · {self.verdict_in_words()} · {self.text}"

    def one_line(self) -> str:
        return f"{self.criterion} {self.verdict.upper():<11} {self.text} — {self.modes_in_words()}"


def _mode_key(mode: str) -> tuple[int, str]:
    return (MODE_ORDER.index(mode) if mode in MODE_ORDER else len(MODE_ORDER), mode)


def modes_of(results: Sequence[ScenarioResult]) -> list[str]:
    return sorted({r.cluster or "embedded" for r in results}, key=_mode_key)


def _verdict(passed: int, failed: int, skipped: int) -> str:
    if failed:
        return NOT_MET
    if not passed:
        return NOT_RUN
    return PARTLY if skipped else MET


def judge(results: Sequence[ScenarioResult]) -> list[CriterionVerdict]:
    modes = modes_of(results)
    verdicts = []
    for criterion, text in CRITERIA.items():
        mine = tuple(r for r in results if criterion in r.tags)
        per_mode = []
        for mode in modes:
            here = [r for r in mine if (r.cluster or "embedded") == mode]
            if not here:
                continue  # that run had none of this criterion's scenarios (e.g. hosts mode)
            passed = sum(r.status == "passed" for r in here)
            failed = sum(r.status in FAILED for r in here)
            skipped = len(here) - passed - failed
            per_mode.append(
                ModeVerdict(mode, _verdict(passed, failed, skipped), passed, failed, skipped)
            )
        kinds = {m.verdict for m in per_mode}
        if NOT_MET in kinds:
            overall = NOT_MET
        elif kinds == {MET}:
            overall = MET
        elif kinds <= {NOT_RUN}:
            overall = NOT_RUN
        else:
            overall = PARTLY
        verdicts.append(CriterionVerdict(criterion, text, overall, tuple(per_mode), mine))
    return verdicts


def tree_groups(result: ScenarioResult, verdicts: Sequence[CriterionVerdict]) -> list[str]:
    """Where a scenario sits in the report's tree: under AC-1 (the end-to-end feature) and
    then its own criterion, or directly under its criterion. Each scenario sits in one
    place, so the tree counts what the report counts. AC-1's name also lists the verdicts
    of the criteria inside it, so the first page shows all seven."""
    by_id = {v.criterion: v for v in verdicts}
    mine = [c for c in result.criteria if c in by_id]
    if not mine:
        return [result.epic or "Not linked to an acceptance criterion"]
    rest = [c for c in mine if c != "AC-1"]
    if "AC-1" not in mine or not rest:
        return [" + ".join(by_id[c].heading() for c in mine)]
    inner = [
        v for v in verdicts if v.criterion != "AC-1" and any("AC-1" in s.tags for s in v.scenarios)
    ]
    top = by_id["AC-1"]
    within = " · ".join(f"{v.criterion} {v.verdict}" for v in inner)
    return [
        f"AC-1 · {top.verdict_in_words()} · inside: {within} · {top.text}",
        " + ".join(by_id[c].heading() for c in rest),
    ]
