"""Driving write load: pre-encoded batches over several connections, every ack counted."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from topgun.bench.wire import AckResult, WireClient, key_frames, succeeded
from topgun.bench.workload import key_for
from topgun.core.hashing import partition_id
from topgun.core.table import PartitionTable


@dataclass
class LoadResult:
    seconds: float
    batches: int
    acked: int
    replicated: int


async def drive(
    targets: Mapping[str, Iterable[bytes]],
    token: str,
    *,
    connections: int,
    step_s: float = 10.0,
    progress: Callable[[LoadResult], None] | None = None,
    count: Callable[[list[AckResult]], tuple[int, int]] = succeeded,
) -> LoadResult:
    """Send every frame, one in flight per connection, connections spread over the target
    URLs; each URL's connections share its frames (pass one iterator to all to share all).

    ``count`` turns the per-op results of one ``OP_ACK`` into (acked ops, of which
    replicated); by default a topgun ack's results are counted. ``progress`` is called
    about once a second.
    """
    urls = list(targets)
    queues = {url: iter(frames) for url, frames in targets.items()}
    clients = [
        (await WireClient.open(urls[c % len(urls)], token, step_s), queues[urls[c % len(urls)]])
        for c in range(connections)
    ]
    result = LoadResult(0.0, 0, 0, 0)

    async def sender(client: WireClient, queue: Iterator[bytes]) -> None:
        for frame in queue:
            acked, replicated = count(await client.write(frame))
            result.batches += 1
            result.acked += acked
            result.replicated += replicated

    async def ticker() -> None:
        while progress is not None:
            await asyncio.sleep(1.0)
            progress(result)

    started = time.perf_counter()
    tick = asyncio.create_task(ticker())
    try:
        await asyncio.gather(*(sender(c, q) for c, q in clients))
    finally:
        tick.cancel()
        result.seconds = time.perf_counter() - started
        await asyncio.gather(*(c.close() for c, _ in clients), return_exceptions=True)
    return result


def routed_frames(
    table: PartitionTable, urls: dict[str, str], keys: Iterable[int], batch_size: int, millis: int
) -> dict[str, list[bytes]]:
    """Batches of the given key numbers, each batch for one owner, keyed by that owner's
    client URL (``urls``: node id → URL): what a smart client sends."""
    numbers: dict[str, list[int]] = {url: [] for url in urls.values()}
    for i in keys:
        numbers[urls[table.owners[partition_id(key_for(i))]]].append(i)
    return {url: key_frames(nums, batch_size, millis) for url, nums in numbers.items()}
