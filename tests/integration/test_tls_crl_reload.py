"""A --peer-crl-file replaced while the members run, on three real `verikv serve` nodes and on
three real etcd 3.4.23 members given the same certificates: nodes 0 and 1 start with CRLs that
revoke nothing, serve with node 2, and have their CRL files replaced by one revoking node 2's
certificate; node 2 alone is restarted (new connections). Neither 0 nor 1 is restarted: verikv's
refuse node 2 both ways and it learns no later write; etcd's refuse its incoming connections
(they read the CRL at each connection) but still connect to it, so it learns the writes (etcd
checks the CRL only when accepting, as with a CRL given at start). Ports 29260-29299."""

import os
import signal
import subprocess
import time

import pytest

from test_tls_revocation import Nodes, etcdctl
from verikv.cluster.certs import issue, make_ca, make_crl
from verikv.cluster.etcd import ETCD_BINARY

BASE = 29260  # verikv: clients 29260-29262, peers 29270-29272
ETCD_BASE = 29280  # etcd: clients 29280, 29282, 29284; peers 29281, 29283, 29285

pytestmark = pytest.mark.slow


@pytest.fixture
def files(tmp_path):
    d = tmp_path / "certs"
    ca = make_ca(d)
    f = {"ca": ca[0], "ca_pair": ca, "dir": d, "client": issue(d, "client", ca, "client")}
    for i in range(3):  # naming the member by IP (etcd's rule) and by URI (verikv's, for one host)
        f[i] = issue(d, f"v{i}", ca, "member", ["127.0.0.1"], [f"https://127.0.0.1:{BASE + 10 + i}"])
        f["etcd", i] = issue(d, f"e{i}", ca, "member", ["127.0.0.1"])
        f["crl", i] = make_crl(d / f"crl{i}.pem", ca, [])
    return f


def revoke_node2(f, cert):
    for i in (0, 1):
        make_crl(f["dir"] / "next.pem", f["ca_pair"], [cert]).replace(f["crl", i])


def wait_put(endpoints, f, key):
    deadline = time.monotonic() + 60
    while etcdctl(endpoints, f["ca"], *f["client"], "put", key, "v", ok=False).returncode != 0:
        assert time.monotonic() < deadline, f"no put of {key}"
        time.sleep(0.3)


def node2_has(endpoint, f, key) -> bool:
    got = etcdctl(endpoint, f["ca"], *f["client"], "get", key, "--consistency=s", "-w", "json", ok=False)
    return '"kvs"' in got.stdout


def test_verikv_refuses_the_member_once_its_crl_file_revokes_it(tmp_path, files):
    f = files
    n = Nodes(tmp_path, BASE)
    try:
        for i in range(3):
            n.start(i, f["ca"], *f[i], "--peer-crl-file", f["crl", i])
        https = ",".join(f"https://{e}" for e in n.endpoints[:2])
        wait_put(https, f, "before")
        deadline = time.monotonic() + 20
        while not node2_has(f"https://{n.endpoints[2]}", f, "before"):
            assert time.monotonic() < deadline, "node 2 did not learn the first write:\n" + n.log(2)
            time.sleep(0.3)
        revoke_node2(f, f[2][0])
        n.stop_one(2)
        n.start(2, f["ca"], *f[2], "--peer-crl-file", f["crl", 2])
        deadline = time.monotonic() + 20
        while not ("certificate revoked" in n.log(0) and "certificate revoked" in n.log(1)):
            assert time.monotonic() < deadline, "0 and 1 did not refuse node 2:\n" + n.log(0)
            time.sleep(0.3)
        wait_put(https, f, "after")
        time.sleep(2.0)  # several election timeouts
        assert node2_has(f"https://{n.endpoints[2]}", f, "before")
        assert not node2_has(f"https://{n.endpoints[2]}", f, "after")  # it learned nothing since
        assert "--peer-crl-file" in n.log(0) and "read again" in n.log(0)
        assert all(n.procs[i].poll() is None for i in range(3))
    finally:
        n.stop()


@pytest.mark.skipif(not os.access(ETCD_BINARY, os.X_OK), reason="etcd not installed (Debian etcd-server)")
def test_etcd_refuses_the_members_incoming_connections_once_its_crl_file_revokes_it(tmp_path, files):
    f = files
    peer = [f"https://127.0.0.1:{ETCD_BASE + 2 * i + 1}" for i in range(3)]
    client = [f"https://127.0.0.1:{ETCD_BASE + 2 * i}" for i in range(3)]
    initial = ",".join(f"e{i}={u}" for i, u in enumerate(peer))
    procs, logs = {}, {}

    def start(i, state):
        cert, key = map(str, f["etcd", i])
        logs[i] = tmp_path / f"e{i}.log"
        with open(logs[i], "ab") as log:
            procs[i] = subprocess.Popen(
                [ETCD_BINARY, "--name", f"e{i}", "--data-dir", str(tmp_path / f"e{i}"),
                 "--listen-client-urls", client[i], "--advertise-client-urls", client[i],
                 "--listen-peer-urls", peer[i], "--initial-advertise-peer-urls", peer[i],
                 "--initial-cluster", initial, "--initial-cluster-state", state,
                 "--initial-cluster-token", "crl-reload", "--cert-file", cert, "--key-file", key,
                 "--trusted-ca-file", str(f["ca"]), "--client-cert-auth", "--peer-cert-file", cert,
                 "--peer-key-file", key, "--peer-trusted-ca-file", str(f["ca"]), "--peer-client-cert-auth",
                 "--peer-crl-file", str(f["crl", i])], stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
    try:
        for i in range(3):
            start(i, "new")
        good = ",".join(client[:2])
        wait_put(good, f, "before")
        deadline = time.monotonic() + 20
        while not node2_has(client[2], f, "before"):
            assert time.monotonic() < deadline, "e2 did not learn the first write"
            time.sleep(0.3)
        revoke_node2(f, f["etcd", 2][0])
        procs[2].send_signal(signal.SIGTERM)
        procs[2].wait(timeout=20)
        start(2, "existing")
        deadline = time.monotonic() + 20
        while "revoked" not in logs[0].read_text(errors="replace") + logs[1].read_text(errors="replace"):
            assert time.monotonic() < deadline, "etcd's e0 and e1 did not refuse e2"
            time.sleep(0.3)
        wait_put(good, f, "after")
        deadline = time.monotonic() + 20
        while not node2_has(client[2], f, "after"):  # etcd still sends to it
            assert time.monotonic() < deadline, "e2 did not learn the later write"
            time.sleep(0.3)
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
