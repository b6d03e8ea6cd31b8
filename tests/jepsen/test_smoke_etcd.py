"""End to end against a real 3-member etcd: a short run with a real fault gives a valid
verdict and a report on disk; the CLI tears everything down on SIGTERM."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from verikv.jepsen import net
from verikv.jepsen.drivers.base import process_state
from harness_helpers import leftover_resources, read_jsonl
from verikv.jepsen.runner import RunConfig, run

NET_REASON = net.probe()
needs_etcd = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed (Debian etcd-server)")
needs_netns = pytest.mark.skipif(NET_REASON is not None, reason=f"partitions unavailable here: {NET_REASON}")

pytestmark = [needs_etcd, pytest.mark.slow]


def test_short_kill_leader_run_is_valid_with_report(tmp_path):
    out = tmp_path / "report"
    lines = []
    verdict = run(RunConfig(system="etcd", nemesis="kill-leader", time_s=9, recovery_s=3, seed=3, out_dir=out),
                  log=lines.append)
    assert verdict["valid"] is True, verdict["checker"]
    assert verdict["faults"] and verdict["faults"][0]["detail"].startswith("kill -9 n")
    ops = read_jsonl(out / "history.jsonl")
    assert len(ops) > 300 and sum(o.type == "ok" for o in ops) > 300
    assert any(o.type != "ok" for o in ops)             # the fault was felt by clients
    assert json.loads((out / "verdict.json").read_text())["valid"] is True
    page = (out / "report.html").read_text()
    assert "data:image/png;base64," in page and "fault 1: kill -9" in page
    assert (out / "latency.png").stat().st_size > 10_000
    assert any("ops=" in line and "fault=" in line for line in lines)   # progress lines


@needs_netns
def test_short_partition_set_run(tmp_path):
    verdict = run(RunConfig(system="etcd", nemesis="partition-leader", workload="set", time_s=8, recovery_s=3,
                            seed=4, out_dir=tmp_path), log=lambda s: None)
    assert verdict["valid"] is True, verdict["checker"]
    assert verdict["checker"]["acknowledged"] > 100 and verdict["checker"]["lost"] == []
    assert verdict["faults"][0]["detail"].startswith("isolate leader")


def test_sigterm_tears_everything_down(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "verikv.cli", "jepsen", "run", "--system", "etcd",
                             "--nemesis", "pause", "--time", "60", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pids, tag = [], None
    deadline = time.monotonic() + 30
    for line in proc.stdout:
        m = re.search(r"pids \[([\d, ]+)\]; network vkj-(\w+)", line)
        if m:
            pids = [int(p) for p in m.group(1).split(",")]
            tag = m.group(2)
        if "nemesis: pause started" in line or time.monotonic() > deadline:
            break
    assert pids, "the run never reported its cluster"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=40)
    assert proc.returncode == 130, out
    assert "Traceback" not in out
    assert all(process_state(pid) is None for pid in pids)
    assert not [r for r in leftover_resources() if tag in r]
    assert (tmp_path / "history.jsonl").exists()        # the partial history is kept


@needs_netns
def test_checker_catches_real_stale_reads_from_an_isolated_etcd_member(tmp_path):
    """Serializable reads are served by a member without a quorum: once a member is cut
    off, its clients read old values while the majority moves on. The checker must say so."""
    verdict = run(RunConfig(system="etcd", nemesis="partition-halves", time_s=8, recovery_s=2, seed=6,
                            out_dir=tmp_path, serializable_reads=True), log=lambda s: None)
    assert verdict["valid"] is False
    cex = verdict["checker"]["violations"][0]["counterexample"]
    assert "read(" in cex["text"] and len(cex["ops"]) <= 12
