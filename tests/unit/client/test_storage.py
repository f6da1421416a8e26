from __future__ import annotations

from typing import Any

import pytest

from topgun.client.storage import MemoryStorage, SqliteStorage


@pytest.fixture(params=["memory", "sqlite"])
def storage(request: Any, tmp_path: Any) -> Any:
    s = MemoryStorage() if request.param == "memory" else SqliteStorage(tmp_path / "c.db")
    s.open()
    yield s
    s.close()


def test_records_round_trip(storage: Any) -> None:
    rec = {
        "value": {"a": [1, 2.5, None, b"x"]},
        "timestamp": {"millis": 1.0, "counter": 0, "nodeId": "c"},
    }
    storage.put_record("m", "k", rec)
    assert storage.get_record("m", "k") == rec
    assert storage.get_record("m", "other") is None
    assert storage.records("m") == [("k", rec)]
    assert storage.records("n") == []


def test_op_log_ids_increase_and_only_listed_ids_are_marked(storage: Any) -> None:
    ids = [storage.append_op({"n": i}) for i in range(12)]
    assert ids == sorted(ids) and ids[0] == 1
    storage.mark_synced([ids[9]])  # '10' must not mark '2'..'9' (no range marking)
    pending = [i for i, _ in storage.pending_ops()]
    assert pending == [i for i in ids if i != ids[9]]


def test_meta(storage: Any) -> None:
    assert storage.get_meta("x") is None
    storage.set_meta("x", {"a": 1})
    assert storage.get_meta("x") == {"a": 1}


def test_sqlite_survives_reopen(tmp_path: Any) -> None:
    s = SqliteStorage(tmp_path / "c.db")
    s.open()
    s.append_op({"a": 1})
    s.close()
    s.open()  # the same instance can be reopened after close()
    assert [e for _, e in s.pending_ops()] == [{"a": 1}]
    s.close()
