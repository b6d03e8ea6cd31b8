"""`verikv bench --big-store`: memory, disk and restart time of a local 3-node verikv and a local
3-member etcd 3.4 holding the same keys (default 1,000,000 keys of 256-byte values).

Each system is loaded with Txns of 128 puts (etcd's default --max-txn-ops), keys `big/%08d`, from
--writers clients in parallel. The keys are written in a scattered order (the i-th is key
i * SCATTER mod --keys), so that each Txn's keys land all over the key space, as an
application's names do, rather than each after the last. Once every node counts every key: each node's resident memory
(VmRSS of its process), its WAL files' bytes and its snapshot bytes (verikv: `snap-*.snap`;
etcd: the bolt file `member/snap/db` and any `*.snap`), and the store's size as Status reports it
(verikv's measure, etcd's bolt file). Then every node is stopped (SIGTERM) and started again on
the same data: the restart time is from the start until the node answers a serializable count of
every key (its recovery: reading its snapshot and WAL and replaying them). The two systems run
one after the other, not side by side.

This module must never touch a cluster it did not start: it creates its own data directories
(under --data-dir) and stops what it started, also on errors and Ctrl-C.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from pathlib import Path

TXN_OPS = 128
SCATTER = 1_000_003  # a prime: i -> i * SCATTER mod keys is a permutation unless keys is a multiple of it
PREFIX, PREFIX_END = b"big/", b"big0"


def _value(n: int, size: int) -> bytes:
    return (b"%08d" % n * (size // 8 + 1))[:size]


def load(endpoints: list[str], keys: int, value_bytes: int, writers: int) -> float:
    """Put every key (Txns of TXN_OPS puts, `writers` clients, spread over the endpoints); seconds."""
    import grpc

    from verikv.etcdpb import rpc_pb2, rpc_pb2_grpc

    stride = SCATTER if keys % SCATTER else 1
    order = [i * stride % keys for i in range(keys)]
    batches = [order[b:b + TXN_OPS] for b in range(0, keys, TXN_OPS)]
    errors: list[str] = []

    def writer(w: int) -> None:
        ch = grpc.insecure_channel(endpoints[w % len(endpoints)])
        kv = rpc_pb2_grpc.KVStub(ch)
        try:
            for batch in batches[w::writers]:
                txn = rpc_pb2.TxnRequest(success=[
                    rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=PREFIX + b"%08d" % n,
                                                                     value=_value(n, value_bytes)))
                    for n in batch])
                for attempt in range(20):
                    try:
                        kv.Txn(txn, timeout=30)
                        break
                    except grpc.RpcError as err:  # retried: a put of the same value twice is harmless here
                        if attempt == 19:
                            errors.append(f"{err.code().name}: {err.details()}")
                            return
                        time.sleep(0.5)
        finally:
            ch.close()

    started = time.monotonic()
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"loading failed: {errors[0]}")
    return time.monotonic() - started


def count(endpoint: str, timeout_s: float = 10.0, serializable: bool = True) -> int | None:
    """The keys under the prefix, read at one node (None if it does not answer)."""
    import grpc

    from verikv.etcdpb import rpc_pb2, rpc_pb2_grpc

    ch = grpc.insecure_channel(endpoint)
    try:
        return rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=PREFIX, range_end=PREFIX_END, count_only=True,
                                                                  serializable=serializable), timeout=timeout_s).count
    except grpc.RpcError:
        return None
    finally:
        ch.close()


def db_size(endpoint: str) -> int:
    import grpc

    from verikv.etcdpb import rpc_pb2, rpc_pb2_grpc

    with grpc.insecure_channel(endpoint) as ch:
        return rpc_pb2_grpc.MaintenanceStub(ch).Status(rpc_pb2.StatusRequest(), timeout=10).dbSize


def wait_counts(endpoints: list[str], keys: int, since: float, timeout_s: float,
                serializable: bool = True) -> list[float]:
    """Until each node counts every key; the seconds from `since` at which each one first did."""
    done: dict[int, float] = {}
    deadline = time.monotonic() + timeout_s
    while len(done) < len(endpoints):
        for i, ep in enumerate(endpoints):
            if i not in done and count(ep, timeout_s=5.0, serializable=serializable) == keys:
                done[i] = time.monotonic() - since
        if len(done) < len(endpoints):
            if time.monotonic() > deadline:
                raise RuntimeError(f"nodes {sorted(set(range(len(endpoints))) - set(done))} did not count "
                                   f"{keys} keys within {timeout_s} s")
            time.sleep(0.1)
    return [done[i] for i in range(len(endpoints))]


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _bytes(paths) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


def measure_verikv(data_dir: Path, base_port: int, keys: int, value_bytes: int, writers: int,
                   timeout_s: float) -> dict:
    from verikv.cluster import cli as cluster_cli

    parser = cluster_cli.build_parser()
    up = parser.parse_args(["up", "--data-dir", str(data_dir), "--base-port", str(base_port), "--timeout-s", "120"])
    down = parser.parse_args(["down", "--data-dir", str(data_dir), "--timeout-s", "60"])
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: _quietly(cluster_cli.cmd_down, down))
        _quietly(cluster_cli.cmd_up, up)
        conf = cluster_cli._layout(data_dir, None)
        endpoints = [cluster_cli.client_endpoint(conf, i) for i in range(conf["size"])]
        load_s = load(endpoints, keys, value_bytes, writers)
        wait_counts(endpoints, keys, time.monotonic(), timeout_s)
        pids = [cluster_cli.running_pid(data_dir, i) for i in range(conf["size"])]
        out = {"load_s": load_s, "rss": [rss_bytes(p) for p in pids],
               "wal": [_bytes((data_dir / f"node{i}" / "wal").glob("*.wal")) for i in range(conf["size"])],
               "snap": [_bytes((data_dir / f"node{i}" / "wal").glob("snap-*.snap")) for i in range(conf["size"])],
               "db_size": db_size(endpoints[0])}
        _quietly(cluster_cli.cmd_down, down)
        started = time.monotonic()
        for i in range(conf["size"]):  # as `cluster up` does, without waiting for a leader here
            cluster_cli._start_node(data_dir, conf, i, [])
        out["restart_s"] = wait_counts(endpoints, keys, started, timeout_s)
        out["restart_linearizable_s"] = wait_counts(endpoints, keys, started, timeout_s, serializable=False)
        pids = [cluster_cli.running_pid(data_dir, i) for i in range(conf["size"])]
        out["rss_after_restart"] = [rss_bytes(p) for p in pids]
    return out


def measure_etcd(data_dir: Path, base_port: int, keys: int, value_bytes: int, writers: int,
                 timeout_s: float) -> dict:
    from verikv.cluster.etcd import start_etcd_cluster

    with start_etcd_cluster(data_dir, 3, base_port) as cluster:
        endpoints = cluster.client_endpoints
        load_s = load(endpoints, keys, value_bytes, writers)
        wait_counts(endpoints, keys, time.monotonic(), timeout_s)
        members = [data_dir / f"e{i}" / "member" for i in range(3)]
        out = {"load_s": load_s, "rss": [rss_bytes(p.pid) for p in cluster.processes],
               "wal": [_bytes((m / "wal").glob("*.wal")) for m in members],
               "snap": [_bytes([m / "snap" / "db"]) + _bytes((m / "snap").glob("*.snap")) for m in members],
               "db_size": db_size(endpoints[0])}
        cluster.stop()
        started = time.monotonic()
        cluster.restart(ready_timeout_s=None)  # waited for below, with a new channel per try (a
        # channel that failed to connect waits out gRPC's growing reconnect backoff)
        out["restart_s"] = wait_counts(endpoints, keys, started, timeout_s)
        out["restart_linearizable_s"] = wait_counts(endpoints, keys, started, timeout_s, serializable=False)
        out["rss_after_restart"] = [rss_bytes(p.pid) for p in cluster.processes]
    return out


def _quietly(func, args) -> None:
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries only the figures
        func(args)


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f}"


def report(results: dict, keys: int, value_bytes: int) -> None:
    print(f"{keys:,} keys of {value_bytes}-byte values (Txns of {TXN_OPS} puts), 3 nodes on this machine")
    print(f"{'':8} {'load s':>7} {'RSS MiB per node':>20} {'WAL MiB per node':>18} {'snapshot MiB':>16} "
          f"{'dbSize MiB':>10} {'restart s per node':>20} {'linearizable s':>16} {'RSS after MiB':>16}")
    for name, r in results.items():
        print(f"{name:8} {r['load_s']:>7.1f} {'/'.join(_mib(x) for x in r['rss']):>20} "
              f"{'/'.join(_mib(x) for x in r['wal']):>18} {'/'.join(_mib(x) for x in r['snap']):>16} "
              f"{_mib(r['db_size']):>10} {'/'.join(f'{x:.1f}' for x in r['restart_s']):>20} "
              f"{'/'.join(f'{x:.1f}' for x in r['restart_linearizable_s']):>16} "
              f"{'/'.join(_mib(x) for x in r['rss_after_restart']):>16}")
    print("WAL: the files' sizes (etcd preallocates its segments, 64 MB each); snapshot: verikv's snap-*.snap, "
          "etcd's bolt file and *.snap; restart: from the start of the processes until each node counts "
          "every key in a serializable read (its state recovered), linearizable: in a linearizable read (a leader "
          "elected and heard)")


def main(args) -> int:
    import json
    import shutil

    from verikv.cluster.cli import ClusterError
    from verikv.cluster.etcd import EtcdUnavailable

    if args.data_dir.exists():
        shutil.rmtree(args.data_dir)
    args.data_dir.mkdir(parents=True)
    results = {}
    try:
        if args.only in (None, "verikv"):
            print(f"loading {args.keys:,} keys into verikv", file=sys.stderr)
            results["verikv"] = measure_verikv(args.data_dir / "verikv", args.base_port, args.keys,
                                               args.value_bytes, args.writers, args.timeout_s)
        if args.only in (None, "etcd"):
            print(f"loading {args.keys:,} keys into etcd", file=sys.stderr)
            results["etcd"] = measure_etcd(args.data_dir / "etcd", args.base_port + 30, args.keys,
                                           args.value_bytes, args.writers, args.timeout_s)
    except (ClusterError, EtcdUnavailable, RuntimeError) as err:
        print(f"verikv bench --big-store: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        report(results, args.keys, args.value_bytes)
    return 0
