"""TLS on both ports against real nodes, with a throwaway CA made per module (openssl).

Client port: our client writes and reads over ``wss://``, the partition map gives ``wss://``
URLs, HTTPS serves /health, a client without the CA (or facing the wrong host name) and a
plain-text client are refused, a socket that never finishes its TLS handshake is dropped
within the handshake timeout, and client certificates are required when asked for. Cluster
port: nodes with mutual TLS form a cluster; a peer that knows the cluster secret is refused
without a certificate from the cluster CA, with one from another CA, and when its HELLO names
a node its certificate does not.
"""

from __future__ import annotations

import asyncio
import json
import select
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from server_testkit import CLUSTER_SECRET, FAST, SECRET, make_node, run, token
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage

from topgun.client import ClusterConfig, TopGunClient
from topgun.client.errors import StartTimeout
from topgun.client.storage import MemoryStorage
from topgun.harness.nodes import formed, local_config
from topgun.harness.tls import CertFiles, TestCA
from topgun.harness.waiting import wait_until
from topgun.harness.wire import WireClient
from topgun.server import ServerNode
from topgun.server.peer_link import HandshakeError, Member, PeerLink


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA.create(tmp_path_factory.mktemp("tls"))


def client_tls(ca: TestCA, files: CertFiles) -> dict[str, Any]:
    return {"tls_cert": files.cert, "tls_key": files.key, "handshake_timeout_s": 1.0}


def cluster_tls(ca: TestCA, files: CertFiles) -> dict[str, Any]:
    return {"cluster_tls_cert": files.cert, "cluster_tls_key": files.key, "cluster_tls_ca": ca.cert}


async def started(client: TopGunClient, timeout: float = 10.0) -> TopGunClient:  # noqa: ASYNC109
    client.set_auth_token(token(["USER"]))
    try:
        await client.start(timeout=timeout)
    except BaseException:
        await client.close()
        raise
    return client


async def tls_node(**knobs: Any) -> ServerNode:
    node: ServerNode = make_node("solo", **knobs)
    await node.start()
    await wait_until(lambda: node.table is not None, 3.0, "solo table")
    return node


def get(url: str, context: ssl.SSLContext | None) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, context=context, timeout=5) as response:
        return response.status, response.read()


def test_client_writes_and_reads_over_wss_and_https_health_works(ca: TestCA) -> None:
    async def main() -> None:
        node = await tls_node(**client_tls(ca, ca.issue("solo")))
        writer = reader = None
        try:
            url = node.client_url
            assert url.startswith("wss://127.0.0.1:")
            writer = await started(
                TopGunClient(
                    cluster=ClusterConfig(seeds=[url], ca_file=ca.cert), storage=MemoryStorage()
                )
            )
            table = writer.get_partition_table()
            assert table is not None
            assert {n.websocket for n in table.nodes} == {url}
            notes = writer.get_map("notes")
            notes.set("n1", {"text": "over tls"})
            assert len(await writer.flush(timeout=10)) == 1

            context = ssl.create_default_context(cafile=ca.cert)
            reader = await started(
                TopGunClient(server_url=url, options={"ssl": context}, storage=MemoryStorage())
            )
            assert await reader.query("notes") == {"n1": {"text": "over tls"}}

            status, body = await asyncio.to_thread(
                get, url.replace("wss", "https") + "/health", context
            )
            assert status == 200 and json.loads(body)["nodeId"] == "solo"
        finally:
            for client in (writer, reader):
                if client is not None:
                    await client.close()
            await node.kill()

    run(main())


def test_clients_without_the_ca_or_in_plain_text_are_refused_and_the_node_stays_up(
    ca: TestCA,
) -> None:
    async def main() -> None:
        node = await tls_node(**client_tls(ca, ca.issue("solo")))
        try:
            url = node.client_url
            untrusting = TopGunClient(server_url=url, storage=MemoryStorage())  # system CAs
            with pytest.raises(StartTimeout, match="CERTIFICATE_VERIFY_FAILED"):
                await started(untrusting, timeout=2.0)
            await untrusting.close()

            with pytest.raises(InvalidMessage):  # refused at once: no HTTP answer comes
                await asyncio.wait_for(WireClient.open(url.replace("wss", "ws")), 5.0)
            with pytest.raises(OSError):  # HTTP on a TLS port: the connection is dropped
                await asyncio.to_thread(get, url.replace("wss", "http") + "/health", None)

            # a socket that never starts its TLS handshake is closed after handshake_timeout_s
            host, port = url.removeprefix("wss://").split(":")
            reader, writer = await asyncio.open_connection(host, int(port))
            try:
                assert await asyncio.wait_for(reader.read(), 5.0) == b""
            finally:
                writer.close()

            trusting = await started(
                TopGunClient(server_url=url, options={"ca_file": ca.cert}, storage=MemoryStorage())
            )
            await trusting.close()
        finally:
            await node.kill()

    run(main())


def test_a_certificate_for_another_host_name_is_refused(ca: TestCA) -> None:
    async def main() -> None:
        elsewhere = ca.issue("elsewhere", hosts=("db.example",), ips=())
        node = await tls_node(**client_tls(ca, elsewhere))
        try:
            client = TopGunClient(
                server_url=node.client_url, options={"ca_file": ca.cert}, storage=MemoryStorage()
            )
            with pytest.raises(StartTimeout, match="IP address mismatch"):
                await started(client, timeout=2.0)
            await client.close()
        finally:
            await node.kill()

    run(main())


def test_client_certificates_are_required_when_asked_for(ca: TestCA) -> None:
    async def main() -> None:
        knobs = client_tls(ca, ca.issue("solo"))
        node = await tls_node(tls_client_ca=ca.cert, **knobs)
        try:
            bare = ssl.create_default_context(cafile=ca.cert)
            with pytest.raises(StartTimeout, match="no connection authenticated"):
                await started(
                    TopGunClient(
                        server_url=node.client_url, options={"ssl": bare}, storage=MemoryStorage()
                    ),
                    timeout=2.0,
                )
            user = ca.issue("app-user")
            with_cert = ssl.create_default_context(cafile=ca.cert)
            with_cert.load_cert_chain(user.cert, user.key)
            client = await started(
                TopGunClient(
                    server_url=node.client_url, options={"ssl": with_cert}, storage=MemoryStorage()
                )
            )
            await client.close()
        finally:
            await node.kill()

    run(main())


# ------------------------------------------------------------------ mutual TLS between nodes


async def start_mtls_cluster(ca: TestCA, ids: list[str], nodes: list[ServerNode]) -> None:
    for node_id in ids:
        peers = [n.cluster_address for n in nodes]
        cfg = local_config(
            node_id,
            peers,
            jwt_secret=SECRET,
            cluster_secret=CLUSTER_SECRET,
            **FAST,
            **cluster_tls(ca, ca.issue(node_id)),
        )
        node = ServerNode(cfg)
        nodes.append(node)
        await node.start()
    await wait_until(lambda: formed(nodes), 10.0, f"an mTLS cluster of {len(nodes)}")


async def intrude(node: ServerNode, claimed_id: str, context: ssl.SSLContext | None) -> None:
    """Dial ``node``'s cluster port as ``claimed_id`` knowing the cluster secret; raises
    when refused."""
    scheme = "ws" if context is None else "wss"
    ws = await connect(f"{scheme}://{node.cluster_address}", ssl=context, open_timeout=5)
    try:
        link = PeerLink(ws, outbound=True)
        me = Member(claimed_id, "127.0.0.1:1", "ws://127.0.0.1:1", "intruder")
        await link.handshake(me, CLUSTER_SECRET)
    finally:
        await ws.close()


def dial_context(ca_file: str, files: CertFiles | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    context.check_hostname = False
    if files is not None:
        context.load_cert_chain(files.cert, files.key)
    return context


def auth_failures(node: ServerNode) -> float:
    return node.metrics.registry.get_sample_value("topgun_peer_auth_failures_total") or 0.0


def test_mtls_cluster_forms_and_refuses_peers_that_only_know_the_secret(
    ca: TestCA, tmp_path: Path
) -> None:
    async def main() -> None:
        nodes: list[ServerNode] = []
        try:
            await start_mtls_cluster(ca, ["node-1", "node-2"], nodes)
            target = nodes[0]
            other_ca = TestCA.create(tmp_path / "other", "other-ca")
            dropped = InvalidMessage  # the TLS handshake failed: no HTTP answer came
            refusals: list[tuple[str, str, ssl.SSLContext | None, type[Exception]]] = [
                ("plain text", "node-9", None, dropped),
                ("no certificate", "node-9", dial_context(ca.cert, None), dropped),
                (
                    "another CA's certificate",
                    "node-9",
                    dial_context(ca.cert, other_ca.issue("node-9")),
                    dropped,
                ),
                (
                    "a certificate naming another node",
                    "node-2",
                    dial_context(ca.cert, ca.issue("node-9")),
                    HandshakeError,
                ),
            ]
            failures_before = auth_failures(target)
            for _what, claimed, context, refusal in refusals:
                with pytest.raises(refusal):
                    await asyncio.wait_for(intrude(target, claimed, context), 10.0)
            # the name check ran on the node itself (the last refusal reached the handshake)
            assert auth_failures(target) == failures_before + 1
            assert sorted(target.members()) == ["node-1", "node-2"]
        finally:
            await asyncio.gather(*(n.kill() for n in nodes), return_exceptions=True)

    run(main())


# ------------------------------------------------------------------ topgun node processes


def launch(ca: TestCA, node_id: str, peers: list[str], log: Path) -> tuple[Any, dict[str, str]]:
    """A ``topgun node`` process with TLS on both ports, and its READY line."""
    args = [
        sys.executable,
        "-m",
        "topgun",
        "node",
        "--node-id",
        node_id,
        "--jwt-secret",
        SECRET,
        "--cluster-secret",
        CLUSTER_SECRET,
        "--heartbeat-interval",
        "0.2",
        "--failure-timeout",
        "1.5",
        *ca.node_flags(node_id),
    ]
    for peer in peers:
        args += ["--peer", peer]
    with log.open("w") as err:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 20)
    line = proc.stdout.readline() if ready else ""
    assert line.startswith("READY "), (line, log.read_text()[-2000:])
    return proc, json.loads(line.removeprefix("READY "))


def test_node_processes_with_tls_on_both_ports_form_a_cluster(ca: TestCA, tmp_path: Path) -> None:
    procs: list[Any] = []
    try:
        infos: list[dict[str, str]] = []
        for node_id in ("p-1", "p-2"):
            peers = [info["clusterAddress"] for info in infos]
            proc, info = launch(ca, node_id, peers, tmp_path / f"{node_id}.log")
            procs.append(proc)
            infos.append(info)
        assert all(info["clientUrl"].startswith("wss://127.0.0.1:") for info in infos)
        context = ssl.create_default_context(cafile=ca.cert)

        async def formed_over_https() -> None:
            def members() -> list[list[str]]:
                urls = [i["clientUrl"].replace("wss", "https") + "/health" for i in infos]
                return [json.loads(get(url, context)[1])["members"] for url in urls]

            await wait_until(lambda: members() == [["p-1", "p-2"]] * 2, 15.0, "both nodes see both")

        run(formed_over_https())
        logs = (tmp_path / "p-1.log").read_text()
        assert "plain text" not in logs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(10)
