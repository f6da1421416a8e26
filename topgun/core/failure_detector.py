"""Phi accrual failure detection (Hayashibara et al.; reference §4.3, as Cassandra and Akka).

Instead of a fixed silence window, the detector learns the heartbeat inter-arrival times of
one peer and turns the current silence into a suspicion level φ = -log10(P(silence this long
| the peer is alive)). A peer whose heartbeats are irregular (a loaded node) is given more
slack than a regular one. Pure: arrivals and "now" are passed in (monotonic seconds).

Two bounds make it safe for fencing: a peer is never declared dead before ``min_silence_s``
(longer than the owner lease, so an owner has stopped acknowledging before its backups may be
promoted) and always after ``max_silence_s``.
"""

from __future__ import annotations

import math
from collections import deque


class PhiAccrualDetector:
    def __init__(
        self,
        expected_interval_s: float,
        *,
        threshold: float = 8.0,
        min_silence_s: float = 0.0,
        max_silence_s: float = math.inf,
        window: int = 100,
        min_std_s: float | None = None,
    ) -> None:
        if expected_interval_s <= 0 or window < 2 or min_silence_s > max_silence_s:
            raise ValueError("need a positive interval, window >= 2, min <= max silence")
        self.expected_interval_s = expected_interval_s
        self.threshold = threshold
        self.min_silence_s = min_silence_s
        self.max_silence_s = max_silence_s
        self.min_std_s = min_std_s if min_std_s is not None else expected_interval_s / 4
        self._intervals: deque[float] = deque(maxlen=window)
        self.last: float | None = None

    def heartbeat(self, now: float) -> None:
        if self.last is not None and now > self.last:
            self._intervals.append(now - self.last)
        self.last = now if self.last is None else max(self.last, now)

    def restart(self, now: float) -> None:
        """Forget the current silence (we, not the peer, were away: a stall of our own)."""
        self.last = now

    def phi(self, now: float) -> float:
        if self.last is None:
            return 0.0
        silence = max(0.0, now - self.last)
        if self._intervals:
            mean = sum(self._intervals) / len(self._intervals)
            var = sum((x - mean) ** 2 for x in self._intervals) / len(self._intervals)
        else:
            mean, var = self.expected_interval_s, 0.0
        std = max(math.sqrt(var), self.min_std_s)
        # P(X > silence) for X ~ N(mean, std), via the logistic approximation Akka uses
        y = (silence - mean) / std
        e = math.exp(-y * (1.5976 + 0.070566 * y * y))
        p_later = e / (1.0 + e) if silence > mean else 1.0 - 1.0 / (1.0 + e)
        return -math.log10(max(p_later, 1e-300))

    def is_dead(self, now: float) -> bool:
        if self.last is None:
            return False
        silence = now - self.last
        if silence >= self.max_silence_s:
            return True
        return silence >= self.min_silence_s and self.phi(now) >= self.threshold
