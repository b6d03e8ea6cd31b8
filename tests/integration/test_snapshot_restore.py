"""Backups, as an etcd operator takes them: `etcdctl snapshot save` from a node of a running
cluster, `verikv snapshot restore` into a new cluster's directories, `verikv cluster up`: the new
cluster answers every read as the old one did (values, revisions, versions, history and
compaction point) and goes on from there; a cut or foreign file is refused with a message."""

import json
import os
import shutil
import subprocess

import pytest

from integration_helpers import run_verikv

ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"


def ctl(endpoint, *args):
    env = dict(os.environ, ETCDCTL_API="3")
    res = subprocess.run([ETCDCTL, f"--endpoints={endpoint}", "--command-timeout=10s", *args],
                         capture_output=True, text=True, timeout=30, env=env)
    assert res.returncode == 0, f"etcdctl {' '.join(args)}: {res.stdout}{res.stderr}"
    return res.stdout


def reads(endpoint, revision):
    """What a client sees: every key now, and every key at `revision` (a past one)."""
    now = json.loads(ctl(endpoint, "get", "", "--from-key", "-w", "json"))
    past = json.loads(ctl(endpoint, "get", "", "--from-key", "--rev", str(revision), "-w", "json"))
    return ([(kv["key"], kv["value"], kv["create_revision"], kv["mod_revision"], kv["version"]) for kv in now["kvs"]],
            now["header"]["revision"],
            [(kv["key"], kv["value"], kv["mod_revision"]) for kv in past["kvs"]])


@pytest.mark.slow
def test_a_saved_snapshot_restores_into_a_new_cluster_that_answers_the_same(make_cluster, tmp_path):
    old = make_cluster(6)
    old.up()
    first = old.endpoints[1]  # a follower or the leader: it must not matter
    for i in range(20):
        ctl(first, "put", f"k{i % 7}", f"v{i}")
    ctl(first, "del", "k3")
    ctl(first, "compaction", "5")
    lease = ctl(first, "lease", "grant", "600").split()[1]
    ctl(first, "put", "--lease", lease, "leased", "x")
    before = reads(first, 10)
    saved = tmp_path / "backup.db"
    out = ctl(old.endpoints[2], "snapshot", "save", str(saved))
    assert f"Snapshot saved at {saved}" in out
    old.down()

    restored_dir = tmp_path / "cluster7"  # make_cluster(7)'s directory
    res = run_verikv("snapshot", "restore", str(saved), "--data-dir", str(restored_dir))
    assert res.returncode == 0, res.stderr
    assert "restored revision 23" in res.stdout, res.stdout
    new = make_cluster(7)
    new.up()
    new.wait_leader()
    assert reads(new.endpoints[0], 10) == before
    assert lease in ctl(new.endpoints[0], "lease", "list")
    ctl(new.endpoints[0], "put", "after", "restore")  # it goes on from the snapshot's revision
    assert json.loads(ctl(new.endpoints[1], "get", "after", "-w", "json"))["kvs"][0]["mod_revision"] == 24

    again = run_verikv("snapshot", "restore", str(saved), "--data-dir", str(restored_dir))
    assert again.returncode == 1 and "is not empty" in again.stderr
    cut = tmp_path / "cut.db"
    cut.write_bytes(saved.read_bytes()[:-100])
    bad = run_verikv("snapshot", "restore", str(cut), "--data-dir", str(tmp_path / "x"))
    assert bad.returncode == 1 and "sha256 does not match" in bad.stderr and "Traceback" not in bad.stderr
