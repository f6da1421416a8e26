"""What every service of one node shares: its identity, config, clock, store, metrics and tasks.

The services (:mod:`membership`, :mod:`partitions`, :mod:`replication`, :mod:`operations`,
:mod:`queries`) each own one concern and get this context instead of the whole node, so
none of them can reach into another's state.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Coroutine
from typing import Any

from topgun.core.hlc import HLC
from topgun.server.config import NodeConfig
from topgun.server.logutil import NodeLogger, node_logger
from topgun.server.metrics import NodeMetrics
from topgun.server.storage import DurableStore, GroupCommit, open_engine
from topgun.server.store import PartitionStore

SERVING = ("running", "leaving")


class NodeContext:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.node_id = config.node_id
        self.log: NodeLogger = node_logger(config.node_id)
        self.hlc = HLC(config.node_id, config.clock_ms, max_drift_ms=config.max_drift_ms)
        self.metrics = NodeMetrics(config.node_id)
        self.commit: GroupCommit | None = None
        """The storage engine's group commit; None: the node keeps its copies in memory only."""
        self.store: PartitionStore
        engine = open_engine(config)  # a data dir it cannot use stops the node here
        if engine is None:
            self.store = PartitionStore()
        else:
            self.commit = GroupCommit(engine, self.log, self.metrics)
            self.store = DurableStore(self.commit)
        self.incarnation = secrets.token_hex(8)
        self.state = "new"  # new → running → leaving → stopped
        self.tasks: set[asyncio.Task[Any]] = set()

    @property
    def serving(self) -> bool:
        return self.state in SERVING

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task the node owns: cancelled on stop, failures logged."""
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("task failed: %r", task.exception())

    async def cancel_tasks(self, timeout: float) -> None:  # noqa: ASYNC109
        current = asyncio.current_task()
        tasks = [t for t in self.tasks if t is not current]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
