"""A :class:`~topgun.client.TopGunClient` driven from synchronous test code.

The client lives on the harness's loop thread, like the embedded nodes; every call here
hands work to that loop and waits for it with a stated limit. Reads of client state go
through the loop too, because the client is not thread-safe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from topgun.client import ClusterConfig, ClusterEvent, EventKind, MemoryStorage, TopGunClient
from topgun.client.storage import Storage
from topgun.core.table import PartitionTable
from topgun.harness.inspection import live_nodes_of
from topgun.harness.loop import LoopThread
from topgun.harness.waiting import WaitTimeout, eventually

CALL_TIMEOUT_S = 10.0
READ_PAGE_SIZE = 1000


@dataclass(frozen=True)
class Departure:
    """How the client noticed a node going, and where the write made then was sent."""

    event: ClusterEvent
    sent_to: list[str]


class ClientDriver:
    def __init__(self, loop: LoopThread, client: TopGunClient) -> None:
        self.loop = loop
        self.client = client
        self.state_history: list[str] = []

    @classmethod
    def for_cluster(
        cls,
        loop: LoopThread,
        seeds: list[str],
        token: str,
        storage: Storage | None = None,
        **options: Any,
    ) -> ClientDriver:
        """``storage``: the local store of an earlier client (the same device again)."""
        client = TopGunClient(
            cluster=ClusterConfig(seeds=seeds, **options), storage=storage or MemoryStorage()
        )
        client.set_auth_token(token)
        return cls(loop, client)

    @classmethod
    def for_server(cls, loop: LoopThread, url: str, token: str) -> ClientDriver:
        client = TopGunClient(server_url=url, storage=MemoryStorage())
        client.set_auth_token(token)
        return cls(loop, client)

    def start(self, within: float) -> None:
        self.loop.run(self.client.start(timeout=within), within + CALL_TIMEOUT_S)

    def wait_signed_in(self, count: int, within: float) -> dict[str, str]:
        """Wait until ``count`` connections are authenticated and known by node id."""

        def signed_in() -> dict[str, str]:
            states = self.states()
            done = [c for c, s in states.items() if s == "AUTHENTICATED" and c in self.node_ids()]
            assert len(done) == count, f"connection states {states}"
            return states

        return eventually(signed_in, within, f"{count} connections signed in")

    def node_ids(self) -> list[str]:
        table = self.table()
        return [] if table is None else table.node_ids()

    def write(self, map_name: str, key: str, value: Any) -> None:
        self.loop.call(lambda: self.client.get_map(map_name).set(key, value))

    def remove(self, map_name: str, key: str) -> None:
        self.loop.call(lambda: self.client.get_map(map_name).remove(key))

    def write_as_node_departs(
        self,
        node_id: str,
        map_name: str,
        key: str,
        value: Any,
        *,
        depart: Callable[[], None],
        within: float,
    ) -> Departure:
        """Make ``node_id`` leave with ``depart()`` and write the moment the client notices.

        The write is made and routed inside the client's own notification (the node's
        shutdown notice, or its connection dropping), before the client handles anything
        else, so it is routed with what the client knew at that moment, not with the
        partition map the cluster publishes a moment later.
        """
        noticed: list[Departure] = []
        done = threading.Event()

        def on_event(event: ClusterEvent) -> None:
            if done.is_set() or not self._departed(event, node_id):
                return
            before = self.client.get_in_flight()
            self.client.get_map(map_name).set(key, value)
            self.client.sync_now()
            after = self.client.get_in_flight()
            sent_to = sorted(n for n, ops in after.items() if set(ops) - set(before.get(n, ())))
            noticed.append(Departure(event, sent_to))
            done.set()

        self.loop.call(self.client.add_listener, on_event)
        try:
            depart()
            if not done.wait(within):
                raise WaitTimeout(f"the client did not notice {node_id} leaving within {within} s")
        finally:
            self.loop.call(self.client.remove_listener, on_event)
        return noticed[0]

    def _departed(self, event: ClusterEvent, node_id: str) -> bool:
        """Does ``event`` tell the client that ``node_id`` is going or gone?"""
        if event.kind in (EventKind.NODE_LEAVING, EventKind.NODE_LOST):
            return event.node_id == node_id
        if event.kind is EventKind.PARTITION_MAP:
            table = self.client.get_partition_table()
            # gone from the map, or kept in it marked FAILED (as TopGun Rust keeps dead nodes)
            return table is not None and node_id not in live_nodes_of(table)
        return False

    def read_local(self, map_name: str, key: str) -> Any:
        return self.loop.call(lambda: self.client.get_map(map_name).get(key))

    def local_entries(self, map_name: str) -> dict[str, Any]:
        return dict(self.loop.call(lambda: self.client.get_map(map_name).entries()))

    @property
    def storage(self) -> Storage:
        return self.client.storage

    def subscribe(self, map_name: str, where: dict[str, Any] | None, within: float) -> Any:
        """A live query; waits for its first answer. Returns the subscription."""
        sub = self.loop.call(lambda: self.client.subscribe(map_name, where))
        self.loop.run(sub.ready(within), within + CALL_TIMEOUT_S)
        return sub

    def subscription_results(self, sub: Any) -> dict[str, Any]:
        return dict(self.loop.call(lambda: dict(sub.results)))

    def query_all(self, map_name: str, page_size: int, within: float) -> dict[str, Any]:
        return dict(
            self.loop.run(
                self.client.query(map_name, page_size=page_size, timeout=within),
                within + CALL_TIMEOUT_S,
            )
        )

    def flush(self, within: float) -> None:
        self.loop.run(self.client.flush(timeout=within), within + CALL_TIMEOUT_S)

    def pending(self) -> int:
        return int(self.loop.call(self.client.pending_count))

    def read_from_cluster(self, map_name: str, key: str, within: float) -> Any:
        """The value the cluster answers for ``key``: the map is read page by page and the
        key looked up, since a filter on the key is an extension not every TopGun server
        knows (the maps the suite reads this way are small)."""
        return self.query_all(map_name, READ_PAGE_SIZE, within).get(key)

    def metrics(self) -> dict[str, int] | None:
        return self.loop.call(self.client.get_routing_metrics)  # type: ignore[no-any-return]

    def cluster_stats(self) -> dict[str, Any] | None:
        return self.loop.call(self.client.get_cluster_stats)  # type: ignore[no-any-return]

    def table(self) -> PartitionTable | None:
        return self.loop.call(self.client.get_partition_table)  # type: ignore[no-any-return]

    def routing_active(self) -> bool:
        return bool(self.loop.call(self.client.is_routing_active))

    def states(self) -> dict[str, str]:
        return dict(self.loop.call(self.client.get_connection_states))

    def state_histories(self) -> dict[str, list[str]]:
        """Each connection's states so far, starting from DISCONNECTED."""
        return dict(self.loop.call(self.client.get_connection_history))

    def close(self) -> None:
        self.loop.run(self.client.close(), CALL_TIMEOUT_S)
