"""etcd's revocation and peer-identity flags on real nodes: a client certificate that
--client-crl-file revokes is refused at the handshake by a real node (the real etcdctl and a
Python gRPC client fail; a certificate it does not revoke works), a member whose certificate
--peer-crl-file revokes, or whose certificate lacks --peer-cert-allowed-cn, is refused by its
peers while the two good nodes go on serving, and a real etcd 3.4.23 started with the same flags
and certificates refuses the same certificates. Certificates and CRLs from python3-cryptography.
Ports 29130-29199."""

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from integration_helpers import VERIKV, Cluster, ports_free, run_verikv
from verikv.cluster.certs import cluster_certs, issue, make_ca, make_crl
from verikv.cluster.etcd import ETCD_BINARY, start_etcd_cluster
from verikv.etcdpb import rpc_pb2, rpc_pb2_grpc

ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
CLUSTER_BASE = 29130  # cluster up: 29130-29142
SERVE_BASE = 29150  # verikv serve: clients 29150-29152, peers 29160-29162
ETCD_BASE = 29180  # etcd: 29180-29181 (one member), 29186-29191 (three)

pytestmark = pytest.mark.slow


def etcdctl(endpoints: str, ca, cert, key, *args, ok=True):
    env = dict(os.environ, ETCDCTL_API="3")
    res = subprocess.run([ETCDCTL, "--endpoints", endpoints, "--cacert", str(ca), "--cert", str(cert), "--key",
                          str(key), "--dial-timeout=3s", "--command-timeout=10s", *args],
                         capture_output=True, text=True, timeout=60, env=env)
    if ok:
        assert res.returncode == 0, f"etcdctl {' '.join(args)} -> {res.returncode}\n{res.stdout}{res.stderr}"
    return res


def grpc_put(endpoint: str, ca, cert, key, k: bytes) -> grpc.StatusCode:
    creds = grpc.ssl_channel_credentials(Path(ca).read_bytes(), Path(key).read_bytes(), Path(cert).read_bytes())
    with grpc.secure_channel(endpoint, creds) as ch:
        try:
            rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=k, value=b"1"), timeout=3)
        except grpc.RpcError as err:
            return err.code()
    return grpc.StatusCode.OK


# ---- the client port: verikv cluster up --tls --client-crl-file ----

def test_a_revoked_client_certificate_is_refused_by_a_real_node(tmp_path):
    if not ports_free(CLUSTER_BASE):
        pytest.fail(f"ports {CLUSTER_BASE}..{CLUSTER_BASE + 12} are in use")
    c = Cluster(tmp_path / "c", CLUSTER_BASE)
    certs = c.data_dir / "certs"
    files = cluster_certs(certs, [("127.0.0.1", CLUSTER_BASE + 10 + i) for i in range(3)])  # cluster up reuses them
    ca = (files["ca"], certs / "ca-key.pem")
    revoked = issue(certs, "revoked", ca, "revoked client")
    crl = make_crl(tmp_path / "crl.pem", ca, [revoked[0]])
    res = run_verikv("cluster", "up", "--tls", "--client-crl-file", crl, "--data-dir", c.data_dir,
                     "--base-port", CLUSTER_BASE)
    try:
        assert res.returncode == 0, f"cluster up failed:\n{res.stdout}\n{res.stderr}"
        https = ",".join(f"https://{e}" for e in c.endpoints)
        good = files["client"]
        etcdctl(https, files["ca"], *good, "put", "greeting", "hello")
        got = etcdctl(https, files["ca"], *good, "get", "greeting", "--print-value-only")
        assert got.stdout.strip() == "hello"
        res = etcdctl(https, files["ca"], *revoked, "put", "sneaky", "1", ok=False)
        assert res.returncode != 0
        for e in c.endpoints:  # every node, leader or not
            assert grpc_put(e, files["ca"], *revoked, b"sneaky") == grpc.StatusCode.UNAVAILABLE
            assert grpc_put(e, files["ca"], *good, b"fine") == grpc.StatusCode.OK
        got = etcdctl(https, files["ca"], *good, "get", "sneaky", "-w", "json")
        assert '"kvs"' not in got.stdout  # never applied
        assert all("is revoked by --client-crl-file" in c.log(i) for i in range(3))
        # kept for restarts: a node restarted by `cluster up` still refuses it
        os.kill(next(n["pid"] for n in c.status() if n["id"] == 0), signal.SIGTERM)
        c.wait_stopped(0)
        assert run_verikv("cluster", "up", "--data-dir", c.data_dir).returncode == 0
        deadline = time.monotonic() + 20
        while grpc_put(c.endpoints[0], files["ca"], *good, b"fine") != grpc.StatusCode.OK:
            assert time.monotonic() < deadline, "the restarted node does not serve the good certificate"
            time.sleep(0.3)
        assert grpc_put(c.endpoints[0], files["ca"], *revoked, b"sneaky") == grpc.StatusCode.UNAVAILABLE
        assert "is revoked by --client-crl-file" in c.log(0).split("node 0 serving clients")[-1]
    finally:
        c.down()


def test_cluster_up_refuses_a_crl_without_tls(tmp_path):
    res = run_verikv("cluster", "up", "--client-crl-file", tmp_path / "crl.pem", "--data-dir", tmp_path / "c",
                     "--base-port", CLUSTER_BASE)
    assert res.returncode != 0 and "--client-crl-file needs a cluster made with --tls" in res.stderr
    assert "Traceback" not in res.stderr


# ---- the peer port: verikv serve --peer-crl-file / --peer-cert-allowed-cn ----

class Nodes:
    """Three `verikv serve` processes with explicit flags."""

    def __init__(self, d: Path, base: int = SERVE_BASE):
        self.d, self.procs, self.logs = d, {}, {}
        self.peers = ",".join(f"127.0.0.1:{base + 10 + i}" for i in range(3))
        self.endpoints = [f"127.0.0.1:{base + i}" for i in range(3)]

    def start(self, i: int, ca, cert, key, *flags):
        tls = ["--cert-file", cert, "--key-file", key, "--trusted-ca-file", ca, "--client-cert-auth",
               "--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", ca, "--peer-client-cert-auth"]
        self.logs[i] = self.d / f"node{i}.log"
        with open(self.logs[i], "ab") as log:
            self.procs[i] = subprocess.Popen(
                VERIKV + ["serve", "--id", str(i), "--peers", self.peers, "--client-listen", self.endpoints[i],
                          "--data-dir", str(self.d / f"node{i}"), *map(str, tls), *map(str, flags)],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL)

    def log(self, i: int) -> str:
        return self.logs[i].read_text(errors="replace")

    def stop_one(self, i: int):
        self.procs[i].send_signal(signal.SIGTERM)
        self.procs[i].wait(timeout=20)

    def stop(self):
        for p in self.procs.values():
            p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def status(endpoint, ca, cert, key):
    creds = grpc.ssl_channel_credentials(Path(ca).read_bytes(), Path(key).read_bytes(), Path(cert).read_bytes())
    with grpc.secure_channel(endpoint, creds) as ch:
        try:
            return rpc_pb2_grpc.MaintenanceStub(ch).Status(rpc_pb2.StatusRequest(), timeout=2)
        except grpc.RpcError:
            return None


@pytest.fixture(scope="module")
def member_certs(tmp_path_factory):
    """Certificates naming each member (URI https://127.0.0.1:PEER_PORT and IP 127.0.0.1) with CN
    'verikv member'; node 2's also revoked by crl.pem, and one for node 2 with CN 'intruder'."""
    d = tmp_path_factory.mktemp("member-certs")
    ca = make_ca(d)
    f = {"ca": ca[0]}
    for i in range(3):
        port = SERVE_BASE + 10 + i
        f[i] = issue(d, f"node{i}", ca, "verikv member", ["127.0.0.1"], [f"https://127.0.0.1:{port}"])
    port = SERVE_BASE + 12
    f["revoked"] = issue(d, "node2-revoked", ca, "verikv member", ["127.0.0.1"], [f"https://127.0.0.1:{port}"])
    f["intruder"] = issue(d, "node2-intruder", ca, "intruder", ["127.0.0.1"], [f"https://127.0.0.1:{port}"])
    f["client"] = issue(d, "client", ca, "client")
    f["crl"] = make_crl(d / "crl.pem", ca, [f["revoked"][0]])
    return f


@pytest.mark.parametrize("case", ["revoked", "intruder"])
def test_a_revoked_or_wrong_cn_member_is_refused_and_the_two_good_nodes_serve(tmp_path, member_certs, case):
    f = member_certs
    flags = ["--peer-crl-file", f["crl"]] if case == "revoked" else ["--peer-cert-allowed-cn", "verikv member"]
    n = Nodes(tmp_path)
    try:
        n.start(0, f["ca"], *f[0], *flags)
        n.start(1, f["ca"], *f[1], *flags)
        n.start(2, f["ca"], *f[case], *flags)
        https = ",".join(f"https://{e}" for e in n.endpoints[:2])
        deadline = time.monotonic() + 30
        while etcdctl(https, f["ca"], *f["client"], "put", "k", "v", ok=False).returncode != 0:
            assert time.monotonic() < deadline, "the two good nodes did not serve a put:\n" + n.log(0)
            assert all(p.poll() is None for p in n.procs.values()), n.log(0) + n.log(2)
            time.sleep(0.3)
        why = "certificate revoked" if case == "revoked" else "its certificate's CN is 'intruder'"
        deadline = time.monotonic() + 20
        while not (why in n.log(0) and why in n.log(1)):
            assert time.monotonic() < deadline, f"{why!r} not in the good nodes' logs:\n{n.log(0)}"
            time.sleep(0.2)
        time.sleep(1.0)  # several election timeouts
        for i in range(3):  # the good nodes serve and agree; node 2 is in no one's cluster
            etcdctl(https, f["ca"], *f["client"], "put", f"k{i}", "v")
        s = [status(e, f["ca"], *f["client"]) for e in n.endpoints]
        assert s[0] and s[1] and s[0].leader in (s[0].header.member_id, s[1].header.member_id)
        assert s[0].leader == s[1].leader and s[2] is not None and s[2].leader == 0 and s[2].raftIndex == 0
        got = etcdctl(f"https://{n.endpoints[2]}", f["ca"], *f["client"], "get", "k", "--consistency=s",
                      "-w", "json")
        assert '"kvs"' not in got.stdout  # it learned nothing
    finally:
        n.stop()


# ---- the same certificates and flags on a real etcd 3.4.23 ----

@pytest.mark.skipif(not os.access(ETCD_BINARY, os.X_OK), reason="etcd not installed (Debian etcd-server)")
def test_etcd_refuses_the_same_revoked_client_certificate(tmp_path, member_certs):
    f = member_certs
    tls = {"ca": f["ca"], "members": [f[0]], "client": f["client"]}
    with start_etcd_cluster(tmp_path / "etcd", 1, ETCD_BASE, tls=tls,
                            extra_args=("--client-crl-file", str(f["crl"]))) as etcd:
        endpoint = f"https://{etcd.client_endpoints[0]}"
        etcdctl(endpoint, f["ca"], *f["client"], "put", "k", "v")
        assert etcdctl(endpoint, f["ca"], *f["revoked"], "put", "sneaky", "1", ok=False).returncode != 0
        assert grpc_put(etcd.client_endpoints[0], f["ca"], *f["revoked"], b"sneaky") == grpc.StatusCode.UNAVAILABLE
        assert grpc_put(etcd.client_endpoints[0], f["ca"], *f["client"], b"fine") == grpc.StatusCode.OK
        assert '"kvs"' not in etcdctl(endpoint, f["ca"], *f["client"], "get", "sneaky", "-w", "json").stdout


ETCD_PEERS_BASE = 29186  # 3 etcd members: clients 29186, 29188, 29190; peers 29187, 29189, 29191


@pytest.mark.skipif(not os.access(ETCD_BINARY, os.X_OK), reason="etcd not installed (Debian etcd-server)")
@pytest.mark.parametrize("case", ["revoked", "intruder"])
def test_etcd_refuses_the_same_member_and_its_two_good_members_serve(tmp_path, member_certs, case):
    """The certificates and flags of the verikv test above, on three etcd 3.4.23 members: its
    good members refuse the third's connections too, and serve. With --peer-cert-allowed-cn the
    third learns nothing, as on verikv. With --peer-crl-file it does learn the writes: etcd checks
    the CRL only when accepting a connection, and its good members still connect to the revoked
    one (verikv checks it both ways, above)."""
    f = member_certs
    flags = ["--peer-crl-file", str(f["crl"])] if case == "revoked" else ["--peer-cert-allowed-cn", "verikv member"]
    peer = [f"https://127.0.0.1:{ETCD_PEERS_BASE + 2 * i + 1}" for i in range(3)]
    client = [f"https://127.0.0.1:{ETCD_PEERS_BASE + 2 * i}" for i in range(3)]
    initial = ",".join(f"e{i}={u}" for i, u in enumerate(peer))
    procs, logs = [], []
    try:
        for i, pair in enumerate([f[0], f[1], f[case]]):
            cert, key = map(str, pair)
            logs.append(tmp_path / f"e{i}.log")
            with open(logs[-1], "wb") as log:
                procs.append(subprocess.Popen(
                    [ETCD_BINARY, "--name", f"e{i}", "--data-dir", str(tmp_path / f"e{i}"),
                     "--listen-client-urls", client[i], "--advertise-client-urls", client[i],
                     "--listen-peer-urls", peer[i], "--initial-advertise-peer-urls", peer[i],
                     "--initial-cluster", initial, "--initial-cluster-state", "new",
                     "--initial-cluster-token", f"crl-{case}", "--cert-file", cert, "--key-file", key,
                     "--trusted-ca-file", str(f["ca"]), "--client-cert-auth", "--peer-cert-file", cert,
                     "--peer-key-file", key, "--peer-trusted-ca-file", str(f["ca"]), "--peer-client-cert-auth",
                     *flags], stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL))
        good = ",".join(client[:2])
        deadline = time.monotonic() + 60
        while etcdctl(good, f["ca"], *f["client"], "put", "k", "v", ok=False).returncode != 0:
            assert time.monotonic() < deadline, "etcd's two good members did not serve a put"
            time.sleep(0.5)
        etcdctl(good, f["ca"], *f["client"], "put", "k2", "v")
        time.sleep(1.0)
        got = etcdctl(client[2], f["ca"], *f["client"], "get", "k", "--consistency=s", "-w", "json", ok=False)
        if case == "intruder":
            assert '"kvs"' not in got.stdout  # the refused member learned nothing
        else:
            assert '"kvs"' in got.stdout  # etcd still sends to it
        why = "revoked" if case == "revoked" else "client certificate authentication failed"
        assert why in logs[0].read_text(errors="replace") + logs[1].read_text(errors="replace")
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
