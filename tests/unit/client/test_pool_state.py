from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from topgun.client.pool_state import (
    TRANSITIONS,
    ConnectionStateMachine,
    ConnEvent,
    ConnState,
    InvalidTransition,
    backoff_delay,
    plan_reconcile,
    usable_endpoint,
)
from topgun.core.table import NodeInfo, NodeStatus, build_table, ideal_assignment

E = ConnEvent
S = ConnState


def test_happy_path() -> None:
    sm = ConnectionStateMachine()
    assert sm.state is S.DISCONNECTED
    for event, state in [
        (E.CONNECT, S.CONNECTING),
        (E.OPENED, S.CONNECTED),
        (E.AUTH_ACK, S.AUTHENTICATED),
        (E.LOST, S.RECONNECTING),
        (E.CONNECT, S.CONNECTING),
    ]:
        assert sm.fire(event) is state
    assert sm.attempts == 1


def test_nothing_authenticates_without_auth_ack() -> None:
    sm = ConnectionStateMachine()
    with pytest.raises(InvalidTransition):
        sm.fire(E.AUTH_ACK)
    sm.fire(E.CONNECT)
    with pytest.raises(InvalidTransition):
        sm.fire(E.AUTH_ACK)


def test_auth_fail_parks_until_a_new_token() -> None:
    sm = ConnectionStateMachine()
    sm.fire(E.CONNECT)
    sm.fire(E.OPENED)
    sm.fire(E.AUTH_FAIL)
    assert sm.state is S.FAILED
    sm.fire(E.LOST)  # the server closes 4001 afterwards
    assert sm.state is S.FAILED
    assert not sm.can(E.CONNECT)
    sm.fire(E.RETRY)
    assert sm.fire(E.CONNECT) is S.CONNECTING


@given(st.integers(1, 500))
def test_never_gives_up_reconnecting(failures: int) -> None:
    """§6.4-L: no number of failed attempts leads to FAILED; §6.4-K: always back to AUTH."""
    sm = ConnectionStateMachine()
    for _ in range(failures):
        sm.fire(E.CONNECT)
        sm.fire(E.LOST)
        assert sm.state is S.RECONNECTING
    assert sm.attempts == failures
    sm.fire(E.CONNECT)
    sm.fire(E.OPENED)
    sm.fire(E.AUTH_ACK)
    assert sm.state is S.AUTHENTICATED and sm.attempts == 0


def test_only_auth_fail_leads_to_failed() -> None:
    into_failed = {
        ev for (src, ev), dst in TRANSITIONS.items() if dst is S.FAILED and src != S.FAILED
    }
    assert into_failed == {E.AUTH_FAIL}


@given(st.integers(0, 100), st.floats(0, 0.9999))
def test_backoff_is_capped_with_jitter(attempts: int, r: float) -> None:
    d = backoff_delay(attempts, 0.5, 30.0, lambda: r)
    full = min(30.0, 0.5 * 2 ** max(attempts - 1, 0))
    assert full * 0.5 <= d <= full
    assert d <= 30.0


def test_backoff_grows() -> None:
    ds = [backoff_delay(a, 1.0, 30.0, lambda: 0.0) for a in range(1, 8)]
    assert ds == [0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0]


def test_usable_endpoint() -> None:
    assert usable_endpoint("ws://127.0.0.1:8080")
    assert usable_endpoint("wss://db.example.com")
    assert not usable_endpoint("ws://unknown:0")
    assert not usable_endpoint("http://x:1")
    assert not usable_endpoint("")
    assert not usable_endpoint("ws://x:99999")


def _table(nodes: list[NodeInfo], version: int = 1):  # type: ignore[no-untyped-def]
    return build_table(version, nodes, ideal_assignment([n.node_id for n in nodes]))


def test_reconcile_renames_seeds_by_exact_endpoint_and_adds_the_rest() -> None:
    current = {"seed-0": "ws://127.0.0.1:1", "seed-1": "ws://localhost:2"}
    t = _table(
        [
            NodeInfo("a", "ws://127.0.0.1:1"),
            NodeInfo("b", "ws://127.0.0.1:2"),  # spelled differently from the seed
            NodeInfo("c", "ws://127.0.0.1:3"),
            NodeInfo("d", "ws://127.0.0.1:4", NodeStatus.FAILED),
        ]
    )
    plan = plan_reconcile(current, {"seed-0", "seed-1"}, t)
    assert plan.renames == (("seed-0", "a"),)
    assert plan.adds == (("b", "ws://127.0.0.1:2"), ("c", "ws://127.0.0.1:3"))
    assert plan.removes == ()


def test_reconcile_keeps_seeds_when_endpoints_are_unusable() -> None:
    """§6.1: a table advertising ws://unknown:0 never tears down working connections."""
    current = {"seed-0": "ws://127.0.0.1:1", "seed-1": "ws://127.0.0.1:2"}
    t = _table([NodeInfo("a", "ws://unknown:0"), NodeInfo("b", "ws://127.0.0.1:7777/x")])
    plan = plan_reconcile(current, {"seed-0", "seed-1"}, t)
    assert plan.renames == ()
    assert plan.removes == ()
    assert plan.adds == (("b", "ws://127.0.0.1:7777/x"),)


def test_reconcile_removes_nodes_that_left() -> None:
    current = {"a": "ws://h:1", "b": "ws://h:2", "seed-2": "ws://h:3"}
    t = _table([NodeInfo("a", "ws://h:1")], version=2)
    plan = plan_reconcile(current, {"seed-2"}, t)
    assert plan.removes == ("b",)
    assert plan.empty is False
