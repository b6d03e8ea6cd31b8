"""The real etcdctl (3.4, /usr/bin/etcdctl, ETCDCTL_API=3) against a real 3-node verikv cluster.

etcdctl 3.4 has no `get --count-only` (it came in 3.5); the count is checked through
`get --prefix --limit 1 -w json` (count = all matches, one kv, more = true) instead.
"""

import base64
import json
import os
import shutil
import subprocess
import threading
import time

import pytest

ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def unb64(s: str) -> str:
    return base64.b64decode(s).decode()


@pytest.fixture
def ctl(make_cluster):
    cluster = make_cluster(0)
    cluster.up()
    endpoints = ",".join(cluster.endpoints)

    def run(*args, stdin: str | None = None, ok: bool = True, endpoints: str = endpoints):
        env = dict(os.environ, ETCDCTL_API="3")
        res = subprocess.run([ETCDCTL, f"--endpoints={endpoints}", "--command-timeout=10s", *args],
                             input=stdin, capture_output=True, text=True, timeout=30, env=env)
        if ok:
            assert res.returncode == 0, f"etcdctl {' '.join(args)} -> {res.returncode}\n{res.stdout}{res.stderr}"
        return res

    run.cluster = cluster
    return run


def watch(ctl, *args, lines: int, then=None) -> list[str]:
    """The first `lines` lines `etcdctl watch ARGS` prints (after running `then`, if given)."""
    env = dict(os.environ, ETCDCTL_API="3")
    proc = subprocess.Popen([ETCDCTL, f"--endpoints={ctl.cluster.endpoints[0]}", "watch", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        if then is not None:
            then()
        out = []
        timer = threading.Timer(20, proc.kill)  # a watch that never prints fails, not hangs
        timer.start()
        while len(out) < lines:
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line.rstrip("\n"))
        timer.cancel()
        return out
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_put_get_del_txn_history_watch_status_members_and_unsupported(ctl):
    # ---- put / get ----
    assert ctl("put", "app/a", "1").stdout.strip() == "OK"
    assert ctl("put", "app/b", "2").stdout.strip() == "OK"
    assert ctl("put", "app/a", "3").stdout.strip() == "OK"
    assert ctl("put", "other", "x").stdout.strip() == "OK"

    assert ctl("get", "app/a").stdout.splitlines() == ["app/a", "3"]
    got = json.loads(ctl("get", "app/a", "-w", "json").stdout)
    assert got["count"] == 1
    (kv,) = got["kvs"]
    # fresh cluster: revision 1, then each put +1 -> app/a created at 2, modified at 4
    assert (unb64(kv["key"]), unb64(kv["value"])) == ("app/a", "3")
    assert (kv["create_revision"], kv["mod_revision"], kv["version"]) == (2, 4, 2)
    assert got["header"]["revision"] == 5
    b = json.loads(ctl("get", "app/b", "-w", "json").stdout)["kvs"][0]
    assert (b["create_revision"], b["mod_revision"], b["version"]) == (3, 3, 1)

    assert ctl("get", "app/", "--prefix").stdout.splitlines() == ["app/a", "3", "app/b", "2"]
    assert [line for line in ctl("get", "app/", "--prefix", "--keys-only").stdout.splitlines() if line] == [
        "app/a", "app/b"]
    counted = json.loads(ctl("get", "app/", "--prefix", "--limit", "1", "-w", "json").stdout)
    assert counted["count"] == 2 and len(counted["kvs"]) == 1 and counted.get("more") is True
    assert ctl("get", "missing").stdout == ""
    # a serializable read from each endpoint alone sees the same value
    for ep in ctl.cluster.endpoints:
        assert ctl("get", "app/a", "--consistency=s", endpoints=ep).stdout.splitlines() == ["app/a", "3"]

    # ---- del ----
    assert ctl("del", "app/b", "--prev-kv").stdout.splitlines() == ["1", "app/b", "2"]
    assert ctl("del", "app/b").stdout.strip() == "0"
    assert ctl("get", "app/b").stdout == ""
    assert ctl("put", "app/c", "c").stdout.strip() == "OK"
    assert ctl("del", "app/", "--prefix").stdout.strip() == "2"
    assert ctl("get", "app/", "--prefix").stdout == ""
    assert ctl("get", "other").stdout.splitlines() == ["other", "x"]

    # ---- txn, read from stdin like `etcdctl txn` (compares, blank, success ops, blank, failure ops) ----
    ctl("put", "t", "1")
    win = ctl("txn", stdin='value("t") = "1"\n\nput t 2\nput t-then yes\n\nput t-else yes\n\n')
    assert win.stdout.splitlines()[0] == "SUCCESS", win.stdout
    assert ctl("get", "t", "--print-value-only").stdout.strip() == "2"
    assert ctl("get", "t-then", "--print-value-only").stdout.strip() == "yes"
    assert ctl("get", "t-else").stdout == ""

    lose = ctl("txn", stdin='value("t") = "1"\nversion("t") = "1"\n\nput t 3\n\nput t-else yes\nget t\n\n')
    assert lose.stdout.splitlines()[0] == "FAILURE", lose.stdout
    assert "t-else" not in lose.stdout and lose.stdout.splitlines()[-2:] == ["t", "2"], lose.stdout
    assert ctl("get", "t", "--print-value-only").stdout.strip() == "2"
    assert ctl("get", "t-else", "--print-value-only").stdout.strip() == "yes"

    lose_json = json.loads(ctl("txn", "-w", "json", stdin='mod("t") > "1000"\n\nput t 4\n\n\n').stdout)
    assert not lose_json.get("succeeded") and lose_json.get("responses", []) == []
    win_json = json.loads(ctl("txn", "-w", "json", stdin='create("t") > "0"\n\nput t 5\n\n\n').stdout)
    assert win_json["succeeded"] is True and "ResponsePut" in win_json["responses"][0]["Response"]
    t = json.loads(ctl("get", "t", "-w", "json").stdout)["kvs"][0]
    assert unb64(t["value"]) == "5" and t["version"] == 3 and t["mod_revision"] == win_json["header"]["revision"]

    # ---- endpoint status / member list ----
    statuses = json.loads(ctl("endpoint", "status", "-w", "json").stdout)
    assert sorted(s["Endpoint"] for s in statuses) == sorted(ctl.cluster.endpoints)
    leaders = {s["Status"]["leader"] for s in statuses}
    assert len(leaders) == 1, statuses
    leader_id = leaders.pop()
    assert [s["Status"]["header"]["member_id"] for s in statuses].count(leader_id) == 1, statuses
    assert all(s["Status"]["version"] for s in statuses)
    members = json.loads(ctl("member", "list", "-w", "json").stdout)["members"]
    assert len(members) == 3
    assert sorted(m["ID"] for m in members) == sorted(s["Status"]["header"]["member_id"] for s in statuses)
    assert leader_id in {m["ID"] for m in members}
    assert sorted(u for m in members for u in m["clientURLs"]) == sorted(ctl.cluster.endpoints)
    leader_nodes = [n for n in ctl.cluster.status() if n["role"] == "leader"]
    assert len(leader_nodes) == 1 and leader_nodes[0]["id"] + 1 == leader_id

    # ---- what verikv does not serve: a clear message and a non-zero exit ----
    added = ctl("member", "add", "extra", "--peer-urls", "http://127.0.0.1:1", ok=False)
    assert added.returncode != 0
    assert "MemberAdd is not supported" in added.stderr
    for args in (["put", "", "v"], ["get", ""], ["del", ""]):
        res = ctl(*args, ok=False)
        assert res.returncode != 0 and "etcdserver: key is not provided" in res.stderr, (args, res)

    # nothing above left a stray key behind
    keys = [line for line in ctl("get", "", "--from-key", "--keys-only").stdout.splitlines() if line]
    assert keys == ["other", "t", "t-else", "t-then"]

    # ---- watch: from the history, then live ----
    assert watch(ctl, "app/", "--prefix", "--rev", "2", "--prev-kv", lines=11) == [
        "PUT", "app/a", "1", "PUT", "app/b", "2", "PUT", "app/a", "1", "app/a", "3"]
    now = json.loads(ctl("get", "t", "-w", "json").stdout)["header"]["revision"]
    live = watch(ctl, "live", "--rev", str(now + 1), lines=6,
                 then=lambda: (ctl("put", "live", "v"), ctl("del", "live")))
    assert live == ["PUT", "live", "v", "DELETE", "live", ""]

    # ---- history: get --rev, compaction ----
    # app/a was 1 at revision 2 and 3 from revision 4 on, until `del app/ --prefix`
    assert ctl("get", "app/a", "--rev", "2").stdout.splitlines() == ["app/a", "1"]
    assert ctl("get", "app/", "--prefix", "--rev", "5").stdout.splitlines() == ["app/a", "3", "app/b", "2"]
    now = json.loads(ctl("get", "t", "-w", "json").stdout)["header"]["revision"]
    future = ctl("get", "t", "--rev", str(now + 10), ok=False)
    assert future.returncode != 0 and "required revision is a future revision" in future.stderr
    assert ctl("compaction", "4").stdout.strip() == "compacted revision 4"
    assert ctl("get", "app/a", "--rev", "4").stdout.splitlines() == ["app/a", "3"]
    for args in (["get", "app/a", "--rev", "2"], ["compaction", "4"]):
        res = ctl(*args, ok=False)
        assert res.returncode != 0 and "required revision has been compacted" in res.stderr, (args, res)


def test_leases_locks_and_elections(ctl):
    """etcdctl's lease commands, and its lock and elect (clientv3's concurrency recipes: a key
    under a session lease, waiting with Watch for the holder's key to go)."""
    granted = ctl("lease", "grant", "30").stdout.split()
    assert granted[0] == "lease" and granted[4] == "TTL(30s)", granted
    lease = granted[1]
    ctl("put", "--lease", lease, "held", "1")
    ttl = ctl("lease", "timetolive", lease, "--keys").stdout
    assert "granted with TTL(30s)" in ttl and "attached keys([held])" in ttl, ttl
    assert lease in ctl("lease", "list").stdout
    assert ctl("lease", "keep-alive", "--once", lease).stdout.strip() == f"lease {lease} keepalived with TTL(30)"
    ctl("lease", "revoke", lease)
    assert ctl("get", "held").stdout == ""
    assert "already expired" in ctl("lease", "timetolive", lease).stdout
    missing = ctl("lease", "revoke", lease, ok=False)
    assert missing.returncode != 0 and "requested lease not found" in missing.stderr

    # two holders of one lock: the second gets it only once the first let go
    env = dict(os.environ, ETCDCTL_API="3")
    cmd = [ETCDCTL, f"--endpoints={ctl.cluster.endpoints[0]}", "lock", "the-lock", "--",
           "/bin/sh", "-c", "date +%s.%N; sleep {}; date +%s.%N"]
    first = subprocess.Popen(cmd[:-1] + [cmd[-1].format(1)], stdout=subprocess.PIPE, text=True, env=env)
    time.sleep(0.3)
    second = subprocess.Popen(cmd[:-1] + [cmd[-1].format(0)], stdout=subprocess.PIPE, text=True, env=env)
    a = [float(x) for x in first.communicate(timeout=30)[0].split()]
    b = [float(x) for x in second.communicate(timeout=30)[0].split()]
    assert first.returncode == 0 and second.returncode == 0 and len(a) == len(b) == 2
    assert b[0] >= a[1], (a, b)  # held one at a time

    # an election: the campaigner leads, and its value is the election's first key
    campaign = subprocess.Popen([ETCDCTL, f"--endpoints={ctl.cluster.endpoints[1]}", "elect", "the-election", "p1"],
                                stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = campaign.stdout.readline()
        assert line.startswith("the-election/"), line
        leader = ctl("get", "--prefix", "the-election/", "--print-value-only").stdout.split()
        assert leader == ["p1"]
    finally:
        campaign.kill()
        campaign.wait()


@pytest.mark.slow
def test_status_hashkv_alarms_defrag_and_move_leader(ctl):
    import grpc

    from verikv.etcdpb import rpc_pb2, rpc_pb2_grpc

    for i in range(5):
        ctl("put", f"ops/{i}", "x" * 100)
    # A node that missed the Accepts (its peer connections still coming up) learns the slots by
    # catch-up (Commit messages), which raise no promise, nor do heartbeats: its raftTerm stays 0,
    # which etcdctl's JSON leaves out, until the next Accept reaches it. So: put until every node
    # reports a term (a few seconds at most).
    deadline = time.monotonic() + 10
    while True:
        statuses = json.loads(ctl("endpoint", "status", "-w", "json").stdout)
        if all(s["Status"].get("raftTerm", 0) >= 1 for s in statuses) or time.monotonic() > deadline:
            break
        ctl("put", "ops/term", "x")
        time.sleep(0.2)
    for s in statuses:
        st = s["Status"]
        assert st["dbSize"] >= 5 * (5 + 100) and st["raftAppliedIndex"] >= 5 and st.get("raftTerm", 0) >= 1, st
    # every node that applied the same revision has the same hash
    hashes = json.loads(ctl("endpoint", "hashkv", "-w", "json").stdout)
    assert len({h["HashKV"]["hash"] for h in hashes}) == 1 and len(hashes) == 3, hashes

    # ---- alarms: NOSPACE raised (here through the Alarm RPC), listed, refused puts, disarmed ----
    assert ctl("alarm", "list").stdout == ""
    with grpc.insecure_channel(ctl.cluster.endpoints[1]) as ch:
        rpc_pb2_grpc.MaintenanceStub(ch).Alarm(rpc_pb2.AlarmRequest(
            action=rpc_pb2.AlarmRequest.ACTIVATE, memberID=2, alarm=rpc_pb2.NOSPACE), timeout=10)
    assert ctl("alarm", "list").stdout.splitlines() == ["memberID:2 alarm:NOSPACE "]
    refused = ctl("put", "ops/x", "1", ok=False)
    assert refused.returncode != 0 and "etcdserver: mvcc: database space exceeded" in refused.stderr
    assert ctl("get", "ops/0", "--print-value-only").stdout.strip() == "x" * 100
    assert ctl("del", "ops/4").stdout.strip() == "1"
    errors = [s["Status"].get("errors") for s in json.loads(ctl("endpoint", "status", "-w", "json").stdout)]
    assert errors == [["memberID:2 alarm:NOSPACE "]] * 3, errors
    assert ctl("alarm", "disarm").stdout.splitlines() == ["memberID:2 alarm:NOSPACE "]
    assert ctl("alarm", "list").stdout == ""
    assert ctl("put", "ops/x", "1").stdout.strip() == "OK"

    # ---- defrag: each member, as etcd words it ----
    assert ctl("defrag").stdout.splitlines() == [
        f"Finished defragmenting etcd member[{ep}]" for ep in ctl.cluster.endpoints]

    # ---- move-leader: to each other member in turn, then etcd's errors ----
    for _ in range(2):
        leader = ctl.cluster.wait_leader()["id"] + 1
        target = leader % 3 + 1
        moved = ctl("move-leader", f"{target:x}")
        assert moved.stdout.strip() == f"Leadership transferred from {leader:x} to {target:x}", moved.stdout
        assert ctl.cluster.wait_leader()["id"] + 1 == target
        assert ctl("put", "ops/after", str(target)).stdout.strip() == "OK"
    bad = ctl("move-leader", "99", ok=False)
    assert bad.returncode != 0 and "etcdserver: bad leader transferee" in bad.stderr
    follower = next(ep for i, ep in enumerate(ctl.cluster.endpoints) if i + 1 != target)
    alone = ctl("move-leader", "1", endpoints=follower, ok=False)
    assert alone.returncode != 0 and "no leader endpoint given" in alone.stderr


@pytest.mark.slow
def test_a_quota_raises_nospace_and_etcds_procedure_recovers(tmp_path):
    """`verikv serve --quota-backend-bytes` (one node, ports 28580-28581) and etcd's documented
    recovery: etcdctl compact, defrag, alarm disarm."""
    import sys

    endpoint = "127.0.0.1:28581"
    log = open(tmp_path / "node.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "verikv.cli", "serve", "--id", "0", "--peers", "127.0.0.1:28580",
                             "--client-listen", endpoint, "--data-dir", str(tmp_path / "data"),
                             "--quota-backend-bytes", "100000"], stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    env = dict(os.environ, ETCDCTL_API="3")

    def ctl(*args, ok=True):
        res = subprocess.run([ETCDCTL, f"--endpoints={endpoint}", "--command-timeout=10s", *args],
                             capture_output=True, text=True, timeout=30, env=env)
        assert not ok or res.returncode == 0, f"etcdctl {' '.join(args)}: {res.stdout}{res.stderr}"
        return res

    try:
        deadline = time.monotonic() + 20
        while ctl("endpoint", "status", ok=False).returncode != 0:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "node.log").read_text()
            time.sleep(0.2)
        value = "x" * 10_000
        refused = None
        for i in range(20):
            res = ctl("put", f"k{i}", value, ok=False)
            if res.returncode != 0:
                refused = i
                break
        assert refused is not None and 5 <= refused, "the quota of 100,000 bytes was never reached"
        assert "etcdserver: mvcc: database space exceeded" in res.stderr
        assert ctl("alarm", "list").stdout.splitlines() == ["memberID:1 alarm:NOSPACE "]
        status = json.loads(ctl("endpoint", "status", "-w", "json").stdout)[0]["Status"]
        assert 90_000 <= status["dbSize"] < 100_000 and status["errors"] == ["memberID:1 alarm:NOSPACE "]
        assert ctl("put", "small", "1", ok=False).returncode != 0
        assert ctl("get", "k0", "--print-value-only").stdout.strip() == value
        # etcd's procedure: free space (delete, compact), defragment, disarm
        assert ctl("del", "k", "--prefix").stdout.strip() == str(refused)
        revision = json.loads(ctl("endpoint", "status", "-w", "json").stdout)[0]["Status"]["header"]["revision"]
        assert ctl("compact", str(revision)).stdout.strip() == f"compacted revision {revision}"
        assert ctl("defrag").stdout.strip() == f"Finished defragmenting etcd member[{endpoint}]"
        after = json.loads(ctl("endpoint", "status", "-w", "json").stdout)[0]["Status"]
        assert after.get("dbSize", 0) < 1000  # etcdctl leaves out a 0
        assert ctl("alarm", "disarm").stdout.splitlines() == ["memberID:1 alarm:NOSPACE "]
        assert ctl("alarm", "list").stdout == ""
        assert ctl("put", "small", "1").stdout.strip() == "OK"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
