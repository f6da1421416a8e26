"""What the report shows before any scenario: the table of criteria by implementations, on
the report's first page and as a page of its own, and the tree of criteria.

All come from :func:`topgun.reporting.verdicts.judge`, like ``traceability.md``.
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
    Cell,
    Check,
    CriterionVerdict,
    implementations_of,
    judge,
    rows,
    tree_groups,
)

TREE_LABELS = ("parentSuite", "suite", "subSuite")
"""The report groups by these (:mod:`topgun.reporting.html` sets Allure's ``groupBy``)."""

SECTION_ID = "topgun-verdicts"

_COLOURS = {MET: ("#1a7f37", "#dafbe1"), NOT_MET: ("#cf222e", "#ffebe9")}
_NOT_JUDGED_COLOURS = ("#9a6700", "#fff8c5")

_STYLE = f"""
#{SECTION_ID}{{font:13px/1.4 system-ui,sans-serif;color:#1f2328;background:#fff;
  max-width:1400px;margin:12px auto;padding:12px 16px;border:1px solid #d0d7de;
  border-radius:8px}}
#{SECTION_ID} summary{{font-size:17px;font-weight:600;cursor:pointer}}
#{SECTION_ID} p{{margin:6px 0}}
#{SECTION_ID} ul{{margin:6px 0;padding-left:20px;list-style:disc}}
#{SECTION_ID} b{{font-weight:700}}
#{SECTION_ID} i{{font-style:italic}}
#{SECTION_ID} table{{border-collapse:collapse;margin:8px 0;width:100%}}
#{SECTION_ID} th,#{SECTION_ID} td{{border:1px solid #d0d7de;padding:4px 6px;text-align:left;
  vertical-align:top}}
#{SECTION_ID} thead th{{background:#f6f8fa}}
#{SECTION_ID} tr.beyond th,#{SECTION_ID} tr.beyond td.asks{{font-weight:400;color:#57606a;
  padding-left:18px}}
#{SECTION_ID} td.asks{{width:28%}}
#{SECTION_ID} td.cell{{min-width:150px;max-width:320px}}
#{SECTION_ID} .verdict{{font-weight:700;text-transform:uppercase;font-size:12px}}
#{SECTION_ID} .evidence{{font-size:12px;color:#57606a;display:-webkit-box;
  -webkit-line-clamp:3;-webkit-box-orient:vertical;overflow:hidden}}
"""


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


def implementations(verdicts: Sequence[CriterionVerdict]) -> list[str]:
    """The table's columns: every implementation that ran a criterion's scenario."""
    return implementations_of([s for _, check in rows(verdicts) for s in check.scenarios])


def _cell(cell: Cell | None) -> str:
    if cell is None:
        return '<td class="cell" title="this run held none of its scenarios">—</td>'
    colour, background = _COLOURS.get(cell.verdict, _NOT_JUDGED_COLOURS)
    evidence = html.escape(cell.evidence)
    return (
        f'<td class="cell" style="background:{background}" title="{evidence}">'
        f'<div class="verdict" style="color:{colour}">{html.escape(cell.verdict)}</div>'
        f'<div class="evidence">{evidence}</div></td>'
    )


def verdict_table(verdicts: Sequence[CriterionVerdict]) -> str:
    """The table criterion by implementation, checks beyond the spec as rows under their
    criterion, each cell's evidence below its verdict (and whole in its tooltip)."""
    columns = implementations(verdicts)
    head = "".join(f"<th>{html.escape(i)}</th>" for i in columns)
    body = []
    for v, check in rows(verdicts):
        cells = "".join(_cell(check.cell(i)) for i in columns)
        if check is v:
            body.append(
                f'<tr><th>{v.name}</th><td class="asks">{html.escape(v.text)}</td>{cells}</tr>'
            )
        else:
            body.append(
                f'<tr class="beyond"><th></th><td class="asks">beyond the spec: '
                f"{html.escape(check.name)}</td>{cells}</tr>"
            )
    return (
        f"<table><thead><tr><th>Criterion</th><th>What SPEC-048c asks</th>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


_LEGEND = (
    "<p>A criterion's verdict follows SPEC-048c as written. The rows <i>beyond the spec</i> "
    "are this project's stronger guarantees under that criterion, judged apart: they never "
    "change the criterion's own verdict. <b>Met</b>: every scenario of the check ran against "
    "that implementation and passed. <b>Not met</b>: one failed; the line under the verdict "
    "says what the implementation did. <b>Not run</b> / <b>partly run</b>: not judged, all "
    "or some scenarios were skipped, for the reason given. —: that run held none of the "
    "check's scenarios.</p>"
)


def section(verdicts: Sequence[CriterionVerdict], notes: Sequence[str] = ()) -> str:
    """The report's first page: the table, above Allure's own page; ``notes`` are more
    lines under the count per implementation (how known-flawed peers compare with their
    expectation files)."""
    per_implementation = "".join(
        f"<li>{html.escape(line)}</li>" for line in [*implementation_lines(verdicts), *notes]
    )
    return (
        f'<style>{_STYLE}</style><section id="{SECTION_ID}"><details open>'
        "<summary>SPEC-048c acceptance criteria, per implementation</summary>"
        f"<ul>{per_implementation}</ul>{verdict_table(verdicts)}{_LEGEND}"
        "<p>Every scenario, with its steps and evidence, is in the report below, grouped "
        "under these criteria.</p></details></section>"
    )


def verdict_page(verdicts: Sequence[CriterionVerdict]) -> str:
    """The same table as a page of its own (one of the report's Global Attachments)."""
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>Acceptance criteria</title>'
        f"</head><body>{section(verdicts)}</body></html>"
    )


def implementation_lines(verdicts: Sequence[CriterionVerdict]) -> list[str]:
    """Per implementation: how many criteria, and how many checks beyond them, it met."""
    lines = []
    beyond = [b for v in verdicts for b in v.beyond]
    for implementation in implementations(verdicts):
        line = f"{implementation}: {_tally(verdicts, implementation, 'criteria')}"
        if beyond:
            line += f", {_tally(beyond, implementation, 'checks beyond the spec')}"
        lines.append(line)
    return lines


def _tally(checks: Sequence[Check], implementation: str, noun: str) -> str:
    """``5 of 7 criteria met``, and how many of them the implementation's run held none of."""
    cells = [c for check in checks if (c := check.cell(implementation))]
    line = f"{sum(c.verdict == MET for c in cells)} of {len(checks)} {noun} met"
    missing = len(checks) - len(cells)
    return f"{line} ({missing} not in its run)" if missing else line


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
    """The report's title: criteria met, per implementation."""
    columns = implementations(verdicts)
    if len(columns) == 1:
        return f"{_tally(verdicts, columns[0], 'acceptance criteria')} ({columns[0]})"
    parts = [f"{i}: {_tally(verdicts, i, 'criteria')}" for i in columns]
    return "; ".join(parts) or "no acceptance results"
