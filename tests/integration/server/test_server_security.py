"""Security at the client port: the auth deadline, the unauthenticated cap and byte budget,
a second AUTH, map permissions with a policy, field filtering, and the admin renderer."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from typing import Any

import jwt
import msgpack
import pytest
from server_testkit import SECRET, put, record, token, with_node

from topgun.core.codec import pack
from topgun.core.policy import PolicySet
from topgun.harness.security import pinging_stranger
from topgun.harness.wire import WireClient
from topgun.server.auth import make_token

pytestmark = pytest.mark.timeout(60)
POLICIES = PolicySet.from_dicts(
    [
        {"role": "USER", "mapNamePattern": "public", "actions": ["READ"]},
        {"role": "USER", "mapNamePattern": "notes-{userId}", "actions": ["ALL"]},
        {
            "role": "USER",
            "mapNamePattern": "people",
            "actions": ["READ"],
            "allowedFields": ["name"],
        },
    ]
)


def user(sub: str = "ann", roles: list[str] | None = None) -> str:
    return make_token(SECRET, sub=sub, roles=roles)


def test_pings_do_not_extend_the_auth_deadline() -> None:
    async def body(node) -> None:  # type: ignore[no-untyped-def]
        bystander = await WireClient.open(node.client_url, token())
        took, code = await pinging_stranger(node.client_url, 0.1, 5.0)
        assert code == 4001 and 0.9 < took < 2.5
        assert (await bystander.write([put("1", "k", "still here")]))["results"][0]["success"]

    with_node(body, auth_timeout_s=1.0, client_idle_timeout_s=30.0)


def test_a_flood_of_waiting_sockets_evicts_the_oldest_not_the_login() -> None:
    async def body(node) -> None:  # type: ignore[no-untyped-def]
        waiting = [await WireClient.open(node.client_url) for _ in range(8)]
        codes = [await w.closed_code(3.0) for w in waiting[:3]]
        assert codes == [1013, 1013, 1013]
        login = await WireClient.open(node.client_url, token())  # makes room for itself too
        assert (await login.write([put("1", "k", "in")]))["results"][0]["success"]
        assert await waiting[3].closed_code(3.0) == 1013
        for w in waiting[4:]:
            assert w.ws.close_code is None  # the newest still wait
            await w.close()

    with_node(body, max_unauthenticated=5)


def test_bytes_before_auth_are_bounded() -> None:
    async def body(node) -> None:  # type: ignore[no-untyped-def]
        big = await WireClient.open(node.client_url)
        await big.ws.send(pack({"type": "AUTH", "token": "x" * 3000}))
        assert await big.closed_code() == 1009
        chatty = await WireClient.open(node.client_url)
        for _ in range(40):  # 40 PINGs of ~100 bytes: past the 2 KiB budget
            await chatty.send({"type": "PING", "timestamp": 1.0, "pad": "p" * 80})
        assert await chatty.closed_code() == 1009
        ok = await WireClient.open(node.client_url, token())  # a token fits; so does life after
        await ok.ws.send(pack({"type": "PING", "timestamp": 1.0, "pad": "x" * 3000}))
        assert (await ok.recv("PONG"))["timestamp"] == 1.0

    with_node(body, max_unauthenticated_bytes=2048)


def test_tokens_without_subject_and_second_auth() -> None:
    async def body(node) -> None:  # type: ignore[no-untyped-def]
        for claims in ({}, {"roles": ["ADMIN"]}, {"sub": ""}):
            c = await WireClient.open(node.client_url)
            await c.send({"type": "AUTH", "token": jwt.encode(claims, SECRET, algorithm="HS256")})
            fail = await c.recv("AUTH_FAIL", "AUTH_ACK")
            assert fail["type"] == "AUTH_FAIL" and "subject" in fail["error"], claims
            assert await c.closed_code() == 4001
        c = await WireClient.open(node.client_url, user("ann"))
        await c.send({"type": "AUTH", "token": make_token(SECRET, sub="root", roles=["ADMIN"])})
        err = await c.recv("ERROR")
        assert err["payload"]["code"] == 409
        ack = await c.write([put("1", "k", "x", map_name="$sys/config")])
        assert ack["results"][0]["error"].startswith("FORBIDDEN")  # still ann, not root

    with_node(body, policies=POLICIES)


def test_map_permissions_under_a_policy() -> None:
    async def body(node) -> None:  # type: ignore[no-untyped-def]
        admin = await WireClient.open(node.client_url, token(["ADMIN"]))
        seed = [put("1", "k", {"v": "admin"}, map_name=m) for m in ("public", "notes-bob")]
        seed.append(put("2", "p", {"name": "Ann", "salary": 9}, map_name="people"))
        assert all(r["success"] for r in (await admin.write(seed))["results"])
        ann = await WireClient.open(node.client_url, user("ann"))
        ack = await ann.write(
            [
                put("1", "k", {"v": "ann"}, map_name="public"),
                put("2", "k", {"v": "ann"}, map_name="notes-ann"),
                put("3", "k", {"v": "ann"}, map_name="notes-bob"),
            ]
        )
        assert [r["success"] for r in ack["results"]] == [False, True, False]
        rejected = [await ann.recv("OP_REJECTED") for _ in range(2)]
        assert {r["payload"]["code"] for r in rejected} == {403}
        assert rejected[0]["payload"]["reason"] == "Access Denied for map public"
        assert node.inspect("public", "k")["record"]["value"] == {"v": "admin"}
        assert node.inspect("notes-bob", "k")["record"]["value"] == {"v": "admin"}
        await ann.send({"type": "CLIENT_OP", "payload": put("4", "k", 1, map_name="public")})
        assert (await ann.recv("OP_REJECTED"))["payload"]["code"] == 403

        async def query(map_name: str, q: dict[str, Any] | None = None) -> dict[str, Any]:
            await ann.send({"type": "QUERY_SUB", "payload": {"queryId": map_name,
                            "mapName": map_name, "query": q or {}}})  # fmt: skip
            return await ann.recv("QUERY_RESP", "ERROR")

        assert (await query("public"))["payload"]["results"] == [
            {"key": "k", "value": {"v": "admin"}}
        ]
        denied = await query("notes-bob")
        assert denied["payload"] == {"code": 403, "message": "Access Denied for map notes-bob"}
        people = await query("people")
        assert people["payload"]["results"] == [{"key": "p", "value": {"name": "Ann"}}]
        probe = await query("people", {"where": {"salary": {"$gt": 5}}})
        assert probe["payload"]["code"] == 403 and "salary" in probe["payload"]["message"]
        # a live update shows only the allowed fields too
        await admin.write([put("3", "p", {"name": "Ann B", "salary": 10}, map_name="people")])
        update = await ann.recv("QUERY_UPDATE")
        assert update["payload"]["value"] == {"name": "Ann B"}

    with_node(body, policies=POLICIES)


def test_without_policies_only_admin_acts_even_with_dev() -> None:
    async def body(node) -> None:  # type: ignore[no-untyped-def]
        c = await WireClient.open(node.client_url, token())
        ack = await c.write([put("1", "k", "user")])
        assert ack["results"][0]["error"] == "FORBIDDEN: Access Denied for map m"
        await c.send(
            {"type": "QUERY_SUB", "payload": {"queryId": "q", "mapName": "m", "query": {}}}
        )
        assert (await c.recv("ERROR"))["payload"]["code"] == 403
        a = await WireClient.open(node.client_url, token(["ADMIN"]))
        assert (await a.write([put("1", "k", "admin")]))["results"][0]["success"]

    with_node(body, policies=PolicySet(), dev=True)


def _get(url: str, path: str, bearer: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url.replace("ws://", "http://") + path)
    req.add_header("Authorization", "Bearer " + bearer)
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_admin_route_renders_binary_and_timestamp_values() -> None:
    async def body(node) -> None:  # type: ignore[no-untyped-def]
        a = await WireClient.open(node.client_url, token(["ADMIN"]))
        ops = [
            put("1", "bin", b"\x00\xff"),
            put("2", "ts", msgpack.Timestamp(1_700_000_000, 0)),
            {**put("3", "nk", None), "record": {**record({1: "x", b"k": [b"y"]})}},
        ]
        assert all(r["success"] for r in (await a.write(ops))["results"])
        for key, marker in (
            ("bin", b'"$bytes"'),
            ("ts", b'"$msgpackTimestamp"'),
            ("nk", b'"$map"'),
        ):
            status, body_bytes = await asyncio.to_thread(
                _get, node.client_url, f"/admin/maps/m/{key}", token(["ADMIN"])
            )
            assert status == 200 and marker in body_bytes, body_bytes
        status, _ = await asyncio.to_thread(_get, node.client_url, "/admin/maps/m/bin", token())
        assert status == 403

    with_node(body)
