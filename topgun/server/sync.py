"""Merkle sync (reference §2.9) answered for the whole map from any node.

The reference answers ``SYNC_INIT`` / ``MERKLE_REQ_BUCKET`` from the answering node's own
records, so in a cluster a client syncs only what that node happens to hold. Node hashes
are sums (:mod:`topgun.core.merkle`), so here the answering node asks every member
(``MSYNC``) for the sums at a path over the partitions it *owns* and adds them: the result is
the tree of the whole map. Leaves are fetched from the owners the same way. The trees are
the store's, kept current by every merge; nothing is rebuilt per request.

Every member must answer, on the same partition table version, or the whole answer is an
error (:class:`SyncUnavailable`): a sum with a part missing would be a wrong root, which a
client cannot tell from a right one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from topgun.core.errors import ProtocolError
from topgun.core.merkle import DEPTH, HEX, MASK32, summed_buckets
from topgun.core.messages import MAX_MAP_NAME_LENGTH
from topgun.core.records import LWWRecord
from topgun.core.table import PartitionTable
from topgun.server.context import NodeContext
from topgun.server.membership import Membership
from topgun.server.peer_link import PeerGone, PeerLink

GC_AGE_MS = 30 * 24 * 3600 * 1000
"""A client whose last sync is older than this may have missed pruned tombstones (§2.9)."""


class SyncUnavailable(Exception):
    """The cluster could not give a complete answer now (a member silent, a table change)."""


@dataclass(frozen=True, slots=True)
class Level:
    """What the tree holds at one path: its hash, and its children or (at a leaf) records."""

    hash: int
    buckets: dict[str, int]
    records: list[tuple[str, LWWRecord]]


class SyncService:
    def __init__(self, ctx: NodeContext, membership: Membership) -> None:
        self.ctx = ctx
        self.membership = membership
        self.table_of: Callable[[], PartitionTable | None] = lambda: None
        membership.handlers["MSYNC"] = self._on_msync

    def needs_reset(self, last_sync_ms: float | None) -> bool:
        return bool(last_sync_ms) and self.ctx.config.clock_ms() - (last_sync_ms or 0) > GC_AGE_MS

    async def level(self, map_name: str, path: str) -> Level:
        """The whole map's tree at ``path``, summed over every member's owned partitions."""
        t = self.table_of()
        if t is None:
            raise SyncUnavailable("no partition table yet")
        m = self.membership
        links: list[PeerLink] = []
        for node_id in sorted(set(t.owners) - {self.ctx.node_id}):
            link = m.link_for(node_id)
            if link is None:
                raise SyncUnavailable(f"owner {node_id} is not reachable")
            links.append(link)
        parts = [self._local(map_name, path, t.version)]
        asks = (self._ask(link, map_name, path, t.version) for link in links)
        parts.extend(await asyncio.gather(*asks))
        total = sum(p.hash for p in parts) & MASK32
        buckets: dict[str, int] = {}
        for p in parts:
            for digit, h in p.buckets.items():
                buckets[digit] = (buckets.get(digit, 0) + h) & MASK32
        records = [r for p in parts for r in p.records]
        records.sort(key=lambda kr: kr[0])
        return Level(total, buckets, records)

    async def _ask(self, link: PeerLink, map_name: str, path: str, version: int) -> Level:
        msg = {"t": "MSYNC", "mapName": map_name, "path": path, "version": version}
        try:
            reply = await link.request(msg, self.ctx.config.query_timeout_s)
            return _level_from_wire(reply)
        except (PeerGone, TimeoutError) as exc:
            raise SyncUnavailable(f"{link.node_id} did not answer the sync ({exc!r})") from exc
        except ProtocolError as exc:
            raise SyncUnavailable(f"{link.node_id}: {exc}") from exc

    def _local(self, map_name: str, path: str, version: int) -> Level:
        t = self.table_of()
        if t is None or t.version != version:
            raise SyncUnavailable(
                f"partition table changing (v{version} asked, v{t.version if t else 0} here)"
            )
        store = self.ctx.store
        trees = store.trees(map_name, t.partitions_of(self.ctx.node_id))
        total = sum(tree.hash_at(path) for tree in trees) & MASK32
        if len(path) < DEPTH:
            return Level(total, summed_buckets(trees, path), [])
        records = []
        for tree in trees:
            for key in tree.keys_at(path):
                rec = store.get(map_name, key)
                if rec is not None:
                    records.append((key, rec))
        return Level(total, {}, records)

    async def _on_msync(self, link: PeerLink, msg: dict[str, Any]) -> None:
        name, path, version = msg.get("mapName"), msg.get("path"), msg.get("version")
        if (
            not isinstance(name, str) or len(name) > MAX_MAP_NAME_LENGTH
            or not isinstance(path, str) or len(path) > DEPTH or any(c not in HEX for c in path)
            or not isinstance(version, int)
        ):  # fmt: skip
            await link.reply(msg, {"t": "MSYNC_RESP", "error": "bad MSYNC request"})
            return
        try:
            level = self._local(name, path, version)
        except SyncUnavailable as exc:
            await link.reply(msg, {"t": "MSYNC_RESP", "error": str(exc)})
            return
        wire = {
            "t": "MSYNC_RESP",
            "hash": level.hash,
            "buckets": level.buckets,
            "records": [[k, r.to_wire()] for k, r in level.records],
        }
        await link.reply(msg, wire)


def _level_from_wire(reply: dict[str, Any]) -> Level:
    error = reply.get("error")
    if error is not None:
        raise ProtocolError(str(error)[:500])
    h, buckets, raw = reply.get("hash"), reply.get("buckets"), reply.get("records")
    if not isinstance(h, int) or not isinstance(buckets, dict) or not isinstance(raw, list):
        raise ProtocolError("bad MSYNC_RESP")
    clean: dict[str, int] = {}
    for digit, value in buckets.items():
        if not isinstance(digit, str) or len(digit) != 1 or digit not in HEX:
            raise ProtocolError("bad MSYNC_RESP bucket")
        if not isinstance(value, int):
            raise ProtocolError("bad MSYNC_RESP bucket")
        clean[digit] = value & MASK32
    records = []
    for item in raw:
        if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], str):
            raise ProtocolError("bad MSYNC_RESP record")
        records.append((item[0], LWWRecord.from_wire(item[1])))
    return Level(h & MASK32, clean, records)
