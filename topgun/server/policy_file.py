"""Policy files: the map permissions of a node, in JSON or TOML (by file extension).

JSON: ``{"policies": [{"role": "USER", "mapNamePattern": "orders-*", "actions": ["READ"]}]}``.
TOML: one ``[[policies]]`` table per policy with the same keys. Anything else in the file,
an unknown key in a policy or an unknown action is refused, so a typo cannot silently
grant or withhold access.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from topgun.core.policy import PolicyError, PolicySet

MAX_POLICY_FILE_BYTES = 1024 * 1024


def parse_policies(text: str, *, fmt: str, where: str = "policies") -> PolicySet:
    """Parse policy text (``fmt`` ``json`` or ``toml``); raises PolicyError."""
    try:
        doc: Any = tomllib.loads(text) if fmt == "toml" else json.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise PolicyError(f"{where}: not valid {fmt.upper()}: {exc}") from exc
    if not isinstance(doc, dict) or set(doc) != {"policies"}:
        raise PolicyError(f"{where}: the file must hold exactly one key, 'policies'")
    items = doc["policies"]
    if not isinstance(items, list):
        raise PolicyError(f"{where}: 'policies' must be a list")
    return PolicySet.from_dicts(items, f"{where}: policies")


def load_policy_file(path: str | Path) -> PolicySet:
    """Read ``path`` (``.toml`` → TOML, anything else JSON); raises PolicyError."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_POLICY_FILE_BYTES:
            raise PolicyError(f"{p}: larger than {MAX_POLICY_FILE_BYTES} bytes")
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{p}: cannot read the policy file: {exc}") from exc
    return parse_policies(text, fmt="toml" if p.suffix.lower() == ".toml" else "json", where=str(p))
