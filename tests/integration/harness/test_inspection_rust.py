"""The inspectors against TopGun's Rust server 2.2.0, a server with no admin routes of ours.

One node that founds a cluster of its own (its seed list names only itself), started right
before the test asks: the external controller must choose the Rust admin API, wait through
the node's few seconds without a partition map instead of judging it, and read records and
roles through the protocol; without the lowercase ``admin`` role it falls back to the
protocol alone and says why. Skipped, with the reason, where the Rust server cannot run.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from topgun.harness import ClusterSettings, LoopThread
from topgun.harness.cluster import DEFAULT_SECRET
from topgun.harness.external import ExternalCluster
from topgun.harness.inspection import ProtocolInspector, RustAdminInspector
from topgun.harness.ports import free_port
from topgun.harness.rust import BINARY, unavailable_reason
from topgun.harness.security import put_op
from topgun.harness.wire import WireClient

pytestmark = pytest.mark.timeout(90)

READY_TIMEOUT_S = 15.0
_PORT_LINE = re.compile(r"^PORT=(\d+)$")


@pytest.fixture
def founder(tmp_path: Path) -> Iterator[str]:
    """A Rust node that founds a one-node cluster, in its own directory; its client URL."""
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    cluster = f"127.0.0.1:{free_port()}"
    command = [str(BINARY), "--node-id", "rust-1", "--port", "0"]
    command += ["--cluster-port", cluster.rsplit(":", 1)[1], "--seed-nodes", cluster]
    proc = subprocess.Popen(
        command,
        cwd=tmp_path,
        env={**os.environ, "JWT_SECRET": DEFAULT_SECRET, "TOPGUN_BIND_ADDR": "127.0.0.1"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:  # keeps draining, so a chatty node never blocks on a full pipe
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.strip())

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        yield f"ws://127.0.0.1:{_port(lines)}"
    finally:
        proc.kill()
        proc.wait(10)
        reader.join(5)
        assert proc.stdout is not None
        proc.stdout.close()


def _port(lines: queue.Queue[str]) -> int:
    """The client port from the node's ``PORT=<n>`` line, printed once it listens."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while (left := deadline - time.monotonic()) > 0:
        try:
            ready = _PORT_LINE.match(lines.get(timeout=left))
        except queue.Empty:
            break
        if ready:
            return int(ready.group(1))
    raise AssertionError(f"the Rust node printed no PORT= line within {READY_TIMEOUT_S} s")


def _write(url: str, token: str, ops: list[dict[str, object]]) -> None:
    loop = LoopThread()
    try:

        async def write() -> None:
            client = await WireClient.open(url, token, close_timeout=0.25)
            try:
                await client.write(ops)
            finally:
                await client.close()

        loop.run(write(), 15)
    finally:
        loop.close()


def test_external_mode_reads_a_rust_node_through_its_admin_api_and_the_protocol(
    founder: str,
) -> None:
    external = ExternalCluster([founder], ClusterSettings(DEFAULT_SECRET), form_timeout=30)
    try:
        assert external.start(1) == ["rust-1"]  # waits while the node elects itself
        assert isinstance(external.inspector, RustAdminInspector)
        assert external.inspector_choice.startswith("chose TopGun Rust admin API (members)")
        assert "not our admin routes: not offered" in external.inspector_choice
        [wait] = external.settle_waits
        assert wait.members == ("rust-1",) and wait.method == RustAdminInspector.name
        _write(founder, external.admin_token(), [put_op("1", "m", "key-1", {"v": 1})])
        held = external.inspect("rust-1", "m", "key-1")
        assert held["record"]["value"] == {"v": 1}
        assert held["role"] == "owner" and held["method"] == RustAdminInspector.name
        assert external.inspect("rust-1", "m", "absent")["record"] is None
        plain = ProtocolInspector({"rust-1": founder}, external.admin_token())
        try:
            assert plain.inspect("rust-1", "m", "key-1")["record"] == held["record"]
        finally:
            plain.close()
    finally:
        external.close()


def test_without_the_lowercase_admin_role_the_protocol_alone_is_used(founder: str) -> None:
    settings = ClusterSettings(DEFAULT_SECRET)
    external = ExternalCluster([founder], settings, roles=("ADMIN",), form_timeout=30)
    try:
        assert external.start(1) == ["rust-1"]
        assert isinstance(external.inspector, ProtocolInspector)
        assert not isinstance(external.inspector, RustAdminInspector)
        assert "refused the suite's user" in external.inspector_choice
        assert "HTTP 403" in external.inspector_choice
        assert external.inspect("rust-1", "m", "absent")["role"] == "owner"
    finally:
        external.close()
