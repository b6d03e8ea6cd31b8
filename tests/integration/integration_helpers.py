"""Helpers for the real-process integration tests: run `verikv cluster ...`, wait for states, gRPC."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc

from verikv.etcdpb import rpc_pb2, rpc_pb2_grpc

_BIN = Path(sys.executable).parent / "verikv"
VERIKV = [str(_BIN)] if _BIN.exists() else [sys.executable, "-m", "verikv.cli"]
PORT_BLOCK = 20  # clients on base..base+2, peers on base+10..base+12


def run_verikv(*args, timeout_s: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(VERIKV + [str(a) for a in args], capture_output=True, text=True, timeout=timeout_s)


def first_put(node: subprocess.Popen, port: int, timeout_s: float = 20) -> rpc_pb2.PutResponse:
    """Put k=v at the one-node `verikv serve` process `node` (client port `port`) once it answers;
    the test fails if the process exits or does not answer in time."""
    deadline = time.monotonic() + timeout_s
    while True:
        ch = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            return rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b"k", value=b"v"), timeout=2)
        except grpc.RpcError:
            assert node.poll() is None, node.communicate()[1]
            assert time.monotonic() < deadline, "the node never answered a put"
            time.sleep(0.2)
        finally:
            ch.close()


def ports_free(base: int) -> bool:
    for port in [base + i for i in range(3)] + [base + 5 + i for i in range(3)] + [base + 10 + i for i in range(3)]:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are fine
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


class Cluster:
    def __init__(self, data_dir: Path, base_port: int):
        self.data_dir = data_dir
        self.base_port = base_port
        self.endpoints = [f"127.0.0.1:{base_port + i}" for i in range(3)]

    # ---- the CLI ----

    def up(self, *flags, check: bool = True) -> subprocess.CompletedProcess:
        """`verikv cluster up` (with `flags`, which the cluster keeps for the nodes it starts later)."""
        res = run_verikv("cluster", "up", "--data-dir", self.data_dir, "--base-port", self.base_port, *flags)
        if check:
            assert res.returncode == 0, f"cluster up failed:\n{res.stdout}\n{res.stderr}"
        return res

    def down(self) -> subprocess.CompletedProcess:
        return run_verikv("cluster", "down", "--data-dir", self.data_dir)

    def status(self) -> list[dict]:
        res = run_verikv("cluster", "status", "--data-dir", self.data_dir, "--json")
        assert res.returncode == 0, res.stderr
        return json.loads(res.stdout)["nodes"]

    def log(self, i: int) -> str:
        p = self.data_dir / f"node{i}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def wal_dir(self, i: int) -> Path:
        return self.data_dir / f"node{i}" / "wal"

    # ---- waiting ----

    def wait_leader(self, timeout_s: float = 20) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            nodes = self.status()
            leaders = [n for n in nodes if n["role"] == "leader"]
            if len(leaders) == 1:
                return leaders[0]
            assert time.monotonic() < deadline, f"no single leader within {timeout_s} s: {nodes}"
            time.sleep(0.2)

    def wait_stopped(self, i: int, timeout_s: float = 15) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            nodes = self.status()
            if nodes[i]["role"] == "stopped":
                return
            assert time.monotonic() < deadline, f"node {i} still running after {timeout_s} s: {nodes[i]}"
            time.sleep(0.1)

    def wait_caught_up(self, i: int, timeout_s: float = 30) -> list[dict]:
        """Until node i's committed slot reaches every other node's and its applied revision
        equals theirs (call with no writes in flight)."""
        deadline = time.monotonic() + timeout_s
        while True:
            nodes = self.status()
            me, others = nodes[i], [n for n in nodes if n["id"] != i and n["committed_slot"] is not None]
            if (me["committed_slot"] is not None and others
                    and me["committed_slot"] >= max(n["committed_slot"] for n in others)
                    and all(n["revision"] == me["revision"] for n in others)):
                return nodes
            assert time.monotonic() < deadline, f"node {i} did not catch up in {timeout_s} s: {nodes}"
            time.sleep(0.3)

    # ---- gRPC ----

    def kv(self, i: int) -> tuple[grpc.Channel, rpc_pb2_grpc.KVStub]:
        ch = grpc.insecure_channel(self.endpoints[i])
        return ch, rpc_pb2_grpc.KVStub(ch)

    def put_retrying(self, key: bytes, value: bytes, timeout_s: float = 20):
        """Put through any node, retrying (the same value) until one acknowledges it."""
        deadline = time.monotonic() + timeout_s
        i = 0
        while True:
            ch, kv = self.kv(i % 3)
            try:
                return kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=5)
            except grpc.RpcError as err:
                assert time.monotonic() < deadline, f"put {key!r} never acknowledged: {err}"
                i += 1
                time.sleep(0.1)
            finally:
                ch.close()

    def range_all(self, i: int, serializable: bool, key: bytes = b"\0", range_end: bytes = b"\0",
                  timeout_s: float = 20) -> rpc_pb2.RangeResponse:
        """A Range at node i (retried on errors until timeout_s)."""
        deadline = time.monotonic() + timeout_s
        while True:
            ch, kv = self.kv(i)
            try:
                return kv.Range(rpc_pb2.RangeRequest(key=key, range_end=range_end, serializable=serializable),
                                timeout=5)
            except grpc.RpcError as err:
                assert time.monotonic() < deadline, f"Range at node {i} kept failing: {err}"
                time.sleep(0.2)
            finally:
                ch.close()


def wait_snapshotted(cluster, nodes, timeout_s: float = 60) -> None:
    """Each of `nodes` has a snapshot file (a node writes its snapshot's state from a child
    process while it goes on, so the last write's answer can come before it)."""
    deadline = time.monotonic() + timeout_s
    while not all(list(cluster.wal_dir(i).glob("snap-*.snap")) for i in nodes):
        assert time.monotonic() < deadline, f"nodes {nodes} never all snapshotted"
        time.sleep(0.2)


def pid_alive(pid: int) -> bool:
    try:
        return not Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return False

