"""Backups, as an etcd operator takes them: `etcdctl snapshot save` from a node of a running
cluster, `verikv snapshot restore` into a new cluster's directories, `verikv cluster up`: the new
cluster answers every read as the old one did (values, revisions, versions, history and
compaction point) and goes on from there; a cut or foreign file is refused with a message.

The file is etcd's kind of file too: `etcdctl snapshot status` reads it, and `etcdctl snapshot
restore` makes a real etcd that answers the same reads (a way back to etcd)."""

import json
import os
import shutil
import subprocess

import pytest

from integration_helpers import run_verikv
from verikv.cluster.etcd import ETCD_BINARY, start_etcd_cluster

ETCD_PORT = 27900  # a one-member etcd for the way back (integration tests' range, no cluster slot)

ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"


def ctl(endpoint, *args, input_=None):
    env = dict(os.environ, ETCDCTL_API="3")
    res = subprocess.run([ETCDCTL, f"--endpoints={endpoint}", "--command-timeout=10s", *args],
                         capture_output=True, text=True, timeout=30, env=env, input=input_)
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
    status = json.loads(ctl(old.endpoints[0], "snapshot", "status", str(saved), "-w", "json"))
    assert status["revision"] == 23 and status["totalKey"] > 20, status
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


@pytest.mark.slow
@pytest.mark.skipif(not os.access(ETCD_BINARY, os.X_OK), reason="etcd is not installed")
def test_etcdctl_snapshot_restore_makes_an_etcd_that_answers_the_same(make_cluster, tmp_path):
    cluster = make_cluster(6)
    cluster.up()
    at = cluster.endpoints[0]
    for i in range(30):
        ctl(at, "put", f"k{i % 9}", f"v{i}")
    ctl(at, "del", "k2")
    ctl(at, "txn", input_="\nput t1 a\nput t2 b\n\n\n")
    ctl(at, "compaction", "12")
    lease = ctl(at, "lease", "grant", "600").split()[1]
    ctl(at, "put", "--lease", lease, "leased", "x")
    before = [reads(at, rev) for rev in (12, 20, 33)]
    saved = tmp_path / "backup.db"
    ctl(at, "snapshot", "save", str(saved))
    cluster.down()

    etcd = start_etcd_cluster(tmp_path / "etcd", members=1, base_port=ETCD_PORT)
    try:  # the same member, on the restored data instead of its own
        etcd.stop()
        member = tmp_path / "etcd" / "e0"
        shutil.rmtree(member)
        peer = f"http://127.0.0.1:{ETCD_PORT + 1}"
        res = subprocess.run([ETCDCTL, "snapshot", "restore", str(saved), "--name", "e0", "--data-dir", str(member),
                              "--initial-cluster", f"e0={peer}", "--initial-advertise-peer-urls", peer,
                              "--initial-cluster-token", f"verikv-{ETCD_PORT}"],
                             capture_output=True, text=True, timeout=60, env=dict(os.environ, ETCDCTL_API="3"))
        assert res.returncode == 0, res.stderr
        etcd.restart()
        theirs = etcd.client_endpoints[0]
        assert [reads(theirs, rev) for rev in (12, 20, 33)] == before
        assert lease in ctl(theirs, "lease", "list")
        compacted = subprocess.run([ETCDCTL, f"--endpoints={theirs}", "get", "k1", "--rev", "11"],
                                   capture_output=True, text=True, timeout=30, env=dict(os.environ, ETCDCTL_API="3"))
        assert "required revision has been compacted" in compacted.stderr
    finally:
        etcd.stop()
