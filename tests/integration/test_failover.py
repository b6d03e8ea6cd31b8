"""Crash and restart with real processes: kill -9 of the leader while clients write, and a stopped
follower that comes back, catches up and serves exactly the same data as the others."""

import os
import signal
import threading
import time

import grpc
import pytest
from integration_helpers import pid_alive, wait_snapshotted

from verikv.etcdpb import rpc_pb2, rpc_pb2_grpc

WRITERS = 4
PUTS_PER_S = 25  # per writer: keeps the whole run under 1024 slots, i.e. before any snapshot (see
# test_a_node_behind_the_others_snapshot_catches_up for what happens past one)


class Writer(threading.Thread):
    """Puts distinct keys, each retried (same value, next endpoint) until acknowledged."""

    def __init__(self, w: int, endpoints: list[str], stop: threading.Event):
        super().__init__(daemon=True)
        self.w, self.endpoints, self.stop = w, endpoints, stop
        self.acked: dict[bytes, bytes] = {}
        self.ack_times: list[float] = []
        self.errors: list[str] = []

    def run(self) -> None:
        channels = [grpc.insecure_channel(ep) for ep in self.endpoints]
        stubs = [rpc_pb2_grpc.KVStub(ch) for ch in channels]
        cur, n = self.w % len(stubs), 0
        started = time.monotonic()
        try:
            while not self.stop.is_set():
                key, value = f"kill/{self.w}/{n:06d}".encode(), f"v{self.w}.{n}".encode()
                while not self.stop.is_set():
                    try:
                        stubs[cur].Put(rpc_pb2.PutRequest(key=key, value=value), timeout=3)
                    except grpc.RpcError as err:
                        self.errors.append(f"{self.endpoints[cur]}: {err.code().name}")
                        cur = (cur + 1) % len(stubs)
                        time.sleep(0.05)
                        continue
                    self.acked[key] = value
                    self.ack_times.append(time.monotonic())
                    break
                n += 1
                time.sleep(max(0.0, started + n / PUTS_PER_S - time.monotonic()))
        finally:
            for ch in channels:
                ch.close()


def check_all_acked(resp, acked: dict[bytes, bytes], where: str) -> None:
    got = {kv.key: kv.value for kv in resp.kvs}
    missing = [k for k in acked if k not in got]
    wrong = [(k, acked[k], got[k]) for k in acked if k in got and got[k] != acked[k]]
    assert not missing, f"{where}: {len(missing)} of {len(acked)} acknowledged puts are lost, e.g. {missing[:5]}"
    assert not wrong, f"{where}: acknowledged values changed, e.g. {wrong[:5]}"


@pytest.mark.slow
def test_kill_9_of_the_leader_during_writes_loses_no_acknowledged_put(make_cluster):
    cluster = make_cluster(1)
    cluster.up()
    leader = cluster.wait_leader()
    stop = threading.Event()
    writers = [Writer(w, cluster.endpoints, stop) for w in range(WRITERS)]
    for t in writers:
        t.start()
    try:
        time.sleep(2.0)
        before = sum(len(t.acked) for t in writers)
        assert before > 0, f"no put acknowledged before the kill: {[t.errors[:3] for t in writers]}"
        nodes = cluster.status()
        assert nodes[leader["id"]]["role"] == "leader" and nodes[leader["id"]]["pid"] == leader["pid"]
        os.kill(leader["pid"], signal.SIGKILL)  # a node this test's cluster started
        killed_at = time.monotonic()
        time.sleep(6.0)
    finally:
        stop.set()
        for t in writers:
            t.join(timeout=15)
    assert not any(t.is_alive() for t in writers)
    ended_at = time.monotonic()
    acked = {k: v for t in writers for k, v in t.acked.items()}
    times = [x for t in writers for x in t.ack_times]
    after = [x for x in times if x > killed_at + 0.5]
    late = [x for x in times if x > ended_at - 2.5]
    assert len(after) >= 20, f"only {len(after)} puts acknowledged after the leader died (of {len(acked)})"
    assert late, "the cluster stopped acknowledging puts in the last seconds after the kill"

    deadline = time.monotonic() + 10
    while pid_alive(leader["pid"]):
        assert time.monotonic() < deadline, "the killed leader is still alive"
        time.sleep(0.05)
    nodes = cluster.status()
    dead = leader["id"]
    assert nodes[dead]["role"] == "stopped", nodes
    survivors = [n["id"] for n in nodes if n["id"] != dead]
    assert sorted(n["role"] for n in nodes if n["id"] != dead) == ["follower", "leader"], nodes

    for i in survivors:  # linearizable reads at each survivor
        check_all_acked(cluster.range_all(i, serializable=False, key=b"kill/", range_end=b"kill0"), acked,
                        f"linearizable Range at surviving node {i}")

    up = cluster.up()
    assert f"node {dead} started" in up.stdout and up.stdout.count("already running") == 2, up.stdout
    nodes = cluster.wait_caught_up(dead)
    assert nodes[dead]["pid"] != leader["pid"]
    resp = cluster.range_all(dead, serializable=True, key=b"kill/", range_end=b"kill0")
    check_all_acked(resp, acked, f"serializable Range at restarted node {dead}")
    ref = cluster.range_all(survivors[0], serializable=True, key=b"kill/", range_end=b"kill0")
    assert [(kv.key, kv.value, kv.mod_revision) for kv in resp.kvs] == [
        (kv.key, kv.value, kv.mod_revision) for kv in ref.kvs]
    assert not list(cluster.data_dir.glob("node*/wal/snap-*")), "a snapshot was taken: the pacing is off"


def full_state(cluster, i: int):
    resp = cluster.range_all(i, serializable=True)
    return resp.header.revision, [(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version)
                                  for kv in resp.kvs]


def stop_a_follower(cluster, pre_keys: int = 20) -> int:
    for n in range(pre_keys):
        cluster.put_retrying(f"pre/{n:03d}".encode(), b"before")
    leader = cluster.wait_leader()
    follower = next(n for n in cluster.status() if n["id"] != leader["id"])
    os.kill(follower["pid"], signal.SIGTERM)  # a node this test's cluster started
    cluster.wait_stopped(follower["id"])
    return follower["id"]


def write_while_away(cluster, away: int, n_keys: int, pre_keys: int = 20) -> int:
    """Sequential puts (one slot each), overwrites and a delete through a live node; returns the
    expected revision."""
    live = cluster.wait_leader()["id"]  # straight to the leader: one slot per put
    assert live != away
    ch, kv = cluster.kv(live)
    try:
        for n in range(n_keys):
            kv.Put(rpc_pb2.PutRequest(key=f"key/{n:05d}".encode(), value=f"value {n}".encode()), timeout=10)
        for n in range(0, n_keys, 7):  # overwrites and deletes: versions and mod revisions move
            kv.Put(rpc_pb2.PutRequest(key=f"key/{n:05d}".encode(), value=b"again"), timeout=10)
        kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"pre/010", range_end=b"pre/015"), timeout=10)
    finally:
        ch.close()
    return 1 + pre_keys + n_keys + len(range(0, n_keys, 7)) + (1 if pre_keys > 10 else 0)


def check_same_everywhere(cluster, f: int, n_keys: int, revision: int, pre_keys: int = 20) -> None:
    states = {i: full_state(cluster, i) for i in range(3)}
    rev, kvs = states[f]
    assert len(kvs) == min(pre_keys, 10) + max(0, pre_keys - 15) + n_keys and rev == revision, (len(kvs), rev)
    assert dict((k, v) for k, v, *_ in kvs)[b"key/00007"] == b"again"
    for i in range(3):
        assert states[i] == states[f], f"node {i} and restarted node {f} differ"


@pytest.mark.slow
def test_a_stopped_follower_restarts_catches_up_and_serves_the_same_data(make_cluster):
    cluster = make_cluster(2)
    cluster.up()
    f = stop_a_follower(cluster)
    revision = write_while_away(cluster, f, 400)
    up = cluster.up()
    assert f"node {f} started" in up.stdout and up.stdout.count("already running") == 2, up.stdout
    cluster.wait_caught_up(f)
    check_same_everywhere(cluster, f, 400, revision)


@pytest.mark.slow
def test_a_node_behind_the_others_snapshot_catches_up(make_cluster):
    cluster = make_cluster(3)
    cluster.up("--snapshot-count", "1024")  # small records alone make a snapshot due after ~10,000 slots
    f = stop_a_follower(cluster, pre_keys=0)  # stopped right after the first election
    revision = write_while_away(cluster, f, 1100, pre_keys=0)  # > 1024 slots: the others snapshot and truncate
    live = [i for i in range(3) if i != f]
    wait_snapshotted(cluster, live)
    up = cluster.up()
    assert f"node {f} started" in up.stdout and up.stdout.count("already running") == 2, up.stdout
    cluster.wait_caught_up(f, timeout_s=15)
    check_same_everywhere(cluster, f, 1100, revision, pre_keys=0)
