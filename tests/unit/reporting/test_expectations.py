"""The expectation check: the suite's verdicts about a known-flawed implementation against
the file kept in the repository, differences in either direction failing it."""

from __future__ import annotations

from pathlib import Path

import pytest

from topgun.reporting import expectations
from topgun.reporting.verdicts import CRITERIA

from .synthetic import run

SHIPPED = Path(__file__).resolve().parents[3] / "features" / "expectations"
LOST = "lost 1 of 1 acknowledged writes: key-1"

RUST_RUN = [
    ("map", "passed", ("AC-1", "AC-2"), ""),
    ("owner", "passed", ("AC-1", "AC-3"), ""),
    ("backup", "failed", ("AC-1", "AC-3", "beyond:held-by-a-backup"), LOST),
]
AGREEING = """
implementation = "topgun-rust"
[criteria.AC-1]
verdict = "met"
[criteria.AC-2]
verdict = "met"
why = "plain clients receive the map"
[criteria.AC-3]
verdict = "met"
[criteria.AC-3.beyond]
"held by a backup" = { verdict = "not met", why = "2.2.0 does not replicate" }
"""


def _words(out: str) -> str:
    """The printed lines with their padding collapsed: what they say, not how aligned."""
    return "\n".join(" ".join(line.split()) for line in out.splitlines())


def _check(tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    expectation = tmp_path / "expected.toml"
    expectation.write_text(text, encoding="utf-8")
    ours = run(tmp_path / "ours", "embedded", [("other", "failed", ("AC-2",), "not ours")])
    rust = run(tmp_path / "rust", "topgun-rust", RUST_RUN)
    code = expectations.main([str(expectation), str(ours), str(rust)])
    return code, _words(capsys.readouterr().out)


def test_verdicts_that_match_the_file_pass(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _check(tmp_path, AGREEING, capsys)
    assert code == 0, out
    assert "AC-3 · held by a backup agrees: not met" in out
    assert out.count("agrees") == 4  # the embedded run's failure is not this file's business


def test_a_suite_that_invents_a_failure_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = AGREEING.replace('{ verdict = "not met"', '{ verdict = "met"')
    code, out = _check(tmp_path, text, capsys)
    assert code == 1
    assert (
        "AC-3 · held by a backup DIFFERS: expected met (2.2.0 does not replicate), "
        "suite said not met" in out
    )


def test_a_suite_that_stops_seeing_a_real_failure_fails_and_says_what_was_seen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = AGREEING.replace(
        '[criteria.AC-2]\nverdict = "met"', '[criteria.AC-2]\nverdict = "not met"'
    )
    code, out = _check(tmp_path, text, capsys)
    assert code == 1
    assert "AC-2 DIFFERS: expected not met (plain clients receive the map), suite said met" in out


def test_checks_only_one_side_names_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = AGREEING.replace('[criteria.AC-1]\nverdict = "met"\n', "") + (
        '"readable through every node" = "not met"\n'
    )
    code, out = _check(tmp_path, text, capsys)
    assert code == 1
    assert "AC-1 DIFFERS: not in the expectation file, suite said met" in out
    assert (
        "AC-3 · readable through every node DIFFERS: expected not met, the results hold none of it"
        in out
    )


def test_a_placeholder_is_not_an_expectation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = _check(
        tmp_path, AGREEING.replace('verdict = "met"', 'verdict = "FILL IN"', 1), capsys
    )
    assert code == 1
    assert "AC-1 DIFFERS: no expectation yet ('FILL IN'), suite said met" in out


def test_the_file_may_name_the_implementation_instead_of_the_mode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expectation = tmp_path / "acme.toml"
    expectation.write_text(
        'implementation = "acme staging"\n[criteria.AC-2]\nverdict = "met"\n', encoding="utf-8"
    )
    acme = run(tmp_path / "acme", "external", [("map", "passed", ("AC-2",), "")], "acme staging")
    other = run(tmp_path / "other", "external", [("map", "failed", ("AC-2",), "no map")])
    assert expectations.main([str(expectation), str(acme), str(other)]) == 0
    assert "AC-2 agrees: met" in _words(capsys.readouterr().out)


def test_unreadable_input_is_told_apart_from_a_difference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rust = run(tmp_path / "rust", "topgun-rust", RUST_RUN)
    broken = tmp_path / "broken.toml"
    broken.write_text("implementation = \n", encoding="utf-8")
    assert expectations.main([str(broken), str(rust)]) == 2
    assert expectations.main([str(broken), str(tmp_path / "missing")]) == 2
    nameless = tmp_path / "nameless.toml"
    nameless.write_text('[criteria.AC-2]\nverdict = "met"\n', encoding="utf-8")
    assert expectations.main([str(nameless), str(rust)]) == 2
    other = tmp_path / "other.toml"
    other.write_text('implementation = "external"\n', encoding="utf-8")
    assert expectations.main([str(other), str(rust)]) == 1  # no run of that implementation
    assert "external: no results to compare with" in capsys.readouterr().out


def test_the_shipped_files_name_every_criterion_with_a_verdict() -> None:
    files = sorted(SHIPPED.glob("*.toml"))
    assert files
    for path in files:
        expected = expectations.load(path)
        assert set(CRITERIA) <= set(expected.checks), path
        for name, check in expected.checks.items():
            assert check.valid, f"{path}: {name} = {check.verdict!r}"
            several = " or " in check.verdict
            assert not several or check.why, f"{path}: {name} allows several without why"


def test_several_verdicts_are_allowed_only_with_a_reason(tmp_path: Path) -> None:
    racy = tmp_path / "racy.toml"
    racy.write_text(
        'implementation = "topgun-rust"\n[criteria.AC-5]\nverdict = ["met", "not met"]\n',
        encoding="utf-8",
    )
    with pytest.raises(ValueError, match="several verdicts need a why"):
        expectations.load(racy)
    racy.write_text(
        'implementation = "topgun-rust"\n[criteria.AC-5]\nverdict = ["met", "not met"]\n'
        'why = "a race in the peer"\n',
        encoding="utf-8",
    )
    (check,) = expectations.load(racy).checks.values()
    assert check.allows("met") and check.allows("not met") and not check.allows("not run")


def test_the_comparison_can_be_written_as_junit(tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    wanted = tmp_path / "wanted.toml"
    wanted.write_text(
        'implementation = "topgun-rust"\n[criteria.AC-2]\nverdict = "met"\n'
        '[criteria.AC-3]\nverdict = "met"\n',
        encoding="utf-8",
    )
    outcome = expectations.Outcome(
        wanted,
        expectations.load(wanted),
        ["TopGun Rust 2.2.0"],
        [
            expectations.Comparison("AC-2", expectations.Expected("met"), "met"),
            expectations.Comparison("AC-3", expectations.Expected("met"), "not met"),
        ],
    )
    out = tmp_path / "junit.xml"
    expectations.write_junit(outcome, out)
    suite = ET.parse(out).getroot()
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    assert expectations.only(outcome, ["AC-3"]).comparisons == outcome.comparisons[1:]
