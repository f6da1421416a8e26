"""Machinery for the security feature and the hostile-input run: policy files written from
a table, attempts to read and write as a given user, hostile tokens and hostile op fields.

Everything talks to a node over the plain client protocol (:mod:`topgun.harness.wire`), as
an outside user would, and every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from topgun.client.connection import epoch_ms
from topgun.harness.wire import WireClient
from topgun.server.auth import make_token

ACTIONS = {"read": "READ", "write": "PUT", "remove": "REMOVE"}


def write_policy_file(folder: Path, rows: list[dict[str, str]]) -> Path:
    """A JSON policy file from table rows ``{role, maps, actions[, fields]}``;
    ``actions`` and ``fields`` are comma-separated."""
    policies = []
    for row in rows:
        policy: dict[str, Any] = {
            "role": row["role"],
            "mapNamePattern": row["maps"],
            "actions": [a.strip() for a in row["actions"].split(",")],
        }
        if row.get("fields"):
            policy["allowedFields"] = [f.strip() for f in row["fields"].split(",")]
        policies.append(policy)
    path = folder / "policies.json"
    path.write_text(json.dumps({"policies": policies}, indent=2), encoding="utf-8")
    return path


def now_record(value: Any, node: str = "harness") -> dict[str, Any]:
    return {
        "value": value,
        "timestamp": {"millis": float(time.time_ns() // 1_000_000), "counter": 0, "nodeId": node},
    }


def put_op(op_id: str, map_name: str, key: str, value: Any) -> dict[str, Any]:
    op_type = "REMOVE" if value is None else "PUT"
    return {"id": op_id, "mapName": map_name, "key": key, "opType": op_type,
            "record": now_record(value)}  # fmt: skip


@dataclass(frozen=True)
class Attempt:
    """What the node answered: ``allowed`` or not, with the answer itself as evidence."""

    allowed: bool
    answer: dict[str, Any]
    value: Any = None


async def attempt(
    url: str, token: str, action: str, *, map_name: str, key: str, value: Any, within: float
) -> Attempt:
    """Try to read, write or remove ``key`` as the token's user."""
    c = await WireClient.open(url, token)
    try:
        if action == "read":
            query = {"where": {"_key": key}}
            payload = {"queryId": "q", "mapName": map_name, "query": query}
            await c.send({"type": "QUERY_SUB", "payload": payload})
            answer = await c.recv("QUERY_RESP", "ERROR", timeout=within)
            rows = answer["payload"].get("results", [])
            found = rows[0]["value"] if rows else None
            return Attempt(answer["type"] == "QUERY_RESP", answer, found)
        op = put_op("1", map_name, key, None if action == "remove" else value)
        ack = await c.write([op], timeout=within)
        return Attempt(bool(ack["results"][0]["success"]), ack)
    finally:
        await c.close()


# --- tokens -----------------------------------------------------------------------------


def hostile_token(kind: str, secret: str) -> str:
    """A token of the named kind (see :data:`TOKEN_KINDS`)."""
    now = int(time.time())
    if kind not in TOKEN_KINDS:
        raise ValueError(f"no hostile token {kind!r}; known: {sorted(TOKEN_KINDS)}")
    claims, alg, key = TOKEN_KINDS[kind](now, secret)
    return jwt.encode(claims, key, algorithm=alg)


TOKEN_KINDS: dict[str, Any] = {
    "with no claims at all": lambda now, s: ({}, "HS256", s),
    "with no subject": lambda now, s: ({"roles": ["ADMIN"], "exp": now + 60}, "HS256", s),
    "with an empty subject": lambda now, s: ({"sub": ""}, "HS256", s),
    "that expired a minute ago": lambda now, s: ({"sub": "ann", "exp": now - 60}, "HS256", s),
    "that is not valid yet": lambda now, s: ({"sub": "ann", "nbf": now + 600}, "HS256", s),
    "signed with HS512": lambda now, s: ({"sub": "ann"}, "HS512", s + "-" * 40),
    "with no signature": lambda now, s: ({"sub": "ann"}, "none", None),
    "signed by another secret": lambda now, s: ({"sub": "ann"}, "HS256", "x" * 40),
    "whose roles are not a list": lambda now, s: ({"sub": "ann", "roles": "ADMIN"}, "HS256", s),
}


async def sign_in(url: str, token: str, within: float) -> tuple[str, str, int | None]:
    """(reply type, error text, close code) for one AUTH with ``token``."""
    c = await WireClient.open(url)
    await c.send({"type": "AUTH", "token": token})
    reply = await c.recv("AUTH_ACK", "AUTH_FAIL", timeout=within)
    if reply["type"] == "AUTH_ACK":
        await c.close()
        return "AUTH_ACK", "", None
    return "AUTH_FAIL", str(reply.get("error", "")), await c.closed_code(within)


async def pinging_stranger(url: str, every_s: float, within: float) -> tuple[float, int | None]:
    """Connect, never authenticate, PING every ``every_s``: (seconds until closed, close
    code); (``within``, None) if it is still open after ``within`` seconds."""
    c = await WireClient.open(url)
    opened = time.monotonic()

    async def ping() -> None:
        while True:
            await c.send({"type": "PING", "timestamp": float(epoch_ms())})
            await asyncio.sleep(every_s)

    pinger = asyncio.create_task(ping())
    try:
        code = await c.closed_code(within)
    except TimeoutError:
        await c.close()
        return within, None
    finally:
        pinger.cancel()
        await asyncio.gather(pinger, return_exceptions=True)
    return time.monotonic() - opened, code


# --- op fields --------------------------------------------------------------------------


def nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = [value]
    return value


BAD_FIELD_VALUES: dict[str, Any] = {
    '"bogus"': "bogus",
    "a string": "text",
    "a number": 5,
    "negative": -1,
    "a fraction": 1.5,
    "true": True,
    "a list": [1],
    "an object": {"x": 1},
    "longer than its limit": "x" * 5000,
    "empty": "",
    "nested 100 levels deep": nested(100),
    "missing": None,
}
"""The problems a feature sentence may name, and the value that has it."""


def op_with_bad_field(op_id: str, map_name: str, key: str, field: str, problem: str) -> Any:
    """A PUT of ``key`` that is valid except that ``field`` (``a`` or ``record.a``) has
    ``problem``; ``problem`` may also be ``"unknown"`` to add an unknown field."""
    op = put_op(op_id, map_name, key, {"v": "hostile"})
    target, _, name = field.rpartition(".")
    holder = op[target] if target else op
    if problem == "unknown":
        holder[name] = "x"
    elif BAD_FIELD_VALUES[problem] is None:
        holder.pop(name, None)
    else:
        holder[name] = BAD_FIELD_VALUES[problem]
    return op


async def send_op(url: str, token: str, op: Any, within: float) -> dict[str, Any]:
    """Send one op in an OP_BATCH: the OP_ACK result, with the OP_REJECTED if there was one."""
    c = await WireClient.open(url, token)
    try:
        ack = await c.write([op], timeout=within)
        result = dict(ack["results"][0])
        rejected = [m for m in c.inbox if m.get("type") == "OP_REJECTED"]
        if rejected:
            result["rejected"] = rejected[0]["payload"]
        return result
    finally:
        await c.close()


def admin_token(secret: str) -> str:
    return make_token(secret, sub="harness-admin", roles=["ADMIN"])
