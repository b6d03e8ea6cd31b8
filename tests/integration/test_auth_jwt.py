"""`--auth-token jwt,...` on real clusters (`verikv cluster up --auth-token`), keys made with the
`openssl` command:
- the real etcdctl (`--user`) and python3-etcd3 (`user=`, `password=`) authenticate and work; the
  JWT one node handed out is taken by the others, and by the nodes again after the whole cluster
  restarted (nothing about it was held in memory); a change of the auth state voids it;
- against etcd 3.4.23 run with the same flag and the same keys: bad flags stop both with etcd's
  error text; the same answers (gRPC code and message) for a good, a tampered, a foreign, an
  old-revision and an expired token (an Authenticate sent with the expired one included); and
  each one's tokens are taken by the other (same claims, same key, same auth revisions)."""

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import grpc
import pytest

from integration_helpers import PORT_BLOCK, Cluster, ports_free, run_verikv
from verikv.cluster.etcd import ETCD_BINARY, EtcdUnavailable, start_etcd_cluster
from verikv.etcdpb import rpc_pb2 as r, rpc_pb2_grpc as g
from verikv.shim.io import auth_token

ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
SCENARIO = Path(__file__).with_name("etcd3_auth_scenario.py")
PYTHON = "/usr/bin/python3"  # Debian's, where python3-etcd3 is installed
TLS_BASE = 29020  # clients 29020-29022, metrics 29025-29027, peers 29030-29032
PLAIN_BASE = 29040  # clients 29040-29042, metrics 29045-29047, peers 29050-29052
ETCD_BASE = 29060  # one etcd member: client 29060, peer 29061; etcd refusing a flag: 29062, 29063

INVALID = (grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")
DENIED = (grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")
OLD = (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: revision of auth store is old")

pytestmark = pytest.mark.slow


def openssl(*args):
    res = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr


@pytest.fixture
def rsa_keys(tmp_path):
    key, pub = tmp_path / "jwt.key", tmp_path / "jwt.pub"
    openssl("genrsa", "-out", str(key), "2048")
    openssl("rsa", "-in", str(key), "-pubout", "-out", str(pub))
    other = tmp_path / "other.key"
    openssl("genrsa", "-out", str(other), "2048")
    return key, pub, other


@pytest.fixture
def clusters(tmp_path):
    made: list[Cluster] = []

    def make(base: int, name: str) -> Cluster:
        if not ports_free(base):
            pytest.fail(f"ports {base}..{base + PORT_BLOCK} are in use")
        c = Cluster(tmp_path / name, base)
        made.append(c)
        return c

    yield make
    for c in made:
        c.down()


def claims(token: str) -> dict:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def failure(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except grpc.RpcError as err:
        return err.code(), err.details()
    return None


def etcd3_installed() -> bool:
    return subprocess.run([PYTHON, "-c", "import etcd3"], capture_output=True).returncode == 0


@pytest.mark.skipif(not etcd3_installed(), reason="python3-etcd3 is not installed (./dev setup installs it)")
def test_etcdctl_and_python_etcd3_with_jwt_tokens_on_every_node(clusters, rsa_keys):
    key, pub, _ = rsa_keys
    flag = f"jwt,pub-key={pub},priv-key={key},sign-method=RS256"
    c = clusters(TLS_BASE, "jwt")
    res = run_verikv("cluster", "up", "--tls", "--auth-token", flag, "--data-dir", c.data_dir,
                     "--base-port", TLS_BASE)
    assert res.returncode == 0, f"cluster up failed:\n{res.stdout}\n{res.stderr}"
    flags = next(line.split(": ", 1)[1] for line in res.stdout.splitlines() if line.startswith("etcdctl flags: "))
    certs = c.data_dir / "certs"
    c.wait_leader()

    def ctl(*args, user=None, ok=True, endpoint=None):
        env = dict(os.environ, ETCDCTL_API="3")
        cmd = [ETCDCTL, *flags.split(), "--command-timeout=10s"] + ([f"--user={user}"] if user else [])
        if endpoint is not None:
            cmd.append(f"--endpoints=https://{endpoint}")
        done = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60, env=env)
        if ok:
            assert done.returncode == 0, f"etcdctl {' '.join(args)}: {done.stdout}{done.stderr}"
        return done

    ctl("user", "add", "root:rootpw")
    ctl("role", "add", "root")
    ctl("user", "grant-role", "root", "root")
    ctl("user", "add", "alice:alicepw")
    ctl("role", "add", "app")
    ctl("role", "grant-permission", "app", "readwrite", "app/", "--prefix")
    ctl("role", "grant-permission", "app", "read", "config")
    ctl("user", "grant-role", "alice", "app")
    ctl("put", "config", "v1")
    ctl("auth", "enable")
    for i, ep in enumerate(c.endpoints):  # etcdctl --user on each node: each hands out and takes a JWT
        ctl("put", f"app/{i}", f"v{i}", user="alice:alicepw", endpoint=ep)
        assert ctl("get", f"app/{i}", user="root:rootpw", endpoint=ep).stdout.split() == [f"app/{i}", f"v{i}"]
    assert "etcdserver: permission denied" in ctl("put", "config", "x", user="alice:alicepw", ok=False).stderr
    assert "authentication failed" in ctl("get", "config", user="alice:wrong", ok=False).stderr

    run = subprocess.run([PYTHON, str(SCENARIO), "127.0.0.1", str(TLS_BASE + 1), "alice", "alicepw",
                          str(certs / "ca.pem"), str(certs / "client.pem"), str(certs / "client-key.pem")],
                         capture_output=True, text=True, timeout=90)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    assert seen["get"] == "2" and seen["config"] == "v1"
    assert seen["put config"] == ["PERMISSION_DENIED", "etcdserver: permission denied"]
    assert seen["wrong password"] == ["INVALID_ARGUMENT",
                                      "etcdserver: authentication failed, invalid user ID or password"]
    token = seen["token"]
    assert claims(token)["username"] == "alice"  # a JWT: user, auth revision, exp
    assert set(claims(token)) == {"username", "revision", "exp"}

    from verikv.cluster.cli import client_channel  # the nodes' TLS, as the CLI reaches them

    conf = json.loads((c.data_dir / "cluster.json").read_text())
    assert conf["auth_token"] == flag

    def read_with(token, i):
        with client_channel(c.data_dir, conf, i) as ch:
            return g.KVStub(ch).Range(r.RangeRequest(key=b"app/b"), timeout=10, metadata=(("token", token),))

    for i in (0, 2):  # node 1 handed it out; the others take it
        assert read_with(token, i).kvs[0].value == b"2"
    # the whole cluster restarts: a JWT needs no node's memory
    c.down()
    c.up()
    c.wait_leader()
    for i in range(3):
        assert read_with(token, i).kvs[0].value == b"2"
    ctl("role", "grant-permission", "app", "read", "other", user="root:rootpw")
    for i in range(3):
        for _ in range(100):
            got = failure(read_with, token, i)
            if got is not None:
                break
            time.sleep(0.05)
        assert got == OLD
    assert ctl("get", "app/b", user="alice:alicepw").stdout.split() == ["app/b", "2"]  # a new token


SETUP = [("UserAdd", r.AuthUserAddRequest(name="root", password="rootpw")),
         ("RoleAdd", r.AuthRoleAddRequest(name="root")),
         ("UserGrantRole", r.AuthUserGrantRoleRequest(user="root", role="root")),
         ("UserAdd", r.AuthUserAddRequest(name="bob", password="bobpw")),
         ("AuthEnable", r.AuthEnableRequest())]


def test_jwt_answers_as_etcd_does_and_tokens_cross_over(clusters, rsa_keys, tmp_path):
    if not os.access(ETCD_BINARY, os.X_OK):
        pytest.skip(f"{ETCD_BINARY} is not installed (Debian's etcd-server)")
    key, pub, other = rsa_keys
    flag = f"jwt,pub-key={pub},priv-key={key},sign-method=RS256,ttl=3s"
    c = clusters(PLAIN_BASE, "verikv")
    res = run_verikv("cluster", "up", "--auth-token", flag, "--data-dir", c.data_dir, "--base-port", PLAIN_BASE)
    assert res.returncode == 0, f"cluster up failed:\n{res.stdout}\n{res.stderr}"
    c.wait_leader()
    try:
        etcd = start_etcd_cluster(tmp_path / "etcd", 1, ETCD_BASE, extra_args=("--auth-token", flag))
    except EtcdUnavailable as err:
        pytest.fail(str(err))
    try:
        v_ch, e_ch = grpc.insecure_channel(c.endpoints[0]), grpc.insecure_channel(etcd.client_endpoints[0])
        sides = {"verikv": v_ch, "etcd": e_ch}
        for ch in sides.values():
            for method, req in SETUP:
                getattr(g.AuthStub(ch), method)(req, timeout=10)
            g.KVStub(ch).Put(r.PutRequest(key=b"k", value=b"v"), timeout=10, metadata=(
                ("token", g.AuthStub(ch).Authenticate(r.AuthenticateRequest(name="root", password="rootpw"),
                                                      timeout=10).token),))

        def answers(token_of_side) -> dict:
            """Per side: a Range and a Put with the token token_of_side(side) gives."""
            out = {}
            for side, ch in sides.items():
                md = (("token", token_of_side(side)),)
                kv = g.KVStub(ch)
                out[side] = (failure(kv.Range, r.RangeRequest(key=b"k"), timeout=10, metadata=md),
                             failure(kv.Put, r.PutRequest(key=b"k", value=b"w"), timeout=10, metadata=md))
            return out

        tokens = {side: g.AuthStub(ch).Authenticate(r.AuthenticateRequest(name="root", password="rootpw"),
                                                    timeout=10).token for side, ch in sides.items()}
        v_claims, e_claims = claims(tokens["verikv"]), claims(tokens["etcd"])
        assert set(v_claims) == set(e_claims) == {"username", "revision", "exp"}
        assert v_claims["revision"] == e_claims["revision"] and v_claims["username"] == e_claims["username"]
        assert abs(v_claims["exp"] - e_claims["exp"]) <= 2
        assert tokens["verikv"].split(".")[0] == tokens["etcd"].split(".")[0]  # the same JWS header
        got = answers(lambda side: tokens[side])
        assert got["verikv"] == got["etcd"] == (None, None)
        # each takes the other's token: same key, same claims, same auth revision
        got = answers(lambda side: tokens["etcd" if side == "verikv" else "verikv"])
        assert got["verikv"] == got["etcd"] == (None, None)

        def tampered(side):
            head, body, sig = tokens[side].split(".")
            return f"{head}.{body}.{sig[:-6]}{'AAAAAA' if sig[-6:] != 'AAAAAA' else 'BBBBBB'}"

        got = answers(tampered)
        assert got["verikv"] == got["etcd"] == (INVALID, INVALID)
        foreign = auth_token.parse(f"jwt,priv-key={other},sign-method=RS256").make("root", v_claims["revision"])
        got = answers(lambda side: foreign)
        assert got["verikv"] == got["etcd"] == (INVALID, INVALID)
        bob = {side: g.AuthStub(ch).Authenticate(r.AuthenticateRequest(name="bob", password="bobpw"),
                                                 timeout=10).token for side, ch in sides.items()}
        got = answers(lambda side: bob[side])  # a user without a role
        assert got["verikv"] == got["etcd"] == (DENIED, DENIED)
        for ch in sides.values():  # an auth change: tokens made before it are old
            g.AuthStub(ch).RoleAdd(r.AuthRoleAddRequest(name="later"), timeout=10,
                                   metadata=(("token", tokens["verikv"]),))
        got = answers(lambda side: tokens[side])
        assert got["verikv"] == got["etcd"] == (OLD, OLD)
        fresh = {side: g.AuthStub(ch).Authenticate(r.AuthenticateRequest(name="root", password="rootpw"),
                                                   timeout=10).token for side, ch in sides.items()}
        time.sleep(4.5)  # ttl 3s: expired
        got = answers(lambda side: fresh[side])
        assert got["verikv"] == got["etcd"] == (INVALID, INVALID)
        # Authenticate sent with the expired token (as a client still holding it may): refused alike
        again = {side: failure(g.AuthStub(ch).Authenticate, r.AuthenticateRequest(name="root", password="rootpw"),
                               timeout=10, metadata=(("token", fresh[side]),))
                 for side, ch in sides.items()}
        assert again["verikv"] == again["etcd"] == INVALID
        v_ch.close()
        e_ch.close()
    finally:
        etcd.stop()


@pytest.mark.parametrize("flag,etcd_says", [
    ("jwt", "auth: invalid auth options"),
    ("jwt,sign-method=RS256", "auth: missing key data"),
    ("jwt,priv-key={dir}/missing.pem,sign-method=RS256", "auth: invalid auth options"),
    ("jwt,priv-key={dir}/jwt.key,sign-method=XS256", "auth: invalid auth options"),
    ("jwt,priv-key={dir}/jwt.key,sign-method=HS256,sign-method=HS256", "auth: invalid auth options"),
])
def test_a_bad_auth_token_stops_verikv_and_etcd_alike(tmp_path, rsa_keys, flag, etcd_says):
    if not os.access(ETCD_BINARY, os.X_OK):
        pytest.skip(f"{ETCD_BINARY} is not installed (Debian's etcd-server)")
    flag = flag.format(dir=tmp_path)
    peer, client = "http://127.0.0.1:29063", "http://127.0.0.1:29062"
    etcd = subprocess.run([ETCD_BINARY, "--data-dir", str(tmp_path / "etcd"), "--listen-client-urls", client,
                           "--advertise-client-urls", client, "--listen-peer-urls", peer,
                           "--initial-advertise-peer-urls", peer, "--initial-cluster", f"default={peer}",
                           "--auth-token", flag], capture_output=True, text=True, timeout=60)
    assert etcd.returncode != 0 and f"etcdmain: {etcd_says}" in etcd.stderr, etcd.stderr[-2000:]
    res = run_verikv("serve", "--id", "0", "--peers", "127.0.0.1:29065", "--client-listen", "127.0.0.1:29064",
                     "--data-dir", tmp_path / "verikv", "--auth-token", flag)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and etcd_says in res.stderr, res
