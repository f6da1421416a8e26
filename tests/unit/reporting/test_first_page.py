"""The report's first page: the table of criteria by implementation above Allure's app."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from topgun.reporting import html, overview

from .synthetic import all_met, run, verdicts_of

ROOT = Path(__file__).resolve().parents[3]
MAPS = "AssertionError: maps disagree: node-1 serves v3, node-2 v1 <partition 236>\n"


def _verdicts(tmp_path: Path) -> list[overview.CriterionVerdict]:
    ours = run(tmp_path / "emb", "embedded", all_met())
    rust = run(
        tmp_path / "rust",
        "topgun-rust",
        [
            *(s for s in all_met() if s[0] != "s2"),
            ("s2", "failed", ("AC-2",), MAPS),
        ],
    )
    return list(verdicts_of(ours, rust).values())


def test_each_cell_has_its_verdict_and_its_evidence(tmp_path: Path) -> None:
    table = overview.verdict_table(_verdicts(tmp_path))
    head = re.findall(r"<th>([^<]*)</th>", table.split("</thead>")[0])
    assert head == ["Criterion", "What SPEC-048c asks", "topgun (embedded)", "TopGun Rust 2.2.0"]
    evidence = "failed: maps disagree: node-1 serves v3, node-2 v1 &lt;partition 236&gt;"
    assert f'title="{evidence}"' in table  # whole in the tooltip
    assert f'<div class="evidence">{evidence}</div>' in table  # and on a line below
    assert table.count('<tr class="beyond">') == 1
    assert "beyond the spec: held by a backup" in table


def test_the_first_page_puts_the_table_before_allures_app(tmp_path: Path) -> None:
    report = tmp_path / "report"
    report.mkdir()
    (report / "index.html").write_text(
        '<html><head></head><body class="x">\n<div id="app"></div></body></html>',
        encoding="utf-8",
    )
    verdicts = _verdicts(tmp_path)
    html.put_first(report, verdicts)
    page = (report / "index.html").read_text(encoding="utf-8")
    assert page.index('<body class="x">') < page.index(overview.SECTION_ID) < page.index("app")
    assert "TopGun Rust 2.2.0: 6 of 7 criteria met, 1 of 1 checks beyond the spec met" in page
    assert overview.summary_line(verdicts) == (
        "topgun (embedded): 7 of 7 criteria met; TopGun Rust 2.2.0: 6 of 7 criteria met"
    )


@pytest.mark.skipif(
    not (ROOT / "node_modules" / ".bin" / "allure").exists() or not shutil.which("npx"),
    reason="Allure 3 is not installed (scripts/bootstrap runs npm ci)",
)
def test_a_generated_report_opens_on_the_table(tmp_path: Path) -> None:
    ours = run(tmp_path / "emb", "embedded", all_met())
    rust = run(tmp_path / "rust", "topgun-rust", [("rust-s2", "failed", ("AC-2",), MAPS)])
    expected = tmp_path / "rust.toml"
    expected.write_text(
        'implementation = "topgun-rust"\n[criteria.AC-2]\nverdict = "not met"\n', encoding="utf-8"
    )
    report = tmp_path / "report"
    args = [str(ours), str(rust), "-o", str(report), "--name", "T", "--expectation", str(expected)]
    assert html.main(args) == 0
    page = (report / "index.html").read_text(encoding="utf-8")
    body = page.index("<body")
    assert body < page.index(f'<section id="{overview.SECTION_ID}">') < page.index('id="app"')
    assert "maps disagree: node-1 serves v3" in page
    assert f"TopGun Rust 2.2.0: the suite&#x27;s verdicts agree with {expected} (1 check)" in page
    assert (
        "<title> T: topgun (embedded): 7 of 7 criteria met; "
        "TopGun Rust 2.2.0: 0 of 7 criteria met (6 not in its run) </title>" in page
    )
