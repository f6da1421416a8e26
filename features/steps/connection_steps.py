"""Steps about one client connection's states."""

from behave import then
from hamcrest import assert_that, contains_exactly, is_not

from topgun.harness import eventually


def _only_connection(context):
    histories = context.world.client.state_histories()
    assert len(histories) == 1, f"expected one connection, found {sorted(histories)}"
    return next(iter(histories.items()))


@then("its connection went through {states}")
def connection_went_through(context, states):
    expected = [s.strip() for s in states.replace(" and ", ", ").split(",")]
    conn_id, history = _only_connection(context)
    assert_that(history, contains_exactly(*expected), f"states of connection {conn_id}")


@then("its connection leaves {state} within {secs:Limit}")
def connection_leaves(context, state, secs):
    def left():
        conn_id, history = _only_connection(context)
        assert_that(history[-1], is_not(state), f"state of connection {conn_id}")

    eventually(left, context.world.limit(secs), f"the connection leaving {state}")
