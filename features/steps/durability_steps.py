"""Steps of the durability feature: nodes with a data dir, writers asking for a write
concern, whole-cluster crashes, a lost disk, a rolling restart, and the set check at the
level that must survive."""

import json

import allure
from allure_commons.types import AttachmentType
from behave import given, then, when
from hamcrest import assert_that, empty, equal_to, greater_than, has_key

from topgun.core.concern import Level
from topgun.harness.durability import DATA_DIR, wait_until_safe
from topgun.harness.external import CannotRunHere
from topgun.harness.trial import Trial
from topgun.harness.world import STARTS_ITS_OWN_NODES


def _level(name):
    assert_that(Level.__members__, has_key(name), "write-concern levels")
    return name


@given(
    "a running cluster of {count:d} nodes that keep their data on disk and declare a silent "
    "node dead after {seconds:g} seconds"
)
def durable_cluster(context, count, seconds):
    world = context.world
    if world.mode not in STARTS_ITS_OWN_NODES:
        raise CannotRunHere(
            "not run here: needs nodes the suite starts on a data dir (--data-dir) of its own, "
            f"kills and starts again; the {world.mode} cluster runs as it was started"
        )
    folder = world.scratch() / "data"  # each node keeps DIR/<node-id>; removed with the world
    world.start_cluster(
        count,
        **{DATA_DIR: str(folder)},
        failure_timeout_s=seconds,
        heartbeat_interval_s=min(0.5, seconds / 4),
    )


@given(
    "{count:d} clients writing at {level:w} and {more:d} client writing at {other:w}, each to "
    "new keys of its own and each key {times:d} times, one write at a time, each write "
    "given {seconds:g} seconds to be acknowledged"
)
def writers_at_levels(context, count, level, more, other, times, seconds):
    world = context.world
    levels = [_level(level)] * count + [_level(other)] * more
    trial = Trial.start(
        world, writers=len(levels), writes_per_key=times, write_timeout_s=seconds, levels=levels
    )
    world.notes["trial"] = trial
    context.add_cleanup(trial.writers.stop, seconds + 2.0)


@given("{count:d} writes have been acknowledged within {seconds:Limit}")
@when("{count:d} more writes are acknowledged within {seconds:Limit}")
def writes_acknowledged(context, count, seconds):
    Trial.of(context.world).wait_for_acks(count, context.world.limit(seconds))


@when("every node is killed at once")
def every_node_killed(context):
    world = context.world
    Trial.of(world).nemesis.kill_at_once(world.cluster.live_nodes())


@when("{nodes} are killed at once")
def nodes_killed(context, nodes):
    names = [n.strip().strip('"') for n in nodes.replace(" and ", ",").split(",")]
    Trial.of(context.world).nemesis.kill_at_once(names)


@when('"{node}" is killed and the data it kept on disk is deleted')
def node_loses_its_disk(context, node):
    nemesis = Trial.of(context.world).nemesis
    nemesis.kill(node)
    nemesis.lose_disk(node)


@when("every killed node is started again at the same address")
def killed_nodes_restarted(context):
    world = context.world
    nemesis = Trial.of(world).nemesis
    for node in [n for n in world.cluster.order if n in world.cluster.down]:
        nemesis.restart(node)


@when("the cluster of {count:d} nodes re-forms and says it is safe within {seconds:Limit}")
def cluster_safe_again(context, count, seconds):
    world = context.world
    trial = Trial.of(world)
    table = world.cluster.wait_until_formed(world.limit(seconds))
    assert_that(len(table.node_ids()), equal_to(count), "nodes in the partition table")
    wait_until_safe(world.cluster, world.limit(seconds))
    trial.nemesis.log("safe", world.cluster.order, mapVersion=table.version)
    world.keep_table("once safe again", table)


@when(
    "one node after the other is shut down and started again at the same address, and the "
    "cluster of {count:d} nodes says it is safe within {seconds:Limit} and acknowledges "
    "{acks:d} more writes each time"
)
def rolling_restart(context, count, seconds, acks):
    world = context.world
    trial = Trial.of(world)
    for node in list(world.cluster.order):
        trial.nemesis.shutdown(node)
        trial.nemesis.restart(node)
        cluster_safe_again(context, count, seconds)
        trial.wait_for_acks(acks, world.limit(seconds))


@then(
    "one read of every key within {seconds:Limit} finds no write acknowledged at {level:w} "
    "lost and nothing that was not written"
)
def nothing_kept_lost(context, seconds, level):
    trial = Trial.of(context.world)
    assert_that(trial.keep_at, equal_to(Level[_level(level)]), "the level the writes must keep")
    result = trial.finish(context.world.limit(seconds), once=True)
    counts = result.counts()
    allure.attach(
        json.dumps(trial.report(), indent=2),
        name="set check: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
        attachment_type=AttachmentType.JSON,
    )
    assert_that(result.kept, greater_than(0), f"writes acknowledged at {level}: {counts}")
    lost = [w.to_json() for w in result.lost[:10]]
    assert_that(lost, empty(), f"writes acknowledged at {level} lost: {counts}")
    assert_that(result.unexpected[:10], empty(), f"values never written: {counts}")


@then("the writes acknowledged at {level:w} that were lost are counted in the report")
def lower_level_losses_counted(context, level):
    trial = Trial.of(context.world)
    assert trial.result is not None, "read every key back first"
    figures = trial.result.below().get(_level(level), {"acknowledged": 0, "lost": 0})
    allure.attach(
        json.dumps(figures, indent=2),
        name=f"{level}: {figures['lost']} of {figures['acknowledged']} acknowledged writes lost",
        attachment_type=AttachmentType.JSON,
    )
    context.world.record(f"writes acknowledged at {level}", **figures)
    assert_that(figures["acknowledged"], greater_than(0), f"writes acknowledged at {level}")
