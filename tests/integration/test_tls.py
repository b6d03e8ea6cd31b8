"""A real 3-node cluster with client and peer TLS (`verikv cluster up --tls`, real certificates from
its local CA): the real etcdctl and python3-etcd3 work with the cluster's client certificate; a
client without one, or speaking plain text, is refused at the handshake, before any handler (its
put never lands); a node started with another member's certificate is refused by its peers and
learns nothing, and the real member, restarted, catches up. Ports 28100-28112."""

import os
import shutil
import signal
import subprocess
import time

import grpc
import pytest

from integration_helpers import VERIKV, Cluster, ports_free, run_verikv
from verikv.etcdpb import rpc_pb2, rpc_pb2_grpc

ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
PYTHON = "/usr/bin/python3"  # Debian's, where python3-etcd3 is installed
BASE = 28100

pytestmark = pytest.mark.slow


@pytest.fixture
def tls_cluster(tmp_path):
    if not ports_free(BASE):
        pytest.fail(f"ports {BASE}..{BASE + 12} are in use")
    c = Cluster(tmp_path / "tls", BASE)
    res = run_verikv("cluster", "up", "--tls", "--data-dir", c.data_dir, "--base-port", BASE)
    assert res.returncode == 0, f"cluster up --tls failed:\n{res.stdout}\n{res.stderr}"
    c.flags = next(line.split(": ", 1)[1] for line in res.stdout.splitlines() if line.startswith("etcdctl flags: "))
    c.certs = c.data_dir / "certs"
    yield c
    c.down()


def etcdctl(flags: str, *args, ok=True):
    env = dict(os.environ, ETCDCTL_API="3")
    res = subprocess.run([ETCDCTL, *flags.split(), "--dial-timeout=3s", "--command-timeout=10s", *args],
                         capture_output=True, text=True, timeout=60, env=env)
    if ok:
        assert res.returncode == 0, f"etcdctl {' '.join(args)} -> {res.returncode}\n{res.stdout}{res.stderr}"
    return res


def test_etcdctl_with_the_client_certificate_and_refused_without(tls_cluster):
    c = tls_cluster
    assert "--cacert" in c.flags and "https://127.0.0.1:28100" in c.flags
    etcdctl(c.flags, "put", "greeting", "hello")
    assert etcdctl(c.flags, "get", "greeting", "--print-value-only").stdout.strip() == "hello"
    members = etcdctl(c.flags, "member", "list").stdout
    assert "https://127.0.0.1:28110" in members and "https://127.0.0.1:28100" in members
    assert etcdctl(c.flags, "endpoint", "status").stdout.count("3.4.0-verikv") == 3

    https = ",".join(f"https://{e}" for e in c.endpoints)
    no_cert = f"--endpoints {https} --cacert {c.certs / 'ca.pem'}"
    res = etcdctl(no_cert, "put", "sneaky", "1", ok=False)
    assert res.returncode != 0
    res = etcdctl(f"--endpoints {','.join(c.endpoints)}", "put", "sneaky", "2", ok=False)  # plain text
    assert res.returncode != 0
    assert etcdctl(c.flags, "get", "sneaky", "-w", "json").stdout.count('"kvs"') == 0  # never applied
    assert "peer did not return a certificate" in c.log(0)  # refused by TLS, before any call

    # the same with a Python gRPC client: refused at the handshake (UNAVAILABLE), not by a handler
    creds = grpc.ssl_channel_credentials(root_certificates=(c.certs / "ca.pem").read_bytes())
    with grpc.secure_channel(c.endpoints[0], creds) as ch:
        with pytest.raises(grpc.RpcError) as err:
            rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b"sneaky", value=b"3"), timeout=3)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE

    status = c.status()  # `cluster status` talks TLS with the client certificate
    assert sorted(n["role"] for n in status) == ["follower", "follower", "leader"]


ETCD3_SCRIPT = """
import json, sys, etcd3
host, port, ca, cert, key = sys.argv[1:]
c = etcd3.client(host=host, port=int(port), ca_cert=ca, cert_cert=cert, cert_key=key, timeout=10)
c.put("py/a", "1")
c.put("py/b", "2")
events, cancel = c.watch_prefix("py/w")
c.put("py/w1", "x")
ev = next(events)
cancel()
lease = c.lease(30)
c.put("py/leased", "l", lease=lease)
print(json.dumps({"get": c.get("py/a")[0].decode(),
                  "prefix": [v.decode() for v, _ in c.get_prefix("py/")],
                  "watch": [type(ev).__name__, ev.key.decode(), ev.value.decode()],
                  "lease": [k.decode() for k in lease.keys],
                  "members": sorted(m.name for m in c.members)}))
"""


def etcd3_installed() -> bool:
    return subprocess.run([PYTHON, "-c", "import etcd3"], capture_output=True).returncode == 0


@pytest.mark.skipif(not etcd3_installed(), reason="python3-etcd3 is not installed (./dev setup installs it)")
def test_python_etcd3_with_the_client_certificate(tls_cluster):
    import json
    c = tls_cluster
    host, port = c.endpoints[2].rsplit(":", 1)  # a follower or the leader: it must not matter
    run = subprocess.run([PYTHON, "-c", ETCD3_SCRIPT, host, port, str(c.certs / "ca.pem"),
                          str(c.certs / "client.pem"), str(c.certs / "client-key.pem")],
                         capture_output=True, text=True, timeout=90)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    assert seen == {"get": "1", "prefix": ["1", "2", "l", "x"], "watch": ["PutEvent", "py/w1", "x"],
                    "lease": ["py/leased"], "members": ["node0", "node1", "node2"]}


def test_a_node_with_another_members_certificate_is_refused_by_its_peers(tls_cluster):
    c = tls_cluster
    victim = 2
    pid = next(n["pid"] for n in c.status() if n["id"] == victim)
    os.kill(pid, signal.SIGTERM)
    c.wait_stopped(victim)
    etcdctl(c.flags, "put", "while-impostor", "1")

    cert, key, ca = c.certs / "node1.pem", c.certs / "node1-key.pem", c.certs / "ca.pem"
    tls_args = ["--cert-file", cert, "--key-file", key, "--trusted-ca-file", ca, "--peer-cert-file", cert,
                "--peer-key-file", key, "--peer-trusted-ca-file", ca, "--peer-client-cert-auth"]
    peers = ",".join(f"127.0.0.1:{BASE + 10 + i}" for i in range(3))
    log = open(c.data_dir / "impostor.log", "wb")
    impostor = subprocess.Popen(VERIKV + ["serve", "--id", str(victim), "--peers", peers, "--client-listen",
                                          c.endpoints[victim], "--data-dir", str(c.data_dir / "impostor"),
                                          *map(str, tls_args)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 20
        while not all("certificate does not name the member" in c.log(i) for i in (0, 1)):
            assert time.monotonic() < deadline, "the impostor's connections were not refused"
            assert impostor.poll() is None, (c.data_dir / "impostor.log").read_text()
            time.sleep(0.2)
        time.sleep(1.0)  # several election timeouts: it hears nothing and no one hears it
        impostor_flags = (f"--endpoints https://{c.endpoints[victim]} --cacert {ca} --cert {c.certs / 'client.pem'} "
                          f"--key {c.certs / 'client-key.pem'}")
        got = etcdctl(impostor_flags, "get", "while-impostor", "--consistency=s", "-w", "json")
        assert '"kvs"' not in got.stdout  # it learned nothing
        assert "does not name member 2" in c.log(0) or "does not name member 2" in c.log(1)
        assert "does not name this member (https://127.0.0.1:28112)" in (c.data_dir / "impostor.log").read_text()
        assert sorted(n["role"] for n in c.status() if n["id"] != victim) == ["follower", "leader"]
    finally:
        impostor.send_signal(signal.SIGTERM)
        impostor.wait(timeout=20)
        log.close()
    assert run_verikv("cluster", "up", "--data-dir", c.data_dir).returncode == 0  # the real node 2
    deadline = time.monotonic() + 20
    while True:
        got = etcdctl(c.flags.replace(",".join(f"https://{e}" for e in c.endpoints), f"https://{c.endpoints[victim]}"),
                      "get", "while-impostor", "--consistency=s", "--print-value-only", ok=False)
        if got.stdout.strip() == "1":
            break
        assert time.monotonic() < deadline, "the real node 2 did not catch up"
        time.sleep(0.3)


def test_auto_tls_serves_clients_over_tls_with_a_self_signed_certificate(tmp_path):
    """`--auto-tls --peer-auto-tls` on a one-node cluster: etcdctl reaches it over TLS only when told
    not to verify the certificate (nothing signed it), and not in plain text. Ports 28120-28121."""
    log = open(tmp_path / "node.log", "wb")
    node = subprocess.Popen(VERIKV + ["serve", "--id", "0", "--peers", "127.0.0.1:28120", "--client-listen",
                                      "127.0.0.1:28121", "--data-dir", str(tmp_path / "d"), "--auto-tls",
                                      "--peer-auto-tls"], stdout=log, stderr=log)
    try:
        flags = "--endpoints https://127.0.0.1:28121 --insecure-transport=false --insecure-skip-tls-verify"
        deadline = time.monotonic() + 20
        while etcdctl(flags, "put", "k", "v", ok=False).returncode != 0:
            assert time.monotonic() < deadline and node.poll() is None, (tmp_path / "node.log").read_text()
            time.sleep(0.3)
        assert etcdctl(flags, "get", "k", "--print-value-only").stdout.strip() == "v"
        unverified = etcdctl("--endpoints https://127.0.0.1:28121 --insecure-transport=false", "get", "k", ok=False)
        assert unverified.returncode != 0  # nothing signed its certificate
        assert etcdctl("--endpoints 127.0.0.1:28121", "get", "k", ok=False).returncode != 0  # plain text
        assert (tmp_path / "d" / "fixtures" / "client" / "cert.pem").exists()
        assert (tmp_path / "d" / "fixtures" / "peer" / "cert.pem").exists()
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=20)
        log.close()
