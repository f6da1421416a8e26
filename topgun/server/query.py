"""Query evaluation (reference §2.6): ``where`` field equality/operators, ``predicate``
trees, and the sort key of a field (paging and the merge of parts: :mod:`paging`).

The pseudo-field ``_key`` matches the record's key (``where: {"_key": "user:1"}`` or
``{"_key": {"$in": [...]}}``, or a predicate on attribute ``_key``).
"""

from __future__ import annotations

import re
from typing import Any

from topgun.core.messages import Query

KEY_FIELD = "_key"
_MISSING = object()


def _field(key: str, value: Any, name: str) -> Any:
    if name == KEY_FIELD:
        return key
    if isinstance(value, dict):
        cur: Any = value
        for part in name.split("."):
            if not isinstance(cur, dict) or part not in cur:
                return _MISSING
            cur = cur[part]
        return cur
    return _MISSING


def _cmp(op: str, actual: Any, expected: Any) -> bool:
    if actual is _MISSING:
        return op in ("$ne", "neq")
    try:
        if op in ("$eq", "eq"):
            return bool(actual == expected)
        if op in ("$ne", "neq"):
            return bool(actual != expected)
        if op in ("$gt", "gt"):
            return bool(actual > expected)
        if op in ("$gte", "gte"):
            return bool(actual >= expected)
        if op in ("$lt", "lt"):
            return bool(actual < expected)
        if op in ("$lte", "lte"):
            return bool(actual <= expected)
        if op == "$in":
            return isinstance(expected, list) and actual in expected
        if op == "like" and isinstance(actual, str) and isinstance(expected, str):
            pattern = re.escape(expected).replace("%", ".*").replace("_", ".")
            return re.fullmatch(pattern, actual, re.DOTALL) is not None
        if op == "regex" and isinstance(actual, str) and isinstance(expected, str):
            return re.search(expected[:1000], actual) is not None
    except (TypeError, re.error):
        return False
    return False  # unknown operator: no match


def matches_where(key: str, value: Any, where: dict[str, Any] | None) -> bool:
    if not where:
        return True
    for name, expected in where.items():
        actual = _field(key, value, str(name))
        if (
            isinstance(expected, dict)
            and expected
            and all(isinstance(k, str) and k.startswith("$") for k in expected)
        ):
            if not all(_cmp(op, actual, arg) for op, arg in expected.items()):
                return False
        elif actual is _MISSING or actual != expected:
            return False
    return True


def matches_predicate(key: str, value: Any, node: Any, depth: int = 0) -> bool:
    if not isinstance(node, dict) or depth > 32:
        return False
    op = node.get("op")
    children = node.get("children")
    if op in ("and", "or", "not"):
        kids = children if isinstance(children, list) else []
        if op == "and":
            return all(matches_predicate(key, value, c, depth + 1) for c in kids)
        if op == "or":
            return any(matches_predicate(key, value, c, depth + 1) for c in kids)
        return not kids or not matches_predicate(key, value, kids[0], depth + 1)
    attribute = node.get("attribute")
    if not isinstance(op, str) or not isinstance(attribute, str):
        return False
    return _cmp(op, _field(key, value, attribute), node.get("value"))


def matches(key: str, value: Any, query: Query) -> bool:
    if query.predicate is not None:
        return matches_predicate(key, value, query.predicate)
    return matches_where(key, value, query.where)


def _sort_key(v: Any) -> tuple[int, Any]:
    if v is _MISSING or v is None:
        return (0, 0)
    if isinstance(v, bool):
        return (1, int(v))
    if isinstance(v, int | float):
        return (2, v)
    return (3, str(v))
