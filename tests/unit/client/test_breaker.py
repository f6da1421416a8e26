from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from topgun.client.breaker import CircuitBreaker, CircuitBreakers, CircuitState


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_defaults_follow_the_reference() -> None:
    b = CircuitBreaker()
    assert (b.failure_threshold, b.reset_timeout_s) == (5, 30.0)


def test_opens_after_n_consecutive_failures_then_half_opens_then_closes() -> None:
    clock = FakeClock()
    b = CircuitBreaker(3, 10.0, clock)
    for _ in range(2):
        b.record_failure()
        assert b.state is CircuitState.CLOSED and b.allow()
    b.record_failure()
    assert b.state is CircuitState.OPEN
    assert not b.allow()
    clock.now += 9.9
    assert not b.allow()
    clock.now += 0.1
    assert b.allow()
    assert b.state is CircuitState.HALF_OPEN
    b.record_success()
    assert b.state is CircuitState.CLOSED and b.failures == 0


def test_failure_while_half_open_reopens() -> None:
    clock = FakeClock()
    b = CircuitBreaker(2, 5.0, clock)
    b.record_failure()
    b.record_failure()
    clock.now += 5
    assert b.allow()
    b.record_failure()
    assert b.state is CircuitState.OPEN
    assert not b.allow()


def test_success_resets_the_consecutive_count() -> None:
    b = CircuitBreaker(3, 1.0, FakeClock())
    b.record_failure()
    b.record_failure()
    b.record_success()
    b.record_failure()
    b.record_failure()
    assert b.state is CircuitState.CLOSED


@given(st.lists(st.booleans(), max_size=60), st.integers(1, 6))
def test_open_iff_threshold_consecutive_failures(events: list[bool], threshold: int) -> None:
    b = CircuitBreaker(threshold, 1e9, FakeClock())
    run = 0
    opened = False
    for ok in events:
        if ok:
            b.record_success()
            run, opened = 0, False
        else:
            b.record_failure()
            run += 1
            opened = opened or run >= threshold
        assert (b.state is CircuitState.OPEN) == opened


def test_registry_per_node_and_rename() -> None:
    clock = FakeClock()
    reg = CircuitBreakers(1, 30, clock)
    reg.record_failure("seed-0")
    assert not reg.allow("seed-0")
    assert reg.allow("node-b")
    reg.rename("seed-0", "node-a")
    assert not reg.allow("node-a")
    assert reg.states() == {"node-a": "open", "node-b": "closed"}
