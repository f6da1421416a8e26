"""The traceability table and the terminal summary: criteria by implementation, the checks
beyond the spec under them, the evidence, and the closing line and exit code."""

from __future__ import annotations

from pathlib import Path

import pytest

from topgun.reporting import traceability
from topgun.reporting.results import read_results

from .synthetic import all_met, run

LOST = "AssertionError: lost 1 of 1 acknowledged writes: key-1 | v1\n"
RUST_RUN = [
    *((name, status, tags, msg) for name, status, tags, msg in all_met() if name != "backup"),
    ("backup", "failed", ("AC-1", "AC-3", "beyond:held-by-a-backup"), LOST),
]
RUST_EXPECTED = "\n".join(
    ['implementation = "topgun-rust"']
    + [f'[criteria.AC-{i}]\nverdict = "met"' for i in range(1, 8)]
    + ['[criteria.AC-3.beyond]\n"held by a backup" = "not met"']
)


def _runs(tmp_path: Path) -> list[Path]:
    return [
        run(tmp_path / "emb", "embedded", all_met()),
        run(tmp_path / "rust", "topgun-rust", RUST_RUN),
    ]


def test_the_table_has_a_column_per_implementation_and_the_checks_beyond_as_rows(
    tmp_path: Path,
) -> None:
    text = traceability.render([r for d in _runs(tmp_path) for r in read_results(d)])
    assert "| Criterion | What it asks | topgun (embedded) | TopGun Rust 2.2.0 |" in text
    assert (
        "| ↳ | beyond the spec: held by a backup | **MET** — 1 passed | **NOT MET** — failed: "
        "lost 1 of 1 acknowledged writes: key-1 \\| v1 |" in text
    )
    assert "- TopGun Rust 2.2.0: 7 of 7 criteria met, 0 of 1 checks beyond the spec met" in text
    assert "| AC-3 · held by a backup | F / backup (TopGun Rust 2.2.0: failed (" in text


def test_the_terminal_shows_the_table_and_what_fell_short(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert traceability.main([*map(str, _runs(tmp_path)), "-o", str(tmp_path / "t.md")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["Criterion", "topgun", "(embedded)", "TopGun", "Rust", "2.2.0"]
    [backup] = [line for line in out if line.startswith("  beyond the spec: held by a backup")]
    assert backup.split()[-2:] == ["NOT", "MET"]
    assert "  TopGun Rust 2.2.0 · AC-3 · held by a backup: failed: lost 1 of 1" in "\n".join(out)
    assert out[-1] == (
        "7 criteria met, 0 not met, 0 not judged; beyond the spec: 0 checks met, 1 not met, "
        "0 not judged (implementations: topgun (embedded), TopGun Rust 2.2.0)"
    )


def test_an_implementation_with_an_expectation_file_is_compared_not_required_to_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = tmp_path / "rust.toml"
    expected.write_text(RUST_EXPECTED, encoding="utf-8")
    args = [*map(str, _runs(tmp_path)), "-o", str(tmp_path / "t.md"), "--expectation"]
    assert traceability.main([*args, str(expected)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == (
        "7 criteria met, 0 not met, 0 not judged; beyond the spec: 1 check met, 0 not met, "
        "0 not judged (implementations: topgun (embedded))"
    )
    assert "rust.toml: AC-3 · held by a backup agrees: not met" in out
    expected.write_text(RUST_EXPECTED.replace('= "not met"', '= "met"'), encoding="utf-8")
    assert traceability.main([*args, str(expected)]) == 1  # the suite and the file disagree


def test_the_closing_line_tells_not_met_from_not_judged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    external = run(
        tmp_path / "ext",
        "external",
        [
            *(s for s in all_met() if s[0] in ("s1", "s2", "s3", "s6")),
            ("s4", "failed", ("AC-4",), "AssertionError: the write was not acknowledged"),
            ("s5", "skipped", ("AC-5",), "needs node control: not run here"),
            ("s7", "passed", ("AC-7",), ""),
            ("s7b", "skipped", ("AC-7",), "needs node control: not run here"),
        ],
        implementation="acme staging",
    )
    assert traceability.main([str(external), "-o", str(tmp_path / "t.md")]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == (
        "4 criteria met, 1 not met, 2 not judged (implementations: acme staging)"
    )


def test_a_run_that_holds_no_criterion_judges_none_and_no_results_pass_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hosts = run(tmp_path / "hosts", "hosts", [("soak", "passed", ("soak",), "")])
    assert traceability.main([str(hosts), "-o", str(tmp_path / "t.md")]) == 1
    assert capsys.readouterr().out.splitlines()[-1] == (
        "0 criteria met, 0 not met, 7 not judged (implementations: topgun (hosts))"
    )
    (tmp_path / "empty").mkdir()
    assert traceability.main([str(tmp_path / "empty"), "-o", str(tmp_path / "t.md")]) == 1
