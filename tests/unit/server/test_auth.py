"""Token checks, the decision point, policy files and the admin renderer."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import jwt
import msgpack
import pytest

from topgun.core.policy import PolicyError, PolicySet
from topgun.server.auth import (
    PUT,
    READ,
    AuthError,
    Principal,
    authorize,
    make_token,
    verify_token,
    visible,
)
from topgun.server.http_routes import MAX_RENDER_DEPTH, json_safe
from topgun.server.policy_file import load_policy_file, parse_policies

SECRET = "unit-secret-0123456789abcdef0123456789"
USERS_READ = PolicySet.from_dicts(
    [{"role": "USER", "mapNamePattern": "m", "actions": ["READ"], "allowedFields": ["a"]}]
)


def signed(claims: dict, alg: str = "HS256", key: str | None = SECRET) -> str:
    return jwt.encode(claims, key, algorithm=alg)


def test_a_token_names_a_subject_and_roles() -> None:
    p = verify_token(make_token(SECRET, sub="u", roles=["ADMIN"]), SECRET)
    assert p.user_id == "u" and p.is_admin
    assert verify_token(make_token(SECRET, sub="u"), SECRET).roles == frozenset({"USER"})
    assert verify_token(signed({"sub": "s", "userId": "ann"}), SECRET).user_id == "ann"


@pytest.mark.parametrize(
    ("claims", "why"),
    [
        ({}, "subject"),
        ({"sub": ""}, "subject"),
        ({"sub": "   "}, "subject"),
        ({"userId": 7}, "subject"),
        ({"sub": "x" * 300}, "subject"),
        ({"sub": "u", "roles": "ADMIN"}, "roles"),
        ({"sub": "u", "roles": [1]}, "roles"),
        ({"sub": "u", "roles": ["R"] * 65}, "roles"),
        ({"sub": "u", "exp": 1}, "expired"),
        ({"sub": "u", "exp": "soon"}, "exp"),
        ({"sub": "u", "nbf": time.time() + 600}, "not yet valid"),
    ],
)
def test_bad_claims_fail(claims: dict, why: str) -> None:
    with pytest.raises(AuthError, match=why):
        verify_token(signed(claims), SECRET)


@pytest.mark.parametrize(
    "token",
    [
        signed({"sub": "u"}, "none", None),
        signed({"sub": "u"}, "HS384", SECRET + "x" * 20),
        signed({"sub": "u"}, "HS256", "another-secret-0123456789abcdef0123"),
        "",
        "a.b.c",
    ],
)
def test_wrong_algorithm_or_signature_fails(token: str) -> None:
    with pytest.raises(AuthError):
        verify_token(token, SECRET)


def test_exp_can_be_required() -> None:
    no_exp = signed({"sub": "u"})
    assert verify_token(no_exp, SECRET).user_id == "u"
    with pytest.raises(AuthError, match="exp"):
        verify_token(no_exp, SECRET, require_exp=True)
    assert verify_token(make_token(SECRET, sub="u"), SECRET, require_exp=True)


def test_the_principal_carries_its_node_policies() -> None:
    user = verify_token(make_token(SECRET, sub="u"), SECRET, policies=USERS_READ)
    assert authorize(user, READ, "m") and not authorize(user, PUT, "m")
    assert not authorize(user, READ, "other")
    assert visible(user, "m", {"a": 1, "b": 2}) == {"a": 1}
    assert visible(user, "other", {"a": 1}) is None
    bare = verify_token(make_token(SECRET, sub="u"), SECRET)  # no policies: only ADMIN
    assert not authorize(bare, READ, "m") and not authorize(None, READ, "m")
    assert authorize(Principal("a", frozenset({"ADMIN"})), PUT, "m")


def test_policy_files_in_json_and_toml(tmp_path: Path) -> None:
    toml = tmp_path / "p.toml"
    toml.write_text('[[policies]]\nrole = "USER"\nmapNamePattern = "m"\nactions = ["READ"]\n'
                    'allowedFields = ["a"]\n')  # fmt: skip
    js = tmp_path / "p.json"
    js.write_text(json.dumps({"policies": [p.to_dict() for p in USERS_READ.policies]}))
    assert load_policy_file(toml) == load_policy_file(js) == USERS_READ
    for text, fmt in [
        ("[[policy]]\nrole='USER'", "toml"),
        ("{'policies': []", "json"),
        ('{"policies": {}}', "json"),
        ('{"policies": [], "extra": 1}', "json"),
        ('{"policies": [{"role": "USER"}]}', "json"),
    ]:
        with pytest.raises(PolicyError):
            parse_policies(text, fmt=fmt)
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy_file(tmp_path / "missing.json")


def test_every_storable_value_renders_as_json() -> None:
    deep: object = "bottom"
    for _ in range(MAX_RENDER_DEPTH + 5):
        deep = [deep]
    values = [
        b"\x00\xffbinary",
        msgpack.Timestamp(1_700_000_000, 5),
        msgpack.Timestamp(2**40, 0),  # beyond datetime
        msgpack.ExtType(5, b"xy"),
        {1: "int key", b"k": "bytes key"},
        math.nan,
        -math.inf,
        deep,
        {"nested": [bytearray(b"ab"), {"t": msgpack.Timestamp(0, 0)}]},
    ]
    for value in values:
        json.dumps(json_safe(value), allow_nan=False)
    assert json_safe(b"\x00\xff") == {"$bytes": "AP8="}
    assert json_safe(msgpack.Timestamp(1, 2))["$msgpackTimestamp"]["nanoseconds"] == 2
    assert json_safe({1: "a"}) == {"$map": [[1, "a"]]}


def test_the_waiting_cap_leaves_descriptors_for_real_logins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import resource

    from topgun.server import auth_gate
    from topgun.server.logutil import node_logger

    log = node_logger("cap")
    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 4096))
    assert auth_gate.effective_cap(256, log) == 256
    assert auth_gate.effective_cap(1000, log) == 256
    monkeypatch.setattr(resource, "getrlimit", lambda _: (resource.RLIM_INFINITY,) * 2)
    assert auth_gate.effective_cap(5000, log) == 5000
