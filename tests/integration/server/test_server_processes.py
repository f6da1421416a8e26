"""Three ``topgun node`` OS processes, checked from outside with plain HTTP and websockets."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import Any

import pytest
from server_testkit import SECRET, WireClient, put, run, token

from topgun.core.hashing import partition_id
from topgun.core.table import ideal_assignment
from topgun.harness.nodes import HARNESS_POLICY_FILE

pytestmark = pytest.mark.timeout(90)
CLUSTER = "proc-cluster-secret-0123456789abcdef"
PID = partition_id("key-1")


class Proc:
    def __init__(self, node_id: str, peers: list[str]) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop())
        args = [sys.executable, "-m", "topgun", "node", "--node-id", node_id,
                "--jwt-secret", SECRET, "--cluster-secret", CLUSTER,
                "--heartbeat-interval", "0.2", "--failure-timeout", "1.5",
                "--policies", str(HARNESS_POLICY_FILE)]  # fmt: skip
        for p in peers:
            args += ["--peer", p]
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, env={**os.environ})
        assert self.p.stdout is not None
        ready, _, _ = select.select([self.p.stdout], [], [], 20)
        line = self.p.stdout.readline().decode() if ready else ""
        assert line.startswith("READY "), (line, self.logs())
        info = json.loads(line[len("READY ") :])
        self.node_id: str = info["nodeId"]
        self.url: str = info["clientUrl"]
        self.cluster: str = info["clusterAddress"]

    def logs(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-3000:]

    def get(self, path: str, admin: bool = True) -> Any:
        req = urllib.request.Request(self.url.replace("ws://", "http://") + path)
        if admin:
            req.add_header("Authorization", "Bearer " + token(["ADMIN"]))
        with urllib.request.urlopen(req, timeout=3) as resp:
            return json.loads(resp.read())

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(10)
        self.log.close()


def poll(check, within: float, what: str) -> Any:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    last = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except OSError as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.05)
    raise AssertionError(f"{what} not true within {within}s (last={last!r})")


def test_three_processes_kill_owner_and_sigterm() -> None:
    procs: list[Proc] = []
    try:
        for nid in ("node-a", "node-b", "node-c"):
            procs.append(Proc(nid, [p.cluster for p in procs]))
        ids = [p.node_id for p in procs]

        def converged() -> bool:
            tables = [p.get("/admin/partitions") for p in procs]
            return len({t["version"] for t in tables}) == 1 and [
                x["ownerNodeId"] for x in tables[0]["partitions"]
            ] == list(ideal_assignment(ids)[0])

        poll(converged, 15, "3-process cluster converged")
        table = procs[0].get("/admin/partitions")
        assert {n["nodeId"]: n["endpoints"]["websocket"] for n in table["nodes"]} == {
            p.node_id: p.url for p in procs
        }
        health = procs[1].get("/health", admin=False)
        assert health["members"] == ids and health["partitionMapVersion"] == table["version"]
        owner_id = table["partitions"][PID]["ownerNodeId"]
        backup_id = table["partitions"][PID]["backupNodeIds"][0]
        by_id = {p.node_id: p for p in procs}

        async def write(proc: Proc, op_id: str, value: Any) -> dict[str, Any]:
            c = await WireClient.open(proc.url, token())
            try:
                return await c.write([put(op_id, "key-1", value)])
            finally:
                await c.close()

        ack = run(write(procs[0], "1", "v1"))
        assert ack["results"][0]["success"] is True
        for nid, role in ((owner_id, "owner"), (backup_id, "backup")):
            held = by_id[nid].get("/admin/maps/m/key-1")
            assert held["role"] == role and held["record"]["value"] == "v1"

        by_id[owner_id].p.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        survivors = [p for p in procs if p.node_id != owner_id]

        def promoted() -> bool:
            ts = [p.get("/admin/partitions") for p in survivors]
            return all(
                t["version"] > table["version"] and t["partitions"][PID]["ownerNodeId"] == backup_id
                for t in ts
            )

        poll(promoted, 2.0, "former backup owns key-1 on every survivor")
        assert time.monotonic() - killed < 2.0
        assert by_id[backup_id].get("/admin/maps/m/key-1")["record"]["value"] == "v1"
        for i, s in enumerate(survivors):
            ack = run(write(s, str(10 + i), f"v{2 + i}"))
            assert ack["results"][0]["success"] is True, ack
            t = s.get("/admin/partitions")["partitions"][PID]
            for nid in (t["ownerNodeId"], *t["backupNodeIds"]):
                assert by_id[nid].get("/admin/maps/m/key-1")["record"]["value"] == f"v{2 + i}"

        for s in survivors:
            s.p.send_signal(signal.SIGTERM)
        for s in survivors:
            assert s.p.wait(15) == 0, s.logs()
        assert "[node-b]" in survivors[0].logs() or "[node-a]" in survivors[0].logs()
    finally:
        for p in procs:
            p.stop()


def test_node_refuses_to_start_without_secret() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "topgun", "node", "--node-id", "x"],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert out.returncode != 0 and b"secret" in out.stderr
    tok = subprocess.run(
        [sys.executable, "-m", "topgun", "token", "--sub", "ann", "--role", "ADMIN",
         "--secret", SECRET],
        capture_output=True, timeout=30, check=True,
    )  # fmt: skip
    from topgun.server.auth import verify_token

    p = verify_token(tok.stdout.decode().strip(), SECRET)
    assert p.user_id == "ann" and p.is_admin
