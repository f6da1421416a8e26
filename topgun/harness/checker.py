"""A Jepsen-style set checker: what was acknowledged must be there, and nothing else.

Writers record every write as *invoked*, then *ok* (acknowledged), *fail* (definitely
refused: not applied) or *info* (unknown: a timeout, a lost connection, an OUTCOME_UNKNOWN
answer). After the faults heal, the keys are read back and :func:`check` classifies:

* **lost**: an ok write that is neither the value read nor replaced by a later write of the
  same key that is (acknowledged means it stays, until something newer replaces it);
* **unexpected**: a value read that no write of that key ever carried, or that only a write
  refused for good carried (a refusal means "not applied");
* **recovered**: an info write whose value is there (unknown outcomes may land either way).

An ok write carries the write-concern level its ack vouched for. Checked with ``keep_at``
(say ``PERSISTED``, after every node was killed), only writes acknowledged at that level
or above must survive: a missing one is **lost**; a missing one acknowledged lower is
**lost below the level**, a figure for the report (each level's promise says what it may
lose), never a failure.

Pure: no I/O, no clocks; the history carries the times its recorder gave it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from topgun.core.concern import Level

SAMPLE_SIZE = 20
OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"


class Outcome(StrEnum):
    OK = "ok"
    FAIL = "fail"
    INFO = "info"


def outcome_of_refusal(reasons: Iterable[str]) -> Outcome:
    """A refusal is definite unless the server said it does not know (OUTCOME_UNKNOWN)."""
    if any(str(r).strip().upper().startswith(OUTCOME_UNKNOWN) for r in reasons):
        return Outcome.INFO
    return Outcome.FAIL


@dataclass
class Write:
    """One write of ``value`` to ``key``; ``seq`` orders a writer's writes (later = newer)."""

    writer: int
    seq: int
    key: str
    value: Any
    invoked_at: float
    outcome: Outcome | None = None
    completed_at: float | None = None
    detail: str = ""
    asked: str | None = None
    """The write-concern level the write asked for (None: the server's default)."""
    level: str | None = None
    """The level its ack vouched for (ok writes; None when the server did not say)."""

    def kept_at(self, keep_at: Level | None) -> bool:
        """Whether this ok write was promised to survive what ``keep_at`` survives."""
        if keep_at is None:
            return True
        return self.level in Level.__members__ and Level[str(self.level)] >= keep_at

    def to_json(self) -> dict[str, Any]:
        return {
            "writer": self.writer,
            "seq": self.seq,
            "key": self.key,
            "value": self.value,
            "invokedAt": round(self.invoked_at, 3),
            "outcome": str(self.outcome) if self.outcome else "invoked",
            "completedAt": None if self.completed_at is None else round(self.completed_at, 3),
            "detail": self.detail,
            "asked": self.asked,
            "level": self.level,
        }


@dataclass
class SetCheck:
    invoked: int
    ok: int
    fail: int
    info: int
    lost: list[Write] = field(default_factory=list)
    unexpected: list[tuple[str, Any]] = field(default_factory=list)
    recovered: list[Write] = field(default_factory=list)
    keep_at: Level | None = None
    """The level whose acks must survive (None: every ack)."""
    kept: int = 0
    """Ok writes acknowledged at ``keep_at`` or above (all ok writes without one)."""
    lost_below: list[Write] = field(default_factory=list)
    """Ok writes acknowledged below ``keep_at`` that are missing: figures, not failures."""
    ok_by_level: dict[str, int] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        """Nothing lost, nothing unexpected, and something was acknowledged at the level
        that must survive (at all, without one)."""
        return not self.lost and not self.unexpected and self.kept > 0

    def counts(self) -> dict[str, int]:
        counts = {
            "invoked": self.invoked,
            "ok": self.ok,
            "fail": self.fail,
            "info": self.info,
            "lost": len(self.lost),
            "unexpected": len(self.unexpected),
            "recovered": len(self.recovered),
        }
        if self.keep_at is not None:
            counts[f"ok at {self.keep_at.name}"] = self.kept
            counts[f"lost below {self.keep_at.name}"] = len(self.lost_below)
        return counts

    def below(self) -> dict[str, dict[str, int]]:
        """For each level below ``keep_at`` that acknowledged writes: how many it
        acknowledged and how many of those are missing (``unknown``: no level said)."""
        if self.keep_at is None:
            return {}
        lost = Counter(w.level or "unknown" for w in self.lost_below)
        kept = {level.name for level in Level if level >= self.keep_at}
        return {
            level: {"acknowledged": n, "lost": lost.get(level, 0)}
            for level, n in self.ok_by_level.items()
            if level not in kept
        }

    def to_json(
        self, history: list[Write], timeline: list[dict[str, Any]], sample: int = SAMPLE_SIZE
    ) -> dict[str, Any]:
        """The attachment: counts, samples of each finding, the history's edges, the faults."""
        edges = history if len(history) <= 2 * sample else history[:sample] + history[-sample:]
        return {
            **self.counts(),
            "valid": self.valid,
            "keptAt": None if self.keep_at is None else self.keep_at.name,
            "okByLevel": self.ok_by_level,
            "lostBelowLevel": self.below(),
            "lostBelowSample": [w.to_json() for w in self.lost_below[:sample]],
            "lostSample": [w.to_json() for w in self.lost[:sample]],
            "unexpectedSample": [{"key": k, "value": v} for k, v in self.unexpected[:sample]],
            "recoveredSample": [w.to_json() for w in self.recovered[:sample]],
            "historySample": [w.to_json() for w in edges],
            "timeline": timeline,
        }


def check(
    history: Iterable[Write], read: Mapping[str, Any], keep_at: Level | None = None
) -> SetCheck:
    """Classify ``history`` against ``read`` (key → value read back, None when absent);
    ``keep_at``: only acks at that level or above must survive (see the module docstring).

    Every key of ``read`` counts, also keys never written (probes for phantom records).
    Writes to one key must come from one writer, in ``seq`` order: "later" is by ``seq``.
    """
    writes = list(history)
    by_key: dict[str, list[Write]] = {}
    for w in writes:
        by_key.setdefault(w.key, []).append(w)
    result = SetCheck(
        invoked=len(writes),
        ok=sum(w.outcome is Outcome.OK for w in writes),
        fail=sum(w.outcome is Outcome.FAIL for w in writes),
        info=sum(w.outcome is not Outcome.OK and w.outcome is not Outcome.FAIL for w in writes),
        keep_at=keep_at,
    )
    oks = [w for w in writes if w.outcome is Outcome.OK]
    result.kept = sum(w.kept_at(keep_at) for w in oks)
    result.ok_by_level = dict(Counter(w.level or "unknown" for w in oks))
    for key in sorted(set(by_key) | set(read)):
        value = read.get(key)
        key_writes = sorted(by_key.get(key, ()), key=lambda w: w.seq)
        carriers = [w for w in key_writes if value is not None and w.value == value]
        present_seq = max((w.seq for w in carriers), default=None)
        if value is not None and not [w for w in carriers if w.outcome is not Outcome.FAIL]:
            result.unexpected.append((key, value))
        for w in key_writes:
            if w.outcome is Outcome.OK and (present_seq is None or w.seq > present_seq):
                (result.lost if w.kept_at(keep_at) else result.lost_below).append(w)
            elif w.outcome not in (Outcome.OK, Outcome.FAIL) and w.seq == present_seq:
                result.recovered.append(w)
    return result
