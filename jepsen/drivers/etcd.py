"""Three etcd members, the reference every verikv behaviour is compared with."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

from verikv.jepsen.drivers.base import DriverUnavailable, SystemDriver
from verikv.jepsen.net import PrivateNetwork


class EtcdDriver(SystemDriver):
    """Three etcd members, each in its own network namespace with its own address
    (falls back to distinct loopback addresses, without partitions, if namespaces are
    unavailable)."""

    name = "etcd"
    # the longest election timeout a member can draw: --election-timeout 1000, randomized in [1x, 2x)
    election_timeout_s = 2.0
    CLIENT_PORT, PEER_PORT = 24379, 24380

    def __init__(self, etcd_bin: str = "etcd", use_netns: bool = True):
        super().__init__()
        self.etcd_bin = shutil.which(etcd_bin)
        if self.etcd_bin is None:
            raise DriverUnavailable(f"etcd driver: `{etcd_bin}` is not installed (Debian package `etcd-server`)")
        self.use_netns = use_netns
        self.net: PrivateNetwork | None = None
        self.net_reason: str | None = None
        self.procs: dict[int, subprocess.Popen] = {}
        self.data_dir: Path | None = None
        self.log_files: dict[int, object] = {}

    def address(self, node: int) -> str:
        if self.net:
            return self.net.address(node)
        return f"127.24.{os.getpid() % 200 + 20}.{11 + node}"

    def endpoints(self) -> list[str]:
        return [f"{self.address(i)}:{self.CLIENT_PORT}" for i in range(self.n_nodes)]

    def _command(self, node: int) -> list[str]:
        peers = ",".join(f"n{i + 1}=http://{self.address(i)}:{self.PEER_PORT}" for i in range(self.n_nodes))
        me = self.address(node)
        cmd = [self.etcd_bin, "--name", f"n{node + 1}", "--data-dir", str(self.data_dir / f"n{node + 1}"),
               "--listen-client-urls", f"http://{me}:{self.CLIENT_PORT}",
               "--advertise-client-urls", f"http://{me}:{self.CLIENT_PORT}",
               "--listen-peer-urls", f"http://{me}:{self.PEER_PORT}",
               "--initial-advertise-peer-urls", f"http://{me}:{self.PEER_PORT}",
               "--initial-cluster", peers, "--initial-cluster-state", "new",
               "--initial-cluster-token", f"vkj-{self.data_dir.name}",
               "--heartbeat-interval", "100", "--election-timeout", "1000",
               "--logger", "zap", "--log-outputs", "stderr"]
        return (self.net.exec_prefix(node) if self.net else []) + cmd

    def start(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._start_network()
        try:
            for node in range(self.n_nodes):
                self._spawn(node)
            self.wait_for_leader()
        except BaseException:
            self.stop()
            raise

    def _spawn(self, node: int) -> None:
        log = open(self.data_dir / f"n{node + 1}.log", "ab")
        self.log_files[node] = log
        # own session: a Ctrl-C on the terminal reaches us, not etcd; we tear down ourselves
        self.procs[node] = subprocess.Popen(self._command(node), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        self.killed.discard(node)

    def pids(self) -> dict[int, int]:
        return {n: p.pid for n, p in self.procs.items() if p.poll() is None}

    def _reap(self, node: int) -> None:
        try:
            self.procs[node].wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def restart(self, node: int) -> None:
        if node in self.pids():
            return
        self._spawn(node)

    @property
    def partition_unavailable_reason(self) -> str | None:
        if self.net is not None:
            return None
        return self.net_reason or "the etcd cluster is not started"

    def logs(self) -> list[Path]:
        return sorted(self.data_dir.glob("n*.log")) if self.data_dir else []

    @property
    def network_name(self) -> str:
        return f"vkj-{self.net.tag}" if self.net else "host loopback (no partitions)"

    def stop(self) -> None:
        for node, proc in list(self.procs.items()):
            if proc.poll() is None:
                try:
                    os.kill(proc.pid, signal.SIGCONT)
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.paused.clear()
        for log in self.log_files.values():
            log.close()
        self.log_files.clear()
        if self.net is not None:
            self.net.teardown()
            self.net = None
