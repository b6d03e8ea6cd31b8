"""`verikv cluster up|status|down` runs a real 3-process cluster: up waits for a leader and is
idempotent, status reports each node, down stops them, and mistakes give messages, not tracebacks.
Also `verikv serve`'s fail-stop: an fsync failure ends the process with a FATAL line and exit 71."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
import pytest

from verikv.etcdpb import rpc_pb2, rpc_pb2_grpc
from verikv.cluster.bench import leader_first

VERIKV = [sys.executable, "-m", "verikv.cli"]


def verikv(*args, timeout_s=60):
    return subprocess.run(VERIKV + list(args), capture_output=True, text=True, timeout=timeout_s)


@pytest.fixture
def data_dir(request):
    d = Path(f"/tmp/verikv-shim-clitest-{request.node.name}")
    subprocess.run(["rm", "-rf", str(d)], check=True)
    yield d
    verikv("cluster", "down", "--data-dir", str(d))


@pytest.mark.slow
def test_up_status_down(data_dir):
    up = verikv("cluster", "up", "--data-dir", str(data_dir), "--base-port", "25600")
    assert up.returncode == 0, up.stderr
    assert "leader: node" in up.stdout
    assert "client endpoints: 127.0.0.1:25600,127.0.0.1:25601,127.0.0.1:25602" in up.stdout

    with grpc.insecure_channel("127.0.0.1:25601") as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        assert kv.Put(rpc_pb2.PutRequest(key=b"k", value=b"v"), timeout=10).header.revision == 2
        assert kv.Range(rpc_pb2.RangeRequest(key=b"k"), timeout=10).kvs[0].value == b"v"

    st = verikv("cluster", "status", "--data-dir", str(data_dir), "--json")
    nodes = json.loads(st.stdout)["nodes"]
    assert sorted(n["role"] for n in nodes) == ["follower", "follower", "leader"]
    assert all(n["pid"] and n["committed_slot"] >= 1 for n in nodes)
    # the bench's loads start at the leader, whichever order the endpoints come in
    endpoints = [f"127.0.0.1:2560{i}" for i in range(3)]
    leader = endpoints[[n["role"] for n in nodes].index("leader")]
    assert leader_first(endpoints) == [leader] + [e for e in endpoints if e != leader]
    assert leader_first(endpoints[::-1])[0] == leader

    again = verikv("cluster", "up", "--data-dir", str(data_dir))
    assert again.returncode == 0 and again.stdout.count("already running") == 3

    os.kill(nodes[2]["pid"], signal.SIGKILL)  # one of the nodes this test started
    time.sleep(0.3)
    st = json.loads(verikv("cluster", "status", "--data-dir", str(data_dir), "--json").stdout)
    assert st["nodes"][2]["role"] == "stopped"
    healed = verikv("cluster", "up", "--data-dir", str(data_dir))
    assert healed.returncode == 0 and healed.stdout.count("already running") == 2, healed.stdout

    down = verikv("cluster", "down", "--data-dir", str(data_dir))
    assert down.returncode == 0 and down.stdout.count("stopped") == 3
    for n in nodes[:2]:
        assert not Path(f"/proc/{n['pid']}").exists() or "Z" in Path(f"/proc/{n['pid']}/stat").read_text()
    st = json.loads(verikv("cluster", "status", "--data-dir", str(data_dir), "--json").stdout)
    assert [n["role"] for n in st["nodes"]] == ["stopped"] * 3


@pytest.mark.slow
def test_status_watch_shows_each_nodes_slots_lag_proposal_rate_and_fsync_p99(data_dir):
    up = verikv("cluster", "up", "--data-dir", str(data_dir), "--base-port", "25620")
    assert up.returncode == 0, up.stderr
    watcher = subprocess.Popen(VERIKV + ["cluster", "status", "--data-dir", str(data_dir), "--watch", "0.5",
                                         "--count", "6", "--json"], stdout=subprocess.PIPE, text=True)
    with grpc.insecure_channel("127.0.0.1:25620") as ch:  # writes while it watches
        kv = rpc_pb2_grpc.KVStub(ch)
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and watcher.poll() is None:
            kv.Put(rpc_pb2.PutRequest(key=b"k", value=b"v"), timeout=10)
    out, _ = watcher.communicate(timeout=60)
    assert watcher.returncode == 0
    snaps = [json.loads(line)["nodes"] for line in out.splitlines()]
    assert len(snaps) == 6
    assert all(n["proposals_per_s"] is None for n in snaps[0])  # no interval yet
    later = [n for snap in snaps[1:] for n in snap]
    assert sorted(n["role"] for n in snaps[-1]) == ["follower", "follower", "leader"]
    assert all(n["apply_lag"] is not None and n["apply_lag"] >= 0 for n in later)
    assert any(n["proposals_per_s"] and n["proposals_per_s"] > 0 for n in later)
    assert any(isinstance(n["fsync_p99_ms"], float) and n["fsync_p99_ms"] > 0 for n in later)
    text = verikv("cluster", "status", "--data-dir", str(data_dir), "--watch", "0.2", "--count", "2")
    assert text.returncode == 0 and text.stdout.count("proposals/s") == 2 and "fsync p99" in text.stdout
    bad = verikv("cluster", "status", "--data-dir", str(data_dir), "--watch", "0")
    assert bad.returncode == 1 and "--watch takes a positive number" in bad.stderr


@pytest.mark.slow
def test_up_passes_the_quota_to_every_node_and_keeps_it_for_restarts(data_dir):
    import urllib.request

    def quotas():
        out = []
        for i in range(3):
            deadline = time.monotonic() + 15
            while True:  # a node just (re)started serves its metrics a moment after `up` returns
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{25680 + 5 + i}/metrics", timeout=5) as resp:
                        text = resp.read().decode()
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"node {i} serves no metrics"
                    time.sleep(0.2)
            line = next(l for l in text.splitlines() if l.startswith("etcd_server_quota_backend_bytes "))
            out.append(float(line.split()[1]))
        return out

    up = verikv("cluster", "up", "--data-dir", str(data_dir), "--base-port", "25680", "--quota-backend-bytes", "4000")
    assert up.returncode == 0, up.stderr
    assert quotas() == [4000.0] * 3
    with grpc.insecure_channel("127.0.0.1:25680") as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        with pytest.raises(grpc.RpcError) as full:
            for i in range(100):
                kv.Put(rpc_pb2.PutRequest(key=b"k%d" % i, value=b"v" * 200), timeout=10)
        assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert full.value.details() == "etcdserver: mvcc: database space exceeded"
    pid = json.loads(verikv("cluster", "status", "--data-dir", str(data_dir), "--json").stdout)["nodes"][1]["pid"]
    os.kill(pid, signal.SIGKILL)  # one of the nodes this test started
    time.sleep(0.3)
    assert verikv("cluster", "up", "--data-dir", str(data_dir)).returncode == 0  # no flag: the kept quota
    assert quotas() == [4000.0] * 3


@pytest.mark.slow
def test_up_hands_serve_flags_to_every_node_and_keeps_them_for_restarts(data_dir):
    """`cluster up --auto-compaction-retention 10 --auth-max-failures 1
    --max-connections-per-client 2`: every node runs with them (history below the last 10
    revisions is compacted away; a second failed Authenticate for one name is refused without a
    check; an unmodified etcdctl, a client's third connection, is told why it is refused and
    exits 1, and the node counts it on /metrics), and a node started again by a plain `up` too.
    Ports 25640-25652."""
    def cmdlines():
        nodes = json.loads(verikv("cluster", "status", "--data-dir", str(data_dir), "--json").stdout)["nodes"]
        return [Path(f"/proc/{n['pid']}/cmdline").read_bytes().split(b"\0") for n in nodes]

    up = verikv("cluster", "up", "--data-dir", str(data_dir), "--base-port", "25640",
                "--auto-compaction-retention", "10", "--auth-max-failures", "1", "--max-connections-per-client", "2")
    assert up.returncode == 0, up.stderr
    for cmd in cmdlines():
        assert cmd[cmd.index(b"--auto-compaction-retention") + 1] == b"10"
        assert cmd[cmd.index(b"--auth-max-failures") + 1] == b"1"
        assert cmd[cmd.index(b"--max-connections-per-client") + 1] == b"2"
    endpoints = leader_first([f"127.0.0.1:{25640 + i}" for i in range(3)])
    with grpc.insecure_channel(endpoints[0]) as ch, \
            grpc.insecure_channel(endpoints[0], options=[("grpc.use_local_subchannel_pool", 1)]) as second:
        kv, auth = rpc_pb2_grpc.KVStub(ch), rpc_pb2_grpc.AuthStub(ch)
        kv.Put(rpc_pb2.PutRequest(key=b"first", value=b"v"), timeout=10)  # two connections open
        rpc_pb2_grpc.KVStub(second).Put(rpc_pb2.PutRequest(key=b"second", value=b"v"), timeout=10)
        third = subprocess.run(["etcdctl", "--endpoints", endpoints[0], "put", "third", "v"],
                               capture_output=True, text=True, timeout=30, env={**os.environ, "ETCDCTL_API": "3"})
        assert third.returncode == 1, third
        assert ("verikv: too many connections from 127.0.0.1: at most 2 per client "
                "(--max-connections-per-client)") in third.stderr
        node = int(endpoints[0].rsplit(":", 1)[1]) - 25640
        with urllib.request.urlopen(f"http://127.0.0.1:{25645 + node}/metrics", timeout=5) as resp:
            assert "verikv_client_connections_refused_total 1.0" in resp.read().decode()
        for i in range(30):
            kv.Put(rpc_pb2.PutRequest(key=b"k%d" % i, value=b"v"), timeout=10)
        deadline = time.monotonic() + 10
        while True:  # the leader checks every second whether a compaction is due
            try:
                kv.Range(rpc_pb2.RangeRequest(key=b"k0", revision=2), timeout=10)
            except grpc.RpcError as err:
                assert err.code() == grpc.StatusCode.OUT_OF_RANGE, err
                assert err.details() == "etcdserver: mvcc: required revision has been compacted"
                break
            assert time.monotonic() < deadline, "revision 2 never compacted"
            time.sleep(0.2)
        auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="root", password="rootpw"), timeout=10)
        auth.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"), timeout=10)
        auth.AuthEnable(rpc_pb2.AuthEnableRequest(), timeout=10)
        codes = []
        for _ in range(2):
            with pytest.raises(grpc.RpcError) as bad:
                auth.Authenticate(rpc_pb2.AuthenticateRequest(name="root", password="wrong"), timeout=10)
            codes.append(bad.value.code())
        assert codes == [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED]
    pid = json.loads(verikv("cluster", "status", "--data-dir", str(data_dir), "--json").stdout)["nodes"][2]["pid"]
    os.kill(pid, signal.SIGKILL)  # one of the nodes this test started
    time.sleep(0.3)
    assert verikv("cluster", "up", "--data-dir", str(data_dir)).returncode == 0  # no flag: the kept ones
    for cmd in cmdlines():
        assert b"--auto-compaction-retention" in cmd and b"--auth-max-failures" in cmd
        assert b"--max-connections-per-client" in cmd
    no_tls = verikv("cluster", "up", "--data-dir", str(data_dir), "--client-cert-allowed-hostname", "x")
    assert no_tls.returncode == 1 and "needs a cluster made with --tls" in no_tls.stderr


def test_the_p99_of_an_interval_is_read_from_the_histograms_difference():
    from verikv.cluster.top import p99_seconds
    before = [(0.001, 10.0), (0.002, 20.0), (0.004, 20.0), (float("inf"), 20.0)]
    after = [(0.001, 10.0), (0.002, 119.0), (0.004, 120.0), (float("inf"), 120.0)]
    assert p99_seconds(before, after) == 0.002  # 99 of the 100 new ones took at most 2 ms
    after[2] = (0.004, 122.0)
    after[3] = (float("inf"), 122.0)
    assert p99_seconds(before, after) == 0.004
    assert p99_seconds(after, after) is None


def test_errors_are_messages_not_tracebacks(tmp_path):
    missing = verikv("cluster", "status", "--data-dir", str(tmp_path / "none"))
    assert missing.returncode == 1 and "no cluster in" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "cluster.json").write_text('{"base_port": 25650, "size": 3}')
    clash = verikv("cluster", "up", "--data-dir", str(tmp_path / "c"), "--base-port", "25660")
    assert clash.returncode == 1 and "was set up with --base-port 25650" in clash.stderr
    bad = verikv("cluster", "sideways")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr and "Traceback" not in bad.stderr
    serve = verikv("serve", "--id", "5", "--peers", "127.0.0.1:25670", "--client-listen", "127.0.0.1:25671",
                   "--data-dir", str(tmp_path / "s"))
    assert serve.returncode == 2 and "--id 5 is not an index" in serve.stderr and "Traceback" not in serve.stderr


@pytest.mark.slow
def test_an_fsync_failure_stops_the_node_with_a_fatal_line(tmp_path):
    d = Path("/tmp/verikv-shim-fsyncfail")
    subprocess.run(["rm", "-rf", str(d)], check=True)
    proc = subprocess.Popen(VERIKV + ["serve", "--id", "0", "--peers", "127.0.0.1:25680",
                                      "--client-listen", "127.0.0.1:25681", "--data-dir", str(d),
                                      "--faulty-disk"], stderr=subprocess.PIPE, text=True)
    try:
        with grpc.insecure_channel("127.0.0.1:25681") as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            deadline = time.monotonic() + 20
            while True:  # a one-node cluster elects itself
                try:
                    kv.Put(rpc_pb2.PutRequest(key=b"a", value=b"1"), timeout=2)
                    break
                except grpc.RpcError:
                    assert time.monotonic() < deadline, "the node never served a put"
                    time.sleep(0.1)
            (d / "fail-fsync").touch()
            with pytest.raises(grpc.RpcError):
                kv.Put(rpc_pb2.PutRequest(key=b"a", value=b"2"), timeout=5)
        assert proc.wait(timeout=10) == 71
        err = proc.stderr.read()
        assert "FATAL WAL failed" in err and "injected fault" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_bench_runs_against_verikv_and_prints_figures(tmp_path):
    """Every load (leases and watches included) against a real cluster: figures and no errors."""
    out = subprocess.run([sys.executable, "-m", "verikv.cli", "bench", "--only", "verikv", "--duration-s", "0.5",
                          "--data-dir", str(tmp_path / "b"), "--base-port", "26700", "--json"],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    # the next round waits for the 16 KiB load's disk work to end, and says how long it took
    assert "round 1: after verikv's 16 KiB puts, the disk was quiet in" in out.stderr, out.stderr[-2000:]
    figures = json.loads(out.stdout)
    for load in ("put 1x1", "get 1x1", "put 2x64", "get 2x64", "mixed 2x64", "put-16KiB 2x64", "grant 2x64",
                 "keep-alive 1x128 leader", "keep-alive 1x128 follower", "keep-alive 64x8"):
        assert figures["verikv"][load]["ops"] > 0 and figures["verikv"][load]["errors"] == 0, (load, figures)
    # the memory of live leases: each node grew while 10,000 leases were granted
    assert 0 < figures["verikv"]["keep-alive 1x128 leader"]["lease_bytes"] < 100_000
    for watchers in (1, 100, 1000):  # every watcher got every put's event, once
        w = figures["verikv"][f"watch {watchers}"]
        assert w["puts"] > 0 and w["events"] == w["puts"] * watchers and w["errors"] == 0, (watchers, w)
        assert w["events_per_s"] > 0 and w["p50_ms"] <= w["p99_ms"]


def test_bench_loads_picks_loads_by_name_in_the_order_a_round_runs_them():
    from verikv.cluster.bench import load_names, pick_loads

    assert pick_loads("keep-alive-64x8, PUT-1x1,watch 100,put-16kib-2x64") == [
        "put 1x1", "watch 100", "keep-alive 64x8", "put-16KiB 2x64"]
    assert pick_loads(",".join(name.replace(" ", "-") for name in load_names())) == load_names()
    for bad in ("put-1x2", "", " , "):
        with pytest.raises(ValueError) as err:
            pick_loads(bad)
        assert "the loads are put-1x1, get-1x1," in str(err.value) and "keep-alive-1x128-follower" in str(err.value)
    with pytest.raises(ValueError, match="unknown load 'put-1x2'"):
        pick_loads("put-1x1,put-1x2")


def test_bench_refuses_unknown_loads_and_watch_loads_without_puts_before_starting_anything(tmp_path):
    """The refusals are argparse's: exit code 2, one line that says why, no cluster started."""
    for args, says in ((["--loads", "put-1x2"], "--loads: unknown load 'put-1x2'; the loads are put-1x1,"),
                       (["--loads", "watch-100", "--watch-put-rate", "0"], "--loads names a watch load"),
                       (["--loads", "put-1x1", "--big-store"], "--big-store does not run"),
                       (["--big-store", "--no-runtime-checks"], "--big-store runs with the runtime checks"),
                       (["--no-runtime-checks", "--tls"], "--no-runtime-checks runs without --tls")):
        out = subprocess.run([sys.executable, "-m", "verikv.cli", "bench", "--data-dir", str(tmp_path / "b"), *args],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and says in out.stderr and "Traceback" not in out.stderr, (args, out.stderr)
        assert not (tmp_path / "b").exists()


@pytest.mark.slow
def test_bench_loads_runs_only_those_and_reports_each_as_it_ends(tmp_path):
    """`--loads`: only the loads named run (figures for them alone, in the JSON and the tables),
    and each load's figures are on stderr as soon as it ends, with its round. Ports 28800-28812."""
    base = ["bench", "--only", "verikv", "--duration-s", "0.3", "--data-dir", str(tmp_path / "b"),
            "--base-port", "28800", "--loads", "get-1x1,keep-alive-64x8"]
    out = subprocess.run([sys.executable, "-m", "verikv.cli", *base, "--rounds", "2", "--json"],
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    figures = json.loads(out.stdout)["verikv"]
    assert sorted(figures) == ["get 1x1", "keep-alive 64x8"], figures
    assert all(f["ops"] > 0 and f["errors"] == 0 and f["rounds"] == 2 for f in figures.values()), figures
    progress = [line for line in out.stderr.splitlines() if line.startswith("round ")]
    assert [line.split(",")[0] for line in progress] == [
        "round 1/2: get 1x1", "round 1/2: keep-alive 64x8", "round 2/2: get 1x1", "round 2/2: keep-alive 64x8"]
    assert all(", verikv: " in line and " ops/s, p50 " in line and line.endswith(" 0 errors") for line in progress)
    tables = subprocess.run([sys.executable, "-m", "verikv.cli", *base], capture_output=True, text=True, timeout=240)
    assert tables.returncode == 0, tables.stderr[-2000:]
    rows = [line.split("  ")[0].strip() for line in tables.stdout.splitlines()[1:] if line.strip()]
    assert rows == ["get 1x1", "keep-alive 64x8"], tables.stdout  # no watch table, no other load


@pytest.mark.slow
def test_bench_no_runtime_checks_runs_a_verikv_without_them_beside_the_one_with_them(tmp_path):
    """`--no-runtime-checks`: the figures of verikv with its checks, as in every run, and of a
    second verikv cluster without them, in the same run, with the checks' cost as a ratio; only
    the second cluster's nodes say their checks are off. Ports 26100-26115 and 26200-26215."""
    base = ["bench", "--only", "verikv", "--duration-s", "0.3", "--data-dir", str(tmp_path / "b"),
            "--base-port", "26100", "--loads", "put-1x1", "--no-runtime-checks"]
    out = subprocess.run([sys.executable, "-m", "verikv.cli", *base, "--json"], capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr[-2000:]
    figures = json.loads(out.stdout)
    assert sorted(figures) == ["unchecked", "verikv"], figures
    checked, unchecked = figures["verikv"]["put 1x1"], figures["unchecked"]["put 1x1"]
    assert checked["ops"] > 0 and unchecked["ops"] > 0 and checked["errors"] == unchecked["errors"] == 0
    assert checked["ratio_vs_unchecked"] == pytest.approx(checked["ops_per_s"] / unchecked["ops_per_s"])
    assert "benchmarking unchecked at 127.0.0.1:26200" in out.stderr, out.stderr[-2000:]

    def checks_off(cluster: str) -> list[bool]:
        return ["runtime checks off (--no-runtime-checks)" in (tmp_path / "b" / cluster / f"node{i}.log").read_text()
                for i in range(3)]

    assert checks_off("verikv") == [False] * 3 and checks_off("verikv-unchecked") == [True] * 3
    tables = subprocess.run([sys.executable, "-m", "verikv.cli", *base], capture_output=True, text=True, timeout=240)
    assert tables.returncode == 0, tables.stderr[-2000:]
    assert "put 1x1                   checks " in tables.stdout, tables.stdout


def test_bench_medians_report_the_median_ratio_and_its_spread_over_rounds():
    from verikv.cluster.bench_report import medians

    def one(v_ops, e_ops):
        fig = lambda ops: {"ops": ops * 5, "ops_per_s": ops, "p50_ms": 1.0, "p99_ms": 2.0, "errors": 0}
        return {"verikv": {"get 2x64": fig(v_ops)}, "etcd": {"get 2x64": fig(e_ops)}}

    out = medians([one(100, 100), one(300, 100), one(120, 80)])
    got = out["verikv"]["get 2x64"]
    assert got["ratio_vs_etcd"] == 1.5 and got["ratio_range"] == [1.0, 3.0]
    assert got["ops_per_s"] == 120 and got["ops"] == 2600 and got["rounds"] == 3
    assert out["etcd"]["get 2x64"]["ops_per_s"] == 100 and "ratio_vs_etcd" not in out["etcd"]["get 2x64"]


@pytest.mark.slow
def test_bench_tls_runs_both_systems_over_tls_and_prints_ratios(tmp_path):
    """`bench --tls`: verikv and etcd both require client certificates, so a load without TLS,
    or without the client certificate, would count only errors; every load has figures, no
    errors, and a ratio. Ports 28200-28212 (verikv) and 28250-28255 (etcd)."""
    out = subprocess.run([sys.executable, "-m", "verikv.cli", "bench", "--tls", "--duration-s", "0.3",
                          "--watch-put-rate", "50", "--data-dir", str(tmp_path / "b"), "--base-port", "28200",
                          "--json"], capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "over TLS" in out.stderr and "Traceback" not in out.stderr
    figures = json.loads(out.stdout)
    for system in ("verikv", "etcd"):
        assert all(f["errors"] == 0 for f in figures[system].values()), figures[system]
    # (keep-alive 64x8 is left out: 64 streams' handshakes can outlast a 0.3 s load on this host)
    for load in ("put 1x1", "get 2x64", "grant 2x64", "keep-alive 1x128 leader", "keep-alive 1x128 follower",
                 "watch 100"):
        for system in ("verikv", "etcd"):
            f = figures[system][load]
            assert (f.get("ops") or f.get("events")) and f["errors"] == 0, (system, load, f)
        assert figures["verikv"][load]["ratio_vs_etcd"] > 0


@pytest.mark.slow
def test_bench_big_store_prints_memory_disk_and_restart_figures_for_both(tmp_path):
    """`bench --big-store` with a few keys: both systems loaded, every figure there and plausible
    (every node restarted and counted every key). Ports 28760-28772 (verikv), 28790-28795 (etcd)."""
    out = subprocess.run([sys.executable, "-m", "verikv.cli", "bench", "--big-store", "--keys", "3000",
                          "--data-dir", str(tmp_path / "b"), "--base-port", "28760", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    figures = json.loads(out.stdout)
    for system in ("verikv", "etcd"):
        f = figures[system]
        assert len(f["rss"]) == len(f["wal"]) == len(f["restart_s"]) == 3, f
        assert all(r > 10 * 2**20 for r in f["rss"] + f["rss_after_restart"]), f
        assert all(w > 3000 * 256 for w in f["wal"]), f  # every value went through each node's WAL
        # verikv's size is a measure of its applied state; etcd's is its bolt file's, which lags the
        # writes by its batched commits (one run saw 651,264 bytes after 3,000 values of 256 B)
        assert f["db_size"] > (3000 * 256 if system == "verikv" else 0), f
        assert all(0 < s <= t for s, t in zip(f["restart_s"], f["restart_linearizable_s"])), f
