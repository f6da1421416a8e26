"""One-shot reads: ``QUERY_SUB`` → one ``QUERY_RESP`` page → ``QUERY_UNSUB``, and the page
loop that follows ``nextCursor`` until ``hasMore`` is false (reference §2.6).

The server answers at most its page size per page whatever the ``limit``, so a complete read
is always a sequence of bounded pages. A cursor the server calls ``expired`` or ``invalid``
ends the read with :class:`QueryError` (a silent restart would repeat or skip rows).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from topgun.client.errors import ClientClosedError, NotConnectedError, QueryError, QueryTimeout
from topgun.core.messages import ErrorMessage, Query, QueryResp, QuerySub, QueryUnsub

if TYPE_CHECKING:
    from topgun.client.connection import NodeConnection

PageFn = Callable[[Query], Awaitable[QueryResp]]


class OneShotQueries:
    """The queries in flight, each waiting for its one answer on one connection."""

    def __init__(self) -> None:
        self._waiting: dict[str, tuple[asyncio.Future[QueryResp], NodeConnection, str]] = {}

    async def page(
        self,
        conn: NodeConnection,
        map_name: str,
        query: Query,
        timeout: float,  # noqa: ASYNC109
    ) -> QueryResp:
        query_id = str(uuid.uuid4())
        future: asyncio.Future[QueryResp] = asyncio.get_running_loop().create_future()
        self._waiting[query_id] = (future, conn, map_name)
        try:
            conn.send(QuerySub(query_id, map_name, query))
            try:
                resp = await asyncio.wait_for(future, timeout)
            except TimeoutError:
                raise QueryTimeout(
                    f"no answer to the query on {map_name!r} from {conn.id} within {timeout:g}s"
                ) from None
        finally:
            self._waiting.pop(query_id, None)
            conn.send(QueryUnsub(query_id))
        if resp.error:
            raise QueryError(f"query on {map_name!r} failed on the server: {resp.error}")
        return resp

    def on_resp(self, resp: QueryResp) -> bool:
        """Deliver an answer; False when no one-shot query waits for it."""
        entry = self._waiting.get(resp.query_id)
        if entry is None:
            return False
        if not entry[0].done():
            entry[0].set_result(resp)
        return True

    def on_lost(self, conn: NodeConnection, reason: str) -> None:
        self._fail(conn, lambda _: NotConnectedError(f"{reason} while querying"))

    def on_error(self, conn: NodeConnection, message: ErrorMessage) -> None:
        """An ERROR naming a queried map refuses that query (e.g. 403 Access Denied)."""
        self._fail(
            conn,
            lambda name: QueryError(f"query on {name!r} refused: {message.code} {message.message}"),
            lambda name: name in message.message,
        )

    def close(self) -> None:
        for future, _, _ in self._waiting.values():
            if not future.done():
                future.set_exception(ClientClosedError("the client was closed"))
        self._waiting.clear()

    def _fail(
        self,
        conn: NodeConnection,
        error: Callable[[str], Exception],
        applies: Callable[[str], bool] = lambda _: True,
    ) -> None:
        for query_id, (future, qconn, name) in list(self._waiting.items()):
            if qconn is conn and applies(name) and not future.done():
                future.set_exception(error(name))
                self._waiting.pop(query_id, None)


async def iter_pages(
    page: PageFn,
    map_name: str,
    query: Query,
    page_size: int | None,
) -> AsyncIterator[tuple[str, Any]]:
    """The rows of ``query`` (up to its ``limit``), one page request at a time."""
    left = query.limit
    cursor: str | None = None
    while left is None or left > 0:
        size = page_size if left is None else min(left, page_size or left)
        resp = await page(Query(query.where, query.predicate, query.sort, size, cursor))
        if resp.cursor_status in ("expired", "invalid"):
            raise QueryError(
                f"query on {map_name!r}: the server says the cursor is {resp.cursor_status}"
            )
        for row in resp.results:
            yield row
        if left is not None:
            left -= len(resp.results)
        if not resp.has_more or resp.next_cursor is None or not resp.results:
            return
        cursor = resp.next_cursor


def require_connection(usable: list[str], closed: bool, states: Callable[[], Any]) -> str:
    if closed:
        raise ClientClosedError("this client was closed")
    if not usable:
        raise NotConnectedError(
            "no authenticated connection to query: await client.start() and check the "
            f"servers (connections: {states()})"
        )
    return usable[0]
