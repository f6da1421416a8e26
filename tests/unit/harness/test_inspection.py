"""What the inspectors derive without asking anyone: roles from a table, live members, and
the words a settle wait uses for what the nodes said."""

from __future__ import annotations

from topgun.core.table import NodeInfo, NodeStatus, build_table, ideal_assignment
from topgun.harness.external import SettleWait, _Seen, _trouble
from topgun.harness.inspection import live_nodes_of, role_in


def test_role_comes_from_the_nodes_own_table() -> None:
    table = build_table(1, [NodeInfo("a", ""), NodeInfo("b", "")], ideal_assignment(["a", "b"]))
    assert role_in(table, "a", 0) == "owner"
    assert role_in(table, "b", 0) == "backup"
    assert role_in(table, "c", 0) == "none"
    assert role_in(None, "a", 0) == "none"
    assert role_in(table, "a", 10_000) == "none"


def test_members_of_a_map_leave_out_the_nodes_it_marks_failed() -> None:
    table = build_table(
        3,
        [NodeInfo("a", ""), NodeInfo("b", "", NodeStatus.FAILED), NodeInfo("c", "")],
        ideal_assignment(["a", "c"]),
    )
    assert live_nodes_of(table) == ["a", "c"]
    assert live_nodes_of(None) == []


def test_seeds_that_serve_maps_over_different_members_are_named_with_their_maps() -> None:
    small = build_table(3, [NodeInfo("a", ""), NodeInfo("b", "")], ideal_assignment(["a", "b"]))
    big_nodes = [NodeInfo(i, "") for i in ("a", "b", "c")]
    big = build_table(4, big_nodes, ideal_assignment(["a", "b", "c"]))
    seen = {
        "ws://h1": _Seen(3, ("a", "b"), "", small),
        "ws://h2": _Seen(4, ("a", "b", "c"), "", big),
        "ws://h3": _Seen(None, (), "serves no partition map yet"),
    }
    assert _trouble(seen, None) == (
        "serve maps v3 over [a, b] (ws://h1) and v4 over [a, b, c] (ws://h2); "
        "ws://h3 serves no partition map yet"
    )
    agreed = {"ws://h1": seen["ws://h1"], "ws://h2": _Seen(5, ("a", "b"), "", small)}
    assert _trouble(agreed, None) == ""  # versions may differ: the criteria judge that
    assert _trouble(agreed, ["a", "b", "c"]).endswith(", expected [a, b, c]")


def test_a_settle_wait_reads_as_a_sentence() -> None:
    wait = SettleWait("seeds", 1.234, 30, ("a", "b"), {"ws://h1": 3, "ws://h2": 5}, "x")
    assert str(wait) == (
        "the seeds agreed on members [a, b] after 1.23 s (limit 30 s); "
        "maps served: v3 by ws://h1, v5 by ws://h2; read through x"
    )
