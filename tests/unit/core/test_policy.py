"""Map permissions (reference §4.9): patterns, the ADMIN and $sys rules, field views."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topgun.core.policy import (
    ADMINISTER,
    ALL,
    EVERYTHING,
    NOTHING,
    PUT,
    READ,
    REMOVE,
    FieldView,
    Policy,
    PolicyError,
    PolicySet,
    pattern_matches,
)

USER = frozenset({"USER"})
ADMIN = frozenset({"ADMIN"})
POLICIES = PolicySet.from_dicts(
    [
        {"role": "USER", "mapNamePattern": "public", "actions": ["READ"]},
        {"role": "USER", "mapNamePattern": "orders-*", "actions": ["READ", "PUT"]},
        {"role": "USER", "mapNamePattern": "private-{userId}", "actions": ["ALL"]},
        {
            "role": "AUDITOR",
            "mapNamePattern": "*",
            "actions": ["READ"],
            "allowedFields": ["id", "status"],
        },
        {
            "role": "SUPPORT",
            "mapNamePattern": "people",
            "actions": ["READ"],
            "allowedFields": ["name"],
        },
        {
            "role": "SUPPORT",
            "mapNamePattern": "people",
            "actions": ["READ"],
            "allowedFields": ["email"],
        },
    ]
)


@pytest.mark.parametrize(
    ("pattern", "name", "user", "expected"),
    [
        ("*", "anything", None, True),
        ("users", "users", None, True),
        ("users", "users2", None, False),
        ("orders-*", "orders-2026", None, True),
        ("orders-*", "orders-", None, True),
        ("orders-*", "order", None, False),
        ("private-{userId}", "private-ann", "ann", True),
        ("private-{userId}", "private-bob", "ann", False),
        ("private-{userId}", "private-", None, False),
        ("a*b", "axb", None, False),  # only a trailing * is a wildcard, as in TopGun
    ],
)
def test_patterns(pattern: str, name: str, user: str | None, expected: bool) -> None:
    assert pattern_matches(pattern, name, user) is expected


@pytest.mark.parametrize(
    ("roles", "user", "action", "map_name", "expected"),
    [
        (USER, "ann", READ, "public", True),
        (USER, "ann", PUT, "public", False),
        (USER, "ann", REMOVE, "orders-1", False),
        (USER, "ann", PUT, "orders-1", True),
        (USER, "ann", REMOVE, "private-ann", True),
        (USER, "ann", READ, "private-bob", False),
        (USER, "ann", READ, "$sys/config", False),
        (USER, "ann", ADMINISTER, None, False),
        (USER, "ann", ALL, "private-ann", True),
        (ADMIN, "root", REMOVE, "$sys/config", True),
        (ADMIN, "root", ADMINISTER, None, True),
        (frozenset({"AUDITOR"}), "x", READ, "orders-1", True),
        (frozenset({"AUDITOR"}), "x", PUT, "orders-1", False),
        (frozenset(), "x", READ, "public", False),
    ],
)
def test_allows(roles, user, action, map_name, expected) -> None:  # type: ignore[no-untyped-def]
    assert POLICIES.allows(roles, user, action, map_name) is expected


@given(
    roles=st.frozensets(st.sampled_from(["USER", "AUDITOR", "GUEST", "x"])),
    action=st.sampled_from([READ, PUT, REMOVE, ALL, ADMINISTER, "bogus"]),
    name=st.text(max_size=20),
)
def test_without_policies_only_admin_acts(roles, action, name) -> None:  # type: ignore[no-untyped-def]
    assert not PolicySet().allows(roles, "u", action, name)
    assert PolicySet().allows(roles | {"ADMIN"}, "u", action, name)
    assert PolicySet().field_view(roles, "u", name) == NOTHING


def test_field_views() -> None:
    value = {"id": 1, "status": "open", "salary": 9, "name": "Ann", "email": "a@x"}
    auditor = POLICIES.field_view(frozenset({"AUDITOR"}), "x", "orders-1")
    assert auditor.apply(value) == {"id": 1, "status": "open"}
    assert auditor.apply([value, 3]) == [{"id": 1, "status": "open"}, 3]
    assert auditor.apply("plain") == "plain"
    assert auditor.shows("status.code") and not auditor.shows("salary")
    support = POLICIES.field_view(frozenset({"SUPPORT"}), "x", "people")
    assert support.apply(value) == {"name": "Ann", "email": "a@x"}  # union of both policies
    # a USER READ policy without allowedFields shows everything, whatever else matches
    assert POLICIES.field_view(frozenset({"USER", "AUDITOR"}), "x", "public") == EVERYTHING
    assert POLICIES.field_view(USER, "ann", "orders-9").apply(value) == value
    assert POLICIES.field_view(USER, "ann", "secret").apply(value) is None
    assert POLICIES.field_view(ADMIN, "r", "$sys/x") == EVERYTHING
    assert FieldView(True, frozenset()).apply(value) == {}


@pytest.mark.parametrize(
    "bad",
    [
        "not a table",
        {"role": "USER", "mapNamePattern": "*"},
        {"role": "USER", "mapNamePattern": "*", "actions": []},
        {"role": "USER", "mapNamePattern": "*", "actions": ["WRITE"]},
        {"role": "USER", "mapNamePattern": "*", "actions": "READ"},
        {"role": "", "mapNamePattern": "*", "actions": ["READ"]},
        {"role": "USER", "mapNamePattern": 5, "actions": ["READ"]},
        {"role": "USER", "mapNamePattern": "*", "actions": ["READ"], "allowedFields": []},
        {"role": "USER", "mapNamePattern": "*", "actions": ["READ"], "allowedFields": [1]},
        {"role": "USER", "mapNamePattern": "*", "actions": ["READ"], "mapNamePatern": "x"},
    ],
)
def test_bad_policies_are_refused(bad: object) -> None:
    with pytest.raises(PolicyError):
        Policy.from_dict(bad)


def test_policy_round_trip_and_star_fields() -> None:
    p = Policy.from_dict(
        {"role": "R", "mapNamePattern": "m", "actions": ["PUT"], "allowedFields": ["*", "a"]}
    )
    assert p.allowed_fields is None
    assert Policy.from_dict(p.to_dict()) == p
