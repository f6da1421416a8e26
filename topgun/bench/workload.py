"""The records the benchmarks write: distinct keys with small map values."""

from __future__ import annotations

from typing import Any


def key_for(i: int) -> str:
    return f"key-{i:07d}"


def value_for(i: int) -> dict[str, Any]:
    """A small map of about 40 bytes of msgpack, different for every ``i``."""
    return {"name": f"user-{i:07d}", "n": i, "tags": ["a", "b"], "ok": True}
