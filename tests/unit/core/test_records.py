"""LWW records and maps (reference §5.7)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topgun.core.errors import ProtocolError
from topgun.core.hlc import HLC, Timestamp
from topgun.core.records import MAX_TTL_MS, LWWMap, LWWRecord


class FakeClock:
    def __init__(self, ms: int = 0) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def ts(millis: int, counter: int = 0, node: str = "n") -> Timestamp:
    return Timestamp(millis, counter, node)


def state(m: LWWMap) -> dict[str, LWWRecord]:
    return dict(m.items())


# --- merge --------------------------------------------------------------------------------


def test_merge_into_empty_key() -> None:
    m = LWWMap()
    rec = LWWRecord("a", ts(1))
    assert m.merge("k", rec) is True
    assert m.record("k") == rec
    assert len(m) == 1


def test_merge_only_strictly_newer() -> None:
    m = LWWMap()
    m.merge("k", LWWRecord("a", ts(5, 1, "b")))
    assert m.merge("k", LWWRecord("older", ts(4, 9, "z"))) is False
    assert m.merge("k", LWWRecord("same-ts", ts(5, 1, "b"))) is False
    assert m.record("k") == LWWRecord("a", ts(5, 1, "b"))
    assert m.merge("k", LWWRecord("counter", ts(5, 2, "a"))) is True
    assert m.merge("k", LWWRecord("node", ts(5, 2, "b"))) is True
    assert m.get("k", 0) == "node"


def test_tombstone_hides_value_and_replicates() -> None:
    m = LWWMap()
    m.merge("k", LWWRecord({"v": 1}, ts(1)))
    assert m.merge("k", LWWRecord(None, ts(2))) is True
    assert m.get("k", 0) is None
    rec = m.record("k")
    assert rec is not None and rec.is_tombstone and not rec.is_live(0)
    assert list(m.live_items(0)) == []
    assert [k for k, _ in m.items()] == ["k"]  # tombstones stay for replication
    # an older write does not resurrect the key
    assert m.merge("k", LWWRecord({"v": 0}, ts(1, 5))) is False
    assert m.get("k", 0) is None


def test_falsy_values_are_not_tombstones() -> None:
    m = LWWMap()
    for i, value in enumerate([0, False, "", [], {}]):
        m.merge(f"k{i}", LWWRecord(value, ts(1)))
        assert m.get(f"k{i}", 0) == value
        assert not LWWRecord(value, ts(1)).is_tombstone


# --- set / remove with an HLC -------------------------------------------------------------


def test_set_and_remove() -> None:
    clock = FakeClock(100)
    hlc = HLC("n1", clock)
    m = LWWMap()
    rec = m.set("k", {"a": 1}, hlc)
    assert rec == LWWRecord({"a": 1}, Timestamp(100, 0, "n1"))
    assert m.get("k", 100) == {"a": 1}
    tomb = m.remove("k", hlc)
    assert tomb.is_tombstone and tomb.timestamp > rec.timestamp
    assert m.get("k", 100) is None


def test_set_rejects_none_and_bad_ttl() -> None:
    hlc = HLC("n1", FakeClock(1))
    m = LWWMap()
    with pytest.raises(ValueError):
        m.set("k", None, hlc)
    for bad in (0, -5, MAX_TTL_MS + 1):
        with pytest.raises(ValueError):
            m.set("k", 1, hlc, ttl_ms=bad)
    assert m.set("k", 1, hlc, ttl_ms=MAX_TTL_MS).ttl_ms == MAX_TTL_MS


def test_local_write_after_merging_a_newer_record_wins() -> None:
    """A write made after a remote record was stored must beat it (§5.7: the reference's
    merge folds the remote timestamp into the HLC first), or replicas diverge: this map
    would hold the local value while every other replica keeps the remote one."""
    clock = FakeClock(1_000)
    hlc = HLC("a", clock)
    m = LWWMap()
    remote = LWWRecord("remote", Timestamp(5_000, 3, "b"))  # peer's clock is 4 s ahead
    assert m.merge("k", remote)
    local = m.set("k", "local", hlc)
    assert local.timestamp > remote.timestamp
    assert m.get("k", 1_000) == "local"
    other = LWWMap()
    other.merge("k", remote)
    assert other.merge("k", local)  # another replica converges to the same value
    assert state(other) == state(m)
    tomb = m.remove("k", hlc)
    assert tomb.timestamp > local.timestamp


# --- TTL ----------------------------------------------------------------------------------


def test_ttl_expiry_uses_injected_now() -> None:
    rec = LWWRecord("v", ts(1_000), ttl_ms=500)
    assert not rec.is_expired(1_500)  # millis + ttl < now is expired; equal is not
    assert rec.is_live(1_500)
    assert rec.is_expired(1_501)
    assert not rec.is_live(1_501)
    m = LWWMap()
    m.merge("k", rec)
    m.merge("j", LWWRecord("w", ts(1_000)))
    assert m.get("k", 1_500) == "v"
    assert m.get("k", 1_501) is None
    assert dict(m.live_items(1_501)) == {"j": "w"}
    assert m.record("k") == rec  # expired records are still stored
    assert not LWWRecord("v", ts(0)).is_expired(10**15)


def test_set_with_ttl_expires() -> None:
    clock = FakeClock(10)
    hlc = HLC("n", clock)
    m = LWWMap()
    m.set("k", 1, hlc, ttl_ms=5)
    assert m.get("k", 15) == 1
    assert m.get("k", 16) is None


# --- prune --------------------------------------------------------------------------------


def test_prune_drops_only_older_tombstones() -> None:
    m = LWWMap()
    m.merge("old-tomb", LWWRecord(None, ts(1)))
    m.merge("new-tomb", LWWRecord(None, ts(10)))
    m.merge("edge-tomb", LWWRecord(None, ts(5)))
    m.merge("old-live", LWWRecord("x", ts(1)))
    assert m.prune(ts(5)) == ["old-tomb"]
    assert sorted(k for k, _ in m.items()) == ["edge-tomb", "new-tomb", "old-live"]
    assert sorted(m.prune(ts(100))) == ["edge-tomb", "new-tomb"]
    assert [k for k, _ in m.items()] == ["old-live"]
    assert m.prune(ts(100)) == []


# --- wire ---------------------------------------------------------------------------------


def test_record_wire_round_trip() -> None:
    rec = LWWRecord({"value": 1}, Timestamp(1771234567890, 0, "c1"), ttl_ms=60_000)
    wire = rec.to_wire()
    assert wire == {
        "value": {"value": 1},
        "timestamp": {"millis": 1771234567890.0, "counter": 0, "nodeId": "c1"},
        "ttlMs": 60_000,
    }
    assert LWWRecord.from_wire(wire) == rec
    plain = LWWRecord(None, ts(3))
    assert "ttlMs" not in plain.to_wire()  # absent, not nil
    assert plain.to_wire()["value"] is None  # a tombstone sends value: null
    assert LWWRecord.from_wire(plain.to_wire()) == plain


def test_from_wire_float_ttl_accepted() -> None:
    rec = LWWRecord.from_wire({"value": 1, "timestamp": ts(1).to_wire(), "ttlMs": 500.0})
    assert rec.ttl_ms == 500 and type(rec.ttl_ms) is int


GOOD_TS = {"millis": 1.0, "counter": 0, "nodeId": "n"}


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "record",
        [1, GOOD_TS],
        {"value": 1},
        {"value": 1, "timestamp": None},
        {"value": 1, "timestamp": {"millis": -1, "counter": 0, "nodeId": "n"}},
        {"value": 1, "timestamp": {"millis": 1.5, "counter": 0, "nodeId": "n"}},
        {"value": 1, "timestamp": "1:0:n"},
        {"value": 1, "timestamp": GOOD_TS, "ttlMs": 0},
        {"value": 1, "timestamp": GOOD_TS, "ttlMs": -1},
        {"value": 1, "timestamp": GOOD_TS, "ttlMs": 1.5},
        {"value": 1, "timestamp": GOOD_TS, "ttlMs": True},
        {"value": 1, "timestamp": GOOD_TS, "ttlMs": "100"},
        {"value": 1, "timestamp": GOOD_TS, "ttlMs": MAX_TTL_MS + 1},
        {"value": 1, "timestamp": GOOD_TS, "ttlMs": float("nan")},
        {"value": 1, "timestamp": GOOD_TS, "ttlMs": float("inf")},
    ],
)
def test_from_wire_rejects(bad: object) -> None:
    with pytest.raises(ProtocolError):
        LWWRecord.from_wire(bad)


# --- CRDT properties ----------------------------------------------------------------------

keys = st.sampled_from(["a", "b", "c"])
values = st.one_of(st.none(), st.integers(0, 3), st.text(max_size=2))
timestamps = st.builds(
    Timestamp, st.integers(0, 4), st.integers(0, 2), st.sampled_from(["n1", "n2", "n3"])
)
records = st.builds(LWWRecord, values, timestamps, st.one_of(st.none(), st.integers(1, 10)))
# Distinct (key, timestamp) pairs: two different records with the same key and timestamp
# cannot be produced by correct HLCs (node ids are unique), and LWW keeps the first.
ops = st.lists(st.tuples(keys, records), max_size=12, unique_by=lambda kr: (kr[0], kr[1].timestamp))


def apply(pairs: list[tuple[str, LWWRecord]], m: LWWMap | None = None) -> LWWMap:
    m = m if m is not None else LWWMap()
    for key, rec in pairs:
        m.merge(key, rec)
    return m


def expected_state(pairs: list[tuple[str, LWWRecord]]) -> dict[str, LWWRecord]:
    best: dict[str, LWWRecord] = {}
    for key, rec in pairs:
        if key not in best or rec.timestamp > best[key].timestamp:
            best[key] = rec
    return best


@settings(derandomize=True, max_examples=100, deadline=None)
@given(ops, st.randoms(use_true_random=False))
def test_merge_order_does_not_matter(pairs: list[tuple[str, LWWRecord]], rnd) -> None:
    reference = state(apply(pairs))
    assert reference == expected_state(pairs)
    for _ in range(5):
        shuffled = list(pairs)
        rnd.shuffle(shuffled)
        assert state(apply(shuffled)) == reference


@settings(derandomize=True, max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(keys, records), max_size=5, unique_by=lambda kr: (kr[0], kr[1].timestamp))
)
def test_merge_commutative_all_permutations(pairs: list[tuple[str, LWWRecord]]) -> None:
    results = {tuple(sorted(state(apply(list(p))).items())) for p in itertools.permutations(pairs)}
    assert len(results) <= 1


@settings(derandomize=True, max_examples=100, deadline=None)
@given(ops)
def test_merge_idempotent(pairs: list[tuple[str, LWWRecord]]) -> None:
    once = apply(pairs)
    snapshot = state(once)
    changed = [once.merge(k, r) for k, r in pairs]
    assert not any(changed)
    assert state(once) == snapshot


@settings(derandomize=True, max_examples=100, deadline=None)
@given(ops, ops, ops)
def test_merge_associative(
    a: list[tuple[str, LWWRecord]], b: list[tuple[str, LWWRecord]], c: list[tuple[str, LWWRecord]]
) -> None:
    # replicas joining state: (A ⊔ B) ⊔ C == A ⊔ (B ⊔ C)
    def join(x: LWWMap, y: LWWMap) -> LWWMap:
        out = apply(list(x.items()))
        return apply(list(y.items()), out)

    ma, mb, mc = apply(a), apply(b), apply(c)
    left = join(join(ma, mb), mc)
    right = join(ma, join(mb, mc))
    # a key/timestamp pair may repeat across lists with different values; compare winners'
    # timestamps (values with equal timestamps would come from the same HLC tick)
    assert {k: r.timestamp for k, r in left.items()} == {k: r.timestamp for k, r in right.items()}
    if not ({(k, r.timestamp) for k, r in a} & {(k, r.timestamp) for k, r in b + c}) and not (
        {(k, r.timestamp) for k, r in b} & {(k, r.timestamp) for k, r in c}
    ):
        assert state(left) == state(right)
