"""Nemeses observed to really work on a real 3-member etcd: paused processes are stopped
('T') and requests to them time out; cut links drop real TCP traffic while other links
work; healing restores traffic; teardown leaves no process, namespace or rule behind."""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from harness_helpers import leftover_resources, nft_rules
from verikv.jepsen import net
from verikv.jepsen.drivers.base import process_state
from verikv.jepsen.drivers.etcd import EtcdDriver
from verikv.jepsen.workloads import Failed, Indeterminate

NET_REASON = net.probe()
needs_etcd = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed (Debian etcd-server)")
needs_netns = pytest.mark.skipif(NET_REASON is not None, reason=f"partitions unavailable here: {NET_REASON}")

pytestmark = [needs_etcd, pytest.mark.slow]


def tcp_ok(driver, from_node: int, to_node: int, port: int = EtcdDriver.PEER_PORT) -> bool:
    """Can node `from_node`'s namespace open a TCP connection to `to_node`'s peer port?"""
    code = (f"import socket; socket.create_connection(('{driver.address(to_node)}', {port}), timeout=1.0)")
    done = subprocess.run(driver.net.exec_prefix(from_node) + ["python3", "-c", code], capture_output=True)
    return done.returncode == 0


def test_pause_stops_the_process_and_requests_time_out(etcd_cluster):
    d = etcd_cluster
    victim = (d.wait_for_leader() + 1) % 3
    client = d.client(victim, timeout_s=1.0)
    client.write("pause-probe", 1)                      # channel established before the pause
    d.pause(victim)
    try:
        assert process_state(d.pids()[victim]) == "T"
        t0 = time.monotonic()
        with pytest.raises(Indeterminate, match="DEADLINE_EXCEEDED"):
            client.write("pause-probe", 2)
        assert time.monotonic() - t0 >= 0.9
        deadline = time.monotonic() + 10
        while True:  # the others still serve (a request may time out while they notice)
            try:
                d.client((victim + 1) % 3, timeout_s=2.0).write("pause-probe", 3)
                break
            except (Failed, Indeterminate):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        d.resume(victim)
    # running again: not stopped ("T"); right after SIGCONT it may be in a disk wait ("D")
    assert process_state(d.pids()[victim]) in ("S", "R", "D")
    deadline = time.monotonic() + 10
    while True:  # the resumed node serves again: a fresh write through it reads back
        try:
            client.write("pause-probe-after", 4)
            assert client.read("pause-probe-after") == 4
            # the write of 2 timed out, so it is indeterminate: it may still land after the 3
            assert client.read("pause-probe") in (2, 3)
            break
        except (Failed, Indeterminate):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    client.close()


def test_kill_and_restart(etcd_cluster):
    d = etcd_cluster
    victim = d.wait_for_leader()
    pid = d.pids()[victim]
    d.kill(victim)
    assert victim not in d.pids() and process_state(pid) is None
    with pytest.raises(Failed, match="UNAVAILABLE"):     # refused before sending: certainly not applied
        d.client(victim).write("kill-probe", 1)
    d.restart(victim)
    assert d.pids()[victim] != pid
    deadline = time.monotonic() + 15
    while d.leader() is None or victim not in d.pids():
        assert time.monotonic() < deadline
        time.sleep(0.2)


@needs_netns
def test_partition_cuts_only_the_chosen_links_and_heals(etcd_cluster):
    d = etcd_cluster
    assert tcp_ok(d, 0, 1) and tcp_ok(d, 1, 2) and tcp_ok(d, 0, 2)
    d.cut({frozenset({0, 2})})                          # a bridge: n2 still talks to both
    try:
        assert not tcp_ok(d, 0, 2) and not tcp_ok(d, 2, 0)
        assert tcp_ok(d, 0, 1) and tcp_ok(d, 1, 2) and tcp_ok(d, 2, 1)
        assert "10.224." in nft_rules(d.net)
    finally:
        d.heal_network()
    assert tcp_ok(d, 0, 2) and tcp_ok(d, 2, 0)
    assert "drop" not in nft_rules(d.net)


@needs_netns
def test_isolated_node_cannot_commit_but_majority_can(etcd_cluster):
    d = etcd_cluster
    d.wait_for_leader()
    lonely = 0
    d.cut({frozenset({0, 1}), frozenset({0, 2})})
    try:
        deadline = time.monotonic() + 15                # the majority elects a leader of its own
        while d.leader() not in (1, 2):                 # (split votes on a loaded machine take rounds)
            assert time.monotonic() < deadline, f"the majority {{1, 2}} has no leader 15 s after the cut"
            time.sleep(0.2)
        with pytest.raises(Indeterminate):
            d.client(lonely, timeout_s=1.0).write("part-probe", 1)
        d.client(1, timeout_s=2.0).write("part-probe", 2)
    finally:
        d.heal_network()
    # The write of 1 timed out, so it is indeterminate: a follower forwards the proposal to
    # the leader it knew, the message waits in the cut link and may commit after the 2.
    deadline = time.monotonic() + 15
    seen = []
    while True:                                         # traffic flows again: n0 catches up
        try:
            here = d.client(lonely, timeout_s=1.0).read("part-probe")
            there = d.client(1, timeout_s=1.0).read("part-probe")
            seen.append((here, there))
            if here == there:
                assert here in (1, 2)
                break
        except (Failed, Indeterminate) as e:
            seen.append(str(e)[:80])
        assert time.monotonic() < deadline, f"isolated node never caught up after heal: {seen[-5:]}"
        time.sleep(0.3)


@needs_netns
def test_teardown_leaves_nothing_behind():
    data_dir = Path(tempfile.mkdtemp(prefix="verikv-jepsen-test-"))
    d = EtcdDriver()
    d.start(data_dir)
    tag, pids = d.net.tag, list(d.pids().values())
    d.cut({frozenset({0, 1})})
    d.pause(2)
    d.stop()
    shutil.rmtree(data_dir, ignore_errors=True)
    assert all(process_state(pid) is None for pid in pids)
    assert not [r for r in leftover_resources() if tag in r]
    assert not (net.STATE_DIR / f"{tag}.json").exists()
