"""behave hooks: one harness loop for the run, one World per scenario, evidence on failure.

Options (``behave -D name=value``):
  cluster=embedded|processes|hosts
                               in-process nodes (default), ``topgun node`` OS processes, or
                               such processes each on a network host of its own (root)
  timeout_multiplier=N         stretch every time limit stated in the features (default 1)
  soak_seconds=N               run the reliability features' fault loops for N seconds

A scenario that cannot run in the chosen mode (``@hosts``, ``@os_processes``) is skipped and
shown as skipped with its reason (behave would otherwise leave it out of the Allure results).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import allure
from allure_commons.types import AttachmentType

from topgun.harness import LoopThread
from topgun.harness.world import World, skip_reason


def before_all(context):
    userdata = context.config.userdata
    context.cluster_mode = userdata.get("cluster", "embedded")
    context.timeout_multiplier = float(userdata.get("timeout_multiplier", "1"))
    soak = userdata.get("soak_seconds")
    context.soak_seconds = float(soak) if soak else None
    context.show_skipped_by_default = context.config.show_skipped
    _empty_allure_results(context)
    context.loop = LoopThread()


def after_all(context):
    context.loop.close()


def before_scenario(context, scenario):
    context.world = World(
        context.loop,
        mode=context.cluster_mode,
        timeout_multiplier=context.timeout_multiplier,
        soak_seconds=context.soak_seconds,
    )
    context.config.show_skipped = context.show_skipped_by_default
    reason = skip_reason(context.cluster_mode, set(scenario.effective_tags))
    if reason:  # never silent: the skip and its reason appear in the report
        context.config.show_skipped = True
        allure.attach(reason, name="skipped", attachment_type=AttachmentType.TEXT)
        scenario.skip(reason)


def after_scenario(context, scenario):
    world = context.world
    try:
        if scenario.status == "failed":
            _attach_evidence(world)
    finally:
        world.close()


def _attach_evidence(world):
    for driver in world.clients:
        try:
            allure.attach(
                json.dumps({"connections": driver.states(), "routing": driver.metrics()}, indent=2),
                name="client state at failure",
                attachment_type=AttachmentType.JSON,
            )
        except Exception as exc:  # evidence is best effort; the failure itself is reported
            allure.attach(
                repr(exc), name="client state unavailable", attachment_type=AttachmentType.TEXT
            )
    for cluster in world.clusters:
        for node in cluster.order:
            allure.attach(
                cluster.logs(node) or "(no log lines)",
                name=f"log of {node}",
                attachment_type=AttachmentType.TEXT,
            )


def _empty_allure_results(context):
    """Each run replaces the previous run's Allure results instead of adding to them."""
    for fmt, out in zip(context.config.format or [], context.config.outfiles or [], strict=False):
        if fmt == "allure" and out:
            results = Path(out)
            if results.is_dir():
                for entry in results.iterdir():
                    if entry.is_dir():
                        shutil.rmtree(entry)
                    else:
                        entry.unlink()
