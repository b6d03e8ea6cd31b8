"""System drivers: start a 3-node cluster of etcd or verikv and do things to its processes.

One small interface (`SystemDriver`) so workloads, nemeses and the checker do not care
which system runs. A driver must never signal or kill a process it did not start, and
`stop()` must leave no process, namespace or firewall rule behind (it is idempotent and
is called from `finally` blocks and signal handlers).
"""

from __future__ import annotations

import grpc
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from verikv.etcdpb import rpc_pb2, rpc_pb2_grpc

from verikv.jepsen.clients import EtcdClient
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

    def disk_fault(self, node: int, kind: str) -> None:
        """A disk fault on one node; only drivers whose nodes run on a fault-injecting disk
        (VerikvDriver) implement it."""
        raise NemesisUnavailable(f"{self.name}: disk faults are not implemented (verikv-only hook)")

    def heal_disk(self, node: int) -> None:
        pass

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
        channel = grpc.insecure_channel(self.endpoints()[node])
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


class EtcdDriver(SystemDriver):
    """Three etcd members, each in its own network namespace with its own address
    (falls back to distinct loopback addresses, without partitions, if namespaces are
    unavailable)."""

    name = "etcd"
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


def package_layout(root: Path) -> dict[str, str]:
    """Where each of verikv's packages lives in the source tree at root, as pyproject.toml's
    setuptools table says (the one place the layout is written): {"verikv/shim": "shim", ...}."""
    import tomllib

    with open(root / "pyproject.toml", "rb") as f:
        setuptools = tomllib.load(f)["tool"]["setuptools"]
    dirs = setuptools.get("package-dir", {})
    layout = {}
    for package in setuptools["packages"]:
        parent = max((p for p in dirs if package == p or package.startswith(p + ".")), key=len, default=None)
        source = package.replace(".", "/") if parent is None else \
            "/".join([dirs[parent], *package[len(parent):].split(".")[1:]])
        layout[package.replace(".", "/")] = source
    return layout


class VerikvDriver(SystemDriver):
    """verikv through its `verikv cluster` command line:
      verikv cluster up --data-dir DIR [--base-port P --node-hosts H0,H1,H2 --netns NS0,NS1,NS2]
                                       starts the stopped nodes, returns once a leader exists
      verikv cluster status --data-dir DIR --json   each node's id, pid, client endpoint, role, slot
      verikv cluster down --data-dir DIR
    As for etcd, each node runs in its own network namespace on a private bridge (jepsen/net.py)
    with its own address for clients and peers, so partitions are nftables rules between node
    addresses; without namespaces (not root, no nft) the nodes share 127.0.0.1 and partitions
    are refused with the reason."""

    name = "verikv"
    CODE_DIRS = ("shim", "verified_core")        # what the node processes run

    def __init__(self, use_netns: bool = True) -> None:
        super().__init__()
        self.data_dir: Path | None = None
        self._nodes: list[dict] = []
        self.use_netns = use_netns
        self.net: PrivateNetwork | None = None
        self.net_reason: str | None = None
        self.code_at_start: str | None = None
        self.code_dir: Path | None = None

    @classmethod
    def code_fingerprint(cls) -> str:
        """A hash of verikv's node code as it is on disk now: nodes (re)started after an edit
        run different code from the others, which a report must say."""
        import hashlib
        root = Path(__file__).resolve().parent.parent
        h = hashlib.sha256()
        for d in cls.CODE_DIRS:
            for f in sorted((root / d).glob("*")):
                if f.is_file() and f.suffix in (".py", ".so"):
                    h.update(f.name.encode())
                    h.update(f.read_bytes())
        return h.hexdigest()[:12]

    def _snapshot_code(self) -> Path:
        """Copy verikv's code as it is now into the run's folder; every node of the run, also
        one restarted after a kill, runs this copy, not whatever is on disk at restart time
        (the tree is edited while runs go on)."""
        root = Path(__file__).resolve().parent.parent
        dest = self.data_dir / "code"
        for target, source in package_layout(root).items():
            (dest / target).mkdir(parents=True, exist_ok=True)
            for f in (root / source).glob("*"):
                if f.is_file() and f.suffix in (".py", ".so"):
                    shutil.copy2(f, dest / target / f.name)
        return dest

    def _env(self) -> dict:
        env = dict(os.environ)
        if self.code_dir is not None:
            env["PYTHONPATH"] = os.pathsep.join([str(self.code_dir)] + [p for p in [env.get("PYTHONPATH")] if p])
        return env

    def _cli(self, *args: str, timeout_s: float = 60.0) -> str:
        cmd = [sys.executable, "-m", "verikv.cli", "cluster", *args, "--data-dir", str(self.data_dir)]
        try:
            # cwd: `python -m` puts the working directory first on sys.path, and the source tree's
            # own verikv/ package there would win over the frozen copy
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=self._env(),
                                  cwd=str(self.code_dir or self.data_dir))
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"`verikv cluster {args[0]}` did not finish in {timeout_s:.0f} s") from None
        if done.returncode != 0:
            raise RuntimeError(f"`verikv cluster {' '.join(args)}` failed ({done.returncode}): "
                               f"{done.stderr.strip()[-500:]}")
        return done.stdout

    def _refresh(self) -> list[dict]:
        raw = json.loads(self._cli("status", "--json"))
        nodes = raw.get("nodes", raw) if isinstance(raw, dict) else raw
        self._nodes = sorted(nodes, key=lambda n: int(n.get("id")))
        return self._nodes

    def start(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.code_at_start = self.code_fingerprint()
        self.code_dir = self._snapshot_code()
        self._start_network()
        base_port = 24600 + (os.getpid() % 15) * 20     # a port range per harness process
        placement: list[str] = []
        if self.net is not None:
            placement = ["--node-hosts", ",".join(self.net.address(i) for i in range(self.n_nodes)),
                         "--netns", ",".join(self.net.namespace(i) for i in range(self.n_nodes))]
        if self.faulty_disk:
            placement.append("--faulty-disk")
        try:
            self._cli("up", "--base-port", str(base_port), *placement)
        except RuntimeError as err:
            self.stop()
            raise DriverUnavailable(f"verikv cluster failed to start: {err}") from None
        try:
            self._refresh()
        except BaseException:
            self.stop()
            raise
        self.n_nodes = len(self._nodes)

    # -- disk faults, through the node's own fault points (`verikv serve --faulty-disk`) --------
    faulty_disk = False
    _disk_rounds = 0

    def disk_fault(self, node: int, kind: str) -> str:
        """`fsync-fails`: fdatasync starts failing on the node, which must stop by itself
        (fail-stop); `crash-unsynced`: kill -9, losing every write not yet fsynced. `default`
        alternates them. Node -1 (the probe before the run) selects the fault-injecting disk."""
        if node < 0:
            self.faulty_disk = True
            return "probe"
        if kind == "default":
            kind = ("fsync-fails", "crash-unsynced")[self._disk_rounds % 2]
            self._disk_rounds += 1
        if kind == "crash-unsynced":
            self.kill(node)
            return f"n{node + 1} crashed, losing its unsynced writes"
        if kind != "fsync-fails":
            raise NemesisUnavailable(f"unknown disk fault {kind!r}")
        (self._node_dir(node) / "fail-fsync").write_text("set by the disk nemesis\n")
        deadline = time.monotonic() + 15
        while node in self.pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        if node in self.pids():
            raise RuntimeError(f"n{node + 1} kept running for 15 s after its fsync started failing "
                               "(it must stop: fail-stop)")
        self.killed.add(node)
        return f"fsync fails on n{node + 1}: it stopped by itself"

    def heal_disk(self, node: int) -> None:
        if node < 0 or self.data_dir is None:
            return
        (self._node_dir(node) / "fail-fsync").unlink(missing_ok=True)
        if node not in self.pids():
            self.restart(node)

    def _node_dir(self, node: int) -> Path:
        return self.data_dir / f"node{node}"

    def endpoints(self) -> list[str]:
        if not self._nodes:
            self._refresh()
        out = []
        for n in self._nodes:
            ep = n.get("client_endpoint") or n.get("endpoint") or n.get("client")
            out.append(ep.split("://", 1)[-1])
        return out

    def pids(self) -> dict[int, int]:
        nodes = self._refresh()
        return {i: int(n["pid"]) for i, n in enumerate(nodes)
                if n.get("pid") and process_state(int(n["pid"])) not in (None, "Z")}

    def _reap(self, node: int) -> None:
        # the nodes are children of short-lived `verikv cluster up` processes, so init reaps
        # them; wait until the killed process is gone so `up` sees it stopped
        pid = (self._nodes[node].get("pid") if node < len(self._nodes) else None)
        deadline = time.monotonic() + 5
        while pid and process_state(int(pid)) not in (None, "Z") and time.monotonic() < deadline:
            time.sleep(0.01)

    def restart(self, node: int) -> None:
        self._cli("up")       # idempotent: restarts only the stopped nodes, in their namespaces
        self.killed.discard(node)

    def leader(self) -> int | None:
        try:
            nodes = self._refresh()
        except (RuntimeError, ValueError):
            return super().leader()
        for i, n in enumerate(nodes):
            if str(n.get("role", "")).lower() == "leader" and i not in self.paused and i not in self.killed:
                return i
        return None

    @property
    def partition_unavailable_reason(self) -> str | None:
        if self.net is not None:
            return None
        return ("verikv: partitions need each node in its own network namespace: "
                + (self.net_reason or "the verikv cluster is not started"))

    @property
    def network_name(self) -> str:
        return f"vkj-{self.net.tag}" if self.net else "host loopback (no partitions)"

    def logs(self) -> list[Path]:
        return sorted(self.data_dir.glob("node*.log")) if self.data_dir else []

    def notes(self) -> list[str]:
        """Anything a reader of the verdict must know about this run of the system."""
        out = [f"verikv node code {self.code_at_start} (sha256 of shim/ and verified_core/, frozen at start "
               f"in {self.code_dir}: every node, also restarted ones, ran that copy)"]
        if self.code_at_start and self.code_fingerprint() != self.code_at_start:
            out.append("verikv's code on disk changed during this run (the run used the copy taken at start)")
        return out

    def stop(self) -> None:
        if self.data_dir is None:
            return
        for node in list(self.paused):
            try:
                self.resume(node)
            except (RuntimeError, OSError, ValueError):
                pass
        try:
            self._cli("down")
        except RuntimeError:
            # last resort: kill the pids we learned from status (processes we started)
            for n in self._nodes:
                try:
                    os.kill(int(n["pid"]), signal.SIGKILL)
                except (KeyError, TypeError, ValueError, ProcessLookupError):
                    pass
        self.paused.clear()
        if self.net is not None:
            self.net.teardown()
            self.net = None


DRIVERS = {"etcd": EtcdDriver, "verikv": VerikvDriver}


def make_driver(system: str) -> SystemDriver:
    if system not in DRIVERS:
        raise DriverUnavailable(f"unknown system {system!r} (choose from {', '.join(DRIVERS)})")
    return DRIVERS[system]()
