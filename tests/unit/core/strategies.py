"""Hypothesis strategies for the core's wire values, shared by the message and codec tests."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from topgun.core import messages as m
from topgun.core import sync_messages as sm
from topgun.core.hlc import Timestamp
from topgun.core.merkle import HEX
from topgun.core.records import MAX_TTL_MS, LWWRecord
from topgun.core.table import NodeInfo, NodeStatus, build_table, ideal_assignment

short_text = st.text(max_size=12)
ids = st.text(min_size=1, max_size=16)
map_names = st.text(min_size=1, max_size=20)

# Values that survive a msgpack round trip unchanged and compare equal to themselves
# (no NaN, lists rather than tuples, string map keys).
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False),
    short_text,
    st.binary(max_size=8),
)
json_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(short_text, inner, max_size=3)
    ),
    max_leaves=8,
)
non_null_values = json_values.filter(lambda v: v is not None)
json_objects = st.dictionaries(short_text, json_values, max_size=3)

epoch_ms = st.integers(min_value=0, max_value=2**53).map(float)
finite_floats = st.floats(allow_nan=False, allow_infinity=False)

timestamps = st.builds(
    Timestamp,
    st.integers(min_value=0, max_value=2**53),
    st.integers(min_value=0, max_value=2**31 - 1),
    st.text(max_size=40),
)
records = st.builds(
    LWWRecord,
    json_values,
    timestamps,
    st.one_of(st.none(), st.integers(min_value=1, max_value=MAX_TTL_MS)),
)
concerns = st.sampled_from(sorted(m.WRITE_CONCERNS))


@st.composite
def client_ops(draw: st.DrawFn) -> m.ClientOp:
    """Ops that keep the rules of ``m.OP_FIELDS``: LWW ops carry a record (a REMOVE a
    tombstone), OR ops carry orRecord / orTag instead."""
    op_type = draw(st.one_of(st.none(), st.sampled_from(sorted(m.OP_TYPES))))
    record = or_record = or_tag = None
    if op_type in (None, m.OP_PUT, m.OP_REMOVE):
        record = draw(records)
        if op_type == m.OP_REMOVE:
            record = LWWRecord(None, record.timestamp, record.ttl_ms)
    elif op_type == "OR_ADD":
        or_record = {"value": draw(non_null_values), "timestamp": draw(timestamps).to_wire(),
                     "tag": draw(st.text(min_size=1, max_size=20))}  # fmt: skip
    else:
        or_tag = draw(short_text)
    return m.ClientOp(
        map_name=draw(map_names),
        key=draw(st.text(max_size=30)),
        record=record,
        op_type=op_type,
        id=draw(st.one_of(st.none(), ids)),
        or_record=or_record,
        or_tag=or_tag,
    )


op_results = st.builds(
    m.OpResult,
    ids,
    st.booleans(),
    concerns,
    st.one_of(st.none(), short_text),
)
not_owner_hints = st.builds(
    m.NotOwnerHint,
    st.integers(min_value=0, max_value=270),
    st.one_of(st.none(), ids),
    st.integers(min_value=0, max_value=2**40),
    short_text,
)
queries = st.builds(
    m.Query,
    st.one_of(st.none(), json_objects),
    st.one_of(st.none(), json_objects),
    st.one_of(st.none(), st.dictionaries(short_text, st.sampled_from(["asc", "desc"]), max_size=3)),
    st.one_of(st.none(), st.integers(min_value=0, max_value=10_000)),
    st.one_of(st.none(), st.text(max_size=40)),
)
event_payloads = st.builds(
    m.ServerEventPayload,
    map_names,
    st.text(max_size=20),
    st.sampled_from(["PUT", "REMOVE", "UPDATED", "OR_ADD", "OR_REMOVE"]),
    st.one_of(st.none(), records),
)


@st.composite
def partition_tables(draw: st.DrawFn):
    members = draw(st.sets(st.sampled_from(["node-1", "node-2", "node-3", "n4"]), min_size=1))
    nodes = [
        NodeInfo(n, draw(st.text(max_size=20)), draw(st.sampled_from(list(NodeStatus))))
        for n in sorted(members)
    ]
    return build_table(
        draw(st.integers(min_value=0, max_value=2**40)),
        nodes,
        ideal_assignment(members),
        draw(st.integers(min_value=0, max_value=2**53)),
    )


tree_paths = st.text(alphabet=HEX, max_size=3)
hashes32 = st.integers(min_value=0, max_value=2**32 - 1)


@st.composite
def unsupported(draw: st.DrawFn) -> m.Unsupported:
    msg_type = draw(st.sampled_from(sorted(m.UNSUPPORTED_TYPES)))
    body = draw(json_objects)
    body["type"] = msg_type
    return m.Unsupported(msg_type, body)


MESSAGE_STRATEGIES: dict[type[m.Message], st.SearchStrategy[Any]] = {
    m.AuthRequired: st.just(m.AuthRequired()),
    m.Auth: st.builds(m.Auth, st.text(max_size=200)),
    m.AuthAck: st.just(m.AuthAck()),
    m.AuthFail: st.builds(
        m.AuthFail, short_text, st.one_of(st.none(), st.integers(min_value=0, max_value=9999))
    ),
    m.Ping: st.builds(m.Ping, st.one_of(epoch_ms, finite_floats)),
    m.Pong: st.builds(m.Pong, epoch_ms, epoch_ms),
    m.OpBatch: st.builds(
        m.OpBatch,
        st.lists(client_ops(), max_size=3).map(tuple),
        st.one_of(st.none(), concerns),
        st.one_of(st.none(), finite_floats),
    ),
    m.ClientOpMessage: st.builds(m.ClientOpMessage, client_ops()),
    m.OpAck: st.builds(
        m.OpAck,
        ids,
        st.one_of(st.none(), st.lists(op_results, max_size=3).map(tuple)),
        st.one_of(st.none(), concerns),
    ),
    m.OpRejected: st.builds(
        m.OpRejected,
        ids,
        short_text,
        st.one_of(st.none(), st.integers(min_value=0, max_value=999)),
        st.one_of(st.none(), not_owner_hints),
    ),
    m.ErrorMessage: st.builds(
        m.ErrorMessage, st.integers(min_value=0, max_value=999), short_text, json_values
    ),
    m.PartitionMapRequest: st.builds(
        m.PartitionMapRequest, st.integers(min_value=0, max_value=2**53)
    ),
    m.PartitionMap: st.builds(m.PartitionMap, partition_tables()),
    m.QuerySub: st.builds(m.QuerySub, ids, map_names, queries),
    m.QueryUnsub: st.builds(m.QueryUnsub, ids),
    m.QueryResp: st.builds(
        m.QueryResp,
        ids,
        st.lists(st.tuples(st.text(max_size=10), json_values), max_size=3).map(tuple),
        st.one_of(st.none(), st.booleans()),
        st.one_of(st.none(), short_text),
        st.one_of(st.none(), st.text(max_size=40)),
        st.one_of(st.none(), st.sampled_from(sorted(m.CURSOR_STATUSES))),
    ),
    m.QueryUpdate: st.builds(
        m.QueryUpdate,
        ids,
        st.text(max_size=10),
        json_values,
        st.sampled_from(["UPDATE", "REMOVE", "ENTER", "LEAVE"]),
    ),
    m.ServerBatchEvent: st.builds(
        m.ServerBatchEvent,
        st.lists(event_payloads, max_size=3).map(tuple),
        st.one_of(st.none(), timestamps.map(Timestamp.to_wire)),
    ),
    m.ShutdownPending: st.builds(m.ShutdownPending, st.integers(min_value=0, max_value=10**9)),
    m.Unsupported: unsupported(),
    sm.SyncInit: st.builds(sm.SyncInit, map_names, st.one_of(st.none(), epoch_ms)),
    sm.MerkleReqBucket: st.builds(sm.MerkleReqBucket, map_names, tree_paths),
    sm.SyncRespRoot: st.builds(sm.SyncRespRoot, map_names, hashes32, timestamps),
    sm.SyncRespBuckets: st.builds(
        sm.SyncRespBuckets,
        map_names,
        tree_paths,
        st.dictionaries(st.sampled_from(list(HEX)), hashes32, max_size=16),
    ),
    sm.SyncRespLeaf: st.builds(
        sm.SyncRespLeaf,
        map_names,
        tree_paths,
        st.lists(st.tuples(st.text(max_size=10), records), max_size=3).map(tuple),
    ),
    sm.SyncResetRequired: st.builds(sm.SyncResetRequired, map_names),
    sm.ServerEvent: st.builds(
        sm.ServerEvent,
        event_payloads.map(lambda e: (e,)),
        st.one_of(st.none(), timestamps.map(Timestamp.to_wire)),
    ),
}

any_message = st.one_of(*MESSAGE_STRATEGIES.values())
