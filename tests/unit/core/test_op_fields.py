"""Walks the op rule table (``OP_FIELDS``, ``RECORD_FIELDS``, ``OR_RECORD_FIELDS``): every
field refuses each wrong type and each value past its limit, and accepts its boundaries."""

from __future__ import annotations

from typing import Any

import pytest

from topgun.core import messages as m
from topgun.core.hlc import Timestamp
from topgun.harness.hostile import bad_values
from topgun.harness.security import nested

TS = Timestamp(1_700_000_000_000, 0, "c1").to_wire()
LWW = {"mapName": "m", "key": "k", "opType": "PUT", "record": {"value": 1, "timestamp": TS}}
OR_ADD = {"mapName": "m", "key": "k", "opType": "OR_ADD",
          "orRecord": {"value": 1, "timestamp": TS, "tag": "t"}}  # fmt: skip
OR_REMOVE = {"mapName": "m", "key": "k", "opType": "OR_REMOVE", "orTag": "t"}


def good_values(rule: m.FieldRule) -> list[Any]:
    if rule.kind == "string":
        assert rule.limit is not None
        return ["x" * rule.limit, "x" * max(1, int(rule.low))]
    if rule.kind == "enum":
        return sorted(rule.choices)
    if rule.kind == "number":
        assert rule.limit is not None
        return [rule.limit, max(rule.low, 1), float(rule.limit)]
    if rule.kind == "bool":
        return [True, False]
    if rule.kind == "timestamp":
        return [TS]
    if rule.kind == "record":
        return [{"value": None, "timestamp": TS}, {"value": 1, "timestamp": TS, "ttlMs": 5}]
    if rule.kind == "or_record":
        return [{"value": 1, "timestamp": TS, "tag": "t"}]
    if rule.kind == "value":
        assert rule.limit is not None
        return [nested(rule.limit - 1), b"bytes", {"a": [1, {"b": None}]}, "s"]
    raise AssertionError(rule.kind)


def place(table: str, name: str, value: Any) -> dict[str, Any]:
    """An op otherwise valid, with ``name`` of ``table`` set to ``value``."""
    if table == "op":
        if name in ("orRecord",):
            return {**OR_ADD, name: value}
        if name == "orTag":
            return {**OR_REMOVE, name: value}
        if name == "opType":
            return {**LWW, name: value}
        return {**LWW, name: value}
    if table == "record":
        return {**LWW, "record": {**LWW["record"], name: value}}
    return {**OR_ADD, "orRecord": {**OR_ADD["orRecord"], name: value}}


TABLES = {"op": m.OP_FIELDS, "record": m.RECORD_FIELDS, "orRecord": m.OR_RECORD_FIELDS}
"""The rule tables the codec's op checks come from; the bad values of each field are
:func:`topgun.harness.hostile.bad_values`, shared with the hostile-input run."""
CASES = [
    (table, name, i, value)
    for table, rules in TABLES.items()
    for name, rule in rules.items()
    for i, value in enumerate(bad_values(rule))
]


@pytest.mark.parametrize(("table", "name", "i", "value"), CASES, ids=lambda v: str(v)[:20])
def test_every_field_refuses_wrong_types_and_limits(
    table: str, name: str, i: int, value: Any
) -> None:
    op = m.parse_op(place(table, name, value))
    assert isinstance(op, m.InvalidOp), (table, name, value)
    assert op.error.startswith(m.OP_ERROR_INVALID + ": ")
    assert name in op.error, op.error  # the refusal names the field


@pytest.mark.parametrize(("table", "name"), [(t, n) for t, rules in TABLES.items() for n in rules])
def test_every_field_accepts_its_boundaries(table: str, name: str) -> None:
    rule = TABLES[table][name]
    for value in good_values(rule):
        op = place(table, name, value)
        if table == "op" and name == "opType" and value in ("OR_ADD", "OR_REMOVE"):
            op = OR_ADD if value == "OR_ADD" else OR_REMOVE
        if table == "op" and name == "opType" and value == "REMOVE":
            op = {**op, "record": {"value": None, "timestamp": TS}}
        if table == "op" and name == "record" and value["value"] is None:
            op = {**op, "opType": "REMOVE"}
        parsed = m.parse_op(op)
        assert isinstance(parsed, m.ClientOp), (table, name, value, parsed)


def test_required_fields_are_required() -> None:
    for table, rules in TABLES.items():
        for name, rule in rules.items():
            if rule.required:
                op = place(table, name, None)
                assert isinstance(m.parse_op(op), m.InvalidOp), (table, name)


@pytest.mark.parametrize(
    ("op", "why"),
    [
        ({**LWW, "orRecord": OR_ADD["orRecord"]}, "orRecord"),
        ({**LWW, "orTag": "t"}, "orTag"),
        ({**LWW, "opType": "REMOVE"}, "REMOVE"),
        ({**OR_ADD, "record": LWW["record"]}, "not record"),
        ({"mapName": "m", "key": "k"}, "record"),
    ],
)
def test_fields_that_contradict_each_other(op: dict[str, Any], why: str) -> None:
    parsed = m.parse_op(op)
    assert isinstance(parsed, m.InvalidOp) and why in parsed.error
