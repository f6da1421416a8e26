"""The durability check: acks at the level that must survive are lost when missing, lower
acks are figures; a lost disk and no running node at all are faults the harness survives."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from topgun.core.concern import Level
from topgun.harness.checker import Outcome, Write, check
from topgun.harness.cluster import ClusterError, ClusterSettings
from topgun.harness.durability import node_data_dir
from topgun.harness.nemesis import Nemesis
from topgun.harness.writers import Writers, WriterSettings


def ok(writer: int, seq: int, level: str | None) -> Write:
    key = f"w{writer}-k{seq}"
    return Write(writer, seq, key, {"writer": writer, "seq": seq}, 0.0, Outcome.OK, level=level)


def test_a_missing_persisted_ack_is_lost_a_missing_lower_one_is_a_figure() -> None:
    kept, gone = ok(0, 0, "PERSISTED"), ok(0, 1, "PERSISTED")
    fast, lost_fast = ok(1, 0, "REPLICATED"), ok(1, 1, "REPLICATED")
    unsaid = ok(2, 0, None)
    history = [kept, gone, fast, lost_fast, unsaid]
    read = {kept.key: kept.value, fast.key: fast.value}
    result = check(history, read, Level.PERSISTED)
    assert result.lost == [gone]
    assert sorted(w.key for w in result.lost_below) == sorted([lost_fast.key, unsaid.key])
    assert result.kept == 2 and not result.valid
    assert result.below() == {
        "REPLICATED": {"acknowledged": 2, "lost": 1},
        "unknown": {"acknowledged": 1, "lost": 1},  # an ack that named no level promised none
    }
    counts = result.counts()
    assert (counts["ok at PERSISTED"], counts["lost below PERSISTED"]) == (2, 2)
    report = result.to_json(history, [])
    assert report["keptAt"] == "PERSISTED" and report["lostBelowLevel"] == result.below()


def test_lower_acks_lost_leave_the_check_valid() -> None:
    kept, lost_fast = ok(0, 0, "PERSISTED"), ok(1, 0, "APPLIED")
    result = check([kept, lost_fast], {kept.key: kept.value}, Level.PERSISTED)
    assert result.valid and result.lost_below == [lost_fast]


def test_nothing_acknowledged_at_the_level_proves_nothing() -> None:
    fast = ok(0, 0, "REPLICATED")
    result = check([fast], {fast.key: fast.value}, Level.PERSISTED)
    assert not result.lost and not result.valid  # no PERSISTED ack was put to the test


def test_without_a_level_every_ack_must_survive() -> None:
    fast = ok(0, 0, "APPLIED")
    result = check([fast], {}, None)
    assert result.lost == [fast] and result.below() == {}
    assert "ok at PERSISTED" not in result.counts()


def test_a_lost_disk_deletes_the_folder_of_that_node_only(tmp_path: Path) -> None:
    for node in ("node-1", "node-2"):
        (tmp_path / node).mkdir()
        (tmp_path / node / "data.mdb").write_bytes(b"x")
    cluster: Any = SimpleNamespace(
        settings=ClusterSettings(node_options={"data_dir": str(tmp_path)}), down={"node-2"}
    )
    nemesis = Nemesis(cluster)
    assert node_data_dir(cluster, "node-2") == tmp_path / "node-2"
    with pytest.raises(ClusterError, match="node-1 is running"):
        nemesis.lose_disk("node-1")
    nemesis.lose_disk("node-2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node-1"]
    assert nemesis.timeline[-1]["fault"] == "data dir deleted"
    plain: Any = SimpleNamespace(settings=ClusterSettings(), down={"node-2"})
    with pytest.raises(ClusterError, match="keeps no data on disk"):
        node_data_dir(plain, "node-2")


def test_a_writer_with_no_node_running_waits_instead_of_failing() -> None:
    settings = WriterSettings(map_name="m", seeds=lambda: [], token="t", write_concern="PERSISTED")
    writers = Writers(SimpleNamespace(), settings, 1)  # type: ignore[arg-type]
    assert asyncio.run(writers._connect(0)) is None  # every node down: no seed to start from
