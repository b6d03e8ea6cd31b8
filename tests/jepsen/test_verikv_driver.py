"""The verikv driver, against `verikv cluster`: short real runs with a kill and with a real
partition (each node in its own network namespace), and partitions refused with a reason when
the nodes cannot be placed. Skipped, with the reason, while `verikv cluster` is missing."""

import json
import re
import subprocess
import sys

import pytest

from harness_helpers import leftover_resources
from verikv.jepsen import net
from verikv.jepsen.drivers.base import DriverUnavailable, NemesisUnavailable
from verikv.jepsen.drivers.verikv import VerikvDriver
from verikv.jepsen.nemesis import check_available
from verikv.jepsen.runner import RunConfig, run

NET_REASON = net.probe()
needs_netns = pytest.mark.skipif(NET_REASON is not None, reason=f"partitions unavailable here: {NET_REASON}")


def _run(tmp_path, lines=None, **kw):
    # a cluster that does not start fails the test (DriverUnavailable), never skips it
    return run(RunConfig(system="verikv", out_dir=tmp_path, **kw),
               log=lines.append if lines is not None else (lambda s: None))


def test_partitions_are_refused_with_a_reason_when_nodes_share_loopback():
    with pytest.raises(NemesisUnavailable, match="namespace"):
        check_available("partition-halves", VerikvDriver())           # not started
    with pytest.raises(NemesisUnavailable, match="namespaces disabled"):
        d = VerikvDriver(use_netns=False)
        d.net_reason = "network namespaces disabled for this run"
        check_available("partition-leader", d)


@pytest.mark.slow
def test_verikv_short_kill_run(tmp_path):
    verdict = _run(tmp_path, nemesis="kill", time_s=8, recovery_s=3, seed=1)
    assert verdict["valid"] is True, verdict["checker"]
    assert verdict["faults"][0]["detail"].startswith("kill -9 n")
    assert verdict["faults"][0]["error"] is None
    assert verdict["stats"]["overall"]["ok"] > 100
    assert (tmp_path / "report.html").exists()
    assert sorted(p.name for p in tmp_path.glob("node*.log")) == ["node0.log", "node1.log", "node2.log"]


@needs_netns
@pytest.mark.slow
def test_verikv_short_partition_set_run(tmp_path):
    """Nodes in their own namespaces: a real leader isolation, no acknowledged add lost, and
    nothing (process, namespace, nft table) left behind."""
    lines = []
    verdict = _run(tmp_path, lines, nemesis="partition-leader", workload="set", time_s=8, recovery_s=3, seed=4)
    tag = re.search(r"network vkj-(\w+)", "\n".join(lines)).group(1)
    assert verdict["valid"] is True, verdict["checker"]
    assert verdict["checker"]["acknowledged"] > 100 and verdict["checker"]["lost"] == []
    assert verdict["faults"][0]["detail"].startswith("isolate leader")
    assert verdict["faults"][0]["error"] is None
    assert not [r for r in leftover_resources() if tag in r]


def test_cluster_cli_refuses_mismatched_placement(tmp_path):
    (tmp_path / "cluster.json").write_text(json.dumps({"base_port": 25690, "size": 3,
                                                       "hosts": ["10.0.0.1", "10.0.0.2", "10.0.0.3"]}))
    done = subprocess.run([sys.executable, "-m", "verikv.cli", "cluster", "up", "--data-dir", str(tmp_path),
                           "--node-hosts", "10.0.0.1,10.0.0.2,10.0.0.4"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and "was set up with --node-hosts 10.0.0.1,10.0.0.2,10.0.0.3" in done.stderr
    bad = subprocess.run([sys.executable, "-m", "verikv.cli", "cluster", "up", "--data-dir", str(tmp_path / "x"),
                          "--netns", "a,b"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "--netns needs 3" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_verikv_disk_faults_stop_the_node_and_lose_only_unsynced_writes(tmp_path):
    """The disk nemesis through the node's own fault points: first fsync starts failing on a
    node, which must stop by itself (fail-stop); then a crash loses its unsynced writes. The
    history stays linearizable and no acknowledged write is lost."""
    verdict = _run(tmp_path, nemesis="disk", workload="set", time_s=22, recovery_s=4, seed=2)
    faults = verdict["faults"]
    assert len(faults) >= 2, faults
    assert "stopped by itself" in faults[0]["detail"] and faults[0]["error"] is None, faults[0]
    assert "losing its unsynced writes" in faults[1]["detail"] and faults[1]["error"] is None, faults[1]
    assert verdict["valid"] is True, verdict["checker"]
    assert any("FATAL" in p.read_text(errors="replace") for p in tmp_path.glob("node*.log"))


@pytest.mark.slow
def test_verikv_short_kill_run_over_tls(tmp_path):
    """`--tls`: the cluster requires client certificates, so every client (workload, status,
    recovery reads) must use TLS with the cluster's certificate for the run to see any ok."""
    from verikv.jepsen import clients
    verdict = _run(tmp_path, nemesis="kill", time_s=6, recovery_s=3, seed=2, tls=True)
    assert verdict["valid"] is True, verdict["checker"]
    assert verdict["faults"][0]["error"] is None
    assert verdict["stats"]["overall"]["ok"] > 100
    logs = [p.read_text() for p in sorted(tmp_path.glob("node*.log"))]
    assert len(logs) == 3 and all("over TLS (client certificates required)" in text for text in logs)
    assert clients._TLS is None  # the driver's stop set this process's clients back to plain text


def test_tls_is_refused_for_etcd_with_a_reason(tmp_path):
    with pytest.raises(DriverUnavailable, match="--tls"):
        run(RunConfig(system="etcd", nemesis="kill", time_s=1, out_dir=tmp_path, tls=True), log=lambda s: None)


@pytest.mark.slow
def test_a_corrupted_member_is_fenced_off_and_nothing_acknowledged_is_lost(tmp_path):
    """The impostor nemesis: a node is killed and a thread speaks for it to the other two with
    damaged frames (jepsen/impostor.py). They drop every frame (and log it), keep serving through
    the window, never stop, and lose no acknowledged add; the real node then comes back."""
    verdict = _run(tmp_path, nemesis="impostor", workload="set", time_s=10, recovery_s=3, seed=3)
    assert verdict["valid"] is True, verdict["checker"]
    assert verdict["checker"]["acknowledged"] > 100 and verdict["checker"]["lost"] == []
    fault = verdict["faults"][0]
    assert fault["error"] is None, fault
    sent = re.search(r"(\d+) damaged frames in n(\d)'s name from its address on (\d+) connections",
                     fault["detail"])
    assert sent and int(sent.group(1)) >= 1000, fault["detail"]
    during = next(p for p in verdict["stats"]["phases"] if p["phase"].startswith("fault 1"))
    assert during["ok"] > 50, during  # the other two served meanwhile
    impostor_log = f"node{int(sent.group(2)) - 1}.log"
    logs = {p.name: p.read_text(errors="replace") for p in tmp_path.glob("node*.log")}
    assert len(logs) == 3 and not any("FATAL" in text for text in logs.values())
    for name, text in logs.items():
        if name != impostor_log:
            for line in ("claiming to come from node", "dropped a malformed forwarded batch",
                         "dropped a malformed snapshot", "dropped a malformed peer frame"):
                assert line in text, (name, line)
            if NET_REASON is None:  # the impostor at another address is refused at its HELLO
                assert "address is not the member's" in text, name


def test_the_impostor_is_refused_for_etcd_with_a_reason():
    from verikv.jepsen.drivers.etcd import EtcdDriver
    with pytest.raises(NemesisUnavailable, match="peer wire"):
        check_available("impostor", EtcdDriver())
