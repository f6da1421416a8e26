"""Merkle sync and paged reads of a big map on a 3-node in-process cluster.

Writes ``--records`` keys, then measures, with a raw protocol client (no topgun client code):

* a full Merkle sync from an empty client on one node: ``SYNC_INIT`` plus the bucket walk
  down to every leaf (the cluster-wide answer: bucket sums from every owner);
* reading the whole map with ``QUERY_SUB`` pages of ``--page`` rows, following the cursor;
* the longest event-loop stall seen while a node evaluates those queries (evaluation yields
  every 2000 records, so this stays small however big the map is).

It checks that the sync found every record and the pages every key. Figures depend on the
machine; no test asserts them. Every wait is bounded.

    .venv/bin/python benchmarks/sync_and_paging.py [--records N] [--page N]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from typing import Any

from topgun.harness.nodes import kill_nodes, start_nodes
from topgun.harness.wire import WireClient
from topgun.server.auth import make_token

SECRET = "benchmark-secret-0123456789abcdef0123456789"


async def stall_watch(stop: asyncio.Event, worst: list[float], tick: float = 0.001) -> None:
    """Record the longest gap between two wakeups of a coroutine asking for ``tick``."""
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(tick)
        now = time.perf_counter()
        worst[0] = max(worst[0], now - last - tick)
        last = now


async def main(records: int, page: int) -> None:
    nodes = await start_nodes(["node-a", "node-b", "node-c"], jwt_secret=SECRET,
                              cluster_secret=SECRET)  # fmt: skip
    token = make_token(SECRET, sub="bench", roles=["ADMIN"])
    try:
        writer = await WireClient.open(nodes[0].client_url, token)
        now = float(int(time.time() * 1000))
        for start in range(0, records, 1000):
            ops: list[dict[str, Any]] = [
                {"id": str(i + 1), "mapName": "big", "key": f"k{i:07d}", "opType": "PUT",
                 "record": {"value": {"n": i}, "timestamp": {"millis": now, "counter": i,
                                                              "nodeId": "bench"}}}
                for i in range(start, min(records, start + 1000))
            ]  # fmt: skip
            await writer.write(ops, timeout=30)
        reader = await WireClient.open(nodes[1].client_url, token)

        t0 = time.perf_counter()
        await reader.sync_root("big")
        synced = await reader.walk("big")
        sync_s = time.perf_counter() - t0
        assert len(synced) == records, len(synced)

        stop, worst = asyncio.Event(), [0.0]
        watcher = asyncio.create_task(stall_watch(stop, worst))
        t0 = time.perf_counter()
        keys: list[str] = []
        query: dict[str, Any] = {"limit": page}
        pages = 0
        while True:
            resp = await reader.query(f"q{pages}", "big", query)
            pages += 1
            keys.extend(r["key"] for r in resp["results"])
            if not resp.get("hasMore"):
                break
            query = {**query, "cursor": resp["nextCursor"]}
        page_s = time.perf_counter() - t0
        stop.set()
        await watcher
        assert keys == sorted(f"k{i:07d}" for i in range(records))
        print(f"records: {records}")
        print(f"full Merkle sync (root + walk to every leaf): {sync_s:.2f} s")
        print(f"read in {pages} pages of {page}: {page_s:.2f} s "
              f"({page_s / pages * 1000:.1f} ms per page)")  # fmt: skip
        print(f"longest event-loop stall while querying: {worst[0] * 1000:.1f} ms")
        await reader.close()
        await writer.close()
    finally:
        await kill_nodes(nodes)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--page", type=int, default=500)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(asyncio.wait_for(main(args.records, args.page), 600))
