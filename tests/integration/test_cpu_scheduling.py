"""`verikv serve --cpu-scheduling`: by default (loop-first) every thread of the node but its event
loop's (its gRPC front's, grpc's own) runs under Linux's SCHED_BATCH, and the loop's under the
normal policy; `batch`: every thread, the loop's too; `normal`: none. Ports 28750-28751."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from integration_helpers import VERIKV, first_put

CLIENT_PORT, PEER_PORT = 28750, 28751

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")


def serve(data_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(VERIKV + ["serve", "--id", "0", "--peers", f"127.0.0.1:{PEER_PORT}",
                                      "--client-listen", f"127.0.0.1:{CLIENT_PORT}", "--data-dir", str(data_dir),
                                      *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def policies_once_serving(node: subprocess.Popen) -> dict[int, int]:
    """Each thread's scheduling policy, once the node answered a put (its threads are all up)."""
    first_put(node, CLIENT_PORT)
    policies = {}
    for tid in os.listdir(f"/proc/{node.pid}/task"):
        try:
            policies[int(tid)] = os.sched_getscheduler(int(tid))
        except ProcessLookupError:
            pass
    return policies


def run(data_dir: Path, *extra: str) -> dict[int, int]:
    node = serve(data_dir, *extra)
    try:
        return policies_once_serving(node)
    finally:
        node.send_signal(signal.SIGTERM)
        _, err = node.communicate(timeout=20)
        assert node.returncode == 0, err


def test_batch_puts_every_thread_of_the_node_under_sched_batch(tmp_path):
    policies = run(tmp_path / "n0", "--cpu-scheduling", "batch")
    assert len(policies) >= 3, policies  # the loop's thread, the front's, grpc's own
    assert set(policies.values()) == {os.SCHED_BATCH}, policies


def test_by_default_the_loops_thread_is_normal_and_every_other_under_sched_batch(tmp_path):
    node = serve(tmp_path / "n0")
    try:
        policies = policies_once_serving(node)
        loop_thread = node.pid  # the process's main thread runs the event loop
    finally:
        node.send_signal(signal.SIGTERM)
        _, err = node.communicate(timeout=20)
        assert node.returncode == 0, err
    assert policies.pop(loop_thread) == os.SCHED_OTHER
    assert len(policies) >= 2, policies  # the front's thread, grpc's own
    assert set(policies.values()) == {os.SCHED_BATCH}, policies


def test_normal_leaves_every_thread_under_the_normal_policy(tmp_path):
    policies = run(tmp_path / "n0", "--cpu-scheduling", "normal")
    assert len(policies) >= 3, policies
    assert set(policies.values()) == {os.SCHED_OTHER}, policies


def test_an_unknown_policy_is_refused_with_the_choices(tmp_path):
    done = subprocess.run(VERIKV + ["serve", "--id", "0", "--peers", f"127.0.0.1:{PEER_PORT}",
                                    "--client-listen", f"127.0.0.1:{CLIENT_PORT}", "--data-dir", str(tmp_path / "n0"),
                                    "--cpu-scheduling", "fifo"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "--cpu-scheduling: invalid choice: 'fifo' (choose from 'loop-first', 'normal', 'batch')" in done.stderr
    assert "Traceback" not in done.stderr
