"""Steps of the TopGun client protocol feature: change events, Merkle sync, paged reads."""

from behave import given, then, when
from hamcrest import assert_that, equal_to, has_length, is_, less_than_or_equal_to, none

from topgun.core.merkle import MASK32, entry_hash
from topgun.core.records import LWWRecord
from topgun.harness import eventually
from topgun.harness.client_driver import ClientDriver
from topgun.harness.wire import WireDriver


def _writer(context):
    """The first client of the scenario ("signs in as writer")."""
    return context.world.clients[0]


def _named_client(context, name, storage=None):
    world = context.world
    seeds = world.cluster.seeds()
    driver = world.add_client(
        ClientDriver.for_cluster(world.loop, seeds, world.cluster.token(name), storage=storage)
    )
    driver.start(world.limit(10))
    driver.wait_signed_in(len(seeds), world.limit(5))
    world.notes[f"client:{name}"] = driver
    return driver


def _wire(context, node_id, user):
    world = context.world
    url = world.cluster.client_url(node_id)
    wire = WireDriver.open(world.loop, url, world.cluster.token(user, roles=("ADMIN",)))
    world.wire_clients.append(wire)
    return wire


def _users(n):
    return {f"user:{i}": {"name": f"user {i}"} for i in range(n)}


@given(
    'a protocol-level client connected to a node that holds no copy of "{key}", '
    'watching map "{map_name}"'
)
def wire_watcher(context, key, map_name):
    cluster = context.world.cluster
    holders = {cluster.owner_of(key), *cluster.backups_of(key)}
    node = next(n for n in cluster.live_nodes() if n not in holders)
    wire = _wire(context, node, "watcher")
    wire.send({"type": "QUERY_SUB",
               "payload": {"queryId": "watch", "mapName": map_name, "query": {}}})  # fmt: skip
    wire.recv("QUERY_RESP", within=context.world.limit(5))
    context.world.notes["watcher"] = wire


@then(
    'the watcher is told within {secs:Limit} that "{key}" in map "{map_name}" '
    "was set to {value:Json}"
)
def watcher_told(context, secs, key, map_name, value):
    wire = context.world.notes["watcher"]
    msg = wire.recv("SERVER_BATCH_EVENT", "SERVER_EVENT", within=context.world.limit(secs))
    payload = msg["payload"]
    events = payload["events"] if msg["type"] == "SERVER_BATCH_EVENT" else [payload]
    assert_that([(e["mapName"], e["key"], e["eventType"]) for e in events],
                equal_to([(map_name, key, "PUT")]), "the change events")  # fmt: skip
    assert_that(events[0]["record"]["value"], equal_to(value), "the record in the event")
    assert_that(sorted(msg["timestamp"]), equal_to(["counter", "millis", "nodeId"]),
                "the event's clock stamp is a full HLC timestamp")  # fmt: skip


@given('a second client "{name}" that has opened map "{map_name}" and then gone offline')
def client_gone_offline(context, name, map_name):
    driver = _named_client(context, name)
    driver.local_entries(map_name)
    driver.close()
    context.world.notes[f"storage:{name}"] = driver.storage


@when('the writer writes {count:d} users to map "{map_name}" and they are acknowledged')
def writer_writes_users(context, count, map_name):
    writer = _writer(context)
    for key, value in _users(count).items():
        writer.write(map_name, key, value)
    writer.flush(context.world.limit(10))


@when('the writer removes "{key}" from map "{map_name}" and it is acknowledged')
def writer_removes(context, key, map_name):
    writer = _writer(context)
    writer.remove(map_name, key)
    writer.flush(context.world.limit(5))


@when('"{name}" comes back online')
def client_back_online(context, name):
    _named_client(context, name, storage=context.world.notes[f"storage:{name}"])


@then(
    '"{name}" holds the {count:d} remaining users of map "{map_name}" locally within {secs:Limit}'
)
def client_holds_remaining(context, name, count, map_name, secs):
    driver = context.world.notes[f"client:{name}"]

    def caught_up():
        entries = driver.local_entries(map_name)
        assert_that(entries, has_length(count), "users held locally")
        return entries

    entries = eventually(caught_up, context.world.limit(secs), f"{name} caught up")
    expected = {k: v for k, v in _users(count + 1).items() if k in entries}
    assert_that(entries, equal_to(expected), "the users held locally")
    assert_that(driver.read_local(map_name, "user:7"), is_(none()), "the removed user")


@given('a second client "{name}" subscribed to map "{map_name}" where "{field}" is "{value}"')
def client_subscribed(context, name, map_name, field, value):
    driver = _named_client(context, name)
    context.world.notes[f"sub:{name}"] = driver.subscribe(
        map_name, {field: value}, context.world.limit(5)
    )


@given('the writer has written {value:Json} to "{key}" in map "{map_name}"')
@when('the writer writes {value:Json} to "{key}" in map "{map_name}"')
def writer_writes(context, value, key, map_name):
    writer_writes_within(context, value, key, map_name, 5)


@when(
    'the writer writes {value:Json} to "{key}" in map "{map_name}" and it is acknowledged '
    "within {secs:Limit}"
)
def writer_writes_within(context, value, key, map_name, secs):
    writer = _writer(context)
    writer.write(map_name, key, value)
    writer.flush(context.world.limit(secs))


@when('the node serving the subscription of "{name}" is killed')
def kill_subscription_node(context, name):
    world = context.world
    sub = world.notes[f"sub:{name}"]
    node = world.loop.call(lambda: sub.conn.id if sub.conn is not None else None)
    assert_that(node in world.cluster.live_nodes(), is_(True), f"{name} is served by {node}")
    world.cluster.kill(node)


@then('the subscription of "{name}" holds exactly {keys:Json} within {secs:Limit}')
def subscription_holds(context, name, keys, secs):
    driver = context.world.notes[f"client:{name}"]
    sub = context.world.notes[f"sub:{name}"]

    def holds():
        assert_that(sorted(driver.subscription_results(sub)), equal_to(keys), "live results")

    eventually(holds, context.world.limit(secs), "the live results")


@then('"{name}" reads {value:Json} under "{key}" in its own map "{map_name}" within {secs:Limit}')
def client_reads_own_map(context, name, value, key, map_name, secs):
    driver = context.world.notes[f"client:{name}"]

    def reads():
        assert_that(driver.read_local(map_name, key), equal_to(value), "local read")

    eventually(reads, context.world.limit(secs), "the local map")


@then(
    'a protocol-level sync of map "{map_name}" on each of the {nodes:d} nodes finds all '
    "{count:d} records, with a root hash that sums them"
)
def sync_on_every_node(context, map_name, nodes, count):
    world = context.world
    writer_map = world.loop.call(_writer(context).client.get_map, map_name)
    writer_root = world.loop.call(writer_map.tree.root)
    live = world.cluster.live_nodes()
    assert_that(live, has_length(nodes), "live nodes")
    for node in live:
        wire = _wire(context, node, "syncer")
        root = wire.sync_root(map_name)
        records = wire.walk(map_name, world.limit(10))
        assert_that(sorted(records), equal_to(sorted(_users(count))), f"records synced via {node}")
        summed = (
            sum(entry_hash(k, LWWRecord.from_wire(r).timestamp) for k, r in records.items())
            & MASK32
        )
        assert_that(root, equal_to(summed), f"root hash from {node} = sum of its records")
        assert_that(root, equal_to(writer_root), f"root hash from {node} = the writer's own")


@then(
    'a protocol-level client asking map "{map_name}" for {size:d} rows at a time gets all '
    "{count:d} users in {pages:d} pages, following the cursor"
)
def wire_pages(context, map_name, size, count, pages):
    cluster = context.world.cluster
    wire = _wire(context, cluster.live_nodes()[-1], "pager")
    query = {"sort": {"_key": "asc"}, "limit": size}
    keys, answers = [], []
    for n in range(pages + 1):
        resp = wire.query(f"page-{n}", map_name, query)
        answers.append(resp)
        assert_that(len(resp["results"]), less_than_or_equal_to(size), "rows in one page")
        keys.extend(r["key"] for r in resp["results"])
        if not resp["hasMore"]:
            break
        query = {**query, "cursor": resp["nextCursor"]}
    assert_that(answers, has_length(pages), "pages")
    assert_that(keys, equal_to(sorted(_users(count))), "every user once, in key order")
    assert_that([a["cursorStatus"] for a in answers],
                equal_to(["none"] + ["valid"] * (pages - 1)), "cursor status")  # fmt: skip


@then('the writer reads all {count:d} users of map "{map_name}" in pages of {size:d}')
def writer_reads_pages(context, count, map_name, size):
    rows = _writer(context).query_all(map_name, size, context.world.limit(10))
    assert_that(rows, equal_to(_users(count)), "what the writer read")
