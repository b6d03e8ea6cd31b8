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


def policies(data_dir: Path, *extra: str) -> tuple[int, dict[int, int]]:
    """The node's loop thread (the process's main thread) and each thread's scheduling policy,
    once the node answered a put (its threads are all up); the node stops cleanly after."""
    node = serve(data_dir, *extra)
    try:
        first_put(node, CLIENT_PORT)
        found = {}
        for tid in os.listdir(f"/proc/{node.pid}/task"):
            try:
                found[int(tid)] = os.sched_getscheduler(int(tid))
            except ProcessLookupError:
                pass
        return node.pid, found
    finally:
        node.send_signal(signal.SIGTERM)
        _, err = node.communicate(timeout=20)
        assert node.returncode == 0, err


def test_batch_puts_every_thread_of_the_node_under_sched_batch(tmp_path):
    _, found = policies(tmp_path / "n0", "--cpu-scheduling", "batch")
    assert len(found) >= 3, found  # the loop's thread, the front's, grpc's own
    assert set(found.values()) == {os.SCHED_BATCH}, found


def test_by_default_the_loops_thread_is_normal_and_every_other_under_sched_batch(tmp_path):
    loop_thread, found = policies(tmp_path / "n0")
    assert found.pop(loop_thread) == os.SCHED_OTHER
    assert len(found) >= 2, found  # the front's thread, grpc's own
    assert set(found.values()) == {os.SCHED_BATCH}, found


def test_normal_leaves_every_thread_under_the_normal_policy(tmp_path):
    _, found = policies(tmp_path / "n0", "--cpu-scheduling", "normal")
    assert len(found) >= 3, found
    assert set(found.values()) == {os.SCHED_OTHER}, found


def test_an_unknown_policy_is_refused_with_the_choices(tmp_path):
    done = subprocess.run(VERIKV + ["serve", "--id", "0", "--peers", f"127.0.0.1:{PEER_PORT}",
                                    "--client-listen", f"127.0.0.1:{CLIENT_PORT}", "--data-dir", str(tmp_path / "n0"),
                                    "--cpu-scheduling", "fifo"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "--cpu-scheduling: invalid choice: 'fifo' (choose from 'loop-first', 'normal', 'batch')" in done.stderr
    assert "Traceback" not in done.stderr
