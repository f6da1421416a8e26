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
from topgun.server.store import PartitionStore

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
            held = list(records) if q.sort else sorted(records)  # as the store hands them out
            half = len(held) // 2  # in two partitions
            for _ in paging.offer_rows(top, [held[:half], held[half:]], records.get, 3):
                pass
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


def test_a_walk_by_key_decodes_only_the_rows_of_the_page() -> None:
    """Without ``sort`` the partitions' sorted keys are merged from the cursor on and the walk
    ends with the page, so a page of a big map costs about its size (issue 11: a million keys
    read page by page decoded every record, then compared every key, for every page)."""
    keys = [f"k{i:05d}" for i in range(10_000)]
    random.Random(1).shuffle(keys)
    parts = [sorted(keys[n::7]) for n in range(7)]
    query = Query(limit=10)
    cursor = paging.encode_cursor("k04999", None, query, NOW)
    q = Query(limit=10, cursor=cursor)
    top = paging.TopRows(q, paging.decode_cursor(q, NOW).after)
    fetched: list[str] = []

    def row(k: str) -> LWWRecord:
        fetched.append(k)
        return rec(k)

    turns = sum(1 for _ in paging.offer_rows(top, parts, row, 4))
    assert [k for k, _ in top.rows()] == [f"k{i:05d}" for i in range(5000, 5011)]
    assert fetched == [f"k{i:05d}" for i in range(5000, 5011)] and turns == 2
    # ordered by values, every key is a candidate, walked in chunks
    top = paging.TopRows(Query(sort={"x": "asc"}, limit=10), None)
    fetched.clear()
    assert sum(1 for _ in paging.offer_rows(top, parts, row, 1000)) == 10
    assert sorted(fetched) == sorted(keys)


def test_a_page_of_keys_merged_later_sees_them() -> None:
    store = PartitionStore()
    for k in ["b", "d"]:
        store.merge("m", k, rec(k), 0)
    first = store.sorted_keys("m", 0)
    for k in ["c", "a"]:
        store.merge("m", k, rec(k), 0)
    store.merge("m", "b", LWWRecord("newer", Timestamp(NOW + 1, 0, "c")), 0)  # not a new key
    assert first == ["b", "d"]  # a walk holding it is not disturbed
    assert store.sorted_keys("m", 0) == ["a", "b", "c", "d"]
    assert store.sorted_keys("other", 0) == []
