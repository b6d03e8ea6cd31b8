"""`verikv bench`: the same load against a local 3-node verikv and a local 3-member etcd 3.4.

Loads: puts, then linearizable gets, of 256-byte values; (a) 1 client, one request at a time;
(b) 2 client processes x 64 requests in flight. The clients are a C++ load generator
(cluster/loadgen/loadgen.cpp) so that on a small machine they leave the CPU to the servers. Prints throughput and p50/p99 latency for both
systems and the verikv/etcd ratio. Both clusters run on this machine, on loopback, with real
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
import sys
from pathlib import Path

VALUE_BYTES = 256


METHODS = {"put": "/etcdserverpb.KV/Put", "get": "/etcdserverpb.KV/Range"}


def _worker(args: tuple) -> tuple[int, list[float], int]:
    """One client process: `in_flight` calls at a time from the C++ load generator, each lane
    cycling through the key space. Returns (successful calls, their latencies, failed calls)."""
    endpoint, op, in_flight, duration_s, key_space, worker = args
    from verikv.cluster import _loadgen
    from verikv.etcdpb import rpc_pb2

    value = os.urandom(VALUE_BYTES // 2).hex().encode()
    requests = []
    for k in range(key_space):
        key = b"bench/%d" % ((worker * 100_003 + k) % key_space)
        msg = rpc_pb2.PutRequest(key=key, value=value) if op == "put" else rpc_pb2.RangeRequest(key=key)
        requests.append(msg.SerializeToString())
    latencies_s, errors = _loadgen.run(endpoint, METHODS[op], requests, in_flight, duration_s)
    return len(latencies_s), latencies_s, errors


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def run_load(endpoints: list[str], op: str, processes: int, in_flight: int, duration_s: float,
             key_space: int = 1000) -> dict:
    jobs = [(endpoints[w % len(endpoints)], op, in_flight, duration_s, key_space, w) for w in range(processes)]
    if processes == 1:
        results = [_worker(jobs[0])]
    else:
        with multiprocessing.get_context("spawn").Pool(processes) as pool:
            results = pool.map(_worker, jobs)
    lat = sorted(x for _, ls, _ in results for x in ls)
    ops = sum(n for n, _, _ in results)
    return {"ops": ops, "ops_per_s": ops / duration_s, "p50_ms": _percentile(lat, 0.50) * 1000,
            "p99_ms": _percentile(lat, 0.99) * 1000, "errors": sum(e for _, _, e in results)}


LOADS = [("put", 1, 1), ("get", 1, 1), ("put", 2, 64), ("get", 2, 64)]


def bench(endpoints: list[str], duration_s: float) -> dict:
    out = {}
    for op, procs, in_flight in LOADS:
        run_load(endpoints, "put", 1, 1, 0.2)  # warm up (and make sure keys exist for gets)
        out[f"{op} {procs}x{in_flight}"] = run_load(endpoints, op, procs, in_flight, duration_s)
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="verikv bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=Path(".verikv-bench"),
                   help="where both clusters keep their data (recreated)")
    p.add_argument("--base-port", type=int, default=25700)
    p.add_argument("--duration-s", type=float, default=5.0, help="per load")
    p.add_argument("--only", choices=["verikv", "etcd"], default=None)
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-runtime-checks", action="store_true",
                   help="run the verikv nodes without runtime checks (to measure their cost)")
    args = p.parse_args(argv)

    from verikv.cluster import cli as cluster_cli
    from verikv.cluster.etcd import EtcdUnavailable, start_etcd_cluster

    results: dict = {}
    if args.data_dir.exists():
        shutil.rmtree(args.data_dir)
    args.data_dir.mkdir(parents=True)
    try:
        if args.only in (None, "verikv"):
            vdir = args.data_dir / "verikv"
            # the cluster CLI's own parser, so its defaults and new options always apply
            up = cluster_cli.build_parser().parse_args(
                ["up", "--data-dir", str(vdir), "--base-port", str(args.base_port)]
                + (["--no-runtime-checks"] if args.no_runtime_checks else []))
            try:
                with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the figures
                    cluster_cli.cmd_up(up)
                conf = cluster_cli._layout(vdir, None)
                endpoints = [cluster_cli.client_endpoint(conf, i) for i in range(conf["size"])]
                print(f"benchmarking verikv at {','.join(endpoints)}", file=sys.stderr)
                results["verikv"] = bench(endpoints, args.duration_s)
            finally:
                with contextlib.redirect_stdout(sys.stderr):
                    cluster_cli.cmd_down(cluster_cli.build_parser().parse_args(["down", "--data-dir", str(vdir)]))
        if args.only in (None, "etcd"):
            try:
                with start_etcd_cluster(args.data_dir / "etcd", 3, args.base_port + 50) as etcd:
                    print(f"benchmarking etcd at {','.join(etcd.client_endpoints)}", file=sys.stderr)
                    results["etcd"] = bench(etcd.client_endpoints, args.duration_s)
            except EtcdUnavailable as err:
                print(f"verikv bench: etcd: {err}", file=sys.stderr)
    except cluster_cli.ClusterError as err:
        print(f"verikv bench: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{'load':<12} {'system':<7} {'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for load in (f"{op} {p}x{f}" for op, p, f in LOADS):
        for system in ("verikv", "etcd"):
            r = results.get(system, {}).get(load)
            if r:
                print(f"{load:<12} {system:<7} {r['ops_per_s']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
                      f"{r['errors']:>6}")
        if "verikv" in results and "etcd" in results and results["etcd"][load]["ops_per_s"]:
            ratio = results["verikv"][load]["ops_per_s"] / results["etcd"][load]["ops_per_s"]
            print(f"{load:<12} {'ratio':<7} {ratio:>9.2f}  (verikv / etcd throughput)")
    return 0
