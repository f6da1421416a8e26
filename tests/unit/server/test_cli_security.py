"""``topgun token`` needs a secret and says which one it used; ``topgun node --policies``
refuses a bad file before it listens; secrets stay out of logs, /health and /metrics."""

from __future__ import annotations

import asyncio
import logging
import urllib.request
import warnings
from pathlib import Path

import pytest

from topgun import cli
from topgun.core.policy import PolicySet
from topgun.harness.nodes import local_config
from topgun.harness.wire import WireClient
from topgun.server import DEV_SECRET, ServerNode
from topgun.server.auth import make_token, verify_token

SECRET = "cli-secret-0123456789abcdef0123456789"


def test_token_needs_a_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TOPGUN_JWT_SECRET", raising=False)
    assert cli.main(["token", "--sub", "ann"]) == 2
    assert "--secret" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "env", "secret", "source"),
    [
        (["--secret", SECRET], None, SECRET, "signed with --secret"),
        ([], SECRET, SECRET, "signed with TOPGUN_JWT_SECRET"),
        (["--secret", SECRET], "other-secret-0123456789abcdef0123456", SECRET, "--secret"),
        (["--dev"], None, DEV_SECRET, "development secret"),
    ],
)
def test_token_says_which_secret_signed_it(  # noqa: PLR0917
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    env: str | None,
    secret: str,
    source: str,
) -> None:
    if env is None:
        monkeypatch.delenv("TOPGUN_JWT_SECRET", raising=False)
    else:
        monkeypatch.setenv("TOPGUN_JWT_SECRET", env)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no library warning about the key length
        assert cli.main(["token", "--sub", "ann", *argv]) == 0
    out = capsys.readouterr()
    assert verify_token(out.out.strip(), secret).user_id == "ann"
    assert source in out.err and secret not in out.err


def test_node_refuses_a_bad_policy_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "p.toml"
    bad.write_text('[[policies]]\nrole = "USER"\nmapNamePattern = "*"\nactions = ["WRITE"]\n')
    argv = ["node", "--node-id", "n", "--dev", "--policies", str(bad)]
    assert cli.main(argv) == 2
    assert "unknown actions" in capsys.readouterr().err


def test_secrets_stay_out_of_logs_health_and_metrics(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> list[str]:
        node = ServerNode(local_config("n", [], jwt_secret=SECRET, cluster_secret=SECRET + "c",
                                       policies=PolicySet()))  # fmt: skip
        await node.start()
        try:
            good = make_token(SECRET, sub="ann")
            c = await WireClient.open(node.client_url, good)
            await c.send({"type": "AUTH", "token": good})  # a second AUTH
            await c.recv("ERROR")
            bad = await WireClient.open(node.client_url)
            await bad.send({"type": "AUTH", "token": make_token("x" * 40, sub="eve")})
            await bad.recv("AUTH_FAIL")
            http = node.client_url.replace("ws://", "http://")
            bodies = []
            for path in ("/health", "/metrics"):
                with await asyncio.to_thread(urllib.request.urlopen, http + path, timeout=5) as r:
                    bodies.append(r.read().decode())
            return [*bodies, good, repr(node.config)]
        finally:
            await node.kill()

    with caplog.at_level(logging.DEBUG, logger="topgun"):
        health, metrics, token, config = asyncio.run(asyncio.wait_for(scenario(), 30))
    logs = caplog.text
    assert "ann" not in config and SECRET not in config
    for text in (logs, health, metrics):
        assert SECRET not in text and token not in text
