"""The pure-Python ceiling: a websockets server that does the least a write ack needs.

Per frame: msgpack-decode the ``OP_BATCH``, LWW-merge every op into one dict (timestamps
compared as (millis, counter, nodeId) tuples) and answer one ``OP_ACK`` with the batch's
last op id. No validation, partitions, replication or per-op results: what a topgun node
does on top of this is what it costs. Prints ``READY <url>`` and serves until killed.

It holds the decoded values, as plain Python would, so the cyclic garbage collector walks a
growing heap: ``--no-gc`` turns it off to show the ceiling without that cost.

    .venv/bin/python benchmarks/ceiling_server.py [--port 0] [--no-gc]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from typing import Any

import msgpack
from websockets.asyncio.server import ServerConnection, serve

STORE: dict[tuple[str, str], tuple[tuple[Any, ...], Any]] = {}


async def handle(ws: ServerConnection) -> None:
    await ws.send(msgpack.packb({"type": "AUTH_REQUIRED"}))
    async for frame in ws:
        msg = msgpack.unpackb(frame, raw=False, strict_map_key=False)
        kind = msg.get("type")
        if kind == "AUTH":
            await ws.send(msgpack.packb({"type": "AUTH_ACK"}))
        elif kind == "OP_BATCH":
            last = "0"
            for op in msg["payload"]["ops"]:
                rec = op["record"]
                t = rec["timestamp"]
                ts = (t["millis"], t["counter"], t["nodeId"])
                key = (op["mapName"], op["key"])
                held = STORE.get(key)
                if held is None or ts > held[0]:
                    STORE[key] = (ts, rec["value"])
                last = op.get("id", last)
            await ws.send(msgpack.packb({"type": "OP_ACK", "payload": {"lastId": last}}))


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-gc", action="store_true", help="disable the cyclic GC")
    args = parser.parse_args()
    if args.no_gc:
        gc.disable()
    async with serve(handle, "127.0.0.1", args.port, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(f"READY ws://127.0.0.1:{port}", flush=True)
        await asyncio.Future()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
