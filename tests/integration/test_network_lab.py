"""Network hosts for real (root only): addresses reach each other until a fault cuts them,
one direction at a time, and nothing is left behind."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from topgun.harness.netns import NetworkLab, unavailable_reason

REASON = unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

ECHO = (
    "import socket,sys\n"
    "s=socket.socket(); s.bind((sys.argv[1], 7777)); s.listen()\n"
    "print('up', flush=True)\n"
    "while True:\n"
    "    c,_=s.accept(); c.sendall(b'hi'); c.close()\n"
)


def _output(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def _reaches(address: str) -> bool:
    try:
        with socket.create_connection((address, 7777), timeout=0.5) as conn:
            return conn.recv(2) == b"hi"
    except OSError:
        return False


def test_a_host_is_reachable_until_cut_and_the_lab_leaves_nothing_behind() -> None:
    lab = NetworkLab()
    try:
        host = lab.add_host("node-1")
        server = subprocess.Popen(
            [*host.exec_prefix(), sys.executable, "-c", ECHO, host.address],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        assert server.stdout.readline().strip() == "up"
        assert _reaches(host.address)
        lab.block(host, lab.client_address, inbound=False, outbound=True)
        assert not _reaches(host.address)  # replies are dropped: one direction is enough
        lab.heal(host)
        assert _reaches(host.address)
        lab.block(host, lab.client_address, inbound=True, outbound=False)
        assert not _reaches(host.address)
    finally:
        lab.close()
    names = _output(["ip", "netns", "list"])
    links = _output(["ip", "-o", "link"])
    assert lab.ns_prefix not in names
    assert lab.tag not in links
    assert server.wait(5) is not None  # the lab killed what ran inside it
    server.stdout.close()
