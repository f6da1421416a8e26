"""behave hooks: one harness loop for the run, one World per scenario, evidence on every
scenario, and the cluster mode written into the run's Allure results.

Options (``behave -D name=value``):
  cluster=embedded|processes|external|hosts|topgun-rust
                               in-process nodes (default), ``topgun node`` OS processes, a
                               cluster the suite did not start (``seeds=``), OS processes each
                               on a network host of its own (root), or TopGun's Rust server
                               2.2.0 (from npm, started by the suite)
  seeds=ws://h1:p1,ws://h2:p2  the external cluster's client URLs (secrets from the
                               environment: TOPGUN_JWT_SECRET)
  token=…                      external: a token issued for the suite, used as it is
  roles=ADMIN,…                external: the roles of the tokens the suite signs itself
  form_timeout=N               external: seconds to wait for the cluster to settle (30)
  implementation=NAME          external: what the report calls the cluster judged
  stop_cmd= kill_cmd= start_cmd=   shell templates with {node_id} (and {client_url}) that
                               act on an external node; without them, scenarios that need
                               it are skipped and say so
  timeout_multiplier=N         stretch every time limit stated in the features (default 1);
                               the steps then say the limit that applied
  soak_seconds=N               run the reliability features' fault loops for N seconds

A scenario that cannot run in the chosen mode (``@hosts``, ``@os_processes``) is skipped and
shown as skipped with its reason.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import allure
import allure_commons
from allure_behave.listener import AllureListener
from allure_commons.types import AttachmentType
from behave.model import Status

from topgun.harness import LoopThread
from topgun.harness.evidence import ownership_svg, table_summary
from topgun.harness.external import CannotRunHere, NodeCommands
from topgun.harness.world import ExternalOptions, World, skip_reason
from topgun.reporting.results import mark_cluster_mode

_CONTROLLER_EVIDENCE = {
    "inspector_choice": "why that inspection method (the better ones the cluster lacks)",
    "settle_waits": "waits for the cluster to settle before judging",
    "peer_faults": "faults of the peer worked around by the harness (never a re-run)",
}
_STATED_LIMIT = re.compile(r"within (\d+(?:\.\d+)?) seconds(?! \()")


def before_all(context):
    userdata = context.config.userdata
    context.cluster_mode = userdata.get("cluster", "embedded")
    context.timeout_multiplier = float(userdata.get("timeout_multiplier", "1"))
    seeds = tuple(s.strip() for s in userdata.get("seeds", "").split(",") if s.strip())
    commands = NodeCommands(
        stop=userdata.get("stop_cmd", ""),
        kill=userdata.get("kill_cmd", ""),
        start=userdata.get("start_cmd", ""),
    )
    token = userdata.get("token", "")
    context.external = ExternalOptions(
        seeds,
        commands,
        token=token,
        roles=tuple(r.strip() for r in userdata.get("roles", "").split(",") if r.strip()),
        form_timeout=float(userdata.get("form_timeout", "30")),
    )
    context.implementation = userdata.get("implementation") or None
    if context.cluster_mode == "external" and not (
        seeds and (token or os.environ.get("TOPGUN_JWT_SECRET"))
    ):
        raise ValueError(
            "cluster=external needs -D seeds=ws://host:port,... and either -D token=… (a token "
            "issued for the suite) or TOPGUN_JWT_SECRET (the secret the cluster's client "
            "tokens are signed with) in the environment"
        )
    context.config.show_skipped = True  # a skipped scenario stays in the report, with why
    context.skip_reasons = {}
    context.results_dirs = _allure_results_dirs(context)
    for results in context.results_dirs:
        _empty(results)
    soak = userdata.get("soak_seconds")
    context.soak_seconds = float(soak) if soak else None
    context.loop = LoopThread()


def after_all(context):
    if not hasattr(context, "loop"):  # before_all refused the options
        return
    context.loop.close()
    for results in context.results_dirs:
        mark_cluster_mode(
            results,
            context.cluster_mode,
            context.skip_reasons,
            implementation=context.implementation,
        )


def before_scenario(context, scenario):
    if context.timeout_multiplier != 1:
        for step in scenario.all_steps:
            step.name = _STATED_LIMIT.sub(_stretched(context.timeout_multiplier), step.name)
    context.world = World(
        context.loop,
        mode=context.cluster_mode,
        timeout_multiplier=context.timeout_multiplier,
        external=context.external,
        soak_seconds=context.soak_seconds,
    )
    reason = skip_reason(context.cluster_mode, set(scenario.effective_tags))
    if reason:  # never silent: the skip and its reason appear in the report
        allure.attach(reason, name="skipped", attachment_type=AttachmentType.TEXT)
        _skip(context, scenario, reason)


def after_step(context, step):
    """A step that this cluster cannot run or check skips the scenario, with the reason; a
    step that ran out of time says which step and what it waited for."""
    if isinstance(step.exception, TimeoutError):
        said = str(step.exception) or "no answer within its time limit"
        words = f"timed out in '{step.keyword} {step.name}': {said}"
        step.exception = TimeoutError(words)
        step.error_message = f"{words}\n{step.error_message or ''}"
    if isinstance(step.exception, CannotRunHere):
        _skip(context, context.scenario, str(step.exception))
        step.status = Status.skipped
        step.exception = step.exc_traceback = None  # else allure-behave calls it "broken"
        step.error_message = ""


def _skip(context, scenario, reason):
    """Skip ``scenario`` and keep the reason for its Allure result (written after the run)."""
    scenario.skip(reason)
    uuid = _current_result_uuid()
    if uuid:
        context.skip_reasons[uuid] = reason


def after_scenario(context, scenario):
    world = context.world
    try:
        _attach_evidence(world, failed=scenario.status == "failed")
    finally:
        world.close()


def _stretched(multiplier):
    def replace(match):
        stated = float(match.group(1))
        stretched = f"stretched {multiplier:g} times to {stated * multiplier:g} s"
        return f"within {match.group(1)} seconds ({stretched})"

    return replace


def _attach_evidence(world, *, failed):
    """What the scenario saw, on every scenario; node logs too when it failed."""
    for cluster in world.clusters:
        if cluster.live_nodes():
            try:
                world.keep_table("at the end of the scenario", cluster.any_table())
            except Exception as exc:  # evidence is best effort; the verdict is already made
                world.record("partition map unavailable at the end", error=str(exc))
    _attach_json(_what_was_seen(world), "what the scenario saw")
    if world.timeline.events:
        allure.attach(world.timeline.as_csv(), name="timeline", attachment_type=AttachmentType.CSV)
    owners = {t.owners for _, t in world.tables}
    if len(owners) > 1:
        marked = world.notes.get("partition")
        first, last = world.tables[0], world.tables[-1]
        allure.attach(
            ownership_svg([first, last], marked),
            name="partition ownership before and after (outlined: the key's partition)",
            attachment_type=AttachmentType.SVG,
        )
    if failed:
        for cluster in world.clusters:
            for node in cluster.order:
                allure.attach(
                    cluster.logs(node) or "(no log lines)",
                    name=f"log of {node}",
                    attachment_type=AttachmentType.TEXT,
                )


def _what_was_seen(world):
    seen = {"cluster mode": world.mode if world.clusters else "none: no node takes part"}
    for cluster in world.clusters:
        seen["how the suite inspected the cluster"] = _or_unknown(
            lambda c=cluster: c.inspector.name
        )
        for name, words in _CONTROLLER_EVIDENCE.items():
            if getattr(cluster, name, None):
                seen[words] = getattr(cluster, name)
        seen["nodes"] = {
            n: {
                "running": n in cluster.live_nodes(),
                "address": _or_unknown(lambda n=n, c=cluster: c.client_url(n)),
            }
            for n in cluster.order
        }
    for i, driver in enumerate(world.clients, 1):
        seen[f"client {i}"] = _or_unknown(
            lambda d=driver: {"connections": d.states(), "routing metrics": d.metrics()}
        )
    if world.tables:
        seen["partition maps"] = {caption: table_summary(t) for caption, t in world.tables}
    return seen


def _or_unknown(read):
    try:
        return read()
    except Exception as exc:
        return f"unknown ({exc})"


def _attach_json(value, name):
    allure.attach(
        json.dumps(value, indent=2, default=str), name=name, attachment_type=AttachmentType.JSON
    )


def _current_result_uuid():
    for plugin in allure_commons.plugin_manager.get_plugins():
        if isinstance(plugin, AllureListener) and plugin.current_scenario_uuid:
            return str(plugin.current_scenario_uuid)
    return None


def _allure_results_dirs(context):
    return [
        Path(out)
        for fmt, out in zip(
            context.config.format or [], context.config.outfiles or [], strict=False
        )
        if fmt == "allure" and out
    ]


def _empty(results):
    """Each run replaces the previous run's Allure results instead of adding to them."""
    if results.is_dir():
        for entry in results.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
