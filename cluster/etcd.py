"""Start and stop a local etcd 3.4 cluster (Debian's /usr/bin/etcd) on loopback, for comparisons.

Used by `verikv bench` and by the tests that compare verikv's answers with etcd's. It must never
touch a data directory it did not create, nor stop a process it did not start.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from verikv.etcdpb import rpc_pb2, rpc_pb2_grpc

ETCD_BINARY = "/usr/bin/etcd"


class EtcdUnavailable(RuntimeError):
    """etcd is not installed or did not come up."""


@dataclass
class EtcdCluster:
    data_dir: Path
    client_endpoints: list[str]
    processes: list[subprocess.Popen] = field(default_factory=list)
    tls: dict | None = None  # see start_etcd_cluster
    commands: list[list[str]] = field(default_factory=list)  # each member's command line

    def restart(self, ready_timeout_s: float | None = 120.0) -> None:
        """Start every member again (after stop()) on its data directory, with its command line;
        wait until each has a leader (unless ready_timeout_s is None)."""
        self.processes = []
        for cmd in self.commands:
            self.processes.append(_launch(cmd, self.data_dir / f"{cmd[cmd.index('--name') + 1]}.log"))
        if ready_timeout_s is None:
            return
        try:
            wait_etcd_ready(self, ready_timeout_s)
        except BaseException:
            self.stop()
            raise

    def channel(self, endpoint: str) -> grpc.Channel:
        if not self.tls:
            return grpc.insecure_channel(endpoint)
        cert, key = self.tls["client"]
        return grpc.secure_channel(endpoint, grpc.ssl_channel_credentials(
            Path(self.tls["ca"]).read_bytes(), Path(key).read_bytes(), Path(cert).read_bytes()))

    def stop(self, timeout_s: float = 10.0) -> None:
        for p in self.processes:
            if p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + timeout_s
        for p in self.processes:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for p in self.processes:
            for stream in (p.stdout, p.stderr):
                if stream:
                    stream.close()

    def __enter__(self) -> "EtcdCluster":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_etcd_cluster(data_dir: Path, members: int, base_port: int, ready_timeout_s: float = 30.0,
                       binary: str = ETCD_BINARY, tls: dict | None = None,
                       extra_args: tuple[str, ...] = ()) -> EtcdCluster:
    """Start `members` etcd processes; ports base_port .. base_port + 2*members - 1.

    data_dir must not exist or be empty-able: it is (re)created and owned by this cluster.
    With `tls` ({"ca": CA file, "members": [(cert, key)] per member, "client": (cert, key)}),
    clients and peers use TLS with certificates required, as `verikv cluster up --tls` runs verikv.
    `extra_args` go to every etcd (e.g. --quota-backend-bytes).
    """
    if not os.access(binary, os.X_OK):
        raise EtcdUnavailable(f"{binary} not found (Debian package etcd-server)")
    data_dir = Path(data_dir)
    if data_dir.exists():
        shutil.rmtree(data_dir)
    data_dir.mkdir(parents=True)
    names = [f"e{i}" for i in range(members)]
    scheme = "https" if tls else "http"
    peer = [f"{scheme}://127.0.0.1:{base_port + 2 * i + 1}" for i in range(members)]
    client = [f"127.0.0.1:{base_port + 2 * i}" for i in range(members)]
    initial = ",".join(f"{n}={u}" for n, u in zip(names, peer))
    cluster = EtcdCluster(data_dir, client, tls=tls)
    for i, name in enumerate(names):
        tls_args = []
        if tls:
            cert, key = (str(p) for p in tls["members"][i])
            tls_args = ["--cert-file", cert, "--key-file", key, "--trusted-ca-file", str(tls["ca"]),
                        "--client-cert-auth", "--peer-cert-file", cert, "--peer-key-file", key,
                        "--peer-trusted-ca-file", str(tls["ca"]), "--peer-client-cert-auth"]
        cmd = [binary, "--name", name, "--data-dir", str(data_dir / name),
               "--listen-client-urls", f"{scheme}://{client[i]}", "--advertise-client-urls", f"{scheme}://{client[i]}",
               "--listen-peer-urls", peer[i], "--initial-advertise-peer-urls", peer[i],
               "--initial-cluster", initial, "--initial-cluster-state", "new",
               "--initial-cluster-token", f"verikv-{base_port}", "--log-outputs", "stderr", *tls_args, *extra_args]
        cluster.commands.append(cmd)
        cluster.processes.append(_launch(cmd, data_dir / f"{name}.log"))
    try:
        wait_etcd_ready(cluster, ready_timeout_s)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _launch(cmd: list[str], log_path: Path) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)


def wait_etcd_ready(cluster: EtcdCluster, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for endpoint in cluster.client_endpoints:
        with cluster.channel(endpoint) as ch:
            stub = rpc_pb2_grpc.MaintenanceStub(ch)
            while True:
                for p in cluster.processes:
                    if p.poll() is not None:
                        raise EtcdUnavailable(f"etcd exited with {p.returncode}; see {cluster.data_dir}/*.log")
                try:
                    if stub.Status(rpc_pb2.StatusRequest(), timeout=1.0).leader:
                        break
                except grpc.RpcError:
                    pass
                if time.monotonic() > deadline:
                    raise EtcdUnavailable(f"etcd at {endpoint} not ready after {timeout_s} s")
                time.sleep(0.1)
