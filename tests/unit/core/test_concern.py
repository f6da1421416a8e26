"""Write-concern rules: the order of the levels, which concern an op asks for, what it reached."""

from __future__ import annotations

import pytest

from topgun.core.concern import (
    DEFAULT_TIMEOUT_MS,
    DURABLE,
    GONE,
    HELD,
    UNMET,
    Concern,
    Level,
    achieved,
    level_of,
)
from topgun.core.messages import WRITE_CONCERNS


def test_levels_are_topguns_in_topguns_order() -> None:
    assert [lvl.name for lvl in sorted(Level)] == [
        "FIRE_AND_FORGET", "MEMORY", "APPLIED", "REPLICATED", "PERSISTED",
    ]  # fmt: skip
    assert {lvl.name for lvl in Level} == WRITE_CONCERNS
    assert level_of(None) is None and level_of("PERSISTED") is Level.PERSISTED
    with pytest.raises(ValueError, match="unknown write concern"):
        level_of("ALL")


def test_an_ops_own_concern_wins_over_its_batch() -> None:
    assert Concern.of(None, None) == Concern(None, DEFAULT_TIMEOUT_MS)
    assert Concern.of(None, None, "PERSISTED", 250) == Concern(Level.PERSISTED, 250.0)
    assert Concern.of("APPLIED", None, "PERSISTED", 250) == Concern(Level.APPLIED, 250.0)
    assert Concern.of(None, 90, "MEMORY", 250) == Concern(Level.MEMORY, 90.0)
    for bad in (0, -5, float("inf"), float("nan")):
        assert Concern.of("REPLICATED", bad).timeout_ms == DEFAULT_TIMEOUT_MS
    assert Concern(Level.APPLIED, 1500).timeout_s == 1.5


def test_what_each_concern_waits_for() -> None:
    early = [Concern(Level.FIRE_AND_FORGET), Concern(Level.MEMORY)]
    assert all(c.early and not c.waits_for_backups for c in early)
    assert not Concern(Level.APPLIED).early and not Concern(Level.APPLIED).waits_for_backups
    assert Concern().waits_for_backups and not Concern().early
    assert Concern(Level.REPLICATED).waits_for_backups
    assert Concern(Level.PERSISTED).persisted and not Concern(Level.REPLICATED).persisted


def test_met_needs_the_level_asked_for_or_a_higher_one() -> None:
    for asked in Level:
        for reached in Level:
            assert Concern(asked).met(reached) is (reached >= asked)
    assert all(Concern().met(reached) for reached in Level)  # the default asks no level
    error = Concern(Level.PERSISTED, 200).unmet(Level.REPLICATED, "backup b is slow")
    assert error == f"{UNMET}: requested PERSISTED, reached REPLICATED: backup b is slow"


@pytest.mark.parametrize(
    ("owner_durable", "backups", "level"),
    [
        (False, [], Level.REPLICATED),  # no backup named: every named copy holds it
        (True, [], Level.PERSISTED),
        (False, [HELD], Level.REPLICATED),
        (True, [HELD], Level.REPLICATED),  # a backup in memory only: not PERSISTED
        (True, [DURABLE], Level.PERSISTED),
        (False, [DURABLE], Level.REPLICATED),  # the owner's own disk is part of it
        (True, [DURABLE, None], Level.APPLIED),  # a backup that did not answer
        (True, [DURABLE, GONE], Level.APPLIED),  # a backup that is gone holds nothing
    ],
)
def test_achieved_is_the_highest_level_every_copy_reached(
    owner_durable: bool, backups: list[int | None], level: Level
) -> None:
    assert achieved(owner_durable, backups) is level
