"""Durable nodes (issue 18): writes acknowledged at PERSISTED survive SIGKILL of every node at
once, with ``topgun node`` processes on a data dir restarted at the same addresses."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from topgun.harness.cluster import ClusterSettings, ProcessCluster
from topgun.harness.waiting import eventually, wait_until
from topgun.harness.wire import WireClient

pytestmark = pytest.mark.timeout(240)
MAP = "durable"
WANTED_ACKS = 4000
BATCH = 100


def record(value: Any, n: int) -> dict[str, Any]:
    ts = {"millis": float(int(time.time() * 1000)), "counter": n % 60_000, "nodeId": "w"}
    return {"value": value, "timestamp": ts}


async def writer(
    url: str, token: str, name: str, acked: dict[str, Any], stop: asyncio.Event
) -> None:
    """Batches at PERSISTED until ``stop`` or the node dies; ``acked`` gets each op whose
    result said success (the only ones the test may count as promised)."""
    client = await WireClient.open(url, token)
    n = 0
    try:
        while not stop.is_set():
            ops = []
            for _ in range(BATCH):
                n += 1
                key, value = f"{name}-{n}", {"w": name, "n": n}
                op = {"id": str(n), "mapName": MAP, "key": key, "record": record(value, n)}
                ops.append(op)
            payload = {"ops": ops, "writeConcern": "PERSISTED", "timeout": 10_000}
            await client.send({"type": "OP_BATCH", "payload": payload})
            ack = (await client.recv("OP_ACK", timeout=15))["payload"]
            for op, result in zip(ops, ack["results"], strict=True):
                if result["success"]:
                    assert result["achievedLevel"] == "PERSISTED", result
                    acked[op["key"]] = op["record"]["value"]
    except (OSError, TimeoutError, ConnectionError) as exc:  # the node was killed
        if not stop.is_set():
            raise AssertionError(f"writer {name} failed before the kill: {exc!r}") from exc
    except Exception as exc:
        if not stop.is_set() or "ConnectionClosed" not in type(exc).__name__:
            raise
    finally:
        await client.close()


def safe_everywhere(cluster: ProcessCluster) -> bool:
    return all(cluster.routes.http.json(n, "/health").get("safe") for n in cluster.live_nodes())


def kill_all_at_once_and_restart(cluster: ProcessCluster, wanted_acks: int) -> None:
    """Writers at PERSISTED on every node of ``cluster`` until ``wanted_acks`` are acknowledged,
    SIGKILL of every node at once (writes in flight), a restart at the same addresses, and
    every acknowledged record read back once the cluster says it is safe."""
    nodes = cluster.start(3)
    cluster.wait_until_formed(30)
    token = cluster.token()
    acked: dict[str, Any] = {}

    async def load_then_kill() -> None:
        stop = asyncio.Event()
        tasks = [
            asyncio.create_task(writer(cluster.client_url(n), token, f"w{i}", acked, stop))
            for i, n in enumerate(nodes)
        ]
        await wait_until(lambda: len(acked) >= wanted_acks or any(t.done() for t in tasks),
                         120, f"{wanted_acks} writes acknowledged at PERSISTED")  # fmt: skip
        for n in nodes:  # every node at once, writes in flight
            cluster.procs[n].popen.kill()
        stop.set()
        await asyncio.gather(*tasks)

    asyncio.run(load_then_kill())
    assert len(acked) >= wanted_acks
    for n in nodes:
        cluster.kill(n)  # reaps the process
    for n in nodes:
        cluster.restart(n, same_address=True)
    cluster.wait_until_formed(60)

    def all_safe() -> None:
        assert safe_everywhere(cluster), "a node does not say safe yet"

    eventually(all_safe, 90, "every restarted node saying safe")

    async def read_back() -> dict[str, Any]:
        client = await WireClient.open(cluster.client_url(nodes[0]), token)
        try:
            return await client.walk(MAP)
        finally:
            await client.close()

    held = asyncio.run(read_back())
    lost = sorted(k for k in acked if k not in held)
    wrong = sorted(k for k in acked if k in held and held[k]["value"] != acked[k])
    assert (len(lost), len(wrong)) == (0, 0), (
        f"{len(acked)} acked at PERSISTED: {len(lost)} lost (e.g. {lost[:5]}), "
        f"{len(wrong)} with another value (e.g. {wrong[:5]})"
    )


def test_sigkill_of_every_node_loses_no_persisted_write(tmp_path: Path) -> None:
    cluster = ProcessCluster(ClusterSettings(node_options={"data_dir": str(tmp_path)}))
    try:
        kill_all_at_once_and_restart(cluster, WANTED_ACKS)
    finally:
        cluster.close()


def test_a_node_refuses_to_start_on_a_corrupt_data_file(tmp_path: Path) -> None:
    data = tmp_path / "n1" / "data.mdb"
    data.parent.mkdir()
    data.write_bytes(b"\x17" * 20_000)
    done = subprocess.run(
        [sys.executable, "-m", "topgun", "node", "--node-id", "n1", "--dev",
         "--data-dir", str(tmp_path)],
        check=False, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"{data}: not a usable TopGun data file" in done.stderr
    assert "READY" not in done.stdout
