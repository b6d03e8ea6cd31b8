"""The command line: bad input gives a message and a non-zero exit code, never a
traceback; unavailable systems and faults are reported, not silently passed."""

import subprocess
import sys

import pytest

from verikv.jepsen import cli
from verikv.jepsen.drivers.base import NemesisUnavailable
from verikv.jepsen.drivers.etcd import EtcdDriver
from verikv.jepsen.nemesis import NEMESES, check_available, make_schedule



@pytest.mark.parametrize("argv", [
    [],
    ["run"],
    ["run", "--system", "etcd"],
    ["run", "--system", "mongo", "--nemesis", "kill"],
    ["run", "--system", "etcd", "--nemesis", "meteor"],
    ["run", "--system", "etcd", "--nemesis", "kill", "--time", "abc"],
    ["run", "--system", "etcd", "--nemesis", "kill", "--time", "0"],
    ["compare", "--nemesis", "kill", "--workload", "queue"],
])
def test_bad_input_exits_nonzero_without_traceback(argv, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "verikv jepsen" in err and "Traceback" not in err


def test_bad_input_through_the_real_entry_point():
    done = subprocess.run([sys.executable, "-m", "verikv.cli", "jepsen", "run", "--system", "etcd",
                           "--nemesis", "kill", "--time", "soon"], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr and "--time" in done.stderr


def test_nemesis_list():
    assert cli.main(["nemeses"]) == 0


def test_disk_nemesis_is_refused_for_etcd_not_passed():
    with pytest.raises(NemesisUnavailable, match="disk faults"):
        check_available("disk", EtcdDriver())


def test_partition_refused_without_network():
    d = EtcdDriver(use_netns=False)
    d.net_reason = "network namespaces disabled for this run"
    with pytest.raises(NemesisUnavailable, match="namespaces disabled"):
        check_available("partition-leader", d)
    check_available("kill", d)                          # process faults do not need the network


def test_schedule_is_deterministic_and_healed_before_the_end():
    a = make_schedule("kill", 60, seed=5)
    b = make_schedule("kill", 60, seed=5)
    assert [(w.start_s, w.end_s, w.choice) for w in a] == [(w.start_s, w.end_s, w.choice) for w in b]
    assert len(a) >= 4 and all(w.end_s <= 59.0 and w.end_s - w.start_s >= 2 for w in a)
    assert all(x.end_s < y.start_s for x, y in zip(a, a[1:]))
    assert make_schedule("none", 60, seed=5) == []
    assert set(NEMESES) >= {"kill", "kill-leader", "pause", "partition-leader", "partition-halves",
                            "partition-bridge", "partition-flap"}


def test_format_table():
    text = cli.format_table([{"system": "etcd", "valid": True, "ops": 10}, {"system": "verikv", "valid": "not run"}])
    assert "etcd" in text.splitlines()[2] and "not run" in text.splitlines()[3]


def test_watch_columns_in_the_compare_table():
    check = {"checker": "watch", "events_checked": 120, "violation_counts": {"gap": 2, "duplicate": 1},
             "watchers": [{"rewatches": 3, "no_leader_endings": 1, "no_leader_refusals": 4, "compaction_cancels": 0},
                          {"rewatches": 2, "no_leader_endings": 0, "no_leader_refusals": 0, "compaction_cancels": 1}],
             "observations": {"progress_ahead_of_events": 5}}
    assert cli.watch_columns(check) == {"events_checked": 120, "rewatches": 5, "no_leader": "1+4", "compacted": 1,
                                        "violations": 3, "progress_ahead": 5}
    assert cli.watch_columns({"checker": "linearizable-register"}) == {}
    text = cli.format_table([{"system": "etcd", "valid": True, **cli.watch_columns(check)}], cli.WATCH_COLUMNS)
    assert "events_checked" in text.splitlines()[0] and "1+4" in text.splitlines()[2]
    assert cli.main(["compare", "--nemesis", "kill", "--workload", "watch", "--time", "x"]) == 2


def test_lease_and_lock_columns_in_the_compare_table():
    from verikv.jepsen.lease_checker import check_leases
    from verikv.jepsen.lock_checker import check_locks
    lease = check_leases([], [], {"complete": True, "events": []}, 0.32)
    lease.update(leases=40, expired=38, keepalives_acked=200, early_violations=0, never_expired=1, uncertain=3,
                 violation_counts={"late": 2}, lateness={"p50_ms": 41.0, "p99_ms": 900.5, "max_ms": 1200.0})
    assert cli.lease_columns(lease) == {"leases": 40, "expired": 38, "keepalives_acked": 200, "early": 0,
                                        "late_p50_ms": 41.0, "late_p99_ms": 900.5, "late_max_ms": 1200.0,
                                        "never_expired": 1, "uncertain": 3, "violations": 2}
    lock = check_locks([], {"complete": True, "events": [], "start_revision": 2, "from_revision": 2})
    lock.update(holds=30, fenced_applied=55, fenced_refused=2, fenced_interleavings=0, unfenced_overlaps=4,
                client_hold_overlaps=3)
    assert cli.lock_columns(lock) == {"holds": 30, "fenced_applied": 55, "fenced_refused": 2, "interleavings": 0,
                                      "unfenced_overlaps": 4, "client_overlaps": 3, "violations": 0}
    assert cli.lease_columns(lock) == {} and cli.lock_columns(lease) == {}
    text = cli.format_table([{"system": "verikv", "valid": True, **cli.lease_columns(lease)}], cli.LEASE_COLUMNS)
    assert "late_p99_ms" in text.splitlines()[0] and "900.5" in text.splitlines()[2]
    assert cli.main(["run", "--system", "verikv", "--nemesis", "kill", "--workload", "lease", "--time", "0"]) == 2
    assert cli.main(["compare", "--nemesis", "kill", "--workload", "locks"]) == 2
