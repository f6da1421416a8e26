"""The narrow view of a node that the client endpoint and the HTTP routes work through."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from topgun.core.concern import Concern
from topgun.core.hlc import HLC
from topgun.core.messages import ClientOp, Query
from topgun.core.table import PartitionTable
from topgun.server.auth import Principal
from topgun.server.config import NodeConfig
from topgun.server.logutil import NodeLogger
from topgun.server.metrics import NodeMetrics

if TYPE_CHECKING:
    from topgun.server.operations import Outcome
    from topgun.server.paging import Page
    from topgun.server.queries import Origin
    from topgun.server.sync import Level


class NodeFacade(Protocol):
    config: NodeConfig
    log: NodeLogger
    metrics: NodeMetrics
    hlc: HLC

    @property
    def state(self) -> str: ...
    @property
    def table(self) -> PartitionTable | None: ...
    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...
    def verify_client_token(self, token: str) -> Principal: ...
    async def execute(
        self, ops: list[ClientOp], *, origin: Origin | None = None, concern: Concern = ...
    ) -> list[Outcome]: ...
    async def run_page(self, map_name: str, query: Query) -> Page: ...
    async def sync_level(self, map_name: str, path: str) -> Level: ...
    def sync_needs_reset(self, last_sync_ms: float | None) -> bool: ...
    def add_interest(self, map_name: str) -> None: ...
    def remove_interest(self, map_name: str) -> None: ...
    def health(self) -> dict[str, Any]: ...
    def inspect(self, map_name: str, key: str) -> dict[str, Any]: ...
