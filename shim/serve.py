"""`verikv serve`: run one node (core + WAL + peer transport + etcd gRPC API) until SIGTERM/SIGINT.

Exit codes: 0 after a clean stop; 2 bad arguments or a data directory it cannot use (message on
stderr, no traceback); 70 a runtime check failed; 71 the WAL failed (fsync error, corrupt log);
72 the core raised FatalCheck. Fatal errors print one `FATAL ...` line and exit at once, without
running cleanup that could send more messages. This module must never swallow a fatal error.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import math
import os
import signal
import sys
import time
from pathlib import Path

EXIT_USAGE = 2
EXIT_RUNTIME_CHECK = 70
EXIT_WAL = 71
EXIT_CORE_FATAL = 72

log = logging.getLogger("verikv.serve")


UNFREEZE_EVERY_S = 3600.0


class Collector:
    """Python's cycle collector, kept from holding the loop for long. A full collection looks at
    every object the process tracks, and a node keeps hundreds of thousands that live long (keys'
    versions, leases): during `verikv bench`'s lease loads one took 100-240 ms on every node here,
    a stop of the node's loop each time. After each full collection its survivors are frozen
    (`gc.freeze()`), so the next ones look only at objects made since: at most about 25 ms in the
    same loads. Cyclic garbage among frozen objects is never collected, so every
    `unfreeze_every_s` they are unfrozen: the next full collection looks at everything once,
    frees such garbage and freezes what survives again."""

    def __init__(self, unfreeze_every_s: float = UNFREEZE_EVERY_S):
        self.unfreeze_every_s = unfreeze_every_s
        self.freezes = 0  # full collections whose survivors were frozen
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        gc.callbacks.append(self._after)
        self._timer = asyncio.get_running_loop().call_later(self.unfreeze_every_s, self._unfreeze)

    def stop(self) -> None:
        if self._after in gc.callbacks:
            gc.callbacks.remove(self._after)
        if self._timer is not None:
            self._timer.cancel()
        gc.unfreeze()

    def _after(self, phase: str, info: dict) -> None:
        if phase == "stop" and info["generation"] == 2:
            gc.freeze()
            self.freezes += 1

    def _unfreeze(self) -> None:
        gc.unfreeze()
        self._timer = asyncio.get_running_loop().call_later(self.unfreeze_every_s, self._unfreeze)


def parse_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def _limit(noun: str):
    """A limit flag's parser: 0 (no limit), or a count of `noun`; above 2^31 - 1 (etcd's default
    for --max-concurrent-streams is 2^32 - 1) is no limit too."""
    def parse(text: str) -> int:
        if not text.isdigit():
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of {noun}")
        n = int(text)
        return 0 if n > 2**31 - 1 else n
    return parse


def _positive(noun: str):
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) == 0:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of {noun} (1 or more)")
        return int(text)
    return parse


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a count (0 or more)")
    return int(text)


def _seconds(text: str) -> float:
    try:
        s = float(text)
    except ValueError:
        s = -1.0
    if not (0 < s < 1e9):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds over 0")
    return s


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="verikv serve", description="run one verikv node")
    p.add_argument("--id", type=int, required=True, help="this node's id (0-based index into --peers)")
    p.add_argument("--peers", required=True,
                   help="comma-separated HOST:PORT peer addresses of every node, in node id order")
    p.add_argument("--client-listen", type=parse_hostport, required=True, help="HOST:PORT for etcd gRPC clients")
    p.add_argument("--client-urls", default="",
                   help="comma-separated client endpoints of every node (for MemberList)")
    p.add_argument("--data-dir", type=Path, required=True, help="WAL and snapshots")
    p.add_argument("--tick-ms", type=int, default=10)
    p.add_argument("--election-ticks", type=int, default=20)
    p.add_argument("--heartbeat-ticks", type=int, default=3)
    p.add_argument("--no-runtime-checks", action="store_true",
                   help="disable the shim's and the core's runtime checks (to measure their cost)")
    p.add_argument("--faulty-disk", action="store_true",
                   help="hold unsynced writes in memory (a kill loses them) and fail fsync while "
                        "DATA_DIR/fail-fsync exists (fault injection)")
    p.add_argument("--snapshot-count", type=_positive("slots"), default=None, metavar="N",
                   help="etcd's: a node snapshots its state after at most N slots (each slot a batch of "
                        "commands); sooner once the log since its last snapshot is as large as its state "
                        "and holds at least 4 MiB (default: as many as the consensus core's window allows)")
    p.add_argument("--auto-compaction-mode", choices=["periodic", "revision"], default="revision",
                   help="etcd's: what --auto-compaction-retention counts (default: revision)")
    p.add_argument("--auto-compaction-retention", default="10000",
                   help="etcd's: the history kept, in revisions (revision mode) or in hours or a "
                        "duration such as 30m (periodic mode); 0 keeps every version forever "
                        "(default: 10000 revisions, since verikv holds its history in memory)")
    p.add_argument("--experimental-watch-progress-notify-interval", default="10m",
                   help="etcd's: how often a watcher created with progress_notify that was sent nothing "
                        "is sent the current revision (a duration such as 10m or 30s; default 10m)")
    p.add_argument("--listen-metrics-urls", default="",
                   help="etcd's: http://HOST:PORT serving /metrics (Prometheus) and /health (default: none)")
    p.add_argument("--quota-backend-bytes", type=int, default=0,
                   help="etcd's: the store size (Status' dbSize) at which writes are refused and the "
                        "NOSPACE alarm raised (0: etcd's default, 2 GiB; negative: no quota)")
    p.add_argument("--auth-token", default="simple", metavar="simple|jwt,OPTIONS",
                   help="etcd's: the tokens Authenticate hands out: 'simple' (random, known to the nodes "
                        "through the log, held in memory) or 'jwt,pub-key=PATH,priv-key=PATH,"
                        "sign-method=METHOD[,ttl=DURATION]' (signed JWTs any node verifies with the key; "
                        "METHOD one of RS256/384/512, PS256/384/512, ES256/384/512, HS256/384/512; "
                        "ttl default 5m) (default: simple)")
    p.add_argument("--auth-token-ttl", type=int, default=300,
                   help="etcd's: seconds an unused simple token lives (default 300)")
    p.add_argument("--auth-max-failures", type=_count, default=5, metavar="N",
                   help="at most N failed Authenticate calls per user name within --auth-failure-window on this "
                        "node; beyond, answered RESOURCE_EXHAUSTED without checking the password (0: no limit; "
                        "default 5; etcd has none)")
    p.add_argument("--auth-failure-window", type=_seconds, default=60.0, metavar="SECONDS",
                   help="the window of --auth-max-failures (default 60)")
    t = p.add_argument_group("client TLS (etcd's flags)")
    t.add_argument("--cert-file", default="", help="the client port's certificate (PEM); serves clients over TLS")
    t.add_argument("--key-file", default="", help="the private key of --cert-file (PEM)")
    t.add_argument("--trusted-ca-file", default="", help="the CA (PEM) that signs clients' certificates")
    t.add_argument("--client-cert-auth", action="store_true",
                   help="refuse, at the TLS handshake, a client without a certificate signed by --trusted-ca-file")
    t.add_argument("--client-crl-file", default="",
                   help="a certificate revocation list (PEM, signed by a CA of --trusted-ca-file): a client "
                        "certificate it revokes is refused at the TLS handshake; read again when the file "
                        "changes (needs --client-cert-auth)")
    t.add_argument("--client-cert-allowed-hostname", default="", metavar="HOST",
                   help="a client's certificate must also be valid for this DNS name or IP address (its subject "
                        "alternative names), or it is refused at the TLS handshake (needs --client-cert-auth)")
    t.add_argument("--auto-tls", action="store_true",
                   help="serve clients over TLS with a self-signed certificate made under DATA_DIR/fixtures/client "
                        "(for tests; clients cannot verify it)")
    t = p.add_argument_group("peer TLS (etcd's flags)")
    t.add_argument("--peer-cert-file", default="",
                   help="this member's peer certificate (PEM), shown to the members it connects to and that "
                        "connect to it; it must name this member (see the README's Security section)")
    t.add_argument("--peer-key-file", default="", help="the private key of --peer-cert-file (PEM)")
    t.add_argument("--peer-trusted-ca-file", default="", help="the CA (PEM) that signs the members' certificates")
    t.add_argument("--peer-client-cert-auth", action="store_true",
                   help="refuse a connecting member without a certificate signed by --peer-trusted-ca-file that "
                        "names the member it claims to be")
    t.add_argument("--peer-crl-file", default="",
                   help="a certificate revocation list (PEM, signed by a CA of --peer-trusted-ca-file): a member "
                        "whose certificate it revokes is refused at the TLS handshake, and not connected to "
                        "(needs --peer-client-cert-auth)")
    t.add_argument("--peer-cert-allowed-cn", default="", metavar="CN",
                   help="a member's certificate must also have this common name (accepting and connecting; "
                        "needs --peer-client-cert-auth)")
    t.add_argument("--peer-cert-allowed-hostname", default="", metavar="HOST",
                   help="a member's certificate must also be valid for this DNS name or IP address "
                        "(accepting and connecting; needs --peer-client-cert-auth; not with --peer-cert-allowed-cn)")
    t.add_argument("--peer-auto-tls", action="store_true",
                   help="encrypt peer traffic with a self-signed certificate made under DATA_DIR/fixtures/peer "
                        "(no member is authenticated)")
    p.add_argument("--max-concurrent-streams", type=_limit("streams"), default=0, metavar="N",
                   help="the calls (streams included) one client connection may have open at once; more "
                        "wait in the client until one ends (etcd 3.5's flag; default: no limit)")
    p.add_argument("--max-connections-per-client", type=_limit("connections"), default=0, metavar="N",
                   help="the connections one client address may have open at once; each call on one more "
                        "is answered RESOURCE_EXHAUSTED and the connection closed (default 0: no limit, as etcd)")
    p.add_argument("--cpu-scheduling", choices=["loop-first", "normal", "batch"], default=None,
                   help="loop-first (the default): the node's threads but its event loop's (its gRPC front's, "
                        "grpc's own, the metrics server's) under Linux's SCHED_BATCH policy, so that a thread "
                        "the loop wakes does not take the CPU from it; batch: every thread, the loop's too (more "
                        "throughput under some loads, later watch events); normal: every thread under the host's "
                        "normal policy (see the README's Benchmarks section)")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--log-format", choices=["text", "json"], default="text",
                   help="text: one line per event; json: one JSON object per line with zap's keys, as etcd's "
                        "--logger zap writes them (level, ts, caller, msg) and the logger's name (default: text)")
    return p


class JsonFormatter(logging.Formatter):
    """One JSON object per line: etcd's zap keys (level, ts in ISO 8601 with milliseconds and
    offset, caller, msg), the logger's name, and `error` for an exception (its type and text, not
    a traceback)."""

    LEVELS = {"DEBUG": "debug", "INFO": "info", "WARNING": "warn", "ERROR": "error", "CRITICAL": "fatal"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {"level": self.LEVELS.get(record.levelname, record.levelname.lower()),
                 "ts": iso8601(record.created), "logger": record.name,
                 "caller": f"{record.module}.py:{record.lineno}", "msg": record.getMessage()}
        if record.exc_info and record.exc_info[1] is not None:
            err = record.exc_info[1]
            entry["error"] = f"{type(err).__name__}: {err}"
        return json.dumps(entry, ensure_ascii=False)


def iso8601(t: float) -> str:
    """zap's ISO8601TimeEncoder: 2006-01-02T15:04:05.000Z0700, in local time."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}" + \
        time.strftime("%z", time.localtime(t))


_json_logs = False  # --log-format json: the lines below are JSON too


def refuse(text: str) -> None:
    """A usage error, or a resource the node cannot use, once logging is set up."""
    if _json_logs:
        log.error("%s", text)
    else:
        print(text, file=sys.stderr)


def fatal(code: int, text: str) -> None:
    if _json_logs:
        line = json.dumps({"level": "fatal", "ts": iso8601(time.time()), "logger": log.name, "msg": text})
    else:
        line = f"FATAL {text}"
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    os._exit(code)


async def serve(args) -> int:
    from verikv.shim.node import checks as shim_checks
    from verikv.shim.api import servicer as grpc_server
    from verikv.shim.io import wal
    from verikv.shim.io.disk import FaultyDisk
    from verikv.shim.io.runner import Node, NodeConfig
    from verikv.shim.node.compaction import parse_duration, parse_retention
    from verikv.verified_core import core as vcore

    try:
        retention = parse_retention(args.auto_compaction_mode, args.auto_compaction_retention)
    except ValueError as err:
        refuse(f"verikv serve: {err}")
        return EXIT_USAGE
    progress_s = parse_duration(args.experimental_watch_progress_notify_interval)
    if not progress_s:
        refuse(f"verikv serve: --experimental-watch-progress-notify-interval "
               f"{args.experimental_watch_progress_notify_interval!r} is not a duration such as 10m")
        return EXIT_USAGE
    metrics_at = None
    if args.listen_metrics_urls:
        from verikv.shim.api.metrics import parse_metrics_url
        try:
            metrics_at = parse_metrics_url(args.listen_metrics_urls.split(",")[0])
        except ValueError as err:
            refuse(f"verikv serve: {err}")
            return EXIT_USAGE
    peers = [parse_hostport(x) for x in args.peers.split(",")]
    if not 0 <= args.id < len(peers):
        refuse(f"verikv serve: --id {args.id} is not an index into {len(peers)} --peers")
        return EXIT_USAGE
    from verikv.shim.io import tls
    try:
        client_tls = tls.client_tls(args)
        peer_tls = tls.peer_tls(args, peers[args.id][0])
    except tls.TLSConfigError as err:
        refuse(f"verikv serve: {err}")
        return EXIT_USAGE
    from verikv.shim.io import auth_token
    try:
        jwt_tokens = auth_token.parse(args.auth_token)
    except auth_token.AuthTokenError as err:
        refuse(f"verikv serve: {err}")
        return EXIT_USAGE
    if args.peer_cert_file and not tls.names_member(tls.file_names(args.peer_cert_file), *peers[args.id]):
        log.warning("--peer-cert-file %s does not name this member (https://%s:%d): members that check peer "
                    "certificates will refuse this node", args.peer_cert_file, *peers[args.id])
    client_urls = args.client_urls.split(",") if args.client_urls else [
        f"{args.client_listen[0]}:{args.client_listen[1]}" if i == args.id else "" for i in range(len(peers))]
    args.data_dir.mkdir(parents=True, exist_ok=True)
    config = NodeConfig(node_id=args.id, peer_addresses=peers, data_dir=args.data_dir, tick_ms=args.tick_ms,
                        runtime_checks=not args.no_runtime_checks,
                        auto_compaction_mode=args.auto_compaction_mode, auto_compaction_retention=retention,
                        # etcd's minimum lease TTL: 1.5 election timeouts, rounded up to a second
                        min_lease_ttl_s=math.ceil(1.5 * args.election_ticks * args.tick_ms / 1000),
                        quota_backend_bytes=args.quota_backend_bytes or NodeConfig.quota_backend_bytes,
                        snapshot_max_slots=args.snapshot_count)
    core = vcore.Core(args.id, len(peers), election_ticks=args.election_ticks,
                      heartbeat_ticks=args.heartbeat_ticks, runtime_checks=not args.no_runtime_checks)
    disk = FaultyDisk(trigger_dir=args.data_dir) if args.faulty_disk else None
    node = Node(config, core, disk, peer_tls=peer_tls)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await node.start()
    except wal.WalCorruptError as err:
        fatal(EXIT_WAL, f"WAL is corrupt, refusing to start: {err}")
    except wal.WalFatalError as err:
        fatal(EXIT_WAL, f"WAL failed: {err}")
    except OSError as err:
        refuse(f"verikv serve: cannot start: {err}")
        return EXIT_USAGE
    listen = f"{args.client_listen[0]}:{args.client_listen[1]}"
    try:
        peer_scheme = "https" if peer_tls else "http"
        server = grpc_server.build_server(node, listen, client_urls,
                                          [f"{peer_scheme}://{h}:{p}" for h, p in peers], tls=client_tls,
                                          progress_notify_interval_s=progress_s,
                                          auth_token_ttl_s=args.auth_token_ttl, jwt=jwt_tokens,
                                          auth_max_failures=args.auth_max_failures,
                                          auth_failure_window_s=args.auth_failure_window,
                                          max_concurrent_streams=args.max_concurrent_streams,
                                          max_connections_per_client=args.max_connections_per_client,
                                          require_leader_timeout_s=args.tick_ms * args.election_ticks / 1000)
        await server.start()
    except (OSError, RuntimeError) as err:
        refuse(f"verikv serve: cannot listen for clients on {listen}: {err}")
        return EXIT_USAGE
    metrics = None
    if metrics_at is not None:
        from verikv.shim.api.metrics import MetricsServer
        try:
            metrics = MetricsServer(server, *metrics_at)
        except OSError as err:
            refuse(f"verikv serve: cannot listen for metrics on {metrics_at[0]}:{metrics_at[1]}: {err}")
            await server.stop(grace=0)
            return EXIT_USAGE
        log.info("metrics and health on http://%s:%d", metrics_at[0], metrics.port)
    if args.cpu_scheduling == "loop-first":
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))  # this thread, the loop's
    client_security = "" if client_tls is None else \
        " over TLS" + (" (client certificates required)" if client_tls.client_cert_auth else "")
    peer_security = "" if peer_tls is None else \
        " over TLS" + (" (member certificates required)" if peer_tls.client_cert_auth else "")
    log.info("node %d serving clients on %s%s, peers on %s:%d%s, data in %s", args.id, listen, client_security,
             *peers[args.id], peer_security, args.data_dir)
    if args.no_runtime_checks:
        log.warning("runtime checks off (--no-runtime-checks): a broken invariant of the core or the shim "
                    "will not stop this node")
    collector = Collector()
    collector.start()
    runner = asyncio.ensure_future(node.run())
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if runner.done():
        err = runner.exception()
        if isinstance(err, shim_checks.RuntimeCheckFailed):
            fatal(EXIT_RUNTIME_CHECK, str(err))
        if isinstance(err, wal.WalFatalError):
            fatal(EXIT_WAL, f"WAL failed, stopping (fail-stop): {err}")
        if isinstance(err, vcore.FatalCheck):
            fatal(EXIT_CORE_FATAL, f"core runtime check failed: {err}")
        if err is not None:
            fatal(EXIT_CORE_FATAL, f"node loop crashed: {type(err).__name__}: {err}")
    log.info("stopping")
    collector.stop()
    if metrics is not None:
        metrics.stop()
    await server.stop(grace=0.5)
    await node.stop()
    runner.cancel()
    return 0


def schedule_batch() -> None:
    """Every thread of this process, and so every thread it starts later (a new thread takes its
    creator's policy), under SCHED_BATCH: the kernel does not let a batch thread it wakes preempt
    the running one. A loop that hands answers to its front's thread, or (all batch) a leader
    that writes to a follower's socket, goes on with its turn instead of giving its CPU to the
    thread it woke. OSError if the host cannot (not Linux, or the call is refused)."""
    policy = getattr(os, "SCHED_BATCH", None)
    if policy is None or not hasattr(os, "sched_setscheduler"):
        raise OSError("this host has no SCHED_BATCH (Linux only)")
    try:
        threads = [int(tid) for tid in os.listdir("/proc/self/task")]
    except OSError:
        threads = [0]
    for tid in threads:
        try:
            os.sched_setscheduler(tid, policy, os.sched_param(0))
        except ProcessLookupError:
            pass  # a thread that ended meanwhile


def main(argv: list[str]) -> int:
    global _json_logs
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    if args.log_format == "json":
        _json_logs = True
        handler.setFormatter(JsonFormatter())
        logging.captureWarnings(True)
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO), handlers=[handler])
    asked, args.cpu_scheduling = args.cpu_scheduling, args.cpu_scheduling or "loop-first"
    if args.cpu_scheduling != "normal":
        # every thread started from now on takes the policy (loop-first: the loop's own thread
        # goes back to the normal policy once the front and the metrics server are up)
        try:
            schedule_batch()
        except OSError as err:
            if asked is not None:
                refuse(f"verikv serve: --cpu-scheduling {asked}: {err}")
                return EXIT_USAGE
            log.info("every thread under the normal scheduling policy: %s", err)
            args.cpu_scheduling = "normal"
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    try:
        return asyncio.run(serve(args))
    except KeyboardInterrupt:
        return 130
    except ImportError as err:
        refuse(f"verikv serve: {err}")
        return EXIT_USAGE
