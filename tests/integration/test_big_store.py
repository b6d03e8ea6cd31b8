"""A follower behind a store of more than 200 MiB catches up by a streamed snapshot (real processes).

One follower of a 3-node cluster is stopped; 205 MiB of values (820 of 256 KiB) and then enough
small puts that the live nodes snapshot and truncate their logs past it are written; the follower
restarts and can only catch up from a snapshot, which its leader streams in chunks. Its HashKV,
keys and values then equal the leader's. A client puts and reads at the leader meanwhile; the
catch-up time and the client's latency are printed (run with -s to see them).
"""

from __future__ import annotations

import hashlib
import os
import signal
import statistics
import threading
import time

import grpc
import pytest
from integration_helpers import Cluster, ports_free, wait_snapshotted

from verikv.etcdpb import rpc_pb2, rpc_pb2_grpc

BASE_PORT = 28700
VALUE_BYTES = 256 * 1024
BIG_VALUES = 820  # 205 MiB of values
SMALL_PUTS = 1100  # one slot each: past the 1024 slots after which a node snapshots and truncates
WRITERS = 4


def put_all(endpoint: str, keys: list[int]) -> None:
    ch = grpc.insecure_channel(endpoint, options=[("grpc.max_send_message_length", 8 << 20)])
    kv = rpc_pb2_grpc.KVStub(ch)
    try:
        for n in keys:
            value = hashlib.sha256(b"%d" % n).digest() * (VALUE_BYTES // 32)
            kv.Put(rpc_pb2.PutRequest(key=b"big/%05d" % n, value=value), timeout=30)
    finally:
        ch.close()


class Prober(threading.Thread):
    """A client at one node: a put and a linearizable get every 20 ms; each one's latency."""

    def __init__(self, endpoint: str):
        super().__init__(daemon=True)
        self.endpoint = endpoint
        self.stop = threading.Event()
        self.samples: list[tuple[float, float]] = []  # (when it started, latency of the put + get)
        self.errors: list[str] = []

    def run(self) -> None:
        ch = grpc.insecure_channel(self.endpoint)
        kv = rpc_pb2_grpc.KVStub(ch)
        n = 0
        try:
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    kv.Put(rpc_pb2.PutRequest(key=b"probe/%06d" % n, value=b"x"), timeout=10)
                    kv.Range(rpc_pb2.RangeRequest(key=b"probe/%06d" % n), timeout=10)
                except grpc.RpcError as err:
                    self.errors.append(err.code().name)
                else:
                    self.samples.append((started, time.monotonic() - started))
                n += 1
                time.sleep(0.02)
        finally:
            ch.close()

    def figures(self, since: float, until: float) -> str:
        lat = sorted(s for t, s in self.samples if since <= t <= until)
        if not lat:
            return "no samples"
        return (f"{len(lat)} put+get pairs, p50 {statistics.median(lat) * 1000:.1f} ms, "
                f"p99 {lat[int(0.99 * (len(lat) - 1))] * 1000:.1f} ms, max {lat[-1] * 1000:.1f} ms")


def hash_kv(cluster: Cluster, i: int) -> rpc_pb2.HashKVResponse:
    ch = grpc.insecure_channel(cluster.endpoints[i])
    try:
        return rpc_pb2_grpc.MaintenanceStub(ch).HashKV(rpc_pb2.HashKVRequest(), timeout=60)
    finally:
        ch.close()


def contents(cluster: Cluster, i: int) -> tuple[int, list[tuple[bytes, int, int, int, bytes]]]:
    """Every key with its revisions, version and its value's sha256, read serializably at node i in
    pages (a page of the big values stays under gRPC's 4 MiB default)."""
    ch = grpc.insecure_channel(cluster.endpoints[i], options=[("grpc.max_receive_message_length", 8 << 20)])
    kv = rpc_pb2_grpc.KVStub(ch)
    out, key, revision = [], b"\0", 0
    try:
        while True:
            resp = kv.Range(rpc_pb2.RangeRequest(key=key, range_end=b"\0", limit=8, serializable=True,
                                                 revision=revision), timeout=30)
            revision = revision or resp.header.revision
            out += [(x.key, x.create_revision, x.mod_revision, x.version, hashlib.sha256(x.value).digest())
                    for x in resp.kvs]
            if not resp.more:
                return revision, out
            key = resp.kvs[-1].key + b"\0"
    finally:
        ch.close()


@pytest.mark.slow
def test_a_follower_behind_a_200_mib_store_catches_up_by_a_streamed_snapshot(tmp_path):
    if not ports_free(BASE_PORT):
        pytest.fail(f"ports {BASE_PORT}..{BASE_PORT + 12} are in use")
    cluster = Cluster(tmp_path / "big", BASE_PORT)
    prober = None
    try:
        cluster.up()
        leader = cluster.wait_leader()
        f = next(n for n in cluster.status() if n["id"] != leader["id"])["id"]
        os.kill(cluster.status()[f]["pid"], signal.SIGTERM)  # a node this test's cluster started
        cluster.wait_stopped(f)
        leader = cluster.wait_leader()["id"]
        at = cluster.endpoints[leader]

        started = time.monotonic()
        writers = [threading.Thread(target=put_all, args=(at, list(range(w, BIG_VALUES, WRITERS))))
                   for w in range(WRITERS)]
        for w in writers:
            w.start()
        for w in writers:
            w.join()
        ch, kv = cluster.kv(leader)
        try:
            for n in range(SMALL_PUTS):
                kv.Put(rpc_pb2.PutRequest(key=b"small/%05d" % n, value=b"%d" % n), timeout=10)
        finally:
            ch.close()
        print(f"\nwrote {BIG_VALUES * VALUE_BYTES / 2**20:.0f} MiB in {BIG_VALUES} values and {SMALL_PUTS} small "
              f"puts in {time.monotonic() - started:.1f} s")
        live = [i for i in range(3) if i != f]
        wait_snapshotted(cluster, live)
        snap = max(cluster.wal_dir(leader).glob("snap-*.snap"), key=lambda p: p.name)
        assert snap.stat().st_size > 200 * 2**20, f"{snap}: {snap.stat().st_size} bytes"

        prober = Prober(at)
        prober.start()
        time.sleep(2.0)
        restarted = time.monotonic()
        up = cluster.up()
        assert f"node {f} started" in up.stdout, up.stdout
        cluster.wait_caught_up(f, timeout_s=180)
        caught_up = time.monotonic()
        time.sleep(1.0)
        prober.stop.set()
        prober.join()
        print(f"node {f} caught up {caught_up - restarted:.1f} s after `cluster up` "
              f"(its restart included)")
        print(f"client at the leader before the restart: {prober.figures(0, restarted)}")
        print(f"client at the leader during the catch-up: {prober.figures(restarted, caught_up)}; "
              f"errors {prober.errors}")
        follower_log = cluster.log(f)
        assert "sha256 verified" in follower_log and "installed a peer's snapshot" in follower_log, follower_log[-3000:]
        # any node that truncated past it may stream it (the leader, or the other follower)
        assert any(f"streamed to node {f}" in cluster.log(i) for i in live)
        for i in live:
            for line in cluster.log(i).splitlines():
                if f"streamed to node {f}" in line or "streaming a snapshot" in line:
                    print(f"node {i}:", line.split("verikv.node", 1)[-1].strip(" :"))
        for line in follower_log.splitlines():
            if "snapshot" in line:
                print(f"node {f}:", line.split("verikv.node", 1)[-1].strip(" :"))

        hashes = [hash_kv(cluster, i) for i in range(3)]
        assert len({(h.hash, h.header.revision) for h in hashes}) == 1, hashes
        mine, theirs = contents(cluster, f), contents(cluster, leader)
        assert mine == theirs
        revision, items = mine
        assert sum(1 for k, *_ in items if k.startswith(b"big/")) == BIG_VALUES
        assert not prober.errors, prober.errors
    finally:
        if prober is not None:
            prober.stop.set()
        res = cluster.down()
        assert res.returncode == 0, res.stdout + res.stderr
