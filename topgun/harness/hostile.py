"""The hostile-input run: ~180 inputs an attacker could send, each with the answer it must get.

Kinds of input: malformed frames, wrong types and limits for every field of the op rule
table (:data:`topgun.core.messages.OP_FIELDS` and the record tables), wrong message fields,
oversized frames and batches, far-future timestamps, forbidden maps, hostile tokens, and
floods of sockets that never authenticate. While they run, bystander clients keep writing
and reading; afterwards the canary records must be exactly as they were.

A verdict per input: ``refused`` (the documented error or close code), ``ACCEPTED`` (the
node took something hostile), ``UNANSWERED`` (no definite answer in time).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from topgun.core import messages as m
from topgun.core.codec import pack
from topgun.harness.security import (
    TOKEN_KINDS,
    hostile_token,
    nested,
    now_record,
    pinging_stranger,
)
from topgun.harness.wire import WireClient

CANARY_MAP = "canary"
READ_ONLY_MAP = "catalog"
CANARY_KEYS = [f"c{i}" for i in range(8)]
ANSWER_S = 5.0
REFUSAL_CLOSE_CODES = {1002, 1008, 1009, 1013, 4001}
FLOOD = "unauthenticated flood"
POLICIES = [
    {"role": "USER", "mapNamePattern": CANARY_MAP, "actions": ["ALL"]},
    {"role": "USER", "mapNamePattern": "bystander-*", "actions": ["ALL"]},
    {"role": "USER", "mapNamePattern": READ_ONLY_MAP, "actions": ["READ"]},
]
"""The policy of the nodes under attack: the attacker holds a real USER token."""


@dataclass(frozen=True)
class Target:
    url: str
    secret: str
    user_token: str
    admin_token: str
    max_frame_bytes: int
    max_batch_ops: int
    auth_timeout_s: float
    max_unauthenticated: int


@dataclass
class Verdict:
    name: str
    kind: str
    outcome: str  # refused | ACCEPTED | UNANSWERED
    answer: str


Probe = tuple[str, str, Callable[[Target], Awaitable[tuple[str, str]]]]
"""(name, kind, run) where run answers (outcome, what the node answered)."""


# --- table-driven bad values (shared with the unit test that walks the table) -----------


def bad_values(rule: m.FieldRule) -> list[Any]:
    """Wrong types and out-of-limit values for one field rule."""
    if rule.kind == "string":
        assert rule.limit is not None
        out: list[Any] = [True, [], {"x": 1}, 5, "x" * (rule.limit + 1)]
        return out + ([""] if rule.low >= 1 else [])
    if rule.kind == "enum":
        return [True, [], {"x": 1}, 5, "text", "bogus", "put"]
    if rule.kind == "number":
        assert rule.limit is not None
        out = [True, [], {"x": 1}, "text", rule.limit + 1, rule.low - 1]
        out += [float("nan"), float("inf"), float("-inf"), "5"]
        return out + ([1.5] if rule.whole else [])
    if rule.kind == "bool":
        return [0, 1, "false", [], {}]
    if rule.kind == "timestamp":
        return ["x", 5, True, {}, {"millis": "x", "counter": 0, "nodeId": "n"},
                {"millis": -1.0, "counter": 0, "nodeId": "n"}]  # fmt: skip
    if rule.kind in ("record", "or_record"):
        return ["x", 5, True, [], {}, {"value": 1, "timestamp": 0, "extra": 1}]
    if rule.kind == "value":
        assert rule.limit is not None
        return [nested(rule.limit + 1), {"a": nested(rule.limit)}]
    raise AssertionError(f"no bad values for kind {rule.kind}")


TABLES: dict[str, dict[str, m.FieldRule]] = {
    "op": m.OP_FIELDS,
    "record": m.RECORD_FIELDS,
    "orRecord": m.OR_RECORD_FIELDS,
}


def op_with(table: str, name: str, value: Any, key: str) -> dict[str, Any]:
    """A hostile op on canary ``key``: valid but for ``name`` of ``table`` set to ``value``;
    its value and timestamp are newer than the canary's, so applying it would show."""
    lww: dict[str, Any] = {"id": "1", "mapName": CANARY_MAP, "key": key, "opType": "PUT",
           "record": now_record({"hostile": True}, "attacker")}  # fmt: skip
    or_add: dict[str, Any] = {"id": "1", "mapName": CANARY_MAP, "key": key, "opType": "OR_ADD",
              "orRecord": {**now_record({"hostile": True}, "attacker"), "tag": "t"}}  # fmt: skip
    if table == "op":
        if name == "orRecord":
            return {**or_add, name: value}
        if name == "orTag":
            return {**lww, "opType": "OR_REMOVE", "record": None, name: value}
        return {**lww, name: value}
    if table == "record":
        return {**lww, "record": {**lww["record"], name: value}}
    return {**or_add, "orRecord": {**or_add["orRecord"], name: value}}


# --- how an input is sent and judged ----------------------------------------------------


async def _outcome_of(c: WireClient, ok_types: tuple[str, ...] = ()) -> tuple[str, str]:
    """Wait for the first definite answer: an ERROR / OP_REJECTED / AUTH_FAIL (refused),
    a close with a refusal code (refused), one of ``ok_types`` (ACCEPTED)."""
    watch = ("ERROR", "OP_REJECTED", "AUTH_FAIL", "OP_ACK", *ok_types)
    try:
        msg = await c.recv(*watch, timeout=ANSWER_S)
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd is not None else None
        verdict = "refused" if code in REFUSAL_CLOSE_CODES else "UNANSWERED"
        return verdict, f"close {code}"
    except TimeoutError:
        return "UNANSWERED", "nothing within the time limit"
    kind = msg["type"]
    if kind == "OP_ACK":
        results = msg["payload"].get("results") or []
        ok = any(r.get("success") for r in results)
        errors = ",".join(str(r.get("error", ""))[:60] for r in results)
        return ("ACCEPTED" if ok else "refused"), f"OP_ACK {errors}"
    if kind in ok_types:
        return "ACCEPTED", kind
    payload = msg.get("payload") or {}
    detail = payload.get("code", msg.get("error", ""))
    return "refused", f"{kind} {detail}"


async def _open(target: Target, token: str | None) -> WireClient:
    return await WireClient.open(target.url, token)


def frame_probe(
    raw: bytes | str, *, authed: bool
) -> Callable[[Target], Awaitable[tuple[str, str]]]:
    async def run(target: Target) -> tuple[str, str]:
        c = await _open(target, target.user_token if authed else None)
        try:
            await c.ws.send(raw)
            return await _outcome_of(c)
        finally:
            await c.close()

    return run


def message_probe(
    msg: Any, *, authed: bool = True, ok_types: tuple[str, ...] = ()
) -> Callable[[Target], Awaitable[tuple[str, str]]]:
    async def run(target: Target) -> tuple[str, str]:
        c = await _open(target, target.user_token if authed else None)
        try:
            await c.ws.send(pack(msg))
            return await _outcome_of(c, ok_types)
        finally:
            await c.close()

    return run


def op_probe(op: Any) -> Callable[[Target], Awaitable[tuple[str, str]]]:
    """One hostile op in an OP_BATCH, as a user allowed to write the canary map."""
    return message_probe({"type": "OP_BATCH", "payload": {"ops": [op]}})


def token_probe(kind: str) -> Callable[[Target], Awaitable[tuple[str, str]]]:
    async def run(target: Target) -> tuple[str, str]:
        c = await _open(target, None)
        try:
            await c.send({"type": "AUTH", "token": hostile_token(kind, target.secret)})
            return await _outcome_of(c, ("AUTH_ACK",))
        finally:
            await c.close()

    return run


def oversized_probe(*, authed: bool) -> Callable[[Target], Awaitable[tuple[str, str]]]:
    async def run(target: Target) -> tuple[str, str]:
        c = await _open(target, target.user_token if authed else None)
        size = target.max_frame_bytes + 1 if authed else 256 * 1024
        try:
            # the node may close mid-send; websockets then fails in its own ways
            with contextlib.suppress(Exception):
                await c.ws.send(pack({"type": "PING", "timestamp": 1.0, "pad": b"x" * size}))
            return await _outcome_of(c, ("PONG",))
        finally:
            await c.close()

    return run


async def _big_batch(target: Target) -> tuple[str, str]:
    ops = [op_with("op", "id", str(i), CANARY_KEYS[0]) for i in range(target.max_batch_ops + 1)]
    return await message_probe({"type": "OP_BATCH", "payload": {"ops": ops}}, authed=True)(target)


async def _future_write(target: Target) -> tuple[str, str]:
    op = op_with("op", "id", "1", CANARY_KEYS[1])
    op["record"]["timestamp"]["millis"] = float(time.time_ns() // 1_000_000 + 3_600_000)
    return await op_probe(op)(target)


async def _pinger(target: Target) -> tuple[str, str]:
    """Never authenticates, PINGs every second: closed within 15 s?"""
    took, code = await pinging_stranger(target.url, 1.0, 15.0)
    if code is None:
        return "ACCEPTED", "still open after 15 s"
    return ("refused" if code == 4001 else "UNANSWERED"), f"close {code} after {took:.1f} s"


async def _flood(target: Target) -> tuple[str, str]:
    """Twice the cap of sockets that never authenticate, opened as fast as possible, while
    a real client logs in; every flood socket must be gone within the auth timeout."""
    count = 2 * target.max_unauthenticated
    socks: list[WireClient] = []
    started = time.monotonic()

    async def one() -> None:
        with contextlib.suppress(OSError, InvalidHandshake, TimeoutError, ConnectionClosed):
            socks.append(await WireClient.open(target.url))

    try:
        for start in range(0, count, 64):
            await asyncio.gather(*(one() for _ in range(start, min(count, start + 64))))
        t0 = time.monotonic()
        login = await WireClient.open(target.url, target.user_token)
        login_s = time.monotonic() - t0
        ack = await login.write([op_with("op", "id", "1", "bystander-login")
                                 | {"mapName": "bystander-flood"}])  # fmt: skip
        await login.close()
        if not ack["results"][0]["success"]:
            return "ACCEPTED", "the real login could not write during the flood"
        deadline = started + target.auth_timeout_s + 5.0
        codes: dict[int | None, int] = {}
        for s in socks:
            left = max(0.1, deadline - time.monotonic())
            try:
                code = await s.closed_code(left)
            except TimeoutError:
                return "ACCEPTED", "a flood socket outlived the auth timeout"
            codes[code] = codes.get(code, 0) + 1
        return "refused", f"{len(socks)} flood sockets closed {codes}; login took {login_s:.2f} s"
    finally:
        for s in socks:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(s.close(), 1.0)


# --- the catalogue ----------------------------------------------------------------------

MALFORMED_FRAMES: dict[str, bytes | str] = {
    "garbage bytes": b"\xc1\xff\x00garbage",
    "truncated msgpack map": b"\x82\xa4type",
    "empty binary frame": b"",
    "msgpack int": pack(5),
    "msgpack nil": pack(None),
    "msgpack list": pack([1, 2, 3]),
    "msgpack string": pack("AUTH"),
    "map without type": pack({"token": "x"}),
    "type is a number": pack({"type": 5}),
    "type is bytes": pack({"type": b"AUTH"}),
    "unknown type": pack({"type": "DROP_ALL_MAPS"}),
    "very long type": pack({"type": "X" * 10_000}),
    "msgpack ext type 5": msgpack.packb(msgpack.ExtType(5, b"boom")),
    "ext inside a message": pack({"type": "PING", "timestamp": msgpack.ExtType(9, b"x")}),
    "text frame not JSON": "{not json",
    "text frame JSON list": "[1, 2]",
    "text frame deep JSON": "[" * 5000 + "]" * 5000,
    "invalid UTF-8 after msgpack fails": b"\xc1\xfe\xfe\xfe",
    "BATCH data not binary": pack({"type": "BATCH", "count": 1, "data": "x"}),
    "BATCH truncated": pack({"type": "BATCH", "count": 1, "data": b"\x01\x00\x00\x00\xff"}),
    "BATCH count huge": pack({"type": "BATCH", "count": 1, "data": b"\xff\xff\xff\xff"}),
    "BATCH of garbage": pack(
        {"type": "BATCH", "count": 1, "data": b"\x01\x00\x00\x00\x03\x00\x00\x00\xc1\xc1\xc1"}
    ),
    "deep msgpack nesting": b"\x91" * 3000 + b"\xc0",
    "map with non-string keys": pack({1: 2, "type": "QUERY_SUB", b"x": 3}),
}

BAD_MESSAGES: dict[str, Any] = {
    "PING timestamp text": {"type": "PING", "timestamp": "soon"},
    "PING timestamp NaN": {"type": "PING", "timestamp": float("nan")},
    "PING without timestamp": {"type": "PING"},
    "OP_BATCH without payload": {"type": "OP_BATCH"},
    "OP_BATCH ops not a list": {"type": "OP_BATCH", "payload": {"ops": "all"}},
    "OP_BATCH writeConcern bogus": {
        "type": "OP_BATCH",
        "payload": {"ops": [], "writeConcern": "X"},
    },
    "OP_BATCH timeout text": {"type": "OP_BATCH", "payload": {"ops": [], "timeout": "5"}},
    "CLIENT_OP payload a list": {"type": "CLIENT_OP", "payload": [1]},
    "QUERY_SUB without mapName": {"type": "QUERY_SUB", "payload": {"queryId": "q"}},
    "QUERY_SUB limit negative": {
        "type": "QUERY_SUB",
        "payload": {"queryId": "q", "mapName": CANARY_MAP, "query": {"limit": -5}},
    },
    "QUERY_SUB sort bogus": {
        "type": "QUERY_SUB",
        "payload": {"queryId": "q", "mapName": CANARY_MAP, "query": {"sort": {"a": "up"}}},
    },
    "QUERY_SUB query a string": {
        "type": "QUERY_SUB",
        "payload": {"queryId": "q", "mapName": CANARY_MAP, "query": "all"},
    },
    "QUERY_UNSUB without id": {"type": "QUERY_UNSUB", "payload": {}},
    "PARTITION_MAP_REQUEST version text": {
        "type": "PARTITION_MAP_REQUEST",
        "payload": {"currentVersion": "0"},
    },
    "server-only message OP_ACK": {"type": "OP_ACK", "payload": {"lastId": "1"}},
    "server-only PARTITION_MAP garbage": {"type": "PARTITION_MAP", "payload": {}},
    "SYNC_INIT of a system map": {"type": "SYNC_INIT", "mapName": "$sys/x"},
    "unsupported TOPIC_PUB": {"type": "TOPIC_PUB", "topic": "t", "data": 1},
    "second AUTH as admin": {"type": "AUTH", "token": "placeholder"},
}

BEFORE_AUTH: dict[str, Any] = {
    "AUTH token a number": {"type": "AUTH", "token": 5},
    "AUTH token too long": {"type": "AUTH", "token": "x" * 20_000},
    "AUTH without token": {"type": "AUTH"},
    "OP_BATCH before AUTH": {"type": "OP_BATCH", "payload": {"ops": []}},
    "QUERY_SUB before AUTH": {
        "type": "QUERY_SUB",
        "payload": {"queryId": "q", "mapName": CANARY_MAP, "query": {}},
    },
}


def _second_auth(target: Target) -> Awaitable[tuple[str, str]]:
    msg = {"type": "AUTH", "token": target.admin_token}
    return message_probe(msg, authed=True, ok_types=("AUTH_ACK",))(target)


def _forbidden(action: str) -> Callable[[Target], Awaitable[tuple[str, str]]]:
    async def run(target: Target) -> tuple[str, str]:
        if action == "read $sys":
            msg = {"type": "QUERY_SUB", "payload": {"queryId": "q", "mapName": "$sys/x",
                                                    "query": {}}}  # fmt: skip
            return await message_probe(msg, authed=True, ok_types=("QUERY_RESP",))(target)
        map_name = "$sys/config" if action == "write $sys" else READ_ONLY_MAP
        op = op_with("op", "mapName", map_name, CANARY_KEYS[2])
        return await op_probe(op)(target)

    return run


def catalogue() -> list[Probe]:
    probes: list[Probe] = []
    for name, raw in MALFORMED_FRAMES.items():
        probes.append((f"frame: {name}", "malformed frame", frame_probe(raw, authed=True)))
    for name, msg in BAD_MESSAGES.items():
        if name == "second AUTH as admin":
            probes.append((f"message: {name}", "message field", _second_auth))
        else:
            answers = ("QUERY_RESP",) if msg["type"] == "QUERY_SUB" else ()
            probes.append(
                (f"message: {name}", "message field", message_probe(msg, ok_types=answers))
            )
    for name, msg in BEFORE_AUTH.items():
        probes.append((f"before auth: {name}", "before auth", message_probe(msg, authed=False)))
    for i, (table, rules) in enumerate(TABLES.items()):
        for name, rule in rules.items():
            for j, value in enumerate(bad_values(rule)):
                key = CANARY_KEYS[(i + j) % len(CANARY_KEYS)]
                op = op_with(table, name, value, key)
                label = f"field {table}.{name} = {repr(value)[:30]}"
                probes.append((label, "op field", op_probe(op)))
    unknown = {**op_with("op", "id", "1", CANARY_KEYS[3]), "admin": True}
    probes.append(("op: unknown field", "op field", op_probe(unknown)))
    probes.append(("op: REMOVE carrying a value", "op field",
                   op_probe(op_with("op", "opType", "REMOVE", CANARY_KEYS[4]))))  # fmt: skip
    probes.append(("op: not an object", "op field", op_probe("PUT everything")))
    for kind in TOKEN_KINDS:
        probes.append((f"token {kind}", "token", token_probe(kind)))
    for action in ("write read-only map", "write $sys", "read $sys"):
        probes.append((f"forbidden: {action}", "permission", _forbidden(action)))
    probes.append(("oversized frame after auth", "size", oversized_probe(authed=True)))
    probes.append(("oversized frame before auth", "size", oversized_probe(authed=False)))
    probes.append(("batch over the op limit", "size", _big_batch))
    probes.append(("timestamp an hour ahead", "clock", _future_write))
    probes.append((FLOOD, "flood", _flood))
    probes.append(("unauthenticated PING every second", "flood", _pinger))
    return probes


# --- bystanders -------------------------------------------------------------------------


@dataclass
class Bystander:
    """A real client that writes and reads back every ``every_s`` while the run goes on."""

    url: str
    token: str
    name: str
    every_s: float = 0.2
    rounds: int = 0
    failures: list[str] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            c = await WireClient.open(self.url, self.token)
        except Exception as exc:
            self.failures.append(f"could not sign in: {exc!r}")
            return
        try:
            while not stop.is_set():
                self.rounds += 1
                key = f"k{self.rounds % 16}"
                op = {"id": str(self.rounds), "mapName": f"bystander-{self.name}", "key": key,
                      "opType": "PUT", "record": now_record(self.rounds, self.name)}  # fmt: skip
                ack = await c.write([op], timeout=ANSWER_S)
                if not ack["results"][0]["success"]:
                    self.failures.append(f"write {self.rounds}: {ack}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.every_s)
        except Exception as exc:
            self.failures.append(f"round {self.rounds}: {exc!r}")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(c.close(), 2.0)


async def run_probes(target: Target, probes: list[Probe], concurrency: int = 4) -> list[Verdict]:
    """Every probe once: the flood on its own first (it evicts whatever waits beside it),
    then the rest, the slow PING probe among them."""
    verdicts: list[Verdict] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(
        name: str, kind: str, run: Callable[[Target], Awaitable[tuple[str, str]]]
    ) -> None:
        async with gate:
            try:
                outcome, answer = await asyncio.wait_for(run(target), 40.0)
            except Exception as exc:  # the probe itself failed: counts against the node
                outcome, answer = "UNANSWERED", f"probe error {exc!r}"
            verdicts.append(Verdict(name, kind, outcome, answer))

    floods = [p for p in probes if p[0] == FLOOD]
    await asyncio.gather(*(one(*p) for p in floods))
    await asyncio.gather(*(one(*p) for p in probes if p[0] != FLOOD))
    return verdicts
