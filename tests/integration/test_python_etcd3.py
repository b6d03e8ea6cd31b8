"""Debian's python3-etcd3, unmodified, against a real 3-node verikv cluster through one of its
nodes (leader or follower, it must not matter): keys, prefixes, a transaction, a compaction,
watches, a lease (refresh, time left, keys, revoke). The client runs in its own process (etcd3_scenario.py)."""

import json
import subprocess
from pathlib import Path

import pytest

SCENARIO = Path(__file__).with_name("etcd3_scenario.py")
PYTHON = "/usr/bin/python3"  # Debian's, where python3-etcd3 is installed


def etcd3_installed() -> bool:
    return subprocess.run([PYTHON, "-c", "import etcd3"], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not etcd3_installed(), reason="python3-etcd3 is not installed (./dev setup installs it)")
def test_python_etcd3_keys_transactions_compaction_watches_and_leases(make_cluster):
    cluster = make_cluster(5)
    cluster.up()
    host, port = cluster.endpoints[1].rsplit(":", 1)
    run = subprocess.run([PYTHON, str(SCENARIO), host, port], capture_output=True, text=True, timeout=90)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    assert seen["get"] == ["1", 1]
    assert seen["prefix"] == [["app/a", "1"], ["app/b", "2"]]
    assert seen["txn"] == [True, "3"]
    assert seen["delete"] == [True, True]
    assert "required revision has been compacted" in seen["compact_twice"]
    assert seen["watch_prefix"] == [["PutEvent", "w/a", "1"], ["PutEvent", "w/b", "2"], ["DeleteEvent", "w/a", ""]]
    assert seen["watch_once"] == ["PutEvent", "once", "v"]
    assert seen["lease"] == [30, [30], True, ["leased/a", "leased/b"]]
    assert seen["after_revoke"] == [0, None]
