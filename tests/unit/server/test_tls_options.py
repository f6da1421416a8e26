"""TLS options: what a node and a client accept, and what they refuse before listening."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from topgun import cli
from topgun.client import ClusterConfig
from topgun.client.errors import ConfigError
from topgun.harness.tls import TestCA
from topgun.server import NodeConfig
from topgun.server.tls import NodeTls, certificate_names

SECRETS: dict[str, Any] = {"jwt_secret": "j" * 32, "cluster_secret": "c" * 32}


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA.create(tmp_path_factory.mktemp("tls"))


def test_without_options_both_ports_are_plain_and_the_node_says_so() -> None:
    tls = NodeConfig("n1", **SECRETS).node_tls()
    assert (tls.client_scheme, tls.peer_url("h:1")) == ("ws", "ws://h:1")
    assert (tls.client_listen, tls.cluster_listen) == ({}, {})
    assert tls.plain_text_warning() == (
        "client port and cluster links in plain text (no TLS): fit for development only"
    )


def test_full_options_give_tls_on_both_ports(ca: TestCA) -> None:
    files = ca.issue("n1")
    cfg = NodeConfig(
        "n1", tls_cert=files.cert, tls_key=files.key, cluster_tls_cert=files.cert,
        cluster_tls_key=files.key, cluster_tls_ca=ca.cert, handshake_timeout_s=2.0, **SECRETS,
    )  # fmt: skip
    tls = cfg.node_tls()
    assert (tls.client_scheme, tls.peer_url("h:1")) == ("wss", "wss://h:1")
    assert tls.client_listen == {"ssl": tls.client, "ssl_handshake_timeout": 2.0}
    assert tls.cluster_listen["ssl"] is tls.cluster_server
    assert tls.plain_text_warning() is None
    assert cfg.node_tls() is tls  # loaded once


@pytest.mark.parametrize(
    ("options", "refusal"),
    [
        ({"tls_cert": "CERT"}, "--tls-key"),
        ({"tls_client_ca": "CA"}, "--tls-client-ca needs --tls-cert"),
        ({"cluster_tls_cert": "CERT", "cluster_tls_key": "KEY"}, "--cluster-tls-ca"),
        ({"tls_cert": "CERT", "tls_key": "nowhere.key"}, "nowhere.key"),
        ({"cluster_tls_cert": "CERT", "cluster_tls_key": "KEY", "cluster_tls_ca": "no-ca.pem"},
         "CA no-ca.pem"),
    ],
)  # fmt: skip
def test_incomplete_or_unusable_options_stop_the_node(
    ca: TestCA, options: dict[str, Any], refusal: str
) -> None:
    files = ca.issue("n1")
    named = {"CERT": files.cert, "KEY": files.key, "CA": ca.cert}
    cfg = NodeConfig("n1", **{k: named.get(v, v) for k, v in options.items()}, **SECRETS)
    with pytest.raises(ValueError, match=refusal):
        cfg.validate()


def test_certificate_names_are_the_cn_and_dns_sans() -> None:
    peercert = {
        "subject": ((("countryName", "NL"),), (("commonName", "node-1"),)),
        "subjectAltName": (("DNS", "node-1.grid"), ("IP Address", "10.0.0.1")),
    }
    assert certificate_names(peercert) == {"node-1", "node-1.grid"}
    assert certificate_names(None) == set()


def test_topgun_node_takes_the_tls_flags(ca: TestCA) -> None:
    files = ca.issue("n1")
    args = cli._parser().parse_args([
        "node", "--node-id", "n1", "--tls-cert", files.cert, "--tls-key", files.key,
        "--tls-client-ca", ca.cert, "--cluster-tls-cert", files.cert,
        "--cluster-tls-key", files.key, "--cluster-tls-ca", ca.cert,
    ])  # fmt: skip
    cfg = cli._config(args)
    assert (cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca) == (files.cert, files.key, ca.cert)
    assert (cfg.cluster_tls_cert, cfg.cluster_tls_key, cfg.cluster_tls_ca) == (
        files.cert, files.key, ca.cert,
    )  # fmt: skip
    assert isinstance(cfg.node_tls(), NodeTls)


def test_topgun_node_refuses_a_missing_certificate_before_listening(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = str(tmp_path / "none.pem")
    argv = ["node", "--node-id", "n1", "--dev", "--tls-cert", missing, "--tls-key", missing]
    assert cli.main(argv) == 2
    assert "none.pem" in capsys.readouterr().err


def test_client_takes_a_ca_file_or_a_context_for_wss_seeds(ca: TestCA, tmp_path: Path) -> None:
    cfg = ClusterConfig(seeds=["wss://127.0.0.1:1"], ca_file=ca.cert)
    assert cfg.ssl is not None and cfg.ssl.check_hostname
    with pytest.raises(ConfigError, match="either ssl or ca_file"):
        ClusterConfig(seeds=["wss://127.0.0.1:1"], ca_file=ca.cert, ssl=cfg.ssl)
    with pytest.raises(ConfigError, match="ca_file"):
        ClusterConfig(seeds=["wss://127.0.0.1:1"], ca_file=str(tmp_path / "none.pem"))
