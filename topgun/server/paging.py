"""Paged query answers (reference §2.6: ``limit``, ``cursor``, ``hasMore``, ``nextCursor``,
``cursorStatus``).

Rows are in one total order: the query's ``sort`` fields, then the key. A cursor is the
*position* of the last row of a page in that order (not an offset, not a node's state), so
it survives writes and partition table changes: the next page starts strictly after it,
whoever owns the keys now. A cursor names the query it belongs to (a hash of ``where``,
``predicate`` and ``sort``) and its issue time; another query's cursor is ``invalid``, one
older than :data:`CURSOR_TTL_MS` is ``expired``.

A page holds at most :data:`MAX_PAGE_SIZE` rows, whatever ``limit`` says (or when it says
nothing): an answer is never one unbounded frame. :class:`TopRows` keeps only the best
``limit + 1`` rows seen so far, so collecting a page costs memory for the page, not the map.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import json
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any

from topgun.core.messages import Query
from topgun.core.records import LWWRecord
from topgun.server.query import _field, _sort_key

MAX_PAGE_SIZE = 1000
CURSOR_TTL_MS = 10 * 60 * 1000


class _Desc:
    """Reverses the order of one sort component (for ``desc`` fields)."""

    __slots__ = ("v",)

    def __init__(self, v: Any) -> None:
        self.v = v

    def __lt__(self, other: _Desc) -> bool:
        return bool(other.v < self.v)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Desc) and bool(self.v == other.v)

    def __hash__(self) -> int:
        return hash(self.v)


def sort_values(key: str, value: Any, query: Query) -> list[list[Any]]:
    """The raw (rank, value) sort components of one row: what a cursor stores."""
    return [list(_sort_key(_field(key, value, str(name)))) for name in (query.sort or {})]


def _order(values: list[list[Any]], key: str, query: Query) -> tuple[Any, ...]:
    parts: list[Any] = []
    for (rank, v), direction in zip(values, (query.sort or {}).values(), strict=True):
        comp = (rank, v)
        parts.append(_Desc(comp) if direction == "desc" else comp)
    parts.append(key)
    return tuple(parts)


def order_key(key: str, value: Any, query: Query) -> tuple[Any, ...]:
    return _order(sort_values(key, value, query), key, query)


def page_size(query: Query) -> int:
    return MAX_PAGE_SIZE if query.limit is None else min(query.limit, MAX_PAGE_SIZE)


def query_hash(query: Query) -> str:
    shape = json.dumps([query.where, query.predicate, query.sort], sort_keys=True, default=repr)
    return hashlib.sha256(shape.encode()).hexdigest()[:16]


def encode_cursor(key: str, value: Any, query: Query, now_ms: int) -> str:
    body = {"s": sort_values(key, value, query), "k": key, "q": query_hash(query), "t": now_ms}
    raw = json.dumps(body, separators=(",", ":"), default=repr).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class Position:
    """Where a page starts: after ``after`` (None: from the first row), and what the client's
    cursor was judged to be."""

    after: tuple[Any, ...] | None
    status: str  # 'none' | 'valid' | 'expired' | 'invalid'

    @property
    def usable(self) -> bool:
        return self.status in ("none", "valid")


def decode_cursor(query: Query, now_ms: int) -> Position:
    """Judge ``query.cursor``: where the page starts, or why it cannot."""
    if query.cursor is None:
        return Position(None, "none")
    try:
        padded = query.cursor + "=" * (-len(query.cursor) % 4)
        body = json.loads(base64.urlsafe_b64decode(padded.encode()))
        values, key, qh, issued = body["s"], body["k"], body["q"], body["t"]
        well_formed = (
            isinstance(values, list) and isinstance(key, str) and isinstance(issued, int)
            and len(values) == len(query.sort or {})
            and all(isinstance(v, list) and len(v) == 2 and isinstance(v[0], int) for v in values)
        )  # fmt: skip
        if not well_formed:
            return Position(None, "invalid")
        if qh != query_hash(query):
            return Position(None, "invalid")
        if now_ms - issued > CURSOR_TTL_MS:
            return Position(None, "expired")
        return Position(_order(values, key, query), "valid")
    except (ValueError, KeyError, TypeError):
        return Position(None, "invalid")


class TopRows:
    """The first ``limit + 1`` rows after a position, from rows offered in any order.

    Holding one row more than the page tells whether there are more. Pruning happens when
    twice that many are held, so each offer costs amortised O(log limit).
    """

    def __init__(self, query: Query, after: tuple[Any, ...] | None) -> None:
        self.query = query
        self.after = after
        self.keep = page_size(query) + 1
        self._rows: list[tuple[tuple[Any, ...], str, LWWRecord]] = []
        self._bound: tuple[Any, ...] | None = None
        """The order of the last row kept once ``keep`` rows are held: no later row can win."""
        self.by_key = not query.sort  # the order is the key's alone
        self.after_key: str | None = after[0] if after is not None and self.by_key else None
        """Without ``sort``: the cursor's key, which every row on the page comes after."""

    def offer(self, key: str, rec: LWWRecord) -> None:
        k = order_key(key, rec.value, self.query)
        if self.after is not None and not self.after < k:
            return
        if self._bound is not None and not k < self._bound:
            return
        self._rows.append((k, key, rec))
        if len(self._rows) >= 2 * self.keep:
            self._prune()

    def _prune(self) -> None:
        self._rows.sort(key=lambda row: row[0])
        del self._rows[self.keep :]
        if len(self._rows) == self.keep:
            self._bound = self._rows[-1][0]

    def rows(self) -> list[tuple[str, LWWRecord]]:
        """Up to ``limit + 1`` rows in order."""
        self._prune()
        return [(key, rec) for _, key, rec in self._rows]


def offer_rows(
    top: TopRows,
    key_lists: Iterable[list[str]],
    row: Callable[[str], LWWRecord | None],
    chunk: int,
) -> Iterator[None]:
    """Offer ``top`` the rows of an owner's keys (``row``: a key's record if it is a live
    match, else None), yielding after every ``chunk`` keys walked so that the caller can give
    the event loop back. Without ``sort`` each list must be sorted: they are merged from the
    cursor on and the walk ends once ``top`` has its ``limit + 1`` rows, so a page costs
    about its size, not the map's. With ``sort`` every key is a candidate."""
    walked = 0
    if top.by_key:
        after = top.after_key
        keys: Iterable[str] = heapq.merge(
            *(islice(k, 0 if after is None else bisect_right(k, after), None) for k in key_lists)
        )
    else:
        keys = chain.from_iterable(key_lists)
    found = 0
    for key in keys:
        rec = row(key)
        if rec is not None:
            top.offer(key, rec)
            found += 1
            if top.by_key and found >= top.keep:
                return
        walked += 1
        if walked >= chunk:
            walked = 0
            yield


@dataclass(frozen=True, slots=True)
class Page:
    rows: list[tuple[str, Any]]
    has_more: bool
    next_cursor: str | None
    cursor_status: str


def finish_page(
    parts: Iterable[list[tuple[str, LWWRecord]]], query: Query, position: Position, now_ms: int
) -> Page:
    """Merge the owners' parts (newest record per key) and cut the page."""
    newest: dict[str, LWWRecord] = {}
    for part in parts:
        for key, rec in part:
            if rec.newer_than(newest.get(key)):
                newest[key] = rec
    top = TopRows(query, position.after)
    for key, rec in newest.items():
        if rec.is_live(now_ms):
            top.offer(key, rec)
    rows = top.rows()
    size = page_size(query)
    has_more = len(rows) > size
    rows = rows[:size]
    cursor = None
    if has_more and rows:
        key, rec = rows[-1]
        cursor = encode_cursor(key, rec.value, query, now_ms)
    return Page([(k, r.value) for k, r in rows], has_more, cursor, position.status)
