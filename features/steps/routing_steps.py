"""Steps about routing: the metrics sentence, and the pure router and circuit breaker."""

import json
import re

from behave import given, then, when
from hamcrest import assert_that, equal_to, greater_than_or_equal_to, is_

from topgun.client.breaker import CircuitBreaker
from topgun.client.router import PartitionRouter, RouteKind
from topgun.core.hashing import PARTITION_COUNT, partition_id
from topgun.core.table import NodeInfo, build_table, ideal_assignment

COUNTERS = {
    "direct route": "direct_routes",
    "fallback route": "fallback_routes",
    "partition miss": "partition_misses",
    "route in total": "total_routes",
    "not-owner retry": "not_owner_retries",
    "map refresh": "map_refreshes",
}
_ITEM = re.compile(r"^(no|at least \d+|\d+) (.+?)$")
_PLURALS = (
    ("routes in total", "route in total"),
    ("misses", "miss"),
    ("retries", "retry"),
    ("refreshes", "refresh"),
    ("routes", "route"),
)


class ManualClock:
    """Seconds that pass only when a step says so."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _counter_name(words):
    for plural, singular in _PLURALS:
        if words.endswith(plural):
            words = words[: -len(plural)] + singular
            break
    if words not in COUNTERS:
        raise ValueError(f"unknown routing counter {words!r}; known: {sorted(COUNTERS)}")
    return COUNTERS[words]


@then("the routing metrics show {expectation}")
def routing_metrics_show(context, expectation):
    router = context.world.notes.get("router")
    metrics = router.get_metrics() if router is not None else context.world.client.metrics()
    for item in re.split(r", | and ", expectation):
        match = _ITEM.match(item.strip())
        if match is None:
            raise ValueError(f"cannot read {item!r}: say 'no X', 'N X' or 'at least N X'")
        amount, counter = match.group(1), _counter_name(match.group(2))
        actual = metrics[counter]
        if amount.startswith("at least"):
            assert_that(
                actual, greater_than_or_equal_to(int(amount.split()[-1])), f"{counter} in {metrics}"
            )
        else:
            assert_that(
                actual, equal_to(0 if amount == "no" else int(amount)), f"{counter} in {metrics}"
            )


# --- partition ids ----------------------------------------------------------------------


@then('key "{key:Text}" belongs to partition {pid:d} of {count:d}')
def key_belongs_to_partition(context, key, pid, count):
    assert_that(PARTITION_COUNT, equal_to(count), "partitions in a TopGun cluster")
    got = partition_id(key)
    context.world.record("partition computed", key=json.dumps(key), partition=got, expected=pid)
    assert_that(got, equal_to(pid), f"partition of {key!r}")


# --- circuit breaker --------------------------------------------------------------------


@given(
    "a circuit breaker that opens after {failures:d} failures and retries after {secs:g} seconds"
)
def circuit_breaker(context, failures, secs):
    clock = ManualClock()
    context.world.notes["clock"] = clock
    context.world.notes["breakers"] = {}
    context.world.notes["breaker_factory"] = lambda: CircuitBreaker(failures, secs, clock)


def _record_breaker(context, node, what):
    context.world.record(f"{node}: {what}", circuit=str(_breaker(context, node).state))


def _breaker(context, node):
    notes = context.world.notes
    return notes["breakers"].setdefault(node, notes["breaker_factory"]())


@when('node "{node}" fails {times:d} times')
@when('node "{node}" fails {times:d} more time')
def node_fails(context, node, times):
    for _ in range(times):
        _breaker(context, node).record_failure()
    _record_breaker(context, node, f"{times} failure(s)")


@when('node "{node}" succeeds')
def node_succeeds(context, node):
    _breaker(context, node).record_success()
    _record_breaker(context, node, "a success")


@when("{secs:g} seconds pass")
def seconds_pass(context, secs):
    context.world.notes["clock"].now += secs
    context.world.record(f"{secs:g} seconds pass on the test clock")


@then('the circuit of "{node}" is {state}')
def circuit_is(context, node, state):
    assert_that(str(_breaker(context, node).state), equal_to(state), f"circuit of {node}")


@then('node "{node}" may not be used')
def node_may_not_be_used(context, node):
    assert_that(_breaker(context, node).allow(), is_(False), f"may {node} be used")


@then('node "{node}" may be used')
def node_may_be_used(context, node):
    assert_that(_breaker(context, node).allow(), is_(True), f"may {node} be used")


# --- the pure router --------------------------------------------------------------------


def _table(version, nodes):
    infos = [NodeInfo(n, f"ws://{n}.example:8080") for n in nodes]
    return build_table(version, infos, ideal_assignment(nodes))


@given("a router with no partition map")
def router_without_map(context):
    context.world.notes["router"] = PartitionRouter(clock=ManualClock())
    context.world.notes["usable"] = []


@given('the router holds the partition map of nodes "{a}", "{b}" and "{c}"')
def router_holds_map(context, a, b, c):
    router = context.world.notes["router"]
    assert_that(router.update_table(_table(5, [a, b, c])), is_(True), "router took the map")


@given('the router\'s connections to "{a}", "{b}" and "{c}" are up')
def router_connections_up(context, a, b, c):
    context.world.notes["usable"] = [a, b, c]


@when('the router routes "{key}"')
def router_routes(context, key):
    notes = context.world.notes
    notes["decision"] = decision = notes["router"].decide(key, notes["usable"])
    context.world.record(
        f"router routes {key}",
        kind=str(decision.kind),
        to=decision.node_id,
        usable=notes["usable"],
        metrics=notes["router"].get_metrics(),
    )


@when('the connection to the owner of "{key}" goes down')
def owner_connection_down(context, key):
    notes = context.world.notes
    owner = notes["router"].route(key).owner
    notes["usable"] = [n for n in notes["usable"] if n != owner]


@then('"{key}" is routed directly to its owner')
def routed_direct(context, key):
    notes = context.world.notes
    decision = notes["decision"]
    assert_that(decision.kind, equal_to(RouteKind.DIRECT), "how the write was routed")
    assert_that(decision.node_id, equal_to(notes["router"].route(key).owner), "where it went")


@then('"{key}" is routed by fallback to its backup')
def routed_fallback(context, key):
    notes = context.world.notes
    decision = notes["decision"]
    assert_that(decision.kind, equal_to(RouteKind.FALLBACK), "how the write was routed")
    assert_that(decision.node_id, equal_to(notes["router"].route(key).backups[0]), "where it went")


@when("the router is offered a partition map older than the one it holds")
def router_offered_older(context):
    notes = context.world.notes
    router = notes["router"]
    notes["held_version"] = router.version
    notes["accepted"] = router.update_table(_table(router.version - 1, ["node-1", "node-2"]))
    context.world.record(
        "router offered an older map",
        held=notes["held_version"],
        offered=notes["held_version"] - 1,
        accepted=notes["accepted"],
    )


@then("the router keeps the partition map it holds")
def router_keeps_map(context):
    notes = context.world.notes
    assert_that(notes["accepted"], is_(False), "did the router take the older map")
    assert_that(notes["router"].version, equal_to(notes["held_version"]), "router's map version")
