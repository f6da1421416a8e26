"""Steps that start clusters, take nodes away and look at what nodes hold."""

import json

import allure
from allure_commons.types import AttachmentType
from behave import given, then, when
from hamcrest import assert_that, equal_to, is_not

from topgun.core.hashing import partition_id
from topgun.harness import eventually
from topgun.harness.readers import NodeReaders, missing


@given("a running cluster of {count:d} nodes")
def start_cluster(context, count):
    context.world.start_cluster(count)


@given("a running cluster of {count:d} nodes that refuse writes for partitions they do not own")
def start_refusing_cluster(context, count):
    context.world.start_cluster(count, forward_writes=False)


@given("a running single node")
def start_single_node(context):
    context.world.start_cluster(1)


def _owner_goes(context, key, how):
    world = context.world
    world.notes["former_owner"] = owner = world.owner_of(key)
    world.notes["partition"] = partition_id(key)
    depart = world.shutdown if how == "shut down" else world.kill
    depart(owner)


@given('the owner of "{key}" has been shut down')
def owner_has_been_shut_down(context, key):
    _owner_goes(context, key, "shut down")


@given("the node has been shut down")
@when("the node has been shut down")
def single_node_shut_down(context):
    context.world.shutdown(context.world.cluster.order[0])


@when("the node has been killed")
def single_node_killed(context):
    context.world.kill(context.world.cluster.order[0])


@when("the node is started again at the same address")
def single_node_restarted(context):
    context.world.restart(context.world.cluster.order[0], same_address=True)


@when("a third node joins the cluster")
def third_node_joins(context):
    world = context.world
    if world.clients and world.client.table() is not None:
        world.notes["map_version_before_join"] = world.client.table().version
    world.add_node(f"node-{len(world.cluster.order) + 1}")
    world.keep_table("after the join", world.cluster.wait_until_formed(world.limit(10)))


def _holder(context, role, key):
    """The node that holds ``key`` in ``role``, by the map the scenario routes by."""
    world = context.world
    table = world.routing_table()
    pid = partition_id(key)
    if role.endswith("owner"):
        node = table.owner(pid)
    else:
        backups = table.backups_of(pid)
        assert_that(len(backups), is_not(equal_to(0)), f"partition {pid} has no backup")
        node = backups[0]
    if role.startswith("new"):
        former = world.notes.get("former_owner")
        assert_that(node, is_not(equal_to(former)), f"the {role} of {key!r} is still {former}")
    return node


def _assert_holds(context, node, map_name, key, value):
    held = context.world.cluster.inspect(node, map_name, key)
    record = held.get("record") or {}
    assert_that(
        record.get("value"),
        equal_to(value),
        f"{node} ({held.get('role')} of partition {held.get('partitionId')}, read through "
        f"{held.get('method', 'an unnamed method')}) holds {record or 'nothing'}",
    )
    return held


def _attach_holdings(context, map_name, key):
    world = context.world
    holdings = world.cluster.holdings(map_name, key)
    world.record(
        f"read {map_name}/{key} on every node",
        **{
            n: f"{h.get('role')}: {json.dumps((h.get('record') or {}).get('value'))}"
            for n, h in holdings.items()
        },
    )
    allure.attach(
        json.dumps(holdings, indent=2),
        name=f"what each node holds for {map_name}/{key}",
        attachment_type=AttachmentType.JSON,
    )


@then('the {role:Role} of "{key}" holds {value:Json} in map "{map_name}"')
def role_holds(context, role, key, value, map_name):
    node = _holder(context, role, key)
    _assert_holds(context, node, map_name, key, value)
    _attach_holdings(context, map_name, key)


@then('the {role:Role} of "{key}" holds {value:Json} in map "{map_name}" within {secs:Limit}')
def role_holds_within(context, role, key, value, map_name, secs):
    eventually(
        lambda: _assert_holds(context, _holder(context, role, key), map_name, key, value),
        context.world.limit(secs),
        f"the {role} of {key!r} holding {value}",
    )
    _attach_holdings(context, map_name, key)


@then('the node holds {value:Json} under "{key}" in map "{map_name}"')
def single_node_holds(context, value, key, map_name):
    _assert_holds(context, context.world.cluster.order[0], map_name, key, value)


@then('the owner of that key holds {value:Json} in map "{map_name}"')
def owner_of_that_key_holds(context, value, map_name):
    key = context.world.last_write.key
    _assert_holds(context, context.world.owner_of(key), map_name, key, value)
    _attach_holdings(context, map_name, key)


@when('the owner of "{key}" is killed')
def owner_killed(context, key):
    _owner_goes(context, key, "killed")


@then(
    "a new single-server client on each running node reads {value:Json} "
    'under "{key}" in map "{map_name}" within {secs:Limit}'
)
def each_node_reads(context, value, key, map_name, secs):
    world = context.world
    cluster = world.cluster
    urls = {n: cluster.client_url(n) for n in cluster.live_nodes()}
    readers = NodeReaders(world.loop, urls, cluster.token("reader"))
    seen = []

    def every_node_gives_it():
        seen[:] = readers.read(map_name, key, world.limit(secs))
        wrong = missing(seen, value)
        if len(wrong) == len(seen):
            verdict = f"lost: no running node gives the acknowledged {json.dumps(value)}"
        else:
            verdict = f"not read through {len(wrong)} of {len(seen)} running nodes"
        if wrong:  # the readings themselves are the evidence: no matcher's repr around them
            raise AssertionError(f"{verdict}: " + "; ".join(r.words() for r in seen))

    try:
        eventually(every_node_gives_it, world.limit(secs), f"{key!r} read through every node")
    finally:
        readers.close()
        world.record(
            f"read {map_name}/{key} through a new client on each running node",
            **{r.node_id: r.words().split(": ", 1)[1] for r in seen},
        )
