"""A node's data dir: what is written comes back as it was, group commits, and the data dirs a
node refuses (each refusal names the file)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from test_server_units import SECRET, op

from topgun.core.concern import Concern, Level
from topgun.core.hashing import fnv1a_utf16
from topgun.core.hlc import Timestamp
from topgun.core.records import LWWRecord
from topgun.server import NodeConfig, ServerNode
from topgun.server.logutil import node_logger
from topgun.server.metrics import NodeMetrics
from topgun.server.storage import DurableStore, Engine, GroupCommit, StorageError
from topgun.server.storage.engine import Batch, record_key

pytestmark = pytest.mark.timeout(30)


def solo(data_dir: Path) -> ServerNode:
    return ServerNode(
        NodeConfig(node_id="a", jwt_secret=SECRET, cluster_secret=SECRET, data_dir=str(data_dir))
    )


def held(store: DurableStore, key: str) -> bytes:
    pid = fnv1a_utf16(key) % 271
    return store._parts[pid]["m"][key]


def test_records_come_back_in_their_held_form(tmp_path: Path) -> None:
    async def scenario() -> None:
        commit = GroupCommit(Engine(tmp_path, "a"), node_logger("a"), NodeMetrics("a"))
        store = DurableStore(commit)
        for n, key in enumerate(["k1", "k2", "k1", "x" * 4096]):  # counters past the node table
            assert store.merge("m", key, LWWRecord({"n": n}, Timestamp(1000 + n, 7 + n, "c")))
        commit.put_meta(b"table", b"t1")
        await commit.durable()
        assert commit.metrics.registry.get_sample_value("topgun_storage_commits_total") == 1
        expected = {k: held(store, k) for k in ("k1", "k2", "x" * 4096)}
        await commit.close(flush=True)

        again = Engine(tmp_path, "a")
        try:
            loaded = again.load()
        finally:
            again.close()
        assert loaded.nodes == ["c"] and loaded.table == b"t1"
        assert {k: h for _, _, k, h in loaded.rows} == expected  # the later k1 won
        fresh = DurableStore(GroupCommit(Engine(tmp_path / "b", "b"), node_logger("b"),
                                         NodeMetrics("b")))  # fmt: skip
        fresh.packer.adopt(loaded.nodes)
        fresh.install(loaded.rows)
        record = fresh.get("m", "k1")
        assert record is not None and record.value == {"n": 2}
        await fresh.commit.close(flush=False)

    asyncio.run(scenario())


def test_a_failed_commit_fails_its_waiters_and_every_later_one(tmp_path: Path) -> None:
    async def scenario() -> None:
        engine = Engine(tmp_path, "a")
        commit = GroupCommit(engine, node_logger("a"), NodeMetrics("a"))

        def broken(_batch: Batch) -> None:
            raise OSError(28, "No space left on device")

        engine.write = broken  # type: ignore[method-assign]
        commit.add((236, "m", "k", b"x" * 20))
        with pytest.raises(StorageError, match=r"data\.mdb: write failed.*No space left"):
            await commit.durable()
        with pytest.raises(StorageError):
            await commit.durable()
        assert commit.metrics.registry.get_sample_value("topgun_storage_errors_total") == 1
        await commit.close(flush=True)

    asyncio.run(scenario())


def test_a_node_restarted_on_its_data_dir_serves_what_it_held(tmp_path: Path) -> None:
    async def scenario() -> None:
        node = solo(tmp_path)
        await node.start()
        try:
            await asyncio.wait_for(node.partitions.table_changed.wait(), 5)
            [o] = await node.execute([op("key-1", "v1")], concern=Concern(Level.PERSISTED))
            assert o.ok and o.level == "PERSISTED"
            table = node.table
        finally:
            await node.kill()
        again = solo(tmp_path)
        await again.start()
        try:
            record = again.store.get("m", "key-1")
            assert record is not None and record.value == "v1"
            assert again.table is not None and table is not None
            assert again.table.key == table.key and again.table.owners == table.owners
        finally:
            await again.kill()

    asyncio.run(scenario())


def test_a_data_dir_in_use_or_of_another_node_is_refused(tmp_path: Path) -> None:
    first = Engine(tmp_path, "a")
    try:
        with pytest.raises(StorageError, match=r"/a: in use by another running node"):
            Engine(tmp_path, "a")
    finally:
        first.close()
    os.rename(tmp_path / "a", tmp_path / "b")
    with pytest.raises(StorageError, match=r"b/data.mdb: holds the data of node b'a', not 'b'"):
        Engine(tmp_path, "b")
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StorageError, match=r"file/a: cannot use it as a data dir"):
        Engine(tmp_path / "file", "a")


def test_a_corrupt_or_truncated_file_is_refused_naming_it(tmp_path: Path) -> None:
    data = tmp_path / "a" / "data.mdb"
    data.parent.mkdir()
    data.write_bytes(os.urandom(64 * 1024))
    with pytest.raises(StorageError, match=r"a/data.mdb: not a usable TopGun data file"):
        Engine(tmp_path, "a")
    data.unlink()
    engine = Engine(tmp_path, "a")
    engine.write(Batch([(p, "m", f"k{p}", b"\0" * 12 + b"\xc0" * 500) for p in range(271)],
                       [(0, "c")]))  # fmt: skip
    engine.close()
    with data.open("r+b") as f:
        f.truncate(data.stat().st_size // 2)
    with pytest.raises(StorageError, match=r"a/data.mdb: truncated"):
        Engine(tmp_path, "a")


def test_a_record_that_is_not_whole_stops_the_load(tmp_path: Path) -> None:
    engine = Engine(tmp_path, "a")
    with engine.env.begin(write=True) as txn:
        txn.put(record_key(3, "m", "k"), b"\x00\x01\x00\x01mk" + b"\x00" * 4, db=engine.records)
    with pytest.raises(StorageError, match=r"a/data.mdb: record 0 is corrupt"):
        engine.load()
    engine.close()


def test_the_node_refuses_to_start_on_a_bad_data_dir(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "data.mdb").write_bytes(b"\x17" * 10_000)
    with pytest.raises(StorageError, match=r"a/data\.mdb: not a usable"):
        solo(tmp_path)
