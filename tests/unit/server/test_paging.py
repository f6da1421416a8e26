"""Paging rules: cursors are positions in one total order, pages are bounded."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from topgun.core.hlc import Timestamp
from topgun.core.messages import Query
from topgun.core.records import LWWRecord
from topgun.server import paging

NOW = 1_000_000


def rec(value: Any) -> LWWRecord:
    return LWWRecord(value, Timestamp(NOW - 10, 0, "c"))


field_values = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 5), st.floats(-5, 5, allow_nan=False),
    st.sampled_from(["a", "b", "B", ""]),
)  # fmt: skip
rows_st = st.dictionaries(
    st.text(min_size=1, max_size=4),
    st.one_of(st.dictionaries(st.sampled_from(["x", "y"]), field_values, max_size=2), st.just(7)),
    max_size=40,
)
directions = st.sampled_from(["asc", "desc"])
sorts = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(["x", "y", "_key"]), directions, min_size=1, max_size=2),
)


def read_all(parts: list[list[tuple[str, LWWRecord]]], query: Query) -> tuple[list[str], int]:
    keys: list[str] = []
    pages = 0
    cursor = None
    while True:
        q = Query(query.where, query.predicate, query.sort, query.limit, cursor)
        position = paging.decode_cursor(q, NOW)
        assert position.usable, position
        # each owner returns its own first limit+1 rows after the cursor, as QEXEC does
        owner_parts = []
        for part in parts:
            top = paging.TopRows(q, position.after)
            records = dict(part)
            for k in top.select(list(records)):  # as QueryService.local_part walks the store
                top.offer(k, records[k])
            owner_parts.append(top.rows())
        page = paging.finish_page(owner_parts, q, position, NOW)
        pages += 1
        assert len(page.rows) <= paging.page_size(q)
        keys.extend(k for k, _ in page.rows)
        if not page.has_more:
            assert page.next_cursor is None
            return keys, pages
        assert page.next_cursor is not None
        cursor = page.next_cursor


@settings(derandomize=True, max_examples=150, deadline=None)
@given(rows=rows_st, sort=sorts, limit=st.integers(1, 7), owners=st.integers(1, 3))
def test_paging_through_every_owner_yields_every_row_once_in_order(
    rows: dict[str, Any], sort: dict[str, str] | None, limit: int, owners: int
) -> None:
    query = Query(sort=sort, limit=limit)
    items = [(k, rec(v)) for k, v in rows.items()]
    parts = [items[i::owners] for i in range(owners)]
    keys, pages = read_all(parts, query)
    expected = sorted(rows, key=lambda k: paging.order_key(k, rows[k], query))
    assert keys == expected
    assert pages == max(1, -(-len(rows) // limit))


def test_no_limit_means_bounded_pages() -> None:
    rows = [(f"k{i:05d}", rec(i)) for i in range(paging.MAX_PAGE_SIZE * 2 + 1)]
    keys, pages = read_all([rows], Query())
    assert keys == [k for k, _ in rows] and pages == 3
    assert paging.page_size(Query(limit=10**9)) == paging.MAX_PAGE_SIZE


def test_cursor_judgement() -> None:
    q = Query(sort={"x": "asc"}, limit=2)
    cursor = paging.encode_cursor("k", {"x": 1}, q, NOW)
    assert paging.decode_cursor(Query(sort={"x": "asc"}, cursor=cursor), NOW).status == "valid"
    assert paging.decode_cursor(Query(sort={"x": "desc"}, cursor=cursor), NOW).status == "invalid"
    assert paging.decode_cursor(Query(where={"x": 1}, sort={"x": "asc"}, cursor=cursor),
                                NOW).status == "invalid"  # fmt: skip
    later = NOW + paging.CURSOR_TTL_MS + 1
    assert paging.decode_cursor(Query(sort={"x": "asc"}, cursor=cursor), later).status == "expired"
    for junk in ["", "!!!", "e30", "bm90IGpzb24"]:
        assert paging.decode_cursor(Query(cursor=junk), NOW).status == "invalid"
    assert paging.decode_cursor(Query(), NOW).status == "none"


def test_tombstones_and_expired_records_are_not_rows() -> None:
    parts = [[("a", rec(None)), ("b", LWWRecord(1, Timestamp(NOW - 100, 0, "c"), 10)),
              ("c", rec(3))]]  # fmt: skip
    page = paging.finish_page(parts, Query(), paging.Position(None, "none"), NOW)
    assert page.rows == [("c", 3)]


def test_a_walk_by_key_decodes_only_rows_that_could_be_on_the_page() -> None:
    """Without ``sort`` the key alone says a row is before the cursor or past the rows held,
    so a page of a big map does not decode the whole map (issue 11: a million keys read page
    by page decoded every record for every page)."""
    keys = [f"k{i:05d}" for i in range(10_000)]
    random.Random(1).shuffle(keys)
    query = Query(limit=10)
    cursor = paging.encode_cursor("k04999", None, query, NOW)
    q = Query(limit=10, cursor=cursor)
    top = paging.TopRows(q, paging.decode_cursor(q, NOW).after)
    wanted = []
    for start in range(0, len(keys), 100):  # in chunks, as a walk of the store goes
        for k in top.select(keys[start : start + 100]):
            wanted.append(k)
            top.offer(k, rec(k))
    assert [k for k, _ in top.rows()] == [f"k{i:05d}" for i in range(5000, 5011)]
    assert all(k > "k04999" for k in wanted) and len(wanted) < 1000  # of 5000 after the cursor
    assert paging.TopRows(Query(sort={"x": "asc"}), None).select(keys) is keys
