"""etcd's --client-cert-allowed-hostname, and a --client-crl-file replaced while the node runs,
on a real `verikv serve` and on a real etcd 3.4.23 given the same certificates and flags: a
client whose certificate is valid for the host is served, one whose certificate is not is
refused at the handshake, by both; once the CRL file is replaced by one revoking the served
client, its next connection is refused without a restart, and served again once a CRL without
it replaces that one, by both. Real certificates (python3-cryptography), real TLS, real gRPC
clients. Ports 29220-29239."""

import os
import signal
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from integration_helpers import VERIKV
from verikv.cluster.certs import issue, make_ca, make_crl
from verikv.cluster.etcd import ETCD_BINARY, start_etcd_cluster
from verikv.etcdpb import rpc_pb2, rpc_pb2_grpc

VERIKV_CLIENT, VERIKV_PEER = 29220, 29221
ETCD_BASE = 29230  # one etcd member: client 29230, peer 29231

pytestmark = pytest.mark.slow


def put(endpoint: str, ca, cert, key, k: bytes) -> grpc.StatusCode:
    """A Put over a new connection (so a new TLS handshake)."""
    creds = grpc.ssl_channel_credentials(Path(ca).read_bytes(), Path(key).read_bytes(), Path(cert).read_bytes())
    with grpc.secure_channel(endpoint, creds) as ch:
        try:
            rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=k, value=b"1"), timeout=3)
        except grpc.RpcError as err:
            return err.code()
    return grpc.StatusCode.OK


@pytest.fixture
def certs(tmp_path):
    d = tmp_path / "certs"
    ca = make_ca(d)
    return {"ca": ca[0], "ca_pair": ca, "dir": d,
            "server": issue(d, "server", ca, "server", ["127.0.0.1", "localhost"]),
            "named": issue(d, "named", ca, "named", ["app.example"]),
            "other": issue(d, "other", ca, "other", ["other.example"]),
            "crl": make_crl(d / "crl.pem", ca, [])}


def replace_crl(f, revoked):
    make_crl(f["dir"] / "next-crl.pem", f["ca_pair"], revoked).replace(f["crl"])


def behaviour(endpoint, f, log=lambda: "") -> list:
    """What the node does: the named client served, the other refused; then the named client's
    certificate revoked by a new CRL file, and unrevoked by another."""
    seen = [("named", put(endpoint, f["ca"], *f["named"], b"a")), ("other", put(endpoint, f["ca"], *f["other"], b"b"))]
    replace_crl(f, [f["named"][0]])
    seen.append(("named, revoked", put(endpoint, f["ca"], *f["named"], b"c")))
    replace_crl(f, [f["other"][0]])
    seen.append(("named, no longer revoked", put(endpoint, f["ca"], *f["named"], b"d")))
    return seen


EXPECTED = [("named", grpc.StatusCode.OK), ("other", grpc.StatusCode.UNAVAILABLE),
            ("named, revoked", grpc.StatusCode.UNAVAILABLE), ("named, no longer revoked", grpc.StatusCode.OK)]
FLAGS = ["--client-cert-allowed-hostname", "app.example"]


def test_verikv_checks_the_hostname_and_the_crl_now_in_its_file(tmp_path, certs):
    f = certs
    endpoint = f"127.0.0.1:{VERIKV_CLIENT}"
    server = [str(p) for p in f["server"]]
    logf = tmp_path / "node.log"
    with open(logf, "wb") as log:
        proc = subprocess.Popen(VERIKV + [
            "serve", "--id", "0", "--peers", f"127.0.0.1:{VERIKV_PEER}", "--client-listen", endpoint,
            "--data-dir", str(tmp_path / "node"), "--cert-file", server[0], "--key-file", server[1],
            "--trusted-ca-file", str(f["ca"]), "--client-cert-auth", "--client-crl-file", str(f["crl"]), *FLAGS],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while put(endpoint, f["ca"], *f["named"], b"ready") != grpc.StatusCode.OK:
            assert proc.poll() is None and time.monotonic() < deadline, logf.read_text()
            time.sleep(0.3)
        assert behaviour(endpoint, f) == EXPECTED
        text = logf.read_text()
        assert "its certificate is not valid for --client-cert-allowed-hostname 'app.example'" in text
        assert "is revoked by --client-crl-file" in text and "Traceback" not in text
        assert proc.poll() is None  # the same process throughout: no restart
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(not os.access(ETCD_BINARY, os.X_OK), reason="etcd not installed (Debian etcd-server)")
def test_etcd_does_the_same_with_the_same_certificates_and_flags(tmp_path, certs):
    f = certs
    tls = {"ca": f["ca"], "members": [f["server"]], "client": f["named"]}
    with start_etcd_cluster(tmp_path / "etcd", 1, ETCD_BASE, tls=tls,
                            extra_args=("--client-crl-file", str(f["crl"]), *FLAGS)) as etcd:
        assert behaviour(etcd.client_endpoints[0], f) == EXPECTED


def test_serve_refuses_the_hostname_flag_without_client_cert_auth(tmp_path, certs):
    server = [str(p) for p in certs["server"]]
    res = subprocess.run(VERIKV + ["serve", "--id", "0", "--peers", f"127.0.0.1:{VERIKV_PEER}", "--client-listen",
                                   f"127.0.0.1:{VERIKV_CLIENT}", "--data-dir", str(tmp_path / "d"), "--cert-file",
                                   server[0], "--key-file", server[1], *FLAGS],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "--client-cert-allowed-hostname needs --client-cert-auth" in res.stderr
