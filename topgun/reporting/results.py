"""Reading and amending Allure result files (``*-result.json``) written by allure-behave."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLUSTER_PARAMETER = "cluster"


@dataclass(frozen=True)
class ScenarioResult:
    name: str
    feature: str
    status: str
    tags: frozenset[str]
    cluster: str

    @property
    def criteria(self) -> list[str]:
        return sorted(t for t in self.tags if t.startswith("AC-"))


def result_files(directory: Path) -> Iterator[Path]:
    yield from sorted(directory.glob("*-result.json"))


def read_results(directory: Path) -> list[ScenarioResult]:
    out = []
    for path in result_files(directory):
        data = json.loads(path.read_text(encoding="utf-8"))
        labels = data.get("labels", [])
        tags = frozenset(lb["value"] for lb in labels if lb.get("name") == "tag")
        feature = next((lb["value"] for lb in labels if lb.get("name") == "feature"), "")
        params = {p.get("name"): p.get("value") for p in data.get("parameters") or []}
        out.append(
            ScenarioResult(
                name=data.get("name", ""),
                feature=feature,
                status=data.get("status", "unknown"),
                tags=tags,
                cluster=str(params.get(CLUSTER_PARAMETER, "")),
            )
        )
    return out


def mark_cluster_mode(directory: Path, mode: str) -> int:
    """Stamp every result of one run with the cluster mode it ran against.

    The same scenario runs once per mode; without a distinguishing parameter and history
    id, Allure would show the second run as a retry of the first. (``allure.dynamic`` does
    nothing under behave, so this is done on the files.)
    """
    count = 0
    for path in result_files(directory):
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        params = [p for p in data.get("parameters") or [] if p.get("name") != CLUSTER_PARAMETER]
        params.append({"name": CLUSTER_PARAMETER, "value": mode})
        data["parameters"] = params
        for field in ("historyId", "testCaseId"):
            if field in data:
                data[field] = hashlib.md5(f"{data[field]}:{mode}".encode()).hexdigest()
        path.write_text(json.dumps(data), encoding="utf-8")
        count += 1
    return count
