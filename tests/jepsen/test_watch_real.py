"""The watch workload end to end, on a real 3-member etcd and a real verikv cluster: under kill
every watcher sees the whole final history, those on the killed node watch again and resume,
and the verdict is valid with the records on disk; watchers that require a leader are told
when their node has none (a cut-off follower; a cut-off leader, which verikv does not yet tell)."""

import json
import re
import shutil
import time

import pytest

from verikv.jepsen import net
from verikv.jepsen.drivers.verikv import VerikvDriver
from verikv.jepsen.runner import RunConfig, run
from verikv.jepsen.watchers import WatcherGroup, store_revision
from verikv.jepsen.workloads import Clock

NET_REASON = net.probe()
needs_etcd = pytest.mark.skipif(shutil.which("etcd") is None, reason="etcd is not installed (Debian etcd-server)")
needs_netns = pytest.mark.skipif(NET_REASON is not None, reason=f"partitions unavailable here: {NET_REASON}")

pytestmark = pytest.mark.slow


def _watch_run(tmp_path, system, nemesis, seed):
    lines = []
    verdict = run(RunConfig(system=system, nemesis=nemesis, workload="watch", time_s=16, recovery_s=4, seed=seed,
                            out_dir=tmp_path), log=lines.append)
    return verdict, lines


def _faulted_node(verdict) -> int:
    return int(re.search(r"n(\d)", verdict["faults"][0]["detail"]).group(1)) - 1


def _assert_watched_everything(verdict, tmp_path):
    check = verdict["checker"]
    assert verdict["valid"] is True, check["violations"]
    assert check["checker"] == "watch" and check["violation_counts"] == {}
    assert check["final_events"] > 500 and check["final_from_revision"] == check["start_revision"]
    assert len(check["watchers"]) == 6 and {w["node"] for w in check["watchers"]} == {0, 1, 2}
    for w in check["watchers"]:   # every watcher saw the whole final history, each event once
        assert w["events_checked"] == check["final_events"], w
        assert w["span"] == [check["start_revision"], check["final_revision"]], w
    records = json.loads((tmp_path / "watchers.json").read_text())
    assert sum(len(s["events"]) for r in records for s in r["segments"]) == 6 * check["final_events"]
    assert json.loads((tmp_path / "final-history.json").read_text())["complete"] is True
    page = (tmp_path / "report.html").read_text()
    assert "<h2>Watchers</h2>" in page and "no_leader_endings" in page


@needs_etcd
def test_etcd_watch_under_kill(tmp_path):
    verdict, lines = _watch_run(tmp_path, "etcd", "kill", seed=3)
    assert verdict["faults"][0]["detail"].startswith("kill -9 n") and verdict["faults"][0]["error"] is None
    _assert_watched_everything(verdict, tmp_path)
    killed = _faulted_node(verdict)
    on_killed = [w for w in verdict["checker"]["watchers"] if w["node"] == killed]
    assert len(on_killed) == 2 and all(w["errors"] >= 1 and w["resumed"] >= 1 for w in on_killed), on_killed
    assert any("watch-events=" in line for line in lines)


def test_verikv_watch_under_kill(tmp_path):
    verdict, _ = _watch_run(tmp_path, "verikv", "kill", seed=3)
    assert verdict["faults"][0]["detail"].startswith("kill -9 n") and verdict["faults"][0]["error"] is None
    _assert_watched_everything(verdict, tmp_path)
    killed = _faulted_node(verdict)
    on_killed = [w for w in verdict["checker"]["watchers"] if w["node"] == killed]
    assert len(on_killed) == 2 and all(w["errors"] >= 1 and w["resumed"] >= 1 for w in on_killed), on_killed


@needs_netns
def test_verikv_watchers_on_a_cut_off_follower_are_told_no_leader(tmp_path):
    """A follower cut off from the others: its watchers asked for a leader (WithRequireLeader),
    so their stream ends, or is refused, with 'no leader'; after healing they resume from the
    revision after the last event they saw and miss nothing."""
    driver = VerikvDriver()
    driver.start(tmp_path / "data")
    group = None
    try:
        endpoints = driver.endpoints()
        group = WatcherGroup(endpoints, b"w/", store_revision(endpoints, b"w/")[0] + 1, Clock(), per_node=1)
        group.start()
        leader = driver.wait_for_leader()
        follower = (leader + 1) % driver.n_nodes
        client = driver.client(leader, timeout_s=5.0)
        client.put("w/0", 1)
        driver.cut({frozenset({follower, other}) for other in range(driver.n_nodes) if other != follower})
        time.sleep(4)
        client.put("w/1", 2)                      # while the follower is cut off
        time.sleep(1)
        driver.heal_network()
        last = client.put("w/2", 3)
        client.close()
        assert group.wait_caught_up(last, timeout_s=20)
        group.stop()
        cut_off = group.watchers[follower]
        assert "no-leader" in [s.end for s in cut_off.segments], [(s.end, s.error) for s in cut_off.segments]
        for w in group.watchers:
            assert [e[3] for s in w.segments for e in s.events] == ["1", "2", "3"], w.record()
        assert "no-leader" not in [s.end for s in group.watchers[leader].segments]
    finally:
        if group is not None:
            group.stop()
        driver.stop()


@needs_netns
@pytest.mark.parametrize("system", [
    pytest.param("etcd", marks=needs_etcd),
    "verikv",
])
def test_watchers_on_an_isolated_leader_are_told_no_leader(tmp_path, system):
    """The same for a leader cut off from the others: it can commit nothing, so a watcher that
    requires a leader must be told, as etcd's raft (CheckQuorum) tells it within a few seconds."""
    verdict, _ = _watch_run(tmp_path, system, "partition-leader", seed=4)
    assert verdict["faults"][0]["detail"].startswith("isolate leader") and verdict["faults"][0]["error"] is None
    assert verdict["valid"] is True, verdict["checker"]["violations"]
    isolated = _faulted_node(verdict)
    on_isolated = [w for w in verdict["checker"]["watchers"] if w["node"] == isolated]
    assert all(w["no_leader_endings"] + w["no_leader_refusals"] >= 1 for w in on_isolated), on_isolated
