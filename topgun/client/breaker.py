"""A per-node circuit breaker: a pure state machine with an injected clock (reference §5.2).

closed --(N consecutive failures)--> open --(reset timeout elapsed, on the next
``allow()``)--> half-open --(success)--> closed; a failure while half-open opens it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

MonotonicClock = Callable[[], float]


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """One node's breaker. ``clock`` returns seconds (monotonic)."""

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout_s: float = 30.0,
        clock: MonotonicClock = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._state = CircuitState.CLOSED
        self.failures = 0
        self.last_failure: float | None = None

    @property
    def state(self) -> CircuitState:
        """The state without side effects (an elapsed open circuit still reads ``open``)."""
        return self._state

    def allow(self) -> bool:
        """May the node be used now? Moves open → half-open once the reset timeout passed."""
        if self._state is CircuitState.OPEN:
            assert self.last_failure is not None
            if self._clock() - self.last_failure >= self.reset_timeout_s:
                self._state = CircuitState.HALF_OPEN
                return True
            return False
        return True

    def record_success(self) -> None:
        self.failures = 0
        self._state = CircuitState.CLOSED

    def record_failure(self) -> None:
        self.failures += 1
        self.last_failure = self._clock()
        if self._state is CircuitState.HALF_OPEN or self.failures >= self.failure_threshold:
            self._state = CircuitState.OPEN

    def reset(self) -> None:
        self.failures = 0
        self.last_failure = None
        self._state = CircuitState.CLOSED


class CircuitBreakers:
    """The breakers of every node, created on first use with shared settings."""

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout_s: float = 30.0,
        clock: MonotonicClock = time.monotonic,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}

    def get(self, node_id: str) -> CircuitBreaker:
        breaker = self._breakers.get(node_id)
        if breaker is None:
            breaker = CircuitBreaker(self.failure_threshold, self.reset_timeout_s, self._clock)
            self._breakers[node_id] = breaker
        return breaker

    def allow(self, node_id: str) -> bool:
        return self.get(node_id).allow()

    def record_success(self, node_id: str) -> None:
        self.get(node_id).record_success()

    def record_failure(self, node_id: str) -> None:
        self.get(node_id).record_failure()

    def rename(self, old: str, new: str) -> None:
        """Carry a seed's breaker over to the node id it turned out to be."""
        breaker = self._breakers.pop(old, None)
        if breaker is not None and new not in self._breakers:
            self._breakers[new] = breaker

    def states(self) -> dict[str, str]:
        return {node: str(b.state) for node, b in self._breakers.items()}

    def reset_all(self) -> None:
        for breaker in self._breakers.values():
            breaker.reset()
