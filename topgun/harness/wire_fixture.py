"""The format of the project's wire fixtures: frames recorded from a real server, each kept
raw (the exact bytes, base64) beside a JSON rendering of what they decode to.

``scripts/capture-wire-samples`` writes them; the wire tests read them back. The rendering
keeps the wire's number types (Python's json writes ``1`` and ``1.0`` apart) and shows bytes
as ``{"$bin": base64}``.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import msgpack

FIXTURES_DIR = Path(__file__).resolve().parents[2] / "tests" / "fixtures"

CLIENT_TO_SERVER = "client->server"
SERVER_TO_CLIENT = "server->client"


def rust_fixture_path(version: str) -> Path:
    """Where the capture of TopGun's Rust server ``version`` lives."""
    return FIXTURES_DIR / f"topgun-rust-{version}-wire.json"


def render(value: Any) -> Any:
    """A msgpack-decoded value as JSON."""
    if isinstance(value, bytes):
        return {"$bin": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(k): render(v) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v) for v in value]
    return value


def decoded(data: bytes | str) -> Any:
    """What a frame decodes to as plain values (msgpack, or JSON text); None if it does
    not decode at all."""
    try:
        if isinstance(data, str):
            return json.loads(data)
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception:  # deliberately broken input is recorded raw only
        return None


def record_frame(
    data: bytes | str, direction: str, connection: str, *, ours: bool = False
) -> dict[str, Any]:
    """One frame as the fixture holds it; ``ours``: encoded by topgun.core.codec."""
    frame: dict[str, Any] = {"direction": direction, "connection": connection}
    if isinstance(data, str):
        frame |= {"frame": "text", "text": data}
    else:
        frame |= {"frame": "binary", "raw_b64": base64.b64encode(data).decode()}
    value = decoded(data)
    kind = value.get("type") if isinstance(value, dict) else None
    frame["type"] = kind if isinstance(kind, str) else None
    if direction == CLIENT_TO_SERVER:
        frame["ours"] = ours
    frame["decoded"] = render(value)
    return frame


def frame_data(frame: dict[str, Any]) -> bytes | str:
    """The frame exactly as it went over the wire."""
    if frame["frame"] == "text":
        return str(frame["text"])
    return base64.b64decode(frame["raw_b64"])
