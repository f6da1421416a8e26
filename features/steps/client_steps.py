"""Steps that create clients, write through them and check what they saw."""

import json

import allure
from allure_commons.types import AttachmentType
from behave import given, then, when
from hamcrest import (
    assert_that,
    equal_to,
    greater_than,
    greater_than_or_equal_to,
    has_length,
    is_,
    is_not,
    none,
)

from topgun.client.errors import AuthError, QueryError
from topgun.core.hashing import partition_id
from topgun.harness import eventually
from topgun.harness.client_driver import ClientDriver
from topgun.harness.evidence import table_summary
from topgun.harness.inspection import live_nodes_of
from topgun.harness.world import LastWrite


def _cluster_client(context, count, user, **options):
    world = context.world
    seeds = world.cluster.seeds()
    assert_that(seeds, has_length(count), "seeds of the running cluster")
    driver = world.add_client(
        ClientDriver.for_cluster(world.loop, seeds, world.cluster.token(user), **options)
    )
    driver.start(world.limit(10))
    driver.wait_signed_in(count, world.limit(5))
    return driver


def _single_client(context, user, token=None):
    world = context.world
    url = world.cluster.client_url(world.cluster.order[0])
    return world.add_client(
        ClientDriver.for_server(world.loop, url, token or world.cluster.token(user))
    )


@given('a cluster-mode client that knows all {count:d} nodes and signs in as "{user}"')
def cluster_client(context, count, user):
    _cluster_client(context, count, user)


@given(
    "a cluster-mode client without smart routing that knows all {count:d} nodes "
    'and signs in as "{user}"'
)
def cluster_client_without_smart_routing(context, count, user):
    _cluster_client(context, count, user, smart_routing=False)


@given('a single-server client that signs in as "{user}"')
@when('a single-server client signs in as "{user}"')
def single_client(context, user):
    _single_client(context, user).start(context.world.limit(10))


@when("a single-server client signs in with a token signed by the wrong secret")
def single_client_bad_token(context):
    from topgun.server.auth import make_token

    driver = _single_client(context, "intruder", token=make_token("not-the-secret", sub="intruder"))
    try:
        driver.start(context.world.limit(5))
    except Exception as exc:  # the next step says which error was expected
        context.world.notes["start_error"] = exc
    else:
        context.world.notes["start_error"] = None


@then("the client is refused with an authentication error within {secs:Limit}")
def client_refused(context, secs):
    error = context.world.notes["start_error"]
    assert_that(error, is_(AuthError), "what start() raised for a token with a wrong signature")


@then(
    'a single-server client that signs in as "{user}" can write {value:Json} '
    'to "{key}" in map "{map_name}"'
)
def another_client_can_write(context, user, value, key, map_name):
    driver = _single_client(context, user)
    driver.start(context.world.limit(5))
    driver.write(map_name, key, value)
    driver.flush(context.world.limit(2))


# --- what the client knows ------------------------------------------------------------


@then("the client is signed in to all {count:d} nodes within {secs:Limit}")
def signed_in_everywhere(context, count, secs):
    context.world.client.wait_signed_in(count, context.world.limit(secs))


@then("the client holds a partition map of {partitions:d} partitions within {secs:Limit}")
@given("the client holds a partition map of {partitions:d} partitions within {secs:Limit}")
def holds_partition_map(context, partitions, secs):
    driver = context.world.client

    def has_map():
        table = driver.table()
        assert_that(table, is_not(none()), "the client's partition map")
        assert_that(table.partition_count, equal_to(partitions), "partitions in the map")
        return table

    table = eventually(has_map, context.world.limit(secs), "a partition map at the client")
    context.world.record("client holds partition map", map_version=table.version)
    _attach_json(table_summary(table), f"partition map v{table.version} held by the client")
    allure.attach(
        json.dumps(table.to_wire(), indent=1),
        name=f"partition map v{table.version}: all {table.partition_count} partitions (full)",
        attachment_type=AttachmentType.JSON,
    )


def _attach_json(value, name):
    allure.attach(json.dumps(value, indent=2), name=name, attachment_type=AttachmentType.JSON)


@then("the client's partition map is the one every node serves")
def same_map_as_nodes(context):
    world = context.world
    mine = world.client.table()
    for node in world.cluster.live_nodes():
        theirs = world.cluster.table(node)
        assert_that(mine.version, equal_to(theirs.version), f"map version at client vs {node}")
        assert_that(mine.owners, equal_to(theirs.owners), f"owners at client vs {node}")
        assert_that(mine.backups, equal_to(theirs.backups), f"backups at client vs {node}")
    endpoints = {n.node_id: n.websocket for n in mine.nodes}
    for node in world.cluster.live_nodes():
        assert_that(
            endpoints.get(node),
            equal_to(world.cluster.client_url(node)),
            f"the address the map gives for {node}",
        )


@then("smart routing is active")
def smart_routing_active(context):
    assert_that(context.world.client.routing_active(), is_(True), "client.is_routing_active()")


@when("the client holds a partition map without the former owner within {secs:Limit}")
def map_without_former_owner(context, secs):
    former = context.world.notes["former_owner"]

    def without_former():
        table = context.world.client.table()
        # a map may keep a dead node listed, marked FAILED (TopGun Rust does): gone is gone
        live = live_nodes_of(table)
        assert_that(former in live, is_(False), f"map v{table.version} lists {former} as live")

    eventually(without_former, context.world.limit(secs), f"a map without {former}")


@then("the client holds a newer partition map that includes the third node within {secs:Limit}")
def newer_map_with_third_node(context, secs):
    driver = context.world.client
    before = context.world.notes["map_version_before_join"]

    def includes_third():
        table = driver.table()
        assert_that("node-3" in table.node_ids(), is_(True), f"nodes in map v{table.version}")
        return table

    table = eventually(includes_third, context.world.limit(secs), "a map that includes node-3")
    context.world.record("client holds partition map", map_version=table.version)
    assert_that(table.version, greater_than(before), "map version after the join")


@then("the client has no partition map and no cluster statistics")
def no_cluster_view(context):
    driver = context.world.client
    assert_that(driver.table(), none(), "partition map in single-server mode")
    assert_that(driver.cluster_stats(), none(), "get_cluster_stats() in single-server mode")
    assert_that(driver.metrics(), none(), "routing metrics in single-server mode")


# --- writing and reading ----------------------------------------------------------------


def _write(context, value, key, map_name):
    world = context.world
    world.last_write = LastWrite(map_name, key, value, world.client.metrics())
    table = world.client.table()
    world.notes["partition"] = partition_id(key)
    world.record(
        f"write {map_name}/{key} = {json.dumps(value)}",
        partition=partition_id(key),
        owner_in_client_map=None if table is None else table.owner_of_key(key),
    )
    world.client.write(map_name, key, value)


@when('the client writes {value:Json} to "{key}" in map "{map_name}"')
def client_writes(context, value, key, map_name):
    _write(context, value, key, map_name)


@given('the client has written {value:Json} to "{key}" in map "{map_name}" and it was acknowledged')
def client_has_written(context, value, key, map_name):
    _write(context, value, key, map_name)
    context.world.client.flush(context.world.limit(2))
    context.world.record("acknowledged by owner and backup (flush returned)")


@when(
    'the client writes {value:Json} to a key that its first node does not own, in map "{map_name}"'
)
def write_to_key_not_owned_by_first(context, value, map_name):
    world = context.world
    first = world.cluster.order[0]
    key = next(k for k in (f"key-{i}" for i in range(1000)) if world.cluster.owner_of(k) != first)
    _write(context, value, key, map_name)


def _write_while_departing(context, how, key, value, map_name):
    world = context.world
    owner = world.owner_of(key)
    world.notes["former_owner"] = owner
    world.notes["partition"] = partition_id(key)
    world.last_write = LastWrite(map_name, key, value, world.client.metrics(), owner)
    depart = world.shutdown if how == "shut down" else world.kill
    departure = world.client.write_as_node_departs(
        owner, map_name, key, value, depart=lambda: depart(owner), within=world.limit(10)
    )
    world.notes["departure"] = departure
    world.record(
        f"write {map_name}/{key} = {json.dumps(value)}, made the moment the client noticed "
        f"{owner} going (the notice above)",
        noticed=_event_words(departure.event),
        sent_to=departure.sent_to,
    )


def _event_words(event):
    return {"kind": event.kind.value, "node": event.node_id, "map_version": event.map_version}


@when(
    'the owner of "{key}" is shut down while the client writes {value:Json} '
    'to it in map "{map_name}"'
)
def owner_shut_down_during_write(context, key, value, map_name):
    _write_while_departing(context, "shut down", key, value, map_name)


@when(
    'the owner of "{key}" is killed while the client writes {value:Json} to it in map "{map_name}"'
)
def owner_killed_during_write(context, key, value, map_name):
    _write_while_departing(context, "killed", key, value, map_name)


@then("the write is acknowledged within {secs:Limit}")
def write_acknowledged(context, secs):
    context.world.client.flush(context.world.limit(secs))
    assert_that(context.world.client.pending(), equal_to(0), "ops still waiting for an ack")
    context.world.record("acknowledged by owner and backup (flush returned)")


@then("the write is still waiting to be sent")
def write_still_pending(context):
    assert_that(context.world.client.pending(), greater_than(0), "ops waiting for an ack")


@then('the client reads {value:Json} under "{key}" in map "{map_name}" at once')
def client_reads_locally(context, value, key, map_name):
    assert_that(context.world.client.read_local(map_name, key), equal_to(value), "local read")


@then('reading "{key}" from map "{map_name}" on the cluster gives {value:Json} within {secs:Limit}')
def read_back_from_cluster(context, key, map_name, value, secs):
    driver = context.world.client

    def read_back():
        try:
            got = driver.read_from_cluster(map_name, key, context.world.limit(secs))
        except QueryError as exc:  # no complete answer yet (a node failing): not yet
            raise AssertionError(f"no complete answer: {exc}") from exc
        assert_that(got, equal_to(value), f"the cluster's answer for {key!r}")

    eventually(read_back, context.world.limit(secs), f"reading {key!r} back")


def _metrics_delta(context):
    world = context.world
    before = world.last_write.metrics_before or {}
    after = world.client.metrics()
    delta = {k: after[k] - before.get(k, 0) for k in after}
    rows = {k: {"before": before.get(k, 0), "after": after[k], "change": delta[k]} for k in after}
    _attach_json(rows, "routing metrics before and after the write")
    return delta


def _sent_around_former_owner(context):
    """Where the write made at the departure went, at that very moment."""
    departure = context.world.notes["departure"]
    former = context.world.notes["former_owner"]
    _attach_json(
        {
            "former owner": former,
            "noticed": _event_words(departure.event),
            "sent to": departure.sent_to,
        },
        "how the client noticed the departure and where it sent the write",
    )
    assert_that(departure.sent_to, has_length(1), f"nodes the write was sent to ({departure})")
    assert_that(departure.sent_to[0], is_not(equal_to(former)), "node the write was sent to")
    return departure


@then("the write went by fallback routing")
def write_went_by_fallback(context):
    _sent_around_former_owner(context)
    delta = _metrics_delta(context)
    assert_that(
        delta["fallback_routes"], greater_than_or_equal_to(1), f"routing since the write {delta}"
    )


@then("the write went around the former owner")
def write_went_around(context):
    _sent_around_former_owner(context)
    delta = _metrics_delta(context)
    routed = delta["fallback_routes"] + delta["direct_routes"]
    assert_that(routed, greater_than_or_equal_to(1), f"routing since the write {delta}")


@then('the write went directly to the new owner of "{key}"')
def write_went_direct(context, key):
    world = context.world
    delta = _metrics_delta(context)
    assert_that(
        delta["direct_routes"], greater_than_or_equal_to(1), f"routing since the write {delta}"
    )
    assert_that(delta["fallback_routes"], equal_to(0), f"routing since the write {delta}")
    new_owner = world.client.table().owner_of_key(key)
    assert_that(
        new_owner, is_not(equal_to(world.notes["former_owner"])), "owner in the client's map"
    )
    assert_that(new_owner, equal_to(world.cluster.owner_of(key)), "client's owner vs the cluster's")
