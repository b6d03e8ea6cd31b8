"""`verikv serve`'s TLS flags (etcd's names): what turns TLS on, and bad combinations, unreadable
files and bad PEM refused with one line and exit code 2 before the node starts."""

import subprocess
import sys
from pathlib import Path

import pytest

from verikv.cluster.certs import cluster_certs, make_ca, make_crl
from verikv.shim import serve
from verikv.shim.io import tls

_BIN = Path(sys.executable).parent / "verikv"
VERIKV = [str(_BIN)] if _BIN.exists() else [sys.executable, "-m", "verikv.cli"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    f = cluster_certs(d, [("127.0.0.1", 28190)])
    (d / "garbage.pem").write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    ca = (d / "ca.pem", d / "ca-key.pem")
    crl = make_crl(d / "crl.pem", ca, [f["client"][0]])
    foreign_crl = make_crl(d / "foreign-crl.pem", make_ca(d / "other"), [])
    expired_crl = make_crl(d / "expired-crl.pem", ca, [], valid_days=-1)
    return {"ca": str(f["ca"]), "cert": str(f["nodes"][0][0]), "key": str(f["nodes"][0][1]),
            "other_key": str(f["client"][1]), "garbage": str(d / "garbage.pem"), "dir": d, "crl": str(crl),
            "foreign_crl": str(foreign_crl), "expired_crl": str(expired_crl)}


def args(tmp_path, *flags):
    return serve.build_parser().parse_args(["--id", "0", "--peers", "127.0.0.1:28190", "--client-listen",
                                            "127.0.0.1:28191", "--data-dir", str(tmp_path), *flags])


def test_no_flags_no_tls(tmp_path):
    a = args(tmp_path)
    assert tls.client_tls(a) is None and tls.peer_tls(a, "127.0.0.1") is None


def test_client_tls_from_the_flags(tmp_path, files):
    c = tls.client_tls(args(tmp_path, "--cert-file", files["cert"], "--key-file", files["key"]))
    assert c.cert_pem.startswith(b"-----BEGIN CERTIFICATE") and b"PRIVATE KEY" in c.key_pem
    assert c.ca_pem == b"" and not c.client_cert_auth
    c = tls.client_tls(args(tmp_path, "--cert-file", files["cert"], "--key-file", files["key"],
                            "--trusted-ca-file", files["ca"], "--client-cert-auth"))
    assert c.ca_pem.startswith(b"-----BEGIN CERTIFICATE") and c.client_cert_auth


def test_auto_tls_makes_a_self_signed_certificate_once(tmp_path):
    c = tls.client_tls(args(tmp_path, "--auto-tls"))
    assert (tmp_path / "fixtures" / "client" / "cert.pem").read_bytes() == c.cert_pem
    assert tls.client_tls(args(tmp_path, "--auto-tls")).cert_pem == c.cert_pem  # reused
    p = tls.peer_tls(args(tmp_path, "--peer-auto-tls"), "127.0.0.1")
    assert not p.verify_server and not p.client_cert_auth
    assert (tmp_path / "fixtures" / "peer" / "key.pem").stat().st_mode & 0o077 == 0


def test_peer_tls_from_the_flags(tmp_path, files):
    p = tls.peer_tls(args(tmp_path, "--peer-cert-file", files["cert"], "--peer-key-file", files["key"],
                          "--peer-trusted-ca-file", files["ca"], "--peer-client-cert-auth"), "127.0.0.1")
    assert p.verify_server and p.client_cert_auth


CLIENT_AUTH = ["--cert-file", "{cert}", "--key-file", "{key}", "--trusted-ca-file", "{ca}", "--client-cert-auth"]
PEER_AUTH = ["--peer-cert-file", "{cert}", "--peer-key-file", "{key}", "--peer-trusted-ca-file", "{ca}",
             "--peer-client-cert-auth"]


def test_a_client_certificate_is_checked_against_the_crl_now_in_its_file(tmp_path, files):
    """--client-crl-file: the front's check refuses a certificate the CRL revokes, and reads the
    file again when it changes (a replaced CRL revokes, or stops revoking, without a restart)."""
    from verikv.cluster.certs import issue
    d, ca = files["dir"], (files["dir"] / "ca.pem", files["dir"] / "ca-key.pem")
    alice, bob = issue(tmp_path, "alice", ca, "alice")[0], issue(tmp_path, "bob", ca, "bob")[0]
    crl = make_crl(tmp_path / "crl.pem", ca, [alice])
    c = tls.client_tls(args(tmp_path, *[f.format(**files) for f in CLIENT_AUTH], "--client-crl-file", str(crl)))
    assert c.check == c.refusal
    assert "is revoked by --client-crl-file" in c.refusal(alice.read_bytes(), alice.read_bytes())
    assert c.refusal(bob.read_bytes(), bob.read_bytes()) == ""
    make_crl(tmp_path / "new.pem", ca, [bob]).replace(crl)  # revoke bob, not alice, while running
    assert "is revoked by --client-crl-file" in c.refusal(bob.read_bytes(), bob.read_bytes())
    assert c.refusal(alice.read_bytes(), alice.read_bytes()) == ""
    crl.write_text("not a CRL")  # a bad file: everyone refused (etcd refuses when it cannot read it)
    assert "is not a PEM certificate revocation list" in c.refusal(alice.read_bytes(), alice.read_bytes())
    crl.unlink()
    assert "cannot read it" in c.refusal(alice.read_bytes(), alice.read_bytes())
    assert tls.client_tls(args(tmp_path, *[f.format(**files) for f in CLIENT_AUTH])).check is None


@pytest.mark.parametrize("allowed,sans,ok", [
    ("client.example", ["client.example"], True),
    ("CLIENT.example.", ["client.example"], True),
    ("client.example", ["other.example"], False),
    ("a.client.example", ["*.client.example"], True),
    ("a.b.client.example", ["*.client.example"], False),
    ("127.0.0.1", ["127.0.0.1"], True),
    ("127.0.0.2", ["127.0.0.1"], False),
    ("::1", ["::1"], True),
    ("client.example", [], False),  # the common name is not looked at (Go's rule)
])
def test_client_cert_allowed_hostname_is_gos_verify_hostname_on_the_sans(tmp_path, files, allowed, sans, ok):
    from verikv.cluster.certs import issue
    ca = (files["dir"] / "ca.pem", files["dir"] / "ca-key.pem")
    leaf = issue(tmp_path, "c", ca, "client.example", sans)[0].read_bytes()
    c = tls.client_tls(args(tmp_path, *[f.format(**files) for f in CLIENT_AUTH],
                            "--client-cert-allowed-hostname", allowed))
    assert c.check == c.refusal
    why = c.refusal(leaf, leaf)
    assert (why == "") == ok
    if not ok:
        assert why == f"its certificate is not valid for --client-cert-allowed-hostname {allowed!r}"


def test_peer_contexts_are_made_again_when_the_crl_file_changes(tmp_path, files):
    """--peer-crl-file: the contexts are kept while the file stays, made again when it is
    replaced; while it is not a usable CRL, connecting fails with the reason and accepting
    answers the ClientHello with an alert (no traceback)."""
    import shutil
    import ssl
    crl = tmp_path / "crl.pem"
    shutil.copy(files["crl"], crl)
    p = tls.peer_tls(args(tmp_path, *[f.format(**files) for f in PEER_AUTH], "--peer-crl-file", str(crl)),
                     "127.0.0.1")
    first = p.client_context()
    assert p.client_context() is first
    ca = (files["dir"] / "ca.pem", files["dir"] / "ca-key.pem")
    make_crl(tmp_path / "new.pem", ca, []).replace(crl)
    second = p.client_context()
    assert second is not first and second.verify_flags & ssl.VERIFY_CRL_CHECK_LEAF

    class Hello:
        context = p.server
    hello = Hello()
    assert p._on_client_hello(hello, None, p.server) is None and hello.context is not p.server  # the new one
    crl.write_text("garbage")
    with pytest.raises(tls.TLSConfigError, match="is not a PEM certificate revocation list"):
        p.client_context()
    assert p._on_client_hello(Hello(), None, p.server) == ssl.ALERT_DESCRIPTION_ACCESS_DENIED


BAD = [
    (["--cert-file", "{cert}"], "--cert-file needs --key-file"),
    (["--key-file", "{key}"], "--key-file needs --cert-file"),
    (["--client-cert-auth", "--auto-tls"], "--client-cert-auth needs --trusted-ca-file"),
    (["--trusted-ca-file", "{ca}"], "--trusted-ca-file needs --cert-file and --key-file (or --auto-tls)"),
    (["--cert-file", "{dir}/missing.pem", "--key-file", "{key}"], "--cert-file {dir}/missing.pem: cannot read it"),
    (["--cert-file", "{garbage}", "--key-file", "{key}"], "are not a PEM certificate and its private key"),
    (["--cert-file", "{cert}", "--key-file", "{other_key}"], "are not a PEM certificate and its private key"),
    (["--cert-file", "{cert}", "--key-file", "{key}", "--trusted-ca-file", "{garbage}"], "holds no PEM certificate"),
    (["--peer-cert-file", "{cert}"], "--peer-cert-file needs --peer-key-file"),
    (["--peer-client-cert-auth", "--peer-auto-tls"], "--peer-client-cert-auth needs --peer-trusted-ca-file"),
    (["--peer-client-cert-auth", "--peer-auto-tls", "--peer-trusted-ca-file", "{ca}"],
     "--peer-client-cert-auth needs --peer-cert-file and --peer-key-file"),
    (["--peer-cert-file", "{cert}", "--peer-key-file", "{key}", "--peer-trusted-ca-file", "{dir}"],
     "--peer-trusted-ca-file {dir}: cannot read it"),
    (["--cert-file", "{cert}", "--key-file", "{key}", "--trusted-ca-file", "{ca}", "--client-crl-file", "{crl}"],
     "--client-crl-file needs --client-cert-auth"),
    (CLIENT_AUTH + ["--client-crl-file", "{dir}/missing.pem"], "--client-crl-file {dir}/missing.pem: cannot read it"),
    (CLIENT_AUTH + ["--client-crl-file", "{garbage}"], "is not a PEM certificate revocation list"),
    (CLIENT_AUTH + ["--client-crl-file", "{ca}"], "is not a PEM certificate revocation list"),
    (CLIENT_AUTH + ["--client-crl-file", "{foreign_crl}"],
     "--client-crl-file {foreign_crl} is not signed by a CA of --trusted-ca-file {ca}"),
    (CLIENT_AUTH + ["--client-crl-file", "{expired_crl}"], "(its nextUpdate): every certificate would be refused"),
    (["--cert-file", "{cert}", "--key-file", "{key}", "--trusted-ca-file", "{ca}",
      "--client-cert-allowed-hostname", "x"], "--client-cert-allowed-hostname needs --client-cert-auth"),
    (["--peer-cert-file", "{cert}", "--peer-key-file", "{key}", "--peer-trusted-ca-file", "{ca}",
      "--peer-crl-file", "{crl}"], "--peer-crl-file needs --peer-client-cert-auth"),
    (["--peer-cert-allowed-cn", "x"], "--peer-cert-allowed-cn needs --peer-client-cert-auth"),
    (["--peer-cert-allowed-hostname", "x"], "--peer-cert-allowed-hostname needs --peer-client-cert-auth"),
    (PEER_AUTH + ["--peer-cert-allowed-cn", "a", "--peer-cert-allowed-hostname", "b"],
     "--peer-cert-allowed-cn and --peer-cert-allowed-hostname are mutually exclusive (cn='a', hostname='b')"),
    (PEER_AUTH + ["--peer-crl-file", "{foreign_crl}"],
     "--peer-crl-file {foreign_crl} is not signed by a CA of --peer-trusted-ca-file {ca}"),
    (PEER_AUTH + ["--peer-crl-file", "{garbage}"], "is not a PEM certificate revocation list"),
]


@pytest.mark.parametrize("flags,message", BAD)
def test_bad_tls_flags_are_refused_with_one_line(tmp_path, files, flags, message):
    flags = [f.format(**files) for f in flags]
    with pytest.raises(tls.TLSConfigError) as err:
        a = args(tmp_path, *flags)
        tls.client_tls(a)
        tls.peer_tls(a, "127.0.0.1")
    assert message.format(**files) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("flags,message", [BAD[0], BAD[5], BAD[9], BAD[13], BAD[15], BAD[18], BAD[23]])
def test_serve_exits_2_with_one_line_for_bad_tls_flags(tmp_path, files, flags, message):
    flags = [f.format(**files) for f in flags]
    res = subprocess.run(VERIKV + ["serve", "--id", "0", "--peers", "127.0.0.1:28190", "--client-listen",
                                   "127.0.0.1:28191", "--data-dir", str(tmp_path / "d"), *flags],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("verikv serve: ") and message.format(**files) in res.stderr
    assert not (tmp_path / "d" / "wal").exists()  # refused before the node started


def test_a_certificate_files_names_are_read_as_a_peer_shows_them(files):
    names = tls.file_names(files["cert"])  # node 0's, for 127.0.0.1:28190
    assert ("URI", "https://127.0.0.1:28190") in names["subjectAltName"]
    assert tls.names_member(names, "127.0.0.1", 28190) and not tls.names_member(names, "127.0.0.1", 28191)
    assert tls.file_names(files["ca"]) == {}  # the CA names no one
