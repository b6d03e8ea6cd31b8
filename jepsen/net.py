"""A private network for one test cluster, and real per-link partitions on it.

Each node gets its own network namespace with one veth leg plugged into a bridge in
the host namespace, so every node has its own IPv4 address for peer AND client traffic
and every packet carries its true source address. A partition is a set of nftables
rules in this run's own table (`table bridge verikv_jepsen_<tag>`) dropping frames
between chosen address pairs as they cross the bridge; clients in the host namespace
reach every node directly, so client traffic is never cut (as in Jepsen).

This module must never touch a namespace, interface or nftables table it did not
create: everything it makes is named with this run's tag and recorded in a state file
under /tmp/verikv-jepsen-net/ so a later run can remove leftovers of a dead run.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

STATE_DIR = Path("/tmp/verikv-jepsen-net")
TABLE_PREFIX = "verikv_jepsen_"
SUBNET_PREFIX = "10.224"


class NetworkUnavailable(RuntimeError):
    """This machine does not let us build the private network (no netns, no nft, not root)."""


def _run(args: list[str], check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=20)


def probe() -> str | None:
    """None if namespaces + nftables bridge rules work here, else the reason they do not."""
    if os.geteuid() != 0:
        return "partitions need root (network namespaces and nftables)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"partitions need the `{tool}` tool, which is not installed"
    tag = "p" + secrets.token_hex(3)
    try:
        _run(["ip", "netns", "add", f"vkj-{tag}"])
        _run(["ip", "netns", "del", f"vkj-{tag}"])
        _run(["nft", "add", "table", "bridge", TABLE_PREFIX + tag])
        _run(["nft", "delete", "table", "bridge", TABLE_PREFIX + tag])
    except (subprocess.CalledProcessError, OSError) as err:
        detail = getattr(err, "stderr", "") or str(err)
        return f"network namespaces / nftables are not usable here: {detail.strip()}"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale() -> list[str]:
    """Remove the networks of runs whose owning process is dead. Returns their tags."""
    removed = []
    if not STATE_DIR.exists():
        return removed
    for state_file in STATE_DIR.glob("*.json"):
        try:
            state = json.loads(state_file.read_text())
        except (OSError, ValueError):
            continue
        if _pid_alive(int(state.get("owner_pid", 0))):
            continue
        net = PrivateNetwork(tag=state["tag"], subnet_octet=state["subnet_octet"], n_nodes=state["n_nodes"])
        net.teardown()
        removed.append(state["tag"])
    return removed


def _used_subnet_octets() -> set[int]:
    used = set()
    out = _run(["ip", "-o", "-4", "addr", "show"], check=False).stdout
    for line in out.splitlines():
        for word in line.split():
            if word.startswith(SUBNET_PREFIX + "."):
                used.add(int(word.split(".")[2]))
    if STATE_DIR.exists():
        for state_file in STATE_DIR.glob("*.json"):
            try:
                used.add(int(json.loads(state_file.read_text())["subnet_octet"]))
            except (OSError, ValueError, KeyError):
                pass
    return used


@dataclass
class PrivateNetwork:
    """Bridge + one namespace per node. Node i (0-based) has address 10.224.<octet>.<11+i>."""

    tag: str
    subnet_octet: int
    n_nodes: int = 3
    cut_links: set[frozenset[int]] = field(default_factory=set)

    # ---- names -------------------------------------------------------------------------
    @property
    def bridge(self) -> str:
        return f"vkjbr{self.tag}"

    @property
    def table(self) -> str:
        return TABLE_PREFIX + self.tag

    def namespace(self, i: int) -> str:
        return f"vkj-{self.tag}-n{i + 1}"

    def address(self, i: int) -> str:
        return f"{SUBNET_PREFIX}.{self.subnet_octet}.{11 + i}"

    @property
    def host_address(self) -> str:
        return f"{SUBNET_PREFIX}.{self.subnet_octet}.1"

    def _veth(self, i: int, side: str) -> str:
        return f"vkj{self.tag}n{i + 1}{side}"  # <= 15 characters with a 6-character tag

    def exec_prefix(self, i: int) -> list[str]:
        """Prefix a command with this to run it inside node i's namespace (same pid)."""
        return ["ip", "netns", "exec", self.namespace(i)]

    # ---- life cycle --------------------------------------------------------------------
    @classmethod
    def create(cls, n_nodes: int = 3) -> "PrivateNetwork":
        reason = probe()
        if reason:
            raise NetworkUnavailable(reason)
        cleanup_stale()
        used = _used_subnet_octets()
        free = [o for o in range(10, 250) if o not in used]
        if not free:
            raise NetworkUnavailable("no free 10.224.X.0/24 subnet")
        net = cls(tag=secrets.token_hex(3), subnet_octet=free[0], n_nodes=n_nodes)
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        net._state_file().write_text(json.dumps({"tag": net.tag, "subnet_octet": net.subnet_octet,
                                                 "n_nodes": n_nodes, "owner_pid": os.getpid()}))
        try:
            net._build()
        except BaseException:
            net.teardown()
            raise
        return net

    def _state_file(self) -> Path:
        return STATE_DIR / f"{self.tag}.json"

    def _build(self) -> None:
        _run(["ip", "link", "add", self.bridge, "type", "bridge"])
        _run(["ip", "addr", "add", f"{self.host_address}/24", "dev", self.bridge])
        _run(["ip", "link", "set", self.bridge, "up"])
        for i in range(self.n_nodes):
            ns, host_leg, node_leg = self.namespace(i), self._veth(i, "h"), self._veth(i, "c")
            _run(["ip", "netns", "add", ns])
            _run(["ip", "link", "add", host_leg, "type", "veth", "peer", "name", node_leg])
            _run(["ip", "link", "set", node_leg, "netns", ns])
            _run(["ip", "link", "set", host_leg, "master", self.bridge])
            _run(["ip", "link", "set", host_leg, "up"])
            inside = self.exec_prefix(i)
            _run(inside + ["ip", "addr", "add", f"{self.address(i)}/24", "dev", node_leg])
            _run(inside + ["ip", "link", "set", node_leg, "up"])
            _run(inside + ["ip", "link", "set", "lo", "up"])
        # Our own table; with br_netfilter loaded bridged frames also cross the inet
        # forward hook, so accept our subnet there explicitly (a DROP policy elsewhere,
        # e.g. Docker's, would otherwise cut everything).
        _run(["nft", "add", "table", "bridge", self.table])
        _run(["nft", "add", "chain", "bridge", self.table, "cut",
              "{ type filter hook forward priority -10; policy accept; }"])

    def teardown(self) -> None:
        """Delete everything this network made. Safe to call twice or on a half-built network."""
        _run(["nft", "delete", "table", "bridge", self.table], check=False)
        for i in range(self.n_nodes):
            _run(["ip", "link", "del", self._veth(i, "h")], check=False)
            _run(["ip", "netns", "del", self.namespace(i)], check=False)
        _run(["ip", "link", "del", self.bridge], check=False)
        self.cut_links.clear()
        try:
            self._state_file().unlink()
        except FileNotFoundError:
            pass

    # ---- partitions --------------------------------------------------------------------
    def cut(self, links: set[frozenset[int]]) -> None:
        """Replace the current cuts by `links` (pairs of node indices), both directions."""
        _run(["nft", "flush", "chain", "bridge", self.table, "cut"])
        for link in links:
            a, b = sorted(link)
            for src, dst in ((a, b), (b, a)):
                _run(["nft", "add", "rule", "bridge", self.table, "cut", "ip", "saddr", self.address(src),
                      "ip", "daddr", self.address(dst), "drop"])
        self.cut_links = set(links)

    def heal(self) -> None:
        self.cut(set())
