"""`verikv bench`: the same load against a local 3-node verikv and a local 3-member etcd 3.4.

Loads: puts, then linearizable gets, of 256-byte values; (a) 1 client, one request at a time;
(b) 2 client processes x 64 requests in flight; a mixed load (2 x 64, every client alternating a
put and a linearizable get of the same key: half of the calls each); lease grants (2 x 64); keep-alives of 10,000
leases on one LeaseKeepAlive stream (128 unanswered) at the leader (with the resident memory that
10,000 live leases take, measured on the freshly started nodes before any load), one at a
follower, and on 64 streams (8 each). Every load's first client talks to the system's current leader (then the
others in turn), so neither system's figure depends on where its election landed. Then watch loads: 1, 100 and 1,000 watchers on
one prefix (10 per stream, over every node) while one client puts into it at --watch-put-rate:
events delivered per second, and each event's delay after its put's answer. Last, puts of 16
KiB values (2 x 64), after which each system deletes them and compacts, so that the next round
starts from a small state again, and the bench waits until the disk is quiet (see
wait_for_quiet_disk) before the next load. Both clusters run side by side for the whole run
and the loads alternate between them (verikv first, then etcd first, ..., the other way round in
every other round); with --rounds N the
whole sequence runs N times and each figure is the median over the rounds. The clients are a C++
load generator (cluster/loadgen/loadgen.cpp), so that on a small machine they leave the CPU to
the servers. Prints throughput and p50/p99 latency for both systems and the verikv/etcd ratio. Both clusters run on this machine, on loopback, with real
fsync; the numbers compare the two under the same conditions, nothing more.

This module must never touch a cluster it did not start: it creates its own data directories
(under --data-dir) and stops what it started, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

VALUE_BYTES = 256
BIG_PUT, BIG_VALUE_BYTES = "put-16KiB", 16 * 1024  # the large-value load: puts of 16 KiB values


METHODS = {"put": "/etcdserverpb.KV/Put", "get": "/etcdserverpb.KV/Range", "grant": "/etcdserverpb.Lease/LeaseGrant"}
KEEP_ALIVE = "/etcdserverpb.Lease/LeaseKeepAlive"
LEASE_TTL_S = 600  # the bench's leases outlive it
KEEP_ALIVE_LEASES = 10_000
UNCHECKED = "unchecked"  # with --no-runtime-checks: a verikv cluster without them, beside the one with them
UNCHECKED_PORTS = 100  # its ports: --base-port + this and up (etcd's are at + 50)
MEMORY_LEASES_FIRST_ID = 1 << 40  # the leases of the memory figure: above every keep-alive load's IDs


TLS: dict | None = None  # with --tls: {"ca", "client": (cert, key)}, the files every client uses


def use_tls(tls: dict | None) -> None:
    """Every later channel of this process's load generator speaks TLS with these files (or not)."""
    global TLS
    from verikv.cluster import _loadgen
    TLS = tls
    if tls:
        _loadgen.set_tls(Path(tls["ca"]).read_bytes(), Path(tls["client"][0]).read_bytes(),
                         Path(tls["client"][1]).read_bytes())
    else:
        _loadgen.set_tls(b"")


def _worker(args: tuple) -> tuple[int, list[float], int]:
    """One client process: `in_flight` calls at a time from the C++ load generator, each lane
    cycling through the key space. Returns (successful calls, their latencies, failed calls)."""
    endpoint, op, in_flight, duration_s, key_space, worker, tls = args
    from verikv.cluster import _loadgen
    from verikv.etcdpb import rpc_pb2

    use_tls(tls)
    value = os.urandom((BIG_VALUE_BYTES if op == BIG_PUT else VALUE_BYTES) // 2).hex().encode()
    requests, methods = [], []
    for k in range(key_space):
        # (the large values under keys of their own: the other loads' gets read 256-byte values)
        key = (b"bench-big/%d" if op == BIG_PUT else b"bench/%d") % ((worker * 100_003 + k) % key_space)
        if op == "grant":  # the server chooses each lease's ID
            calls = [("grant", rpc_pb2.LeaseGrantRequest(TTL=LEASE_TTL_S))]
        elif op == "get":
            calls = [("get", rpc_pb2.RangeRequest(key=key))]
        elif op == "mixed":  # a put, then a linearizable get of the same key: every lane alternates
            calls = [("put", rpc_pb2.PutRequest(key=key, value=value)), ("get", rpc_pb2.RangeRequest(key=key))]
        else:  # put, BIG_PUT
            calls = [("put", rpc_pb2.PutRequest(key=key, value=value))]
        for method, msg in calls:
            requests.append(msg.SerializeToString())
            methods.append(METHODS[method])
    latencies_s, errors = _loadgen.run(endpoint, methods[0], requests, in_flight, duration_s,
                                       methods=methods if op == "mixed" else [])
    return len(latencies_s), latencies_s, errors


def _channel(endpoint: str):
    """A gRPC channel to endpoint, with this process's TLS files if the bench uses TLS."""
    import grpc

    if not TLS:
        return grpc.insecure_channel(endpoint)
    creds = grpc.ssl_channel_credentials(root_certificates=Path(TLS["ca"]).read_bytes(),
                                         private_key=Path(TLS["client"][1]).read_bytes(),
                                         certificate_chain=Path(TLS["client"][0]).read_bytes())
    return grpc.secure_channel(endpoint, creds)


def leader_first(endpoints: list[str], timeout_s: float = 10.0) -> list[str]:
    """The endpoints with the current leader's first (Maintenance.Status of each: a member that
    names itself leader), then the others in their order. A load's first client talks to the
    leader of either system, so that neither system's figure depends on where its election
    landed (etcd forwards a follower's writes and keep-alives to the leader one by one)."""
    import grpc

    from verikv.etcdpb import rpc_pb2, rpc_pb2_grpc

    deadline = time.monotonic() + timeout_s
    while True:
        for endpoint in endpoints:
            try:
                with _channel(endpoint) as channel:
                    status = rpc_pb2_grpc.MaintenanceStub(channel).Status(rpc_pb2.StatusRequest(), timeout=1.0)
            except grpc.RpcError:
                continue
            if status.leader and status.leader == status.header.member_id:
                return [endpoint] + [e for e in endpoints if e != endpoint]
        if time.monotonic() > deadline:
            raise BenchError(f"no leader among {','.join(endpoints)} for {timeout_s:.0f} s")
        time.sleep(0.1)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run_load(endpoints: list[str], op: str, processes: int, in_flight: int, duration_s: float,
             key_space: int = 1000) -> dict:
    jobs = [(endpoints[w % len(endpoints)], op, in_flight, duration_s, key_space, w, TLS) for w in range(processes)]
    if processes == 1:
        results = [_worker(jobs[0])]
    else:
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            results = pool.map(_worker, jobs)
    lat = sorted(x for _, ls, _ in results for x in ls)
    ops = sum(n for n, _, _ in results)
    return {"ops": ops, "ops_per_s": ops / duration_s, "p50_ms": _percentile(lat, 0.50) * 1000,
            "p99_ms": _percentile(lat, 0.99) * 1000, "errors": sum(e for _, _, e in results)}


LOADS = [("put", 1, 1), ("get", 1, 1), ("put", 2, 64), ("get", 2, 64), ("mixed", 2, 64)]
BIG_LOAD = (BIG_PUT, 2, 64)  # last in each round, and cleaned up after (see bench())
WATCHERS = [1, 100, 1000]  # watchers on one prefix, for the watch loads
WATCHERS_PER_STREAM = 10  # as etcd's own `benchmark watch-latency` groups them by default
WATCH_PREFIX = b"watch/"


def run_watch_load(endpoints: list[str], watchers: int, duration_s: float, put_rate: float) -> dict:
    """`watchers` watchers on one prefix, spread over every node, while one client puts into it
    `put_rate` times a second: how long after each put's acknowledgement its event reached each
    watcher (p50/p99; negative: the event came first), and events delivered per second."""
    from verikv.cluster import _loadgen
    from verikv.etcdpb import rpc_pb2

    create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
        key=WATCH_PREFIX, range_end=WATCH_PREFIX[:-1] + bytes([WATCH_PREFIX[-1] + 1]))).SerializeToString()
    value = os.urandom(VALUE_BYTES // 2).hex().encode()
    puts = [rpc_pb2.PutRequest(key=WATCH_PREFIX + b"%d" % k, value=value).SerializeToString() for k in range(100)]
    lat, delivered, acked, span_s, errors = _loadgen.watch(endpoints, create, watchers, WATCHERS_PER_STREAM,
                                                           endpoints[0], puts, put_rate, duration_s)
    lat.sort()
    return {"events_per_s": delivered / span_s if span_s > 0 else 0.0, "events": delivered,
            "expected_events": acked * watchers, "puts": acked,
            "p50_ms": _percentile(lat, 0.50) * 1000, "p99_ms": _percentile(lat, 0.99) * 1000, "errors": errors}


class BenchError(Exception):
    """A load could not run as asked (printed, and the bench exits with 1)."""


def grant_leases(endpoint: str, first_id: int) -> range:
    """KEEP_ALIVE_LEASES leases of LEASE_TTL_S (IDs from first_id), 64 grants in flight; their IDs."""
    from verikv.cluster import _loadgen
    from verikv.etcdpb import rpc_pb2

    ids = range(first_id, first_id + KEEP_ALIVE_LEASES)
    grants = [rpc_pb2.LeaseGrantRequest(ID=i, TTL=LEASE_TTL_S).SerializeToString() for i in ids]
    _, failed = _loadgen.run(endpoint, METHODS["grant"], grants, 64, 60.0, once=True)
    if failed:
        raise RuntimeError(f"{failed} of {len(grants)} lease grants failed")
    return ids


def lease_memory(endpoint: str, pids: list[int]) -> float:
    """How much the nodes' resident memory grew while KEEP_ALIVE_LEASES leases were granted, per
    lease (the median over the nodes). Measured on freshly started nodes, before any load: a
    process that has served loads holds free memory that it reuses, or returns to the system
    while the leases are granted (etcd's RSS once shrank by 40 MB meanwhile), and the growth then
    says nothing about the leases."""
    from verikv.cluster.bigstore import rss_bytes

    before = [rss_bytes(pid) for pid in pids]
    grant_leases(endpoint, MEMORY_LEASES_FIRST_ID)
    time.sleep(0.5)  # every node has applied them
    grown = [rss_bytes(pid) - b for pid, b in zip(pids, before)]
    return statistics.median(grown) / KEEP_ALIVE_LEASES


def run_keep_alive_load(endpoints: list[str], streams: int, window: int, duration_s: float, first_id: int) -> dict:
    """KEEP_ALIVE_LEASES leases (IDs from first_id, granted first), kept alive over `streams`
    LeaseKeepAlive streams (spread over the endpoints from the first), `window` requests
    unanswered per stream."""
    from verikv.cluster import _loadgen
    from verikv.etcdpb import rpc_pb2

    ids = grant_leases(endpoints[0], first_id)
    keep = [rpc_pb2.LeaseKeepAliveRequest(ID=i).SerializeToString() for i in ids]
    lat, failed = _loadgen.pipeline(endpoints, KEEP_ALIVE, keep, streams, window, duration_s)
    lat.sort()
    return {"ops": len(lat), "ops_per_s": len(lat) / duration_s, "p50_ms": _percentile(lat, 0.50) * 1000,
            "p99_ms": _percentile(lat, 0.99) * 1000, "errors": failed}


# (streams, requests unanswered per stream, where the first stream goes): one stream on the
# leader and one on a follower (etcd renews a lease at its leader only: a follower forwards each
# keep-alive to it), and 64 streams over every node from the leader
KEEP_ALIVE_LOADS = [(1, 128, "leader"), (1, 128, "follower"), (64, 8, "leader")]


def load_name(op: str, procs: int, in_flight: int) -> str:
    """A client load's name in the tables (`put 1x1`: one process, one request in flight)."""
    return f"{op} {procs}x{in_flight}"


def keep_alive_load_name(streams: int, window: int, where: str) -> str:
    return f"keep-alive {streams}x{window}" + (f" {where}" if streams == 1 else "")


def load_names() -> list[str]:
    """Every load of a round, in the order a round runs them (as the tables name them)."""
    return ([load_name(*load) for load in LOADS] + [f"watch {w}" for w in WATCHERS]
            + ["grant 2x64"] + [keep_alive_load_name(*load) for load in KEEP_ALIVE_LOADS]
            + [load_name(*BIG_LOAD)])


def _plain(name: str) -> str:
    """A load's name as `--loads` takes it: dashes for spaces (`put-1x1`, `keep-alive-64x8`)."""
    return name.replace(" ", "-")


def pick_loads(text: str) -> list[str]:
    """The loads `--loads` names (comma-separated, as `_plain` spells them; case and the choice
    between a dash and a space do not matter), in the order a round runs them. ValueError names
    what is unknown and every load there is."""
    known = {_plain(name).lower(): name for name in load_names()}
    wanted = [w.strip() for w in text.split(",") if w.strip()]
    unknown = [w for w in wanted if _plain(w).lower() not in known]
    if unknown or not wanted:
        raise ValueError(("no load named" if not unknown else "unknown load " + ", ".join(map(repr, unknown)))
                         + "; the loads are " + ", ".join(_plain(name) for name in load_names()))
    chosen = {known[_plain(w).lower()] for w in wanted}
    return [name for name in load_names() if name in chosen]


def _report(round_no: int, rounds: int, load: str, name: str, figures: dict) -> None:
    """Progress on stderr (stdout carries only the tables): one line per load and system."""
    if "events_per_s" in figures:
        what = f"{figures['events_per_s']:,.0f} events/s"
    else:
        what = f"{figures['ops_per_s']:,.0f} ops/s"
    print(f"round {round_no + 1}/{rounds}: {load}, {name}: {what}, p50 {figures['p50_ms']:.2f} ms, "
          f"p99 {figures['p99_ms']:.2f} ms, {figures['errors']} errors", file=sys.stderr, flush=True)


def turn_order(systems, k: int) -> list[str]:
    """The systems in the order of a load's k-th turn: rotated by k, so each takes each place in
    turn (two: one first, then the other; three: no system always in the middle)."""
    names = list(systems)
    i = k % len(names)
    return names[i:] + names[:i]


def bench(systems: dict[str, list[str]], duration_s: float, watch_put_rate: float = 100.0,
          round_no: int = 0, quiet_disk_of: Path | None = None, loads: list[str] | None = None, rounds: int = 1) -> dict:
    """Every load (of `loads`, if given) against every system, load by load: both clusters run
    the whole time and the order rotates (turn_order), so a drift in this machine's speed does
    not favour any system."""
    out: dict = {name: {} for name in systems}
    chosen = set(load_names() if loads is None else loads)

    def done(load: str, name: str, figures: dict) -> None:
        out[name][load] = figures
        _report(round_no, rounds, load, name, figures)

    for k, (op, procs, in_flight) in enumerate(LOADS):
        load = load_name(op, procs, in_flight)
        if load not in chosen:
            continue
        names = turn_order(systems, k + round_no)
        for name in names:
            endpoints = leader_first(systems[name])
            run_load(endpoints, "put", 1, 1, 0.2)  # warm up (and make sure keys exist for gets)
            done(load, name, run_load(endpoints, op, procs, in_flight, duration_s))
    for k, watchers in enumerate(WATCHERS if watch_put_rate > 0 else []):
        if f"watch {watchers}" not in chosen:
            continue
        names = turn_order(systems, k)
        for name in names:
            try:
                done(f"watch {watchers}", name, run_watch_load(leader_first(systems[name]), watchers, duration_s,
                                                               watch_put_rate))
            except RuntimeError as err:
                raise BenchError(f"{name}: watch {watchers}: {err}") from None
    if "grant 2x64" in chosen:
        for name in turn_order(systems, round_no):
            done("grant 2x64", name, run_load(leader_first(systems[name]), "grant", 2, 64, duration_s))
    for k, (streams, window, where) in enumerate(KEEP_ALIVE_LOADS):
        names = turn_order(systems, k)
        load = keep_alive_load_name(streams, window, where)
        if load not in chosen:
            continue
        for name in names:
            first_id = 1 + (round_no * len(KEEP_ALIVE_LOADS) + k) * KEEP_ALIVE_LEASES  # new leases each time
            endpoints = leader_first(systems[name])
            if where == "follower":
                endpoints = endpoints[1:] + endpoints[:1]
            try:
                done(load, name, run_keep_alive_load(endpoints, streams, window, duration_s, first_id))
            except RuntimeError as err:
                raise BenchError(f"{name}: {load}: {err}") from None
    # The 16 KiB puts last: the history they leave (every version until a compaction) makes the
    # state large, so each system then deletes them and compacts, and the next round's loads run
    # on a state like this round's.
    op, procs, in_flight = BIG_LOAD
    big = load_name(op, procs, in_flight)
    if big not in chosen:
        return out
    for name in turn_order(systems, round_no):
        endpoints = leader_first(systems[name])
        done(big, name, run_load(endpoints, op, procs, in_flight, duration_s))
        try:
            forget_big_values(endpoints[0])
        except BenchError as err:
            raise BenchError(f"{name}: {err}") from None
        if quiet_disk_of is not None:
            waited = wait_for_quiet_disk(quiet_disk_of)
            print(f"round {round_no + 1}: after {name}'s 16 KiB puts, the disk was quiet in "
                  + (f"{waited:.1f} s" if waited is not None else "no time it could see"), file=sys.stderr)
    return out


#: the disk counts as quiet once it writes (and discards) less than this in each of two
#: consecutive half seconds (the two clusters' heartbeats, leases and idle syncs write far less)
QUIET_BYTES_PER_HALF_S = 1 << 20
QUIET_MOST_S = 30.0


def _device_bytes(path: Path) -> int | None:
    """Bytes written and discarded so far by the block device that holds `path` (its counters
    in /sys/dev/block), or None where there are none to read."""
    dev = os.stat(path).st_dev
    try:
        fields = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/stat").read_text().split()
    except OSError:
        return None
    sectors = int(fields[6]) + (int(fields[13]) if len(fields) > 13 else 0)  # written, discarded
    return sectors * 512


def wait_for_quiet_disk(path: Path, quiet_bytes: int = QUIET_BYTES_PER_HALF_S,
                        most_s: float = QUIET_MOST_S) -> float | None:
    """Wait (at most `most_s`) until the disk holding `path` is quiet; the seconds waited, or None
    if its counters cannot be read. So that what a system's 16 KiB load left to write (its
    compaction, a snapshot under way) does not fall into the next load, which is the other
    system's as often as its own. (Disk work the next load itself sets off, such as a snapshot
    that its first slots make due and the discards of the segments that snapshot frees, is that
    load's: no wait before it can see it.)"""
    before = _device_bytes(path)
    if before is None:
        return None
    began, quiet = time.monotonic(), 0
    while quiet < 2 and time.monotonic() - began < most_s:
        time.sleep(0.5)
        now = _device_bytes(path)
        quiet = quiet + 1 if now - before < quiet_bytes else 0
        before = now
    return time.monotonic() - began


def forget_big_values(endpoint: str) -> None:
    """Delete the large-value load's keys, and compact the store at its revision then (a
    BenchError if the system refuses either)."""
    import grpc

    from verikv.etcdpb import rpc_pb2, rpc_pb2_grpc

    with _channel(endpoint) as channel:
        kv = rpc_pb2_grpc.KVStub(channel)
        step = "deleting the 16 KiB load's keys"
        try:
            deleted = kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"bench-big/", range_end=b"bench-big0"),
                                     timeout=60)
            step = f"compacting at revision {deleted.header.revision}"
            kv.Compact(rpc_pb2.CompactionRequest(revision=deleted.header.revision, physical=True), timeout=120)
        except grpc.RpcError as err:
            raise BenchError(f"{step} at {endpoint}: {err.code().name}: {err.details()}") from None


def main(argv: list[str]) -> int:
    from verikv.cluster.bench_report import medians, print_tables  # (it imports this module's loads)

    p = argparse.ArgumentParser(prog="verikv bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=Path(".verikv-bench"),
                   help="where both clusters keep their data (recreated)")
    p.add_argument("--base-port", type=int, default=25700)
    p.add_argument("--duration-s", type=float, default=5.0, help="per load")
    p.add_argument("--rounds", type=int, default=1,
                   help="run every load this many times per system; print medians (this host's speed drifts)")
    p.add_argument("--only", choices=["verikv", "etcd"], default=None)
    p.add_argument("--watch-put-rate", type=float, default=100.0,
                   help="puts per second during the watch loads (0: no watch loads)")
    p.add_argument("--loads", metavar="LOAD,...",
                   help="only these loads, comma-separated, e.g. put-1x1,get-1x1,keep-alive-64x8 "
                        "(default: every load; an unknown name is refused with the list)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-runtime-checks", action="store_true",
                   help="also run a second verikv cluster without runtime checks, beside the first (which keeps "
                        "them), every load against both: the checks' cost, as verikv's / its throughput")
    p.add_argument("--cpu-scheduling", choices=["loop-first", "normal", "batch"], default="loop-first",
                   help="the verikv nodes' `serve --cpu-scheduling` (default loop-first, as serve's)")
    p.add_argument("--tls", action="store_true",
                   help="run both clusters with client TLS (client certificates required) and mutual peer TLS, "
                        "certificates from one local CA (verikv: `cluster up --tls`); the clients use TLS")
    g = p.add_argument_group("--big-store: memory, disk and restart time with many keys (cluster/bigstore.py)")
    g.add_argument("--big-store", action="store_true",
                   help="instead of the loads: load --keys keys into each system, then print each node's RSS, WAL "
                        "and snapshot bytes, and its restart (recovery) time; etcd's ports are BASE+30..BASE+35")
    g.add_argument("--keys", type=int, default=1_000_000)
    g.add_argument("--value-bytes", type=int, default=256)
    g.add_argument("--writers", type=int, default=8, help="clients loading in parallel")
    g.add_argument("--timeout-s", type=float, default=600.0, help="for each wait (the load's answers, a restart)")
    args = p.parse_args(argv)
    if args.rounds < 1:
        p.error("--rounds must be at least 1")
    loads = None
    if args.loads is not None:
        if args.big_store:
            p.error("--loads chooses among the loads, which --big-store does not run")
        try:
            loads = pick_loads(args.loads)
        except ValueError as err:
            p.error(f"--loads: {err}")
        if args.watch_put_rate <= 0 and any(load.startswith("watch ") for load in loads):
            p.error("--loads names a watch load, and --watch-put-rate 0 leaves the watch loads out")
    if args.tls and args.no_runtime_checks:
        p.error("--no-runtime-checks runs without --tls (the second verikv cluster would have a CA of its own)")
    if args.big_store:
        if args.tls:
            p.error("--big-store runs without TLS")
        if args.no_runtime_checks:
            p.error("--big-store runs with the runtime checks")
        from verikv.cluster import bigstore
        return bigstore.main(args)

    from verikv.cluster import cli as cluster_cli
    from verikv.cluster.etcd import EtcdUnavailable, start_etcd_cluster

    results: dict = {}
    if args.data_dir.exists():
        shutil.rmtree(args.data_dir)
    args.data_dir.mkdir(parents=True)
    systems: dict[str, list[str]] = {}
    pids: dict[str, list[int]] = {}
    vdir = args.data_dir / "verikv"
    etcd_tls = None
    if args.tls:  # one CA for both clusters, so one client certificate reaches both
        from verikv.cluster.certs import cluster_certs, issue
        files = cluster_certs(cluster_cli.certs_dir(vdir), [("127.0.0.1", args.base_port + 10 + i)
                                                            for i in range(cluster_cli.CLUSTER_SIZE)])
        ca = (files["ca"], files["ca"].with_name("ca-key.pem"))
        etcd_tls = {"ca": files["ca"], "client": files["client"],
                    "members": [issue(args.data_dir / "etcd-certs", f"e{i}", ca, f"etcd e{i}", ["127.0.0.1"])
                                for i in range(3)]}
        use_tls({"ca": files["ca"], "client": files["client"]})
    try:
        with contextlib.ExitStack() as stack:
            def start_verikv(name: str, data_dir: Path, base_port: int, checks: bool) -> None:
                # the cluster CLI's own parser, so its defaults and new options always apply
                up = cluster_cli.build_parser().parse_args(
                    ["up", "--data-dir", str(data_dir), "--base-port", str(base_port)]
                    + ([] if checks else ["--no-runtime-checks"])
                    + (["--tls"] if args.tls else [])
                    + ["--cpu-scheduling", args.cpu_scheduling])
                down = cluster_cli.build_parser().parse_args(["down", "--data-dir", str(data_dir)])

                def stop_verikv() -> None:
                    with contextlib.redirect_stdout(sys.stderr):
                        cluster_cli.cmd_down(down)

                stack.callback(stop_verikv)
                with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the figures
                    cluster_cli.cmd_up(up)
                conf = cluster_cli._layout(data_dir, None)
                systems[name] = [cluster_cli.client_endpoint(conf, i) for i in range(conf["size"])]
                pids[name] = [cluster_cli.running_pid(data_dir, i) for i in range(conf["size"])]

            if args.only in (None, "verikv"):
                start_verikv("verikv", vdir, args.base_port, checks=True)
                if args.no_runtime_checks:  # beside it, in the same run: what the checks cost
                    start_verikv(UNCHECKED, args.data_dir / "verikv-unchecked", args.base_port + UNCHECKED_PORTS,
                                 checks=False)
            if args.only in (None, "etcd"):
                try:
                    etcd = stack.enter_context(start_etcd_cluster(args.data_dir / "etcd", 3, args.base_port + 50,
                                                                  tls=etcd_tls))
                    systems["etcd"] = etcd.client_endpoints
                    pids["etcd"] = [p.pid for p in etcd.processes]
                except EtcdUnavailable as err:
                    print(f"verikv bench: etcd: {err}", file=sys.stderr)
            for name, endpoints in systems.items():
                print(f"benchmarking {name} at {','.join(endpoints)}" + (" over TLS" if args.tls else "")
                      + (" (verikv without runtime checks)" if name == UNCHECKED else "")
                      + (f" (--cpu-scheduling {args.cpu_scheduling})"
                         if name == "verikv" and args.cpu_scheduling != "loop-first" else ""), file=sys.stderr)
            memory_load = keep_alive_load_name(*KEEP_ALIVE_LOADS[0])
            lease_bytes_of = {}
            if memory_load in (load_names() if loads is None else loads):
                for name, endpoints in systems.items():  # first: on the freshly started nodes
                    try:
                        lease_bytes_of[name] = lease_memory(leader_first(endpoints)[0], pids[name])
                    except RuntimeError as err:
                        raise BenchError(f"{name}: the memory of live leases: {err}") from None
                    print(f"{name}: {lease_bytes_of[name]:,.0f} bytes of resident memory per live lease", file=sys.stderr)
            rounds = [bench(systems, args.duration_s, args.watch_put_rate, k, args.data_dir, loads, args.rounds)
                      for k in range(args.rounds)]
            results = medians(rounds)
            for name, lease_bytes in lease_bytes_of.items():
                results[name][memory_load]["lease_bytes"] = lease_bytes
    except (cluster_cli.ClusterError, BenchError) as err:
        print(f"verikv bench: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print_tables(results, args.rounds, args.watch_put_rate)
    return 0
