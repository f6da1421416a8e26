"""Steps of the reliability features: writers, faults on a schedule, and the set check."""

import json
import time

import allure
from allure_commons.types import AttachmentType
from behave import given, then, when
from hamcrest import assert_that, empty, equal_to, greater_than

from topgun.harness import eventually
from topgun.harness.trial import Trial


def _trial(context) -> Trial:
    return Trial.of(context.world)


def _sides(text):
    return [[n.strip().strip('"') for n in side.split(",")] for side in text.split("|")]


@given(
    "a running cluster of {count:d} nodes that declare a silent node dead after {seconds:g} seconds"
)
def cluster_with_failure_timeout(context, count, seconds):
    context.world.start_cluster(
        count, failure_timeout_s=seconds, heartbeat_interval_s=min(0.5, seconds / 4)
    )


@given(
    "{writers:d} clients writing, each to new keys of its own and each key {times:d} times, "
    "one write at a time, each write given {seconds:g} seconds to be acknowledged"
)
def writers_running(context, writers, times, seconds, pinned_to=None):
    world = context.world
    trial = Trial.start(
        world, writers=writers, writes_per_key=times, write_timeout_s=seconds, pinned_to=pinned_to
    )
    world.notes["trial"] = trial
    context.add_cleanup(trial.writers.stop, seconds + 2.0)
    trial.wait_for_acks(writers, world.limit(10))


@given(
    "{writers:d} clients writing, each to new keys of its own and each key {times:d} times, "
    "one write at a time, each write given {seconds:g} seconds to be acknowledged, and one "
    'more that knows only the owner of "{key}" and writes through it alone'
)
def writers_running_one_pinned(context, writers, times, seconds, key):
    owner = context.world.cluster.owner_of(key)
    writers_running(context, writers, times, seconds, pinned_to=owner)


@when(
    "for {seconds:g} seconds, one node after the other is killed and, {down:g} seconds later, "
    "restarted at the same address, and the cluster re-forms within {formed:Limit} each time"
)
def kill_restart_loop(context, seconds, down, formed):
    nemesis = _trial(context).nemesis
    _fault_loop(context, seconds, down, formed, nemesis.kill, nemesis.restart)


@when(
    "for {seconds:g} seconds, one node after the other is paused for {paused:g} seconds "
    "and resumed, and the cluster re-forms within {formed:Limit} each time"
)
def pause_loop(context, seconds, paused, formed):
    nemesis = _trial(context).nemesis
    _fault_loop(context, seconds, paused, formed, nemesis.pause, nemesis.resume)


def _fault_loop(context, seconds, hold, formed, fault, heal):
    """One node after the other: ``fault`` it, let the writers run ``hold`` seconds,
    ``heal`` it, wait for the cluster to re-form and for one more acknowledged write."""
    world = context.world
    trial = _trial(context)
    cluster = world.cluster
    deadline = time.monotonic() + world.soak(seconds)
    turn = 0
    while time.monotonic() < deadline:
        node = cluster.order[turn % len(cluster.order)]
        turn += 1
        fault(node)
        trial.run_for(hold)
        heal(node)
        cluster.wait_until_formed(world.limit(formed))
        trial.nemesis.log("re-formed", cluster.order)
        trial.wait_for_acks(1, world.limit(formed))
    world.notes["rounds"] = turn


@when('the owner of "{key}" is cut off from the other nodes for {seconds:g} seconds')
def owner_isolated(context, key, seconds):
    world = context.world
    trial = _trial(context)
    owner = world.cluster.owner_of(key)
    world.notes["minority"] = [owner]
    _partitioned(context, trial, [[owner]], lambda: trial.nemesis.isolate(owner), seconds)


@when("the cluster is split into {sides} for {seconds:g} seconds")
def cluster_split(context, sides, seconds):
    trial = _trial(context)
    groups = _sides(sides)
    minority = min(groups, key=len)
    context.world.notes["minority"] = minority
    _partitioned(context, trial, [minority], lambda: trial.nemesis.split(*groups), seconds)


def _partitioned(context, trial, minorities, cut, seconds):
    """Cut, let the writers write for ``seconds``, and count what the minority applied from
    twice the failure timeout after the cut (by then it must know it is cut off)."""
    world = context.world
    nodes = [n for side in minorities for n in side]
    failure_timeout = float(world.cluster.settings.node_options.get("failure_timeout_s", 3.0))
    cut()
    grace = min(2 * failure_timeout, seconds / 2)
    world.notes["grace"] = grace
    world.notes["minority_applied"] = trial.applied_during(nodes, world.soak(seconds), grace)


@when(
    'what "{node}" sends to the other nodes is dropped for {seconds:g} seconds, '
    "while what they send still reaches it"
)
def one_way_cut(context, node, seconds):
    world = context.world
    trial = _trial(context)
    world.notes["minority"] = [node]

    def cut():
        for other in world.cluster.order:
            if other != node:
                trial.nemesis.cut(node, other)

    _partitioned(context, trial, [[node]], cut, seconds)


@when(
    'for {seconds:g} seconds the link of "{node}" drops {loss:d}% of what it sends '
    "and carries at most {kbit:d} kbit/s"
)
def slow_link(context, seconds, node, loss, kbit):
    world = context.world
    trial = _trial(context)
    cluster = world.cluster
    version = cluster.any_table().version
    trial.nemesis.slow(node, loss_percent=loss, kbit=kbit)
    everyone = sorted(cluster.order)

    def nobody_declared_dead(_elapsed):
        for n in cluster.order:
            members = sorted(cluster.members(n))
            assert_that(members, equal_to(everyone), f"members seen by {n} on a slow link")
        assert_that(cluster.any_table().version, equal_to(version), "partition table version")

    trial.run_for(world.soak(seconds), nobody_declared_dead)


@when("every fault is healed and the cluster of {count:d} nodes re-forms within {seconds:Limit}")
def heal(context, count, seconds):
    world = context.world
    _trial(context).nemesis.heal()
    table = world.cluster.wait_until_formed(world.limit(seconds))
    assert_that(len(table.node_ids()), equal_to(count), "nodes in the partition table")


@then(
    "reading every key back within {seconds:Limit} finds no acknowledged write lost "
    "and nothing that was not written"
)
def set_check(context, seconds):
    trial = _trial(context)
    result = trial.finish(context.world.limit(seconds))
    report = trial.report()
    counts = result.counts()
    allure.attach(
        json.dumps(report, indent=2),
        name="set check: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
        attachment_type=AttachmentType.JSON,
    )
    assert_that(result.ok, greater_than(0), f"acknowledged writes (none proves nothing): {counts}")
    assert_that(
        [w.to_json() for w in result.lost[:10]], empty(), f"acknowledged writes lost: {counts}"
    )
    assert_that(result.unexpected[:10], empty(), f"values never written: {counts}")


@then("the cut-off nodes applied no write once they had been cut off for the failure timeout twice")
def minority_applied_nothing(context):
    applied = context.world.notes["minority_applied"]
    assert_that(
        applied,
        equal_to(dict.fromkeys(applied, 0.0)),
        f"writes applied as owner on the cut-off side, counted from "
        f"{context.world.notes['grace']:g} s after the cut",
    )


@then(
    "the owner and the backup of each of {count:d} written keys, spread over the run, "
    "hold its newest value within {seconds:Limit}"
)
def replicas_caught_up(context, count, seconds):
    trial = _trial(context)

    def caught_up():
        wrong = trial.replica_mismatches(count)
        assert_that(wrong[:10], empty(), f"{len(wrong)} replicas behind")

    eventually(caught_up, context.world.limit(seconds), "every replica holding the newest value")
