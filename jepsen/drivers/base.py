"""What every system driver does: the interface workloads, nemeses and the checker use, and
what is the same for every system (signals, Status, finding the leader, partitions through a
private network).

A driver must never signal or kill a process it did not start, and `stop()` must leave no
process, namespace or firewall rule behind (it is idempotent and is called from `finally`
blocks and signal handlers).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from pathlib import Path

import grpc

from verikv.etcdpb import rpc_pb2, rpc_pb2_grpc
from verikv.jepsen.clients import EtcdClient, open_channel
from verikv.jepsen.net import NetworkUnavailable, PrivateNetwork


class DriverUnavailable(RuntimeError):
    """The system under test cannot run here: it is not installed, or it did not start."""


class NemesisUnavailable(RuntimeError):
    """This fault cannot be injected into this system on this machine."""


def process_state(pid: int) -> str | None:
    """The one-letter state from /proc/PID/stat (R, S, T, Z...), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


class SystemDriver:
    name = "abstract"
    n_nodes = 3
    election_timeout_s = 1.0   # the longest election timeout a node can draw (the lease checker's bound)

    def __init__(self) -> None:
        self.paused: set[int] = set()
        self.killed: set[int] = set()

    # -- to implement -------------------------------------------------------------------
    def start(self, data_dir: Path) -> None: raise NotImplementedError
    def endpoints(self) -> list[str]: raise NotImplementedError      # "host:port", one per node
    def pids(self) -> dict[int, int]: raise NotImplementedError      # node index -> pid (live nodes)
    def restart(self, node: int) -> None: raise NotImplementedError
    def stop(self) -> None: raise NotImplementedError
    def logs(self) -> list[Path]: return []
    def notes(self) -> list[str]: return []     # caveats about this run, copied into the verdict

    @property
    def partition_unavailable_reason(self) -> str | None:
        return "this driver cannot partition its nodes"

    net = None  # a PrivateNetwork when the nodes run in their own namespaces

    def _start_network(self) -> None:
        """Give each node its own namespace on a private bridge, or say why not (net_reason)."""
        if not self.use_netns:
            self.net_reason = "network namespaces disabled for this run"
            return
        try:
            self.net = PrivateNetwork.create(self.n_nodes)
        except NetworkUnavailable as err:
            self.net_reason = str(err)

    def cut(self, links: set[frozenset[int]]) -> None:
        if self.net is None:
            raise NemesisUnavailable(self.partition_unavailable_reason or "partitions unsupported")
        self.net.cut(links)

    def heal_network(self) -> None:
        if self.net is not None:
            self.net.heal()

    def use_faulty_disk(self) -> None:
        """Start the nodes on a disk whose faults the disk nemesis can switch on (call before
        `start`); raises NemesisUnavailable for a system without such fault points."""
        raise NemesisUnavailable(f"{self.name}: disk faults need the node's own fault points, "
                                 "which only verikv has (`verikv serve --faulty-disk`)")

    def fsync_fault_file(self, node: int) -> Path:
        """The file whose presence makes the node's fdatasync fail (see use_faulty_disk)."""
        raise NemesisUnavailable(f"{self.name}: no disk fault points")

    def peer_addresses(self) -> list[tuple[str, int]]:
        """Each node's peer (host, port) for the impostor nemesis (jepsen/impostor.py), which speaks
        verikv's peer wire; raises NemesisUnavailable for a system without it."""
        raise NemesisUnavailable(f"{self.name}: the impostor speaks verikv's peer wire, which {self.name} "
                                 "does not (etcd's peers speak raft over HTTP)")

    @property
    def network_name(self) -> str:
        return "host loopback (no partitions)"

    # -- shared ---------------------------------------------------------------------------
    def client(self, node: int, timeout_s: float = 1.0) -> EtcdClient:
        return EtcdClient(self.endpoints()[node], timeout_s)

    def _signal(self, node: int, sig: int) -> int:
        pid = self.pids().get(node)
        if pid is None:
            raise RuntimeError(f"node {node} has no running process")
        os.kill(pid, sig)
        return pid

    def kill(self, node: int) -> None:
        """kill -9 the node's process (and reap it)."""
        self._signal(node, signal.SIGKILL)
        self.paused.discard(node)
        self.killed.add(node)
        self._reap(node)

    def _reap(self, node: int) -> None:
        pass

    def pause(self, node: int, settle_s: float = 2.0) -> None:
        """SIGSTOP, then wait until the kernel reports the process stopped ('T')."""
        pid = self._signal(node, signal.SIGSTOP)
        self.paused.add(node)
        deadline = time.monotonic() + settle_s
        while process_state(pid) not in ("T", "t", None) and time.monotonic() < deadline:
            time.sleep(0.01)

    def resume(self, node: int) -> None:
        self._signal(node, signal.SIGCONT)
        self.paused.discard(node)

    def status(self, node: int, timeout_s: float = 0.5):
        """etcd's Maintenance.Status of one node (both systems speak it), or None."""
        channel = open_channel(self.endpoints()[node], options=None)
        try:
            return rpc_pb2_grpc.MaintenanceStub(channel).Status(rpc_pb2.StatusRequest(), timeout=timeout_s)
        except grpc.RpcError:
            return None
        finally:
            channel.close()

    def leader(self) -> int | None:
        """The node most live members name as leader, or None."""
        member_of: dict[int, int] = {}
        votes: Counter = Counter()
        for node in range(self.n_nodes):
            if node in self.paused or node in self.killed:
                continue
            st = self.status(node)
            if st is None:
                continue
            member_of[st.header.member_id] = node
            if st.leader:
                votes[st.leader] += 1
        for leader_id, _ in votes.most_common():
            if leader_id in member_of:
                return member_of[leader_id]
        return None

    def wait_for_leader(self, timeout_s: float = 30.0) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            node = self.leader()
            if node is not None:
                return node
            time.sleep(0.2)
        raise RuntimeError(f"{self.name}: no leader after {timeout_s:.0f} s")
