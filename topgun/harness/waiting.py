"""Bounded waiting: every wait in tests names its limit and says what it waited for."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

POLL_INTERVAL_S = 0.02


class WaitTimeout(AssertionError):
    """A condition did not hold within its limit; the message says which and why."""


def eventually(check: Callable[[], T], within: float, what: str = "condition") -> T:
    """Call ``check`` until it returns without raising ``AssertionError``; return its value.

    ``check`` expresses the condition with an assertion, so the last failure message
    becomes the reason given when the limit runs out.
    """
    deadline = time.monotonic() + within
    while True:
        try:
            return check()
        except AssertionError as exc:
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"{what} not reached within {within:.2f} s: {exc}") from exc
        time.sleep(POLL_INTERVAL_S)


async def eventually_async(
    check: Callable[[], Awaitable[T]], within: float, what: str = "condition"
) -> T:
    """The coroutine form of :func:`eventually`, for code already on an event loop."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await check()
        except AssertionError as exc:
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"{what} not reached within {within:.2f} s: {exc}") from exc
        await asyncio.sleep(POLL_INTERVAL_S)


async def wait_until(
    predicate: Callable[[], Any] | Callable[[], Awaitable[Any]],
    within: float = 5.0,
    what: str = "condition",
) -> Any:
    """Await a truthy ``predicate()`` (plain or coroutine function) and return its value.

    The predicate form of :func:`eventually_async`, for conditions that are simpler to state
    as a value than as an assertion.
    """
    last: list[Any] = [None]

    async def check() -> Any:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        last[0] = result
        assert result, f"last seen: {result!r}"
        return result

    return await eventually_async(check, within, what)
