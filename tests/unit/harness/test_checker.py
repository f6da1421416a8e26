"""The set checker's rules, on generated histories and read-backs."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from topgun.harness.checker import Outcome, SetCheck, Write, check, outcome_of_refusal
from topgun.harness.world import skip_reason

OUTCOMES = st.sampled_from([Outcome.OK, Outcome.FAIL, Outcome.INFO, None])


@st.composite
def histories(draw: st.DrawFn) -> list[Write]:
    """Writers with keys of their own; each writer's writes in seq order, unique values."""
    writes = []
    for writer in range(draw(st.integers(1, 3))):
        keys = draw(st.integers(1, 4))
        for seq in range(draw(st.integers(0, 12))):
            key = f"w{writer}-k{draw(st.integers(0, keys - 1))}"
            value = {"writer": writer, "seq": seq}
            writes.append(Write(writer, seq, key, value, float(seq), draw(OUTCOMES)))
    return writes


def newest_ok_or_unknown(writes: list[Write], key: str) -> Write | None:
    """What a correct cluster may show for ``key``: the newest write not refused for good, if
    it is at least as new as the newest acknowledged one."""
    candidates = [w for w in writes if w.key == key and w.outcome is not Outcome.FAIL]
    return max(candidates, key=lambda w: w.seq, default=None)


def correct_read(writes: list[Write]) -> dict[str, object]:
    read: dict[str, object] = {}
    for key in {w.key for w in writes}:
        newest = newest_ok_or_unknown(writes, key)
        read[key] = None if newest is None else newest.value
    return read


@given(histories())
def test_counts_add_up(writes: list[Write]) -> None:
    result = check(writes, {})
    assert result.invoked == len(writes) == result.ok + result.fail + result.info


@given(histories())
def test_a_correct_cluster_passes(writes: list[Write]) -> None:
    result = check(writes, correct_read(writes))
    assert not result.lost
    assert not result.unexpected
    assert result.valid == (result.ok > 0)


@given(histories())
def test_every_acknowledged_write_of_a_vanished_key_is_lost(writes: list[Write]) -> None:
    read = correct_read(writes)
    for key in read:
        read[key] = None
    result = check(writes, read)
    assert sorted((w.key, w.seq) for w in result.lost) == sorted(
        (w.key, w.seq) for w in writes if w.outcome is Outcome.OK
    )
    assert not result.recovered


@given(histories(), st.data())
def test_an_older_value_loses_the_newer_acknowledged_writes(
    writes: list[Write], data: st.DataObject
) -> None:
    read = correct_read(writes)
    keys = sorted({w.key for w in writes})
    if not keys:
        return
    key = data.draw(st.sampled_from(keys))
    shown = data.draw(st.sampled_from([w for w in writes if w.key == key]))
    read[key] = shown.value
    result = check(writes, read)
    expected_lost = {
        w.seq for w in writes if w.key == key and w.outcome is Outcome.OK and w.seq > shown.seq
    }
    assert {w.seq for w in result.lost if w.key == key} == expected_lost
    assert [k for k, _ in result.unexpected] == ([key] if shown.outcome is Outcome.FAIL else [])


@given(histories())
def test_a_value_nobody_wrote_is_unexpected(writes: list[Write]) -> None:
    read = correct_read(writes)
    read["phantom"] = {"writer": 99, "seq": 0}
    result = check(writes, read)
    assert ("phantom", {"writer": 99, "seq": 0}) in result.unexpected


def test_unknown_writes_that_landed_are_recovered_not_lost() -> None:
    writes = [
        Write(0, 0, "k", {"seq": 0}, 0.0, Outcome.OK),
        Write(0, 1, "k", {"seq": 1}, 1.0, Outcome.INFO),
        Write(0, 2, "j", {"seq": 2}, 2.0, Outcome.INFO),
    ]
    result = check(writes, {"k": {"seq": 1}, "j": None})
    assert [w.seq for w in result.recovered] == [1]
    assert result.counts() == {
        "invoked": 3, "ok": 1, "fail": 0, "info": 2, "lost": 0, "unexpected": 0, "recovered": 1
    }  # fmt: skip


def test_a_run_without_acknowledgements_proves_nothing() -> None:
    assert not SetCheck(invoked=3, ok=0, fail=0, info=3).valid


def test_refusals_are_definite_unless_the_server_says_it_does_not_know() -> None:
    assert outcome_of_refusal(["NOT_OWNER", "CLUSTER_MINORITY"]) is Outcome.FAIL
    assert outcome_of_refusal(["OUTCOME_UNKNOWN: forward timed out"]) is Outcome.INFO


def test_the_report_samples_the_history_and_keeps_the_timeline() -> None:
    writes = [Write(0, i, f"k{i}", i, float(i), Outcome.OK) for i in range(100)]
    report = check(writes, {f"k{i}": i for i in range(100)}).to_json(writes, [{"fault": "x"}])
    assert len(report["historySample"]) == 40
    assert report["timeline"] == [{"fault": "x"}]
    assert {k: report[k] for k in ("invoked", "ok", "lost", "unexpected")} == {
        "invoked": 100, "ok": 100, "lost": 0, "unexpected": 0
    }  # fmt: skip


def test_scenarios_that_need_network_hosts_or_processes_say_why_they_skip() -> None:
    assert "cluster=hosts" in (skip_reason("processes", {"hosts", "partition"}) or "")
    assert "processes" in (skip_reason("embedded", {"os_processes"}) or "")
    assert skip_reason("processes", {"os_processes", "soak"}) is None
    assert skip_reason("embedded", {"soak"}) is None
