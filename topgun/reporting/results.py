"""Reading and amending Allure result files (``*-result.json``) written by allure-behave."""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLUSTER_PARAMETER = "cluster"
IMPLEMENTATION_LABEL = "implementation"
FAILED = frozenset({"failed", "broken"})
BEYOND_TAG = "beyond:"
IMPLEMENTATIONS = {
    "embedded": "topgun (embedded)",
    "processes": "topgun (processes)",
    "hosts": "topgun (hosts)",
    "topgun-rust": "TopGun Rust 2.2.0",
    "external": "external cluster",
}
"""Cluster mode → what a reader calls the implementation that run judged, in report order.
An external run may name its cluster instead (``mark_cluster_mode(implementation=…)``)."""


def implementation_of(mode: str) -> str:
    return IMPLEMENTATIONS.get(mode, mode)


@dataclass(frozen=True)
class ScenarioResult:
    name: str
    """The scenario's title, without the ``[mode]`` suffix the report shows."""
    feature: str
    status: str
    tags: frozenset[str]
    cluster: str
    reason: str = ""
    """Why it was skipped or failed (Allure's status message), if it says."""
    epic: str = ""
    """The feature's epic label, in words (``Reliability_under_faults`` → with spaces)."""
    implementation: str = ""
    """What the run judged, in words: the run's marking, else :func:`implementation_of`."""

    @property
    def mode(self) -> str:
        """The cluster mode of the run; results that were never marked ran embedded."""
        return self.cluster or "embedded"

    @property
    def criteria(self) -> list[str]:
        return sorted(t for t in self.tags if t.startswith("AC-"))

    @property
    def beyond(self) -> list[str]:
        """The named checks beyond the spec's letter this scenario is (``@beyond:held-by-a-
        backup`` → ``held by a backup``)."""
        return sorted(
            t.removeprefix(BEYOND_TAG).replace("-", " ")
            for t in self.tags
            if t.startswith(BEYOND_TAG)
        )


def result_files(directory: Path) -> Iterator[Path]:
    yield from sorted(directory.glob("*-result.json"))


def parse_result(data: Mapping[str, Any]) -> ScenarioResult:
    labels = data.get("labels", [])
    tags = frozenset(lb["value"] for lb in labels if lb.get("name") == "tag")
    feature = next((lb["value"] for lb in labels if lb.get("name") == "feature"), "")
    epic = next((lb["value"] for lb in labels if lb.get("name") == "epic"), "")
    params = {p.get("name"): p.get("value") for p in data.get("parameters") or []}
    cluster = str(params.get(CLUSTER_PARAMETER, ""))
    implementation = next(
        (lb["value"] for lb in labels if lb.get("name") == IMPLEMENTATION_LABEL),
        implementation_of(cluster or "embedded"),
    )
    name = str(data.get("name", ""))
    if cluster:
        name = name.removesuffix(f" [{cluster}]").removesuffix(f" [{implementation}]")
    details = data.get("statusDetails") or {}
    return ScenarioResult(
        name=name,
        feature=feature,
        status=data.get("status", "unknown"),
        tags=tags,
        cluster=cluster,
        reason=str(details.get("message") or "").strip(),
        epic=str(epic).replace("_", " "),
        implementation=str(implementation),
    )


def read_results(directory: Path) -> list[ScenarioResult]:
    return [
        parse_result(json.loads(p.read_text(encoding="utf-8"))) for p in result_files(directory)
    ]


def mark_cluster_mode(
    directory: Path,
    mode: str,
    reasons: Mapping[str, str] | None = None,
    implementation: str | None = None,
) -> int:
    """Stamp every result of one run with the cluster mode it ran against.

    The same scenario runs once per mode; without a distinguishing parameter, title and
    history id, Allure would show the second run as a retry of the first, under the same
    title. ``host``/``thread`` labels give Allure's timeline its lanes; an empty outline
    value is shown as ``""`` instead of Allure's placeholder. ``reasons`` (result uuid →
    text) says why a scenario was skipped. ``implementation`` names what the run judged
    (default: :func:`implementation_of` the mode); given, it takes the mode's place in the
    title and history id, so runs against two external clusters stay two runs, and two
    columns of the report. Marking twice changes nothing.
    """
    count = 0
    host = socket.gethostname()
    name = implementation or implementation_of(mode)
    for path in result_files(directory):
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        _stamp(data, mode, implementation or mode, host)
        labels = [lb for lb in data.get("labels", []) if lb.get("name") != IMPLEMENTATION_LABEL]
        data["labels"] = [*labels, {"name": IMPLEMENTATION_LABEL, "value": name}]
        reason = (reasons or {}).get(str(data.get("uuid")))
        if reason and data.get("status") == "skipped":
            data["statusDetails"] = {**(data.get("statusDetails") or {}), "message": reason}
        path.write_text(json.dumps(data), encoding="utf-8")
        count += 1
    return count


def _stamp(data: dict[str, Any], mode: str, run: str, host: str) -> None:
    params = [p for p in data.get("parameters") or [] if p.get("name") != CLUSTER_PARAMETER]
    already = len(params) != len(data.get("parameters") or [])
    for p in params:
        if p.get("value") == "":
            p["value"] = '""'
    params.append({"name": CLUSTER_PARAMETER, "value": mode})
    data["parameters"] = params
    if already:
        return
    data["name"] = f"{data.get('name', '')} [{run}]"
    for field in ("historyId", "testCaseId"):
        if field in data:
            data[field] = hashlib.md5(f"{data[field]}:{run}".encode()).hexdigest()
    labels = [lb for lb in data.get("labels", []) if lb.get("name") not in ("host", "thread")]
    labels += [{"name": "host", "value": host}, {"name": "thread", "value": run}]
    data["labels"] = labels
