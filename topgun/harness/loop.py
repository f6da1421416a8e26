"""An asyncio event loop on a thread of its own.

behave steps are synchronous, and behave's own async steps run on a loop that only turns
while a step runs, so a cluster placed there would stop heartbeating between steps. The
harness owns this loop instead: nodes and clients live on it, and steps hand it coroutines.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str = "topgun-harness") -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` on the loop and wait at most ``timeout`` seconds for its result."""
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            if future.done():  # the coroutine's own TimeoutError: let it speak for itself
                raise
            future.cancel()
            raise TimeoutError(f"gave up after {timeout:.1f} s") from None

    def call(self, fn: Any, *args: Any, timeout: float = 5.0) -> Any:
        """Call a plain function on the loop thread (for objects that are not thread-safe)."""

        async def invoke() -> Any:
            return fn(*args)

        return self.run(invoke(), timeout)

    def close(self, timeout: float = 5.0) -> None:
        if self._loop.is_closed():
            return

        async def drain() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        try:
            self.run(drain(), timeout)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            if not self._thread.is_alive():
                self._loop.close()
