"""Group commit: what the event loop changed goes to the node's storage engine on a writer
thread, one transaction (one fsync, or one PostgreSQL commit) per group.

Every record a merge changes is added to the open group at once (a list append on the loop).
When something waits for the disk (:meth:`GroupCommit.durable`: a ``PERSISTED`` write, a
migrated copy), the group is handed to the writer thread at the end of the loop turn, or,
while a commit is running, as soon as that commit finishes: so one fsync covers every op
that arrived in the same turn, and under load everything that arrived during the previous
fsync. When nothing waits, the group is committed :data:`FLUSH_WINDOW_S` after its first
record: LMDB rewrites every page a transaction touches, so a larger group of random keys
costs far less per record. A group holds at most :data:`GROUP_MAX_ROWS` records; more wait
for the next commit.

Once the future of :meth:`GroupCommit.durable` is resolved, everything added before the call
is on disk. Lower levels do not wait: a crash loses what arrived in the last
:data:`FLUSH_WINDOW_S`, plus the commit in progress and the records queued behind it
(``topgun_storage_pending_records``; one commit of a few thousand records took 4-8 ms on the
development VM).

A failed commit (disk full, I/O error) fails the futures waiting on it and every later one:
the node stops promising ``PERSISTED`` (logged with the file, counted in
``topgun_storage_errors``) but goes on serving lower levels from memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from topgun.server.logutil import NodeLogger
from topgun.server.metrics import NodeMetrics
from topgun.server.storage.base import Batch, Row, StorageEngine, StorageError

GROUP_MAX_ROWS = 20_000
"""Records at most in one transaction (a few MB): a commit never runs for long, and the
writer thread takes the GIL for a bounded time per group."""
FLUSH_WINDOW_S = 0.05
"""How long records nobody waits for may stay in memory before their commit starts."""


class GroupCommit:
    def __init__(self, engine: StorageEngine, log: NodeLogger, metrics: NodeMetrics) -> None:
        self.engine = engine
        self.new_nodes: Callable[[int], list[str]] = lambda _start: []
        """Node ids the store's packer interned from a given index on (set by the store):
        each commit writes those its records may refer to."""
        self._nodes_written = 0
        self.log = log
        self.metrics = metrics
        self._rows: list[Row] = []
        self._meta: dict[bytes, bytes] = {}
        self._waiter: asyncio.Future[None] | None = None
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._busy = False
        self._closed = False
        self.failure: StorageError | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="topgun-storage")

    def set_nodes_written(self, count: int) -> None:
        self._nodes_written = count

    # ------------------------------------------------------------------ on the loop

    def add(self, row: Row) -> None:
        self._rows.append(row)
        if self._timer is None and not self._scheduled:
            self._schedule(now=False)

    def put_meta(self, key: bytes, value: bytes) -> None:
        self._meta[key] = value
        self._schedule(now=True)

    def durable(self) -> asyncio.Future[None]:
        """Resolved once everything added so far is on disk; raises :class:`StorageError`
        if the node's disk failed."""
        loop = asyncio.get_running_loop()
        if self.failure is not None:
            fut: asyncio.Future[None] = loop.create_future()
            fut.set_exception(self.failure)
            return fut
        if not self._rows and not self._meta and not self._busy:
            fut = loop.create_future()
            fut.set_result(None)  # nothing is waiting to be written
            return fut
        if self._waiter is None:
            self._waiter = loop.create_future()
            self._schedule(now=True)
        return asyncio.shield(self._waiter)

    def _schedule(self, *, now: bool) -> None:
        """Commit at the end of this turn (``now``: someone waits), or after the window."""
        if self._busy or self._closed:
            return  # the commit in progress schedules the next when it finishes
        loop = asyncio.get_running_loop()
        if now:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not self._scheduled:
                self._scheduled = True
                loop.call_soon(self._flush)
        elif self._timer is None and not self._scheduled:
            self._timer = loop.call_later(FLUSH_WINDOW_S, self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._busy or self._closed:
            return
        if not self._rows and not self._meta:
            if self._waiter is not None:  # everything before it was already committed
                self._waiter.set_result(None)
                self._waiter = None
            return
        rows, self._rows = self._rows[:GROUP_MAX_ROWS], self._rows[GROUP_MAX_ROWS:]
        waiter = None
        if not self._rows:
            waiter, self._waiter = self._waiter, None
        nodes = self.new_nodes(self._nodes_written)
        batch = Batch(rows, list(enumerate(nodes, self._nodes_written)), self._meta)
        self._meta = {}
        self._busy = True
        self.metrics.storage_pending.set(len(self._rows))
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        job = loop.run_in_executor(self._executor, self.engine.write, batch)
        job.add_done_callback(
            lambda done: self._committed(done, waiter, len(nodes), started, len(rows))
        )

    def _committed(
        self,
        job: asyncio.Future[None],
        waiter: asyncio.Future[None] | None,
        nodes: int,
        started: float,
        rows: int,
    ) -> None:
        self._busy = False
        exc = job.exception() if not job.cancelled() else StorageError("commit cancelled")
        if exc is None:
            self._nodes_written += nodes
            self.metrics.storage_commits.inc()
            self.metrics.storage_records.inc(rows)
            self.metrics.storage_commit_seconds.observe(time.perf_counter() - started)
            if waiter is not None:
                waiter.set_result(None)
        else:
            self._fail(exc, waiter)
        if self._meta or self._waiter is not None:
            self._schedule(now=True)
        elif self._rows:
            self._schedule(now=False)

    def _fail(self, exc: BaseException, waiter: asyncio.Future[None] | None) -> None:
        if self.failure is None:
            self.failure = (
                exc
                if isinstance(exc, StorageError)
                else StorageError(f"{self.engine.where}: write failed: {exc!r}")
            )
            self.log.error("storage: %s; PERSISTED writes are refused from now on", self.failure)
        self.metrics.storage_errors.inc()
        for fut in (waiter, self._waiter):
            if fut is not None and not fut.done():
                fut.set_exception(self.failure)
        self._waiter = None
        self._rows.clear()
        self._closed = True

    async def close(self, *, flush: bool) -> None:
        """Stop the writer: after a last commit of what is open (``flush``), or dropping it
        as a crash would (the commit in progress still completes: it cannot be undone)."""
        if flush and self.failure is None and not self._closed:
            with contextlib.suppress(StorageError):
                await self.durable()
        self._closed = True
        self._rows.clear()
        if self._timer is not None:
            self._timer.cancel()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(StorageError("the node stopped"))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._executor.shutdown, True)
        self.engine.close()
