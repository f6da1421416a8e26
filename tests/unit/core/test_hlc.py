"""Hybrid logical clock (reference §5.8) and timestamp wire validation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topgun.core.errors import ClockSkewError, ProtocolError
from topgun.core.hlc import DEFAULT_MAX_DRIFT_MS, HLC, Timestamp


class FakeClock:
    """An injectable wall clock whose value the test sets."""

    def __init__(self, ms: int = 0) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def make(ms: int = 1_000, node: str = "n1", drift: int = DEFAULT_MAX_DRIFT_MS):
    clock = FakeClock(ms)
    return HLC(node, clock, max_drift_ms=drift), clock


# --- now() ------------------------------------------------------------------------------


def test_now_uses_wall_clock_and_resets_counter() -> None:
    hlc, clock = make(1_000)
    assert hlc.now() == Timestamp(1_000, 0, "n1")
    assert hlc.now() == Timestamp(1_000, 1, "n1")
    clock.ms = 1_005
    assert hlc.now() == Timestamp(1_005, 0, "n1")


def test_now_when_clock_goes_backwards() -> None:
    hlc, clock = make(2_000)
    first = hlc.now()
    clock.ms = 1_000
    second = hlc.now()
    assert second == Timestamp(2_000, 1, "n1")
    assert second > first


@settings(derandomize=True, max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**45), min_size=1, max_size=60))
def test_now_strictly_monotonic_for_any_clock_sequence(walls: list[int]) -> None:
    hlc, clock = make(0)
    previous: Timestamp | None = None
    for wall in walls:
        clock.ms = wall
        ts = hlc.now()
        assert ts.millis >= wall
        assert ts.node_id == "n1"
        if previous is not None:
            assert ts > previous
        previous = ts


@settings(derandomize=True, max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=10_000),  # wall clock
            st.booleans(),  # True: observe a remote timestamp, False: now()
            st.integers(min_value=0, max_value=10_000),  # remote millis
            st.integers(min_value=0, max_value=50),  # remote counter
        ),
        max_size=40,
    )
)
def test_now_after_updates_exceeds_everything_seen(
    steps: list[tuple[int, bool, int, int]],
) -> None:
    hlc, clock = make(0, drift=10**9)
    seen: list[Timestamp] = []
    for wall, observe, r_millis, r_counter in steps:
        clock.ms = wall
        if observe:
            remote = Timestamp(r_millis, r_counter, "zz")
            hlc.update(remote)
            seen.append(remote)
        else:
            ts = hlc.now()
            assert all((ts.millis, ts.counter) > (s.millis, s.counter) for s in seen)
            seen.append(ts)


@settings(derandomize=True, max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 50)), min_size=1, max_size=10),
        max_size=10,
    ),
    st.integers(0, 10_000),
)
def test_observing_a_batchs_newest_leaves_the_clock_past_every_stamp_of_it(
    batches: list[list[tuple[int, int]]], wall: int
) -> None:
    hlc, _ = make(wall, drift=10**9)
    seen: list[Timestamp] = []
    for batch in batches:
        stamps = [Timestamp(m, c, "zz") for m, c in batch]
        hlc.observe(max(stamps))
        seen.extend(stamps)
        ts = hlc.now()
        assert all((ts.millis, ts.counter) > (s.millis, s.counter) for s in seen)
        seen.append(ts)


def test_node_id_with_colon_rejected() -> None:
    with pytest.raises(ValueError):
        HLC("a:b", FakeClock())


# --- update() branches of §5.8 ----------------------------------------------------------


def _state(hlc: HLC) -> tuple[int, int]:
    # what the next now() reveals when the wall clock does not move forward
    return hlc._millis, hlc._counter


def test_update_all_equal_takes_max_counter_plus_one() -> None:
    hlc, _clock = make(1_000)
    hlc.now()
    hlc.now()  # local (1000, 1)
    hlc.update(Timestamp(1_000, 7, "r"))
    assert _state(hlc) == (1_000, 8)
    hlc.update(Timestamp(1_000, 2, "r"))
    assert _state(hlc) == (1_000, 9)


def test_update_local_wins() -> None:
    hlc, clock = make(5_000)
    hlc.now()  # (5000, 0)
    clock.ms = 1_000  # wall went backwards
    hlc.update(Timestamp(3_000, 99, "r"))
    assert _state(hlc) == (5_000, 1)


def test_update_remote_wins() -> None:
    hlc, _clock = make(1_000)
    hlc.now()
    hlc.update(Timestamp(4_000, 6, "r"))
    assert _state(hlc) == (4_000, 7)
    assert hlc.now() == Timestamp(4_000, 8, "n1")


def test_update_wall_clock_wins() -> None:
    hlc, clock = make(1_000)
    hlc.now()
    clock.ms = 9_000
    hlc.update(Timestamp(2_000, 5, "r"))
    assert _state(hlc) == (9_000, 0)


def test_update_wall_equals_remote_above_local() -> None:
    # m == remote.millis (and == wall) but != local: remote.counter + 1
    hlc, clock = make(1_000)
    hlc.now()
    clock.ms = 3_000
    hlc.update(Timestamp(3_000, 4, "r"))
    assert _state(hlc) == (3_000, 5)


def test_update_wall_equals_local_above_remote() -> None:
    hlc, _clock = make(3_000)
    hlc.now()
    hlc.now()  # (3000, 1)
    hlc.update(Timestamp(2_000, 40, "r"))
    assert _state(hlc) == (3_000, 2)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    st.integers(0, 100),
    st.integers(0, 5),
    st.integers(0, 100),
    st.integers(0, 100),
    st.integers(0, 5),
)
def test_update_matches_reference_rules(
    local_ms: int, local_c: int, wall: int, r_ms: int, r_c: int
) -> None:
    hlc, clock = make(0, drift=10**6)
    hlc._millis, hlc._counter = local_ms, local_c
    clock.ms = wall
    hlc.update(Timestamp(r_ms, r_c, "r"))
    m = max(local_ms, wall, r_ms)
    if m == local_ms == r_ms:
        c = max(local_c, r_c) + 1
    elif m == local_ms:
        c = local_c + 1
    elif m == r_ms:
        c = r_c + 1
    else:
        c = 0
    assert _state(hlc) == (m, c)


# --- drift -------------------------------------------------------------------------------


def test_check_and_update_reject_far_future() -> None:
    hlc, _clock = make(10_000, drift=1_000)
    hlc.now()
    before = _state(hlc)
    remote = Timestamp(11_001, 0, "r")
    with pytest.raises(ClockSkewError):
        hlc.check(remote)
    with pytest.raises(ClockSkewError):
        hlc.update(remote)
    assert _state(hlc) == before  # a refused timestamp leaves the clock untouched


def test_drift_boundary_is_accepted() -> None:
    hlc, _clock = make(10_000, drift=1_000)
    remote = Timestamp(11_000, 3, "r")
    hlc.check(remote)
    hlc.update(remote)
    assert _state(hlc) == (11_000, 4)


def test_default_max_drift() -> None:
    hlc, _clock = make(0)
    assert hlc.max_drift_ms == 60_000
    hlc.check(Timestamp(60_000, 0, "r"))
    with pytest.raises(ClockSkewError):
        hlc.check(Timestamp(60_001, 0, "r"))


def test_past_timestamps_are_never_skew() -> None:
    hlc, _clock = make(10**12, drift=0)
    hlc.check(Timestamp(0, 0, "r"))
    hlc.update(Timestamp(5, 5, "r"))


# --- Timestamp ----------------------------------------------------------------------------


def test_timestamp_order() -> None:
    assert Timestamp(1, 9, "z") < Timestamp(2, 0, "a")
    assert Timestamp(1, 1, "z") < Timestamp(1, 2, "a")
    assert Timestamp(1, 1, "a") < Timestamp(1, 1, "b")
    assert Timestamp(1, 1, "a") == Timestamp(1, 1, "a")


@settings(derandomize=True, max_examples=100, deadline=None)
@given(
    st.lists(
        st.builds(
            Timestamp,
            st.integers(0, 20),
            st.integers(0, 5),
            st.text(alphabet="abc-0123", max_size=3),
        ),
        max_size=10,
    )
)
def test_timestamp_order_is_lexicographic(ts: list[Timestamp]) -> None:
    assert sorted(ts) == sorted(ts, key=lambda t: (t.millis, t.counter, t.node_id))


def test_timestamp_str() -> None:
    assert str(Timestamp(1771234567890, 3, "node-1")) == "1771234567890:3:node-1"


def test_to_wire_sends_millis_as_float() -> None:
    wire = Timestamp(1771234567890, 2, "n").to_wire()
    assert wire == {"millis": 1771234567890.0, "counter": 2, "nodeId": "n"}
    assert type(wire["millis"]) is float
    assert type(wire["counter"]) is int


def test_from_wire_accepts_float_and_int_millis() -> None:
    ts = Timestamp.from_wire({"millis": 1771234567890.0, "counter": 0, "nodeId": "c1"})
    assert ts == Timestamp(1771234567890, 0, "c1")
    assert type(ts.millis) is int
    ts = Timestamp.from_wire({"millis": 5, "counter": 1.0, "nodeId": "c1"})
    assert ts == Timestamp(5, 1, "c1")
    assert type(ts.counter) is int


@settings(derandomize=True, max_examples=100, deadline=None)
@given(
    st.builds(Timestamp, st.integers(0, 2**53), st.integers(0, 2**31 - 1), st.text(max_size=256))
)
def test_wire_round_trip(ts: Timestamp) -> None:
    assert Timestamp.from_wire(ts.to_wire()) == ts


GOOD = {"millis": 1000.0, "counter": 0, "nodeId": "n"}


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [1000, 0, "n"],
        "1000:0:n",
        {**GOOD, "millis": 1000.5},
        {**GOOD, "millis": -1},
        {**GOOD, "millis": 2**53 + 1},
        {**GOOD, "millis": 1e300},
        {**GOOD, "millis": float("nan")},
        {**GOOD, "millis": float("inf")},
        {**GOOD, "millis": True},
        {**GOOD, "millis": "1000"},
        {k: v for k, v in GOOD.items() if k != "millis"},
        {**GOOD, "counter": -1},
        {**GOOD, "counter": 2**31},
        {**GOOD, "counter": 0.5},
        {**GOOD, "counter": False},
        {k: v for k, v in GOOD.items() if k != "counter"},
        {**GOOD, "nodeId": 7},
        {**GOOD, "nodeId": None},
        {**GOOD, "nodeId": "x" * 257},
        {k: v for k, v in GOOD.items() if k != "nodeId"},
    ],
)
def test_from_wire_rejects(bad: object) -> None:
    with pytest.raises(ProtocolError) as info:
        Timestamp.from_wire(bad)
    assert not info.value.fatal
