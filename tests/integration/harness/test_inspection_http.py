"""The external controller against HTTP servers that are not clusters of ours: one that refuses
every request, and one that answers every GET with a line of text, as TopGun's older
TypeScript server does. The first is a refused user, not a failed check; the second is
"not checkable", naming every inspection method tried and why it was passed over."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from topgun.harness import ClusterSettings
from topgun.harness.cluster import DEFAULT_SECRET
from topgun.harness.external import CannotRunHere, ExternalCluster

pytestmark = pytest.mark.timeout(60)


@contextmanager
def answering(status: int, body: str) -> Iterator[str]:
    """An HTTP server on a free port answering every GET with ``status`` and ``body``;
    yields its URL as a seed (``ws://…``)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test says what it saw."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _start(seed: str) -> CannotRunHere:
    external = ExternalCluster([seed], ClusterSettings(DEFAULT_SECRET), form_timeout=2)
    try:
        with pytest.raises(CannotRunHere) as raised:
            external.start(3)
    finally:
        external.close()
    return raised.value


def test_a_cluster_that_answers_403_refused_the_suites_user() -> None:
    with answering(403, "forbidden for this user") as seed:
        said = str(_start(seed))
    assert said == (
        f"the cluster refused the suite's user: {seed} answered GET /health with HTTP 403: "
        "forbidden for this user"
    )


def test_a_server_without_any_inspection_method_is_not_checkable() -> None:
    with answering(200, "TopGun Server Running") as seed:
        said = str(_start(seed))
    assert said.startswith("not checkable: not our admin routes: not offered (")
    assert "GET /health with something other than JSON: 'TopGun Server Running'" in said
    assert "; not TopGun Rust admin API (members), the protocol (" in said
    assert "GET /api/admin/cluster/status with something other than JSON" in said
    assert "; not the protocol: PARTITION_MAP from the node, Merkle sync" in said
    assert "no seed answered: " in said
