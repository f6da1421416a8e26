"""Memory per held record: RSS growth of one in-process ``PartitionStore`` over N keys.

Records arrive as the server gets them: ``OP_BATCH`` frames of 1,000 ops are encoded, then
decoded by the real codec (so every value, key and node id is a fresh object, as off the
wire) and merged into the store with the partition id the write path computes. Values are
small maps of about 40 bytes of msgpack. Prints the RSS growth per record and the merge rate.
The store's Merkle trees (one per partition and map, which a node of a cluster builds for
anti-entropy) are built first and kept current by every merge; ``--no-trees`` leaves them
out, as on a node nobody asks for a digest.

    .venv/bin/python benchmarks/memory.py [--keys 1000000]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time

from topgun.bench.machine import rss_bytes
from topgun.bench.workload import value_for
from topgun.core.codec import decode_frame, encode
from topgun.core.hashing import PARTITION_COUNT, fnv1a_utf16
from topgun.core.hlc import Timestamp
from topgun.core.messages import ClientOp, OpBatch
from topgun.core.records import LWWRecord
from topgun.server.store import PartitionStore

FRAME_OPS = 1000


def frame(start: int, count: int, millis: int) -> bytes:
    ops = tuple(
        ClientOp("bench", f"key-{i:07d}", LWWRecord(value_for(i), Timestamp(millis, 0, "client-1")))
        for i in range(start, start + count)
    )
    return encode(OpBatch(ops))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--no-trees", action="store_true", help="no Merkle trees")
    args = parser.parse_args()
    millis = int(time.time() * 1000)
    frames = [
        frame(s, min(FRAME_OPS, args.keys - s), millis) for s in range(0, args.keys, FRAME_OPS)
    ]
    store = PartitionStore()
    if not args.no_trees:
        for pid in range(PARTITION_COUNT):
            store.tree(pid, "bench")
    gc.collect()
    before = rss_bytes()
    started = time.perf_counter()
    merge_s = 0.0
    for raw in frames:
        (batch,) = decode_frame(raw)
        assert isinstance(batch, OpBatch)
        t0 = time.perf_counter()
        for op in batch.ops:
            assert op.record is not None
            store.merge(op.map_name, op.key, op.record, fnv1a_utf16(op.key))
        merge_s += time.perf_counter() - t0
    elapsed = time.perf_counter() - started
    del batch
    gc.collect()
    grown = rss_bytes() - before  # before freeing the frames: freed heap may shrink RSS
    figures = {
        "keys": store.count(),
        "trees": not args.no_trees,
        "rss_growth_mb": round(grown / 1e6, 1),
        "bytes_per_record": round(grown / args.keys),
        "decode_and_merge_s": round(elapsed, 2),
        "merge_us_per_op": round(merge_s / args.keys * 1e6, 2),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
