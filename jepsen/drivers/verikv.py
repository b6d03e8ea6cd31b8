"""verikv's 3-node cluster, through its `verikv cluster` command line, running the code as it
was when the run started (frozen_code.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from verikv.jepsen import clients
from verikv.jepsen.drivers import frozen_code
from verikv.jepsen.drivers.base import DriverUnavailable, SystemDriver, process_state
from verikv.jepsen.net import PrivateNetwork


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
    # the longest election timeout a node has: 20 ticks of 10 ms (verikv serve's defaults),
    # staggered by node id by up to 2 x 20/3 ticks
    election_timeout_s = 0.32

    def __init__(self, use_netns: bool = True) -> None:
        super().__init__()
        self.data_dir: Path | None = None
        self._nodes: list[dict] = []
        self.use_netns = use_netns
        self.net: PrivateNetwork | None = None
        self.net_reason: str | None = None
        self.code_at_start: str | None = None
        self.code_dir: Path | None = None
        self.base_port = 0

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
        nodes = json.loads(self._cli("status", "--json"))["nodes"]
        self._nodes = sorted(nodes, key=lambda n: int(n["id"]))
        return self._nodes

    def start(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.code_at_start = frozen_code.fingerprint()
        self.code_dir = frozen_code.freeze(self.data_dir / "code")
        self._start_network()
        base_port = 24600 + (os.getpid() % 15) * 20     # a port range per harness process
        self.base_port = base_port
        placement: list[str] = []
        if self.net is not None:
            placement = ["--node-hosts", ",".join(self.net.address(i) for i in range(self.n_nodes)),
                         "--netns", ",".join(self.net.namespace(i) for i in range(self.n_nodes))]
        if self.faulty_disk:
            placement.append("--faulty-disk")
        if self.tls:
            placement.append("--tls")
        try:
            self._cli("up", "--base-port", str(base_port), *placement)
        except RuntimeError as err:
            self.stop()
            raise DriverUnavailable(f"verikv cluster failed to start: {err}") from None
        if self.tls:
            clients.use_tls(self._tls_files())
        try:
            self._refresh()
        except BaseException:
            self.stop()
            raise
        self.n_nodes = len(self._nodes)

    # -- TLS: `verikv cluster up --tls`, and every client of this process with its certificate --
    tls = False

    def use_tls(self) -> None:
        self.tls = True

    def _tls_files(self) -> dict:
        certs = self.data_dir / "certs"
        return {"ca": (certs / "ca.pem").read_bytes(), "cert": (certs / "client.pem").read_bytes(),
                "key": (certs / "client-key.pem").read_bytes()}

    # -- disk faults, through the node's own fault points (`verikv serve --faulty-disk`) --------
    faulty_disk = False

    def use_faulty_disk(self) -> None:
        self.faulty_disk = True

    def fsync_fault_file(self, node: int) -> Path:
        return self._node_dir(node) / "fail-fsync"

    def _node_dir(self, node: int) -> Path:
        return self.data_dir / f"node{node}"

    def peer_addresses(self) -> list[tuple[str, int]]:
        """`verikv cluster up`'s layout: node i's peer port is the base port + 10 + i, on its host."""
        hosts = [self.net.address(i) for i in range(self.n_nodes)] if self.net is not None else ["127.0.0.1"] * self.n_nodes
        return [(host, self.base_port + 10 + i) for i, host in enumerate(hosts)]

    def endpoints(self) -> list[str]:
        if not self._nodes:
            self._refresh()
        return [n["endpoint"] for n in self._nodes]

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
        out = [f"verikv code {self.code_at_start} (sha256 of its packages, frozen at start in "
               f"{self.code_dir}: every node, also restarted ones, ran that copy)"]
        if self.code_at_start and frozen_code.fingerprint() != self.code_at_start:
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
        if self.tls:
            clients.use_tls(None)  # this process's later clients speak plain text again
