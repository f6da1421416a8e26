"""The owner's lease: acknowledge writes only while a quorum confirmed us recently.

A peer confirms by answering a heartbeat; the confirmation is dated by *our* clock at the
moment we sent that heartbeat (never by when the answer came back), so a node that stalled
holds an expired lease the instant it wakes, whatever old answers are queued for it. The
duration is shorter than the silence after which the others may declare us dead and promote
our backups, so by the time they can act, we have already stopped acknowledging.
"""

from __future__ import annotations

import math
from collections.abc import Collection


class Lease:
    def __init__(self, duration_s: float) -> None:
        if duration_s <= 0:
            raise ValueError("lease duration must be positive")
        self.duration_s = duration_s
        self._confirmed: dict[str, float] = {}

    def confirm(self, peer: str, sent_at: float) -> None:
        """``peer`` answered the heartbeat we sent at ``sent_at`` (our monotonic clock)."""
        if sent_at > self._confirmed.get(peer, -math.inf):
            self._confirmed[peer] = sent_at

    def forget(self, peer: str) -> None:
        self._confirmed.pop(peer, None)

    def valid_until(
        self, me: str, voters: Collection[str], alive: Collection[str], need: int
    ) -> float:
        """When the lease ends: ``need`` voters (self included) must have confirmed; only peers
        still alive count. ``inf`` when we alone are a quorum, ``-inf`` without one."""
        others = need - (1 if me in voters or not voters else 0)
        if others <= 0:
            return math.inf
        live = set(alive)
        times = sorted(
            (t for p, t in self._confirmed.items() if p != me and p in voters and p in live),
            reverse=True,
        )
        if len(times) < others:
            return -math.inf
        return times[others - 1] + self.duration_s

    def holds(
        self, now: float, me: str, voters: Collection[str], alive: Collection[str], need: int
    ) -> bool:
        return now < self.valid_until(me, voters, alive, need)
