"""Writer clients for the set checker, and the read-back that feeds it.

Each writer is a :class:`~topgun.client.TopGunClient` of its own on the harness loop, with
keys no other writer touches: fresh keys as it goes, each written ``writes_per_key`` times
in a row (so the read-back checks both that every acknowledged key is there and that it has
its newest value). It has one write outstanding at a time, like a Jepsen process: set, then
``flush`` with a stated limit, then a pause of ``interval_s`` (the workload's pace).
Acknowledged → ok, with the level the ack vouched for; refused for good → fail (info if
the server said OUTCOME_UNKNOWN); a timeout or no connection → info, after which the writer
drops that client (its unacknowledged op goes with it, so the outcome stays unknown rather
than turning up later as someone else's) and carries on with a new one. A writer asks for
its write concern as a client-wide setting (``ClusterConfig.write_concern``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from topgun.client import ClusterConfig, MemoryStorage, TopGunClient
from topgun.client.errors import TopGunClientError, WriteRejected
from topgun.harness.checker import Outcome, Write, outcome_of_refusal
from topgun.harness.loop import LoopThread

log = logging.getLogger(__name__)

READ_CHUNK = 100
"""Keys per read-back query: the read is paged by key, so no answer is unbounded."""
RECONNECT_PAUSE_S = 0.1
"""Backoff between attempts to start a replacement client while the cluster is unreachable."""


@dataclass
class WriterSettings:
    map_name: str
    seeds: Callable[[], list[str]]
    token: str
    writes_per_key: int = 2
    interval_s: float = 0.01
    write_timeout_s: float = 2.0
    start_timeout_s: float = 2.0
    client_options: dict[str, Any] = field(default_factory=dict)
    pinned: dict[int, str] = field(default_factory=dict)
    """Writer index → the one node URL it talks to (single-server mode: no partition map,
    no way around that node), so what that node does when cut off cannot be routed away."""
    write_concern: str | None = None
    """The level every writer asks for (None: the server's default)."""
    concern_of: dict[int, str] = field(default_factory=dict)
    """Writer index → the level it asks for instead of ``write_concern``."""

    def concern(self, writer: int) -> str | None:
        return self.concern_of.get(writer, self.write_concern)


def key_of(writer: int, index: int) -> str:
    return f"w{writer}-k{index}"


def new_client(
    seeds: list[str], token: str, *, server_url: str | None = None, **options: Any
) -> TopGunClient:
    """A client of the cluster at ``seeds`` (or of the one node at ``server_url``);
    ``options`` are ``ClusterConfig`` fields."""
    if server_url is not None:
        client = TopGunClient(server_url=server_url, storage=MemoryStorage(), options=options)
    else:
        cluster = ClusterConfig(seeds=seeds, **options)
        client = TopGunClient(cluster=cluster, storage=MemoryStorage())
    client.set_auth_token(token)
    return client


class Writers:
    """Several writers running on the loop until :meth:`stop`; their history is shared."""

    def __init__(self, loop: LoopThread, settings: WriterSettings, count: int) -> None:
        self.loop = loop
        self.settings = settings
        self.count = count
        self.history: list[Write] = []
        self.started_at = time.monotonic()
        self.clients_started = 0
        self._stopping: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        async def launch() -> None:
            self._stopping = asyncio.Event()
            self._tasks = [
                asyncio.create_task(self._run(i), name=f"writer-{i}") for i in range(self.count)
            ]

        self.loop.run(launch(), 5.0)

    def stop(self, within: float) -> None:
        """Let each writer finish its write in progress (bounded by its own limit), then stop."""

        async def halt() -> None:
            assert self._stopping is not None
            self._stopping.set()
            _, pending = await asyncio.wait(self._tasks, timeout=within)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        self.loop.run(halt(), within + 5.0)

    def ok_count(self) -> int:
        return sum(w.outcome is Outcome.OK for w in self.history)

    def _now(self) -> float:
        return time.monotonic() - self.started_at

    async def _run(self, writer: int) -> None:
        s = self.settings
        assert self._stopping is not None
        client: TopGunClient | None = None
        seq = 0
        try:
            while not self._stopping.is_set():
                if client is None:
                    client = await self._connect(writer)
                    if client is None:
                        await asyncio.sleep(RECONNECT_PAUSE_S)
                        continue
                key = key_of(writer, seq // s.writes_per_key)
                value = {"writer": writer, "seq": seq}
                write = Write(writer, seq, key, value, self._now(), asked=s.concern(writer))
                self.history.append(write)
                seq += 1
                client.get_map(s.map_name).set(key, write.value)
                write.outcome, write.detail, write.level = await self._outcome(client)
                write.completed_at = self._now()
                if write.outcome is Outcome.INFO:
                    await client.close()
                    client = None
                await asyncio.sleep(s.interval_s)
        finally:
            if client is not None:
                await client.close()

    async def _connect(self, writer: int) -> TopGunClient | None:
        s = self.settings
        options = {**s.client_options, "write_concern": s.concern(writer)}
        client: TopGunClient | None = None
        try:  # no seeds (every node down) is a ConfigError: try again later, like a refusal
            client = new_client(s.seeds(), s.token, server_url=s.pinned.get(writer), **options)
            await client.start(timeout=s.start_timeout_s)
        except (TopGunClientError, OSError) as exc:
            log.info("writer client could not start: %s", exc)
            if client is not None:
                await client.close()
            return None
        self.clients_started += 1
        return client

    async def _outcome(self, client: TopGunClient) -> tuple[Outcome, str, str | None]:
        """How the write ended, why, and the level its ack vouched for (ok writes)."""
        try:
            result = await client.flush(timeout=self.settings.write_timeout_s)
        except WriteRejected as exc:
            return outcome_of_refusal(reason for _, reason in exc.rejections), str(exc), None
        except (TopGunClientError, OSError) as exc:
            return Outcome.INFO, f"{type(exc).__name__}: {exc}", None
        return Outcome.OK, "", None if result.level is None else result.level.name


def read_back(
    loop: LoopThread,
    seeds: list[str],
    token: str,
    *,
    map_name: str,
    keys: list[str],
    within: float,
) -> dict[str, Any]:
    """Each key's value as the cluster answers it (None when absent), ``READ_CHUNK`` at a time.

    Raises if any chunk goes unanswered within ``within`` seconds: a read that could not be
    made must not pass for "absent".
    """

    async def read() -> dict[str, Any]:
        client = new_client(seeds, token)
        try:
            await client.start(timeout=within)
            found: dict[str, Any] = dict.fromkeys(keys)
            for start in range(0, len(keys), READ_CHUNK):
                chunk = keys[start : start + READ_CHUNK]
                rows = await client.query(map_name, where={"_key": {"$in": chunk}}, timeout=within)
                found.update((k, v) for k, v in rows.items() if k in found)
            return found
        finally:
            await client.close()

    chunks = max(1, -(-len(keys) // READ_CHUNK))
    return loop.run(read(), within * (chunks + 1) + 5.0)
