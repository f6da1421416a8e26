"""The client endpoint of one node: auth, heartbeat, bad input, limits (reference §0-§2, §8)."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest
from server_testkit import SECRET, WireClient, put, record, token, with_node
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from topgun.core.codec import pack

pytestmark = pytest.mark.timeout(60)


async def closed_code(c: WireClient, within: float = 5.0) -> int | None:
    try:
        while True:
            await asyncio.wait_for(c.ws.recv(), within)
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd is not None else None


# signed with the same secret as good tokens, so only the algorithm makes them bad; PyJWT
# warns that this test secret is short for HS384/HS512, which is beside the point here
@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_auth_handshake_and_refusals() -> None:
    async def body(node) -> None:  # type: ignore[no-untyped-def]
        c = await WireClient.open(node.client_url)
        await c.send({"type": "PING", "timestamp": 123.0})  # allowed before AUTH
        pong = await c.recv("PONG")
        assert pong["timestamp"] == 123.0 and isinstance(pong["serverTime"], float)
        await c.send({"type": "AUTH", "token": token()})
        assert (await c.recv())["type"] == "AUTH_ACK"
        await c.close()

        bad_tokens = [
            "not-a-jwt",
            jwt.encode({"sub": "x"}, "another-secret-0123456789abcdef012345", algorithm="HS256"),
            jwt.encode({"sub": "x", "exp": int(time.time()) - 10}, SECRET, algorithm="HS256"),
            jwt.encode({"sub": "x", "nbf": int(time.time()) + 600}, SECRET, algorithm="HS256"),
            jwt.encode({"sub": "x"}, None, algorithm="none"),
            jwt.encode({"sub": "x"}, SECRET, algorithm="HS512"),
        ]
        for bad in bad_tokens:
            c = await WireClient.open(node.client_url)
            await c.send({"type": "AUTH", "token": bad})
            fail = await c.recv()
            assert fail["type"] == "AUTH_FAIL" and fail["error"], bad
            assert await closed_code(c) == 4001

        c = await WireClient.open(node.client_url)
        await c.send({"type": "PARTITION_MAP_REQUEST", "payload": {"currentVersion": 0}})
        assert await closed_code(c) == 4001

    with_node(body)


def test_bad_input_is_answered_and_connection_stays_usable() -> None:
    async def body(node) -> None:  # type: ignore[no-untyped-def]
        c = await WireClient.open(node.client_url, token())
        bad = [
            {"type": "OP_BATCH", "payload": {"ops": "nope"}},
            {"type": "NO_SUCH_TYPE"},
            {"no": "type"},
            [1, 2, 3],
            {"type": "PING", "timestamp": "soon"},
            {
                "type": "QUERY_SUB",
                "payload": {"queryId": "q", "mapName": "m", "query": {"limit": -5}},
            },
        ]
        for msg in bad:
            await c.send(msg)
            err = await c.recv("ERROR")
            assert err["payload"]["code"] == 400, msg
        await c.send({"type": "OP_BATCH", "payload": {"ops": [{"mapName": 5, "key": "k"}]}})
        rejected = await c.recv("OP_REJECTED")  # refused on its own; the batch is answered
        assert rejected["payload"]["code"] == 400
        assert rejected["payload"]["reason"].startswith("INVALID_OP: mapName")
        assert not (await c.recv("OP_ACK"))["payload"]["results"][0]["success"]
        await c.ws.send('{"type": "PING", "timestamp": 5}')  # JSON text frame
        assert (await c.recv("PONG"))["timestamp"] == 5.0
        await c.send({"type": "TOPIC_SUB", "payload": {"topic": "t"}})
        assert (await c.recv("ERROR"))["payload"]["code"] == 501
        ack = await c.write([put("1", "k", "still works")])
        assert ack["results"][0]["success"]
        await c.ws.send(b"\xc1\xff\x00garbage")
        assert await closed_code(c) == 1002
        assert node.inspect("m", "k")["record"]["value"] == "still works"

    with_node(body)


def test_far_future_timestamp_is_refused_per_op_and_does_not_freeze_the_key() -> None:
    async def body(node) -> None:  # type: ignore[no-untyped-def]
        c = await WireClient.open(node.client_url, token())
        future = int(time.time() * 1000) + 3600_000
        ops = [put("1", "a", "ok"), put("2", "b", "evil", millis=future), put("3", "c", "ok")]
        ack = await c.write(ops)
        assert [r["success"] for r in ack["results"]] == [True, False, True]
        assert ack["results"][1]["error"].startswith("CLOCK_SKEW")
        assert ack["lastId"] == "1"  # longest successful prefix
        assert node.inspect("m", "b")["record"] is None
        ack = await c.write([put("4", "b", "fine")])
        assert ack["results"][0]["success"] and node.inspect("m", "b")["record"]["value"] == "fine"

    with_node(body)


def test_limits_on_batch_and_frame_size() -> None:
    async def body(node) -> None:  # type: ignore[no-untyped-def]
        c = await WireClient.open(node.client_url, token())
        await c.send(
            {"type": "OP_BATCH", "payload": {"ops": [put(str(i), f"k{i}", i) for i in range(11)]}}
        )
        err = await c.recv("ERROR")
        assert err["payload"]["code"] == 413 and "limit" in err["payload"]["message"]
        assert node.inspect("m", "k0")["record"] is None
        ack = await c.write([put("1", "k", 1)])
        assert ack["results"][0]["success"]
        await c.ws.send(pack({"type": "PING", "timestamp": 1.0, "pad": "x" * 5000}))
        assert await closed_code(c) == 1009

    with_node(body, max_batch_ops=10, max_frame_bytes=4096)


def test_idle_client_is_closed_4002_and_lww_merge_keeps_newest() -> None:
    async def body(node) -> None:  # type: ignore[no-untyped-def]
        c = await WireClient.open(node.client_url, token())
        now = int(time.time() * 1000)
        newer = {
            "id": "1",
            "mapName": "m",
            "key": "k",
            "opType": "PUT",
            "record": record("new", now),
        }
        older = {
            "id": "2",
            "mapName": "m",
            "key": "k",
            "opType": "PUT",
            "record": record("old", now - 1000),
        }
        ack = await c.write([newer, older])
        assert all(r["success"] for r in ack["results"]) and ack["lastId"] == "2"
        assert node.inspect("m", "k")["record"]["value"] == "new"
        await c.send({"type": "CLIENT_OP", "payload": put("3", "k2", "single")})
        assert (await c.recv("OP_ACK"))["payload"]["lastId"] == "3"
        assert await closed_code(c, 5.0) == 4002

    with_node(body, client_idle_timeout_s=0.5)


def test_dev_flag_and_missing_secret() -> None:
    from topgun.server import DEV_SECRET, NodeConfig, ServerNode

    with pytest.raises(ValueError, match="secret"):
        ServerNode(NodeConfig(node_id="x"))
    node = ServerNode(NodeConfig(node_id="x", dev=True))
    assert node._jwt_secret == DEV_SECRET == node.membership._secret


def test_plain_websocket_on_any_path() -> None:
    async def body(node) -> None:  # type: ignore[no-untyped-def]
        async with connect(node.client_url + "/some/path") as ws:
            from topgun.core.codec import unpack

            assert unpack(await ws.recv())["type"] == "AUTH_REQUIRED"

    with_node(body)
