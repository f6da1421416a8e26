"""A Jepsen-style set checker: what was acknowledged must be there, and nothing else.

Writers record every write as *invoked*, then *ok* (acknowledged), *fail* (definitely
refused: not applied) or *info* (unknown: a timeout, a lost connection, an OUTCOME_UNKNOWN
answer). After the faults heal, the keys are read back and :func:`check` classifies:

* **lost**: an ok write that is neither the value read nor replaced by a later write of the
  same key that is (acknowledged means it stays, until something newer replaces it);
* **unexpected**: a value read that no write of that key ever carried, or that only a write
  refused for good carried (a refusal means "not applied");
* **recovered**: an info write whose value is there (unknown outcomes may land either way).

Pure: no I/O, no clocks; the history carries the times its recorder gave it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

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

    @property
    def valid(self) -> bool:
        """Nothing lost, nothing unexpected, and something was acknowledged at all."""
        return not self.lost and not self.unexpected and self.ok > 0

    def counts(self) -> dict[str, int]:
        return {
            "invoked": self.invoked,
            "ok": self.ok,
            "fail": self.fail,
            "info": self.info,
            "lost": len(self.lost),
            "unexpected": len(self.unexpected),
            "recovered": len(self.recovered),
        }

    def to_json(
        self, history: list[Write], timeline: list[dict[str, Any]], sample: int = SAMPLE_SIZE
    ) -> dict[str, Any]:
        """The attachment: counts, samples of each finding, the history's edges, the faults."""
        edges = history if len(history) <= 2 * sample else history[:sample] + history[-sample:]
        return {
            **self.counts(),
            "valid": self.valid,
            "lostSample": [w.to_json() for w in self.lost[:sample]],
            "unexpectedSample": [{"key": k, "value": v} for k, v in self.unexpected[:sample]],
            "recoveredSample": [w.to_json() for w in self.recovered[:sample]],
            "historySample": [w.to_json() for w in edges],
            "timeline": timeline,
        }


def check(history: Iterable[Write], read: Mapping[str, Any]) -> SetCheck:
    """Classify ``history`` against ``read`` (key → value read back, None when absent).

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
    )
    for key in sorted(set(by_key) | set(read)):
        value = read.get(key)
        key_writes = sorted(by_key.get(key, ()), key=lambda w: w.seq)
        carriers = [w for w in key_writes if value is not None and w.value == value]
        present_seq = max((w.seq for w in carriers), default=None)
        if value is not None and not [w for w in carriers if w.outcome is not Outcome.FAIL]:
            result.unexpected.append((key, value))
        for w in key_writes:
            if w.outcome is Outcome.OK and (present_seq is None or w.seq > present_seq):
                result.lost.append(w)
            elif w.outcome not in (Outcome.OK, Outcome.FAIL) and w.seq == present_seq:
                result.recovered.append(w)
    return result
