"""Comparing our encoding of a message with a peer's frame: exact, except for differences
that are named, so a test sees which ones it used (shared by the wire-fixture tests and the
optional reference-sample tests)."""

from __future__ import annotations

from typing import Any

from topgun.core import messages as m


def message_type(item: m.Message) -> str:
    return item.msg_type if isinstance(item, m.Unsupported) else item.TYPE


def normalise_ours(obj: dict[str, Any], keep: str) -> tuple[dict[str, Any], list[str]]:
    """Our one documented addition: QUERY_UPDATE carries the change type under both
    ``type`` (snapshot client) and ``changeType`` (later clients); ``keep`` is the one the
    peer writes, the other is taken out."""
    applied: list[str] = []
    if obj.get("type") == "QUERY_UPDATE":
        payload = obj["payload"]
        assert payload["changeType"] == payload["type"]
        dropped = "type" if keep == "changeType" else "changeType"
        del payload[dropped]
        applied.append(f"ours:{dropped}")
    return obj, applied


def strict_equal(ours: Any, theirs: Any, path: str = "$") -> None:
    """Equality that also tells int from float (1 == 1.0 would hide a wire-type change)."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), f"{path}: {ours!r} is not a map"
        assert set(ours) == set(theirs), f"{path}: keys {sorted(ours)} != {sorted(theirs)}"
        for key in theirs:
            strict_equal(ours[key], theirs[key], f"{path}.{key}")
    elif isinstance(theirs, list):
        assert isinstance(ours, list) and len(ours) == len(theirs), f"{path}: {ours!r}"
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            strict_equal(a, b, f"{path}[{i}]")
    else:
        assert type(ours) is type(theirs), f"{path}: {type(ours)} != {type(theirs)}"
        assert ours == theirs, f"{path}: {ours!r} != {theirs!r}"
