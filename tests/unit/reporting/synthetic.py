"""Synthetic Allure results, shaped as allure-behave writes them, for the reporting tests."""

from __future__ import annotations

import json
from pathlib import Path

from topgun.reporting.results import mark_cluster_mode, read_results
from topgun.reporting.verdicts import CriterionVerdict, judge


def write_result(
    directory: Path, name: str, status: str, *tags: str, message: str = "", **extra: object
) -> None:
    """One scenario's result; ``message`` is its failure message or skip reason."""
    labels = [{"name": "tag", "value": t} for t in tags]
    labels.append({"name": "feature", "value": "F"})
    body: dict[str, object] = {
        "uuid": name,
        "name": name,
        "status": status,
        "labels": labels,
        "historyId": name,
    }
    if message:
        body["statusDetails"] = {"message": message}
    body.update(extra)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}-result.json").write_text(json.dumps(body), encoding="utf-8")


def run(
    directory: Path,
    mode: str,
    scenarios: list[tuple[str, str, tuple[str, ...], str]],
    implementation: str | None = None,
) -> Path:
    """One behave run's results directory: (name, status, tags, message) per scenario,
    marked with its cluster mode as ``features/environment.py`` does after a run."""
    for name, status, tags, message in scenarios:
        write_result(directory, name, status, *tags, message=message)
    mark_cluster_mode(directory, mode, implementation=implementation)
    return directory


def verdicts_of(*directories: Path) -> dict[str, CriterionVerdict]:
    return {v.name: v for v in judge([r for d in directories for r in read_results(d)])}


def all_met() -> list[tuple[str, str, tuple[str, ...], str]]:
    """A run in which every criterion, and each check beyond AC-3, passed."""
    return [(f"s{i}", "passed", (f"AC-{i}",), "") for i in range(1, 8)] + [
        ("backup", "passed", ("AC-1", "AC-3", "beyond:held-by-a-backup"), "")
    ]
