"""Reading back every written key page by page (``QUERY_SUB`` ``limit`` + ``cursor``), each
key and value compared with what the benchmarks write (:mod:`topgun.bench.workload`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from topgun.bench.stats import latency_ms, rate
from topgun.bench.wire import WireClient
from topgun.bench.workload import value_for

PAGE = 1000
PROGRESS_EVERY_S = 5.0


@dataclass
class ReadResult:
    """What a read of the keys ``key_for(0)`` … ``key_for(keys - 1)`` found."""

    keys: int
    seen: bytearray
    pages: int = 0
    wrong_values: int = 0
    other_keys: int = 0
    duplicates: int = 0
    error: str | None = None
    page_seconds: list[float] = field(default_factory=list)

    def check_row(self, row: dict[str, Any]) -> None:
        key = row.get("key")
        i = int(key[4:]) if isinstance(key, str) and key[4:].isdigit() else -1
        if not (isinstance(key, str) and key.startswith("key-") and 0 <= i < self.keys):
            self.other_keys += 1
        elif self.seen[i]:
            self.duplicates += 1
        else:
            self.seen[i] = 1
            self.wrong_values += row.get("value") != value_for(i)

    @property
    def complete(self) -> bool:
        """Every key once with its value, no error (``other_keys`` are rows of keys outside
        the fill's range: the caller knows whether it wrote any)."""
        faults = self.wrong_values + self.duplicates
        return self.error is None and faults == 0 and sum(self.seen) == self.keys

    def figures(self, seconds: float) -> dict[str, Any]:
        found = sum(self.seen)
        return {
            "keys": self.keys,
            "found": found,
            "missing": self.keys - found,
            "wrong_values": self.wrong_values,
            "other_keys": self.other_keys,
            "duplicates": self.duplicates,
            "complete": self.complete,
            "pages": self.pages,
            "error": self.error,
            "seconds": round(seconds, 2),
            "rows_per_s": rate(found, seconds),
            "page_latency": latency_ms(self.page_seconds) if self.page_seconds else None,
        }


async def paged_read(
    url: str, token: str, keys: int, step_s: float, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Every row of the bench map through ``QUERY_SUB`` pages of :data:`PAGE` rows following
    ``nextCursor``; each page waited for at most ``step_s``. An error answer or a missing
    cursor ends the read (``error`` says which page)."""
    result = ReadResult(keys, bytearray(keys))
    client = await WireClient.open(url, token, step_s)
    started = noted = time.monotonic()
    try:
        query: dict[str, Any] = {"limit": PAGE}
        while True:
            t0 = time.monotonic()
            try:
                page = await client.query_page(query)
            except TimeoutError:
                result.error = f"page {result.pages + 1} not answered within {step_s:.0f} s"
                break
            result.page_seconds.append(time.monotonic() - t0)
            result.pages += 1
            if "error" in page:
                result.error = f"page {result.pages}: {page['error']}"
                break
            for row in page.get("results", ()):
                result.check_row(row)
            if not page.get("hasMore"):
                break
            cursor = page.get("nextCursor")
            if not cursor:
                result.error = f"page {result.pages} says hasMore but has no nextCursor"
                break
            query = {"limit": PAGE, "cursor": cursor}
            if time.monotonic() - noted >= PROGRESS_EVERY_S:
                noted = time.monotonic()
                progress(f"read: {sum(result.seen):,}/{keys:,} keys, {result.pages} pages")
    finally:
        await client.close()
    return result.figures(time.monotonic() - started)
