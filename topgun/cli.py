"""The ``topgun`` console script: ``topgun node …`` runs a node, ``topgun token …`` signs a JWT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence

from topgun.server.auth import make_token, short_secret_warning
from topgun.server.config import DEV_SECRET, STORAGE_KINDS, NodeConfig
from topgun.server.logutil import quiet_third_party
from topgun.server.policy_file import load_policy_file
from topgun.server.storage import StorageError

NODE_GC_THRESHOLDS = (10_000, 20, 20)
"""The cyclic collector's thresholds in a node process. A node under write load holds some
10,000 young container objects in flight (decoded batches and their values), so at Python's
default of 700 net allocations every young collection walked all of them and moved them on to
be walked again: about 900 collections and 0.7-1.2 s in a 300,000-op run of three in-process
nodes, some 10-15 % of their CPU, with 60 ms full collections. At 10,000 it is 9 collections
and 0.05 s. A node's long-lived data (held records as bytes, keys as str) is not tracked."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="topgun", description="TopGun data-grid tools")
    sub = parser.add_subparsers(dest="command", required=True)

    node = sub.add_parser("node", help="run one cluster node")
    node.add_argument("--node-id", required=True)
    node.add_argument("--host", default="127.0.0.1")
    node.add_argument("--port", type=int, default=0, help="client port (0 = any free port)")
    node.add_argument("--cluster-port", type=int, default=0)
    node.add_argument("--peer", action="append", default=[], metavar="HOST:PORT",
                      help="a peer's cluster address (repeatable)")  # fmt: skip
    node.add_argument("--advertise-url", default=None)
    node.add_argument("--jwt-secret", default=os.environ.get("TOPGUN_JWT_SECRET"),
                      help="HS256 secret for client tokens (or env TOPGUN_JWT_SECRET)")  # fmt: skip
    node.add_argument("--cluster-secret", default=os.environ.get("TOPGUN_CLUSTER_SECRET"),
                      help="peer-link secret (or env TOPGUN_CLUSTER_SECRET)")  # fmt: skip
    node.add_argument("--dev", action="store_true",
                      help=f"use {DEV_SECRET!r} for missing secrets (nothing else)")  # fmt: skip
    node.add_argument("--policies", default=None, metavar="FILE",
                      help="map permissions, JSON or TOML (none: only ADMIN may act)")  # fmt: skip
    node.add_argument("--require-token-exp", action="store_true",
                      help="refuse tokens without an exp claim")  # fmt: skip
    node.add_argument("--auth-timeout", "--auth-timeout-s", type=float, default=None,
                      metavar="SECONDS",
                      help="a socket must authenticate within this (default 10)")  # fmt: skip
    node.add_argument("--heartbeat-interval", type=float, default=None, metavar="SECONDS")
    node.add_argument("--failure-timeout", type=float, default=None, metavar="SECONDS")
    node.add_argument("--min-cluster-size", type=int, default=None, metavar="N",
                      help="split-brain protection: live nodes needed to write (default: "
                           "a majority; 1 lets a 2-node cluster survive a failure)")  # fmt: skip
    node.add_argument("--client-idle-timeout", type=float, default=None, metavar="SECONDS")
    node.add_argument("--shutdown-notice", type=float, default=None, metavar="SECONDS",
                      help="how long a leaving node waits for clients to move away")  # fmt: skip
    node.add_argument("--forward-writes", action=argparse.BooleanOptionalAction, default=True,
                      help="forward writes for partitions owned elsewhere (default), "
                      "or refuse them with NOT_OWNER")  # fmt: skip
    node.add_argument("--data-dir", default=None, metavar="DIR",
                      help="keep every held copy on disk under DIR/<node-id> and load it on "
                      "start (several nodes may share DIR); without it the node keeps its "
                      "copies in memory and refuses PERSISTED writes")  # fmt: skip
    node.add_argument("--storage", choices=STORAGE_KINDS, default=None,
                      help="where held copies are kept (default: lmdb with --data-dir, "
                      "postgres with --dsn, else memory)")  # fmt: skip
    node.add_argument("--dsn", default=os.environ.get("TOPGUN_POSTGRES_DSN"),
                      help="PostgreSQL connection string for --storage postgres (or env "
                      "TOPGUN_POSTGRES_DSN; libpq's PGPASSWORD and ~/.pgpass work "
                      "too)")  # fmt: skip
    node.add_argument("--pg-schema", default=None, metavar="NAME",
                      help="this node's PostgreSQL schema (default topgun_<node-id>; "
                      "nodes sharing a database need distinct ones)")  # fmt: skip
    tls = node.add_argument_group("TLS (none: both ports in plain text, for development)")
    tls.add_argument("--tls-cert", default=None, metavar="FILE",
                     help="client port certificate (PEM): serve wss:// and HTTPS")  # fmt: skip
    tls.add_argument("--tls-key", default=None, metavar="FILE", help="its private key (PEM)")
    tls.add_argument("--tls-client-ca", default=None, metavar="FILE",
                     help="require client certificates signed by this CA")  # fmt: skip
    tls.add_argument("--cluster-tls-cert", default=None, metavar="FILE",
                     help="mutual TLS between nodes: this node's certificate, naming its "
                     "node id (CN or a DNS SAN)")  # fmt: skip
    tls.add_argument("--cluster-tls-key", default=None, metavar="FILE")
    tls.add_argument("--cluster-tls-ca", default=None, metavar="FILE",
                     help="the cluster CA: peers need a certificate it signed")  # fmt: skip
    node.add_argument("--log-level", default="INFO")

    from topgun.bench.run import add_arguments as bench_arguments

    bench_arguments(sub.add_parser("bench", help="measure a local cluster on this machine"))

    tok = sub.add_parser("token", help="print a signed HS256 token")
    tok.add_argument("--sub", default="user")
    tok.add_argument("--role", action="append", default=[])
    tok.add_argument("--secret", default=None, help="signing secret (or env TOPGUN_JWT_SECRET)")
    tok.add_argument("--dev", action="store_true", help=f"sign with {DEV_SECRET!r}")
    tok.add_argument("--ttl", type=float, default=3600.0, metavar="SECONDS")
    return parser


def _token_secret(args: argparse.Namespace) -> tuple[str, str]:
    """(secret, where it came from); raises ValueError when there is none."""
    if args.secret:
        return args.secret, "--secret"
    env = os.environ.get("TOPGUN_JWT_SECRET")
    if env:
        return env, "TOPGUN_JWT_SECRET"
    if args.dev:
        return DEV_SECRET, "the development secret (--dev)"
    raise ValueError("give --secret or set TOPGUN_JWT_SECRET (or --dev for the development secret)")


def _token(args: argparse.Namespace) -> int:
    try:
        secret, source = _token_secret(args)
    except ValueError as exc:
        print(f"topgun token: {exc}", file=sys.stderr)
        return 2
    print(make_token(secret, sub=args.sub, roles=args.role or None, ttl_s=args.ttl))
    weak = short_secret_warning(secret) if secret != DEV_SECRET else None
    print(f"topgun token: signed with {source}" + (f"; warning: {weak}" if weak else ""),
          file=sys.stderr)  # fmt: skip
    return 0


def _config(args: argparse.Namespace) -> NodeConfig:
    cfg = NodeConfig(
        node_id=args.node_id,
        host=args.host,
        port=args.port,
        cluster_port=args.cluster_port,
        peers=list(args.peer),
        advertise_url=args.advertise_url,
        jwt_secret=args.jwt_secret,
        cluster_secret=args.cluster_secret,
        dev=args.dev,
        forward_writes=args.forward_writes,
        require_token_exp=args.require_token_exp,
        data_dir=args.data_dir,
        storage=args.storage,
        dsn=args.dsn,
        pg_schema=args.pg_schema,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        cluster_tls_cert=args.cluster_tls_cert,
        cluster_tls_key=args.cluster_tls_key,
        cluster_tls_ca=args.cluster_tls_ca,
    )
    if args.policies is not None:
        cfg.policies = load_policy_file(args.policies)
    if args.auth_timeout is not None:
        cfg.auth_timeout_s = args.auth_timeout
    if args.heartbeat_interval is not None:
        cfg.heartbeat_interval_s = args.heartbeat_interval
    if args.failure_timeout is not None:
        cfg.failure_timeout_s = args.failure_timeout
    if args.min_cluster_size is not None:
        cfg.min_cluster_size = args.min_cluster_size
    if args.client_idle_timeout is not None:
        cfg.client_idle_timeout_s = args.client_idle_timeout
    if args.shutdown_notice is not None:
        cfg.shutdown_notice_s = args.shutdown_notice
    return cfg


async def _run_node(cfg: NodeConfig) -> int:
    from topgun.server import ServerNode

    gc.set_threshold(*NODE_GC_THRESHOLDS)
    try:
        node = ServerNode(cfg)
        await node.start()
    except StorageError as exc:
        print(f"topgun node: storage: {exc}", file=sys.stderr)
        return 2
    gc.freeze()  # what start-up made (modules, config) is never walked again
    ready = {
        "nodeId": node.node_id,
        "clientUrl": node.client_url,
        "clusterAddress": node.cluster_address,
    }
    sys.stdout.write("READY " + json.dumps(ready) + "\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await node.shutdown()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "token":
        return _token(args)
    if args.command == "bench":
        from topgun.bench.run import from_args, run

        try:
            opts = from_args(args)
        except ValueError as exc:
            print(f"topgun bench: {exc}", file=sys.stderr)
            return 2
        return run(opts)
    level = getattr(logging, str(args.log_level).upper(), logging.INFO)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    quiet_third_party(level)
    try:
        cfg = _config(args)
        cfg.validate()
    except ValueError as exc:
        print(f"topgun node: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_run_node(cfg))


if __name__ == "__main__":
    sys.exit(main())
