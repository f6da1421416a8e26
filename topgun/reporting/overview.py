"""What the report shows before any scenario: the verdict page and the tree of criteria.

Both come from :func:`topgun.reporting.verdicts.judge`, like ``traceability.md``.
"""

from __future__ import annotations

import html
import json
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from topgun.reporting.results import parse_result, result_files
from topgun.reporting.verdicts import (
    MET,
    NOT_MET,
    CriterionVerdict,
    ModeVerdict,
    judge,
    tree_groups,
)

TREE_LABELS = ("parentSuite", "suite")
"""The report groups by these (``allurerc.json``); they are set here, nowhere else."""

_COLOURS = {MET: "#1a7f37", NOT_MET: "#cf222e"}


def label_tree(staging: Path) -> list[CriterionVerdict]:
    """Place every result under its criterion and return the verdicts."""
    files = list(result_files(staging))
    data = [json.loads(p.read_text(encoding="utf-8")) for p in files]
    verdicts = judge([parse_result(d) for d in data])
    for path, result in zip(files, data, strict=True):
        groups = tree_groups(parse_result(result), verdicts)
        labels = [lb for lb in result.get("labels", []) if lb.get("name") not in TREE_LABELS]
        labels += [{"name": n, "value": g} for n, g in zip(TREE_LABELS, groups, strict=False)]
        result["labels"] = labels
        path.write_text(json.dumps(result), encoding="utf-8")
    return verdicts


def verdict_page(verdicts: Sequence[CriterionVerdict]) -> str:
    """A small self-contained HTML page: one row per criterion, one column per mode."""
    modes = [m.mode for m in verdicts[0].modes] if verdicts else []

    def cell(verdict: str, detail: str = "") -> str:
        colour = _COLOURS.get(verdict, "#9a6700")
        return (
            f'<td style="color:{colour};font-weight:600">{html.escape(verdict)}'
            f'<div style="font-weight:400;color:#57606a">{html.escape(detail)}</div></td>'
        )

    rows = []
    for v in verdicts:
        names = "<br>".join(sorted({html.escape(s.name) for s in v.scenarios})) or "—"
        inner = [
            o.criterion
            for o in verdicts
            if o is not v and o.scenarios and set(o.scenarios) <= set(v.scenarios)
        ]
        if inner and all(
            any(s in o.scenarios for o in verdicts if o is not v) for s in v.scenarios
        ):
            names = f"those of {', '.join(inner)} ({len(v.scenarios)} results)"
        per_mode = "".join(cell(m.verdict, _counts(m)) for m in v.modes)
        rows.append(
            f"<tr><th>{v.criterion}</th><td>{html.escape(v.text)}</td>"
            f"{cell(v.verdict)}{per_mode}<td>{names}</td></tr>"
        )
    head = "".join(f"<th>{html.escape(m)}</th>" for m in modes)
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>Acceptance criteria</title>'
        "<style>body{font:12px sans-serif;margin:4px}h3{margin:0 0 6px}"
        "table{border-collapse:collapse}"
        "td,th{border:1px solid #d0d7de;padding:3px 5px;text-align:left;vertical-align:top}</style>"
        "</head><body><h3>SPEC-048c acceptance criteria</h3>"
        f"<table><tr><th>Criterion</th><th>What it asks</th><th>Verdict</th>{head}"
        f"<th>Scenarios</th></tr>{''.join(rows)}</table>"
        "<p>Met: every scenario of the criterion ran and passed in that mode. Not met: one "
        "failed. Not run: all were skipped (the reason is on each scenario). The tree of "
        "results groups the scenarios under these criteria.</p></body></html>"
    )


def _counts(mode: ModeVerdict) -> str:
    parts = [(mode.passed, "passed"), (mode.failed, "failed"), (mode.skipped, "skipped")]
    return ", ".join(f"{n} {word}" for n, word in parts if n) or "no scenario"


def add_global_attachments(staging: Path, pages: Sequence[tuple[str, str, str]]) -> None:
    """Attach (name, MIME type, text) to the whole report (Allure's Global Attachments)."""
    entries: list[dict[str, Any]] = []
    for name, mime, text in pages:
        source = f"{uuid.uuid4()}-attachment{'.html' if mime == 'text/html' else '.md'}"
        (staging / source).write_text(text, encoding="utf-8")
        entries.append({"name": name, "type": mime, "source": source})
    body = {"attachments": entries, "errors": []}
    (staging / f"{uuid.uuid4()}-globals.json").write_text(json.dumps(body), encoding="utf-8")


def summary_line(verdicts: Sequence[CriterionVerdict]) -> str:
    met = sum(v.verdict == MET for v in verdicts)
    return f"{met} of {len(verdicts)} acceptance criteria met"
