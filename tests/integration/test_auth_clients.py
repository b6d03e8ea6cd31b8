"""Users, roles and permissions on a real 3-node verikv cluster, with the real etcdctl
(`user`, `role`, `auth enable|disable`, `--user`) and python3-etcd3 (`user=`, `password=`, over
TLS as it needs): a token from one node is good on the others, a permission revoked on one node
holds on all, the auth state survives a restart of the whole cluster and `etcdctl snapshot save`
+ `verikv snapshot restore`, and no password is ever written to a node's disk or log in plain
text."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest

from integration_helpers import PORT_BLOCK, Cluster, ports_free, run_verikv
from verikv.etcdpb import rpc_pb2 as r, rpc_pb2_grpc

ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
SCENARIO = Path(__file__).with_name("etcd3_auth_scenario.py")
PYTHON = "/usr/bin/python3"  # Debian's, where python3-etcd3 is installed
BASE = 28660  # clients 28660-28662, peers 28670-28672; the restored cluster: 28680-28682, 28690-28692
TLS_BASE = 28600  # the TLS cluster: clients 28600-28602, peers 28610-28612
PASSWORDS = ("Root-Pw-7f3a", "Alice-Pw-91c2", "Alice-New-55e1")

pytestmark = pytest.mark.slow


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


def etcdctl(endpoints, *args, user=None, ok=True, stdin=None):
    env = dict(os.environ, ETCDCTL_API="3")
    cmd = [ETCDCTL, f"--endpoints={endpoints}", "--command-timeout=10s"]
    if user is not None:
        cmd.append(f"--user={user}")
    res = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60, env=env, input=stdin)
    if ok:
        assert res.returncode == 0, f"etcdctl {' '.join(args)} -> {res.returncode}\n{res.stdout}{res.stderr}"
    return res


def files_under(path: Path):
    for p in path.rglob("*"):
        if p.is_file():
            yield p


def test_etcdctl_and_python_etcd3_with_users_roles_and_permissions(clusters, tmp_path):
    root_pw, alice_pw, alice_new = PASSWORDS
    c = clusters(BASE, "auth")
    c.up()
    c.wait_leader()
    all_eps = ",".join(c.endpoints)
    root = f"root:{root_pw}"

    def ctl(*args, **kw):
        return etcdctl(all_eps, *args, **kw)

    # ---- users, roles, permissions with etcdctl ----
    assert "User root created" in ctl("user", "add", root).stdout
    ctl("role", "add", "root")
    ctl("user", "grant-role", "root", "root")
    ctl("user", "add", "alice", "--interactive=false", stdin=alice_pw + "\n")
    ctl("role", "add", "app")
    ctl("role", "grant-permission", "app", "readwrite", "app/", "--prefix")
    ctl("role", "grant-permission", "app", "read", "config")
    ctl("user", "grant-role", "alice", "app")
    assert ctl("user", "list").stdout.split() == ["alice", "root"]
    assert ctl("role", "list").stdout.split() == ["app", "root"]
    assert ctl("user", "get", "alice").stdout.split() == ["User:", "alice", "Roles:", "app"]
    role = ctl("role", "get", "app").stdout
    assert "[app/, app0) (prefix app/)" in role and "config" in role
    ctl("put", "config", "v1")
    assert "Authentication Enabled" in ctl("auth", "enable").stdout

    # ---- what a token lets its user do, on any node ----
    refused = ctl("get", "config", ok=False)
    assert refused.returncode != 0 and "etcdserver: user name is empty" in refused.stderr
    assert ctl("get", "config", user=root).stdout.split() == ["config", "v1"]
    ctl("put", "app/a", "1", user=f"alice:{alice_pw}")
    assert ctl("get", "app/", "--prefix", user=f"alice:{alice_pw}").stdout.split() == ["app/a", "1"]
    for args in (["put", "config", "v2"], ["put", "other", "x"], ["get", "other"], ["user", "list"],
                 ["del", "app/", "--from-key"]):
        res = ctl(*args, user=f"alice:{alice_pw}", ok=False)
        assert res.returncode != 0 and "etcdserver: permission denied" in res.stderr, (args, res.stderr)
    bad = ctl("get", "config", user="alice:wrong", ok=False)
    assert bad.returncode != 0 and "authentication failed, invalid user ID or password" in bad.stderr

    # a token from one node is good on every node
    with grpc.insecure_channel(f"127.0.0.1:{BASE}") as channel:
        got = rpc_pb2_grpc.AuthStub(channel).Authenticate(r.AuthenticateRequest(name="alice", password=alice_pw),
                                                         timeout=10)
    token = (("token", got.token),)
    for port in (BASE + 1, BASE + 2):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            got = rpc_pb2_grpc.KVStub(channel).Range(r.RangeRequest(key=b"app/a"), timeout=10, metadata=token)
            assert got.kvs[0].value == b"1"
            with pytest.raises(grpc.RpcError) as err:
                rpc_pb2_grpc.KVStub(channel).Put(r.PutRequest(key=b"config", value=b"x"), timeout=10,
                                                 metadata=token)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED

    # a permission revoked through one node holds for the token on every node
    etcdctl(c.endpoints[2], "role", "revoke-permission", "app", "config", user=root)
    for port in (BASE, BASE + 1, BASE + 2):
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.RpcError) as err:
                rpc_pb2_grpc.KVStub(channel).Range(r.RangeRequest(key=b"config"), timeout=10,
                                                   metadata=token)
            assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED, port
    # a new password voids the tokens handed out before it
    ctl("user", "passwd", "alice", "--interactive=false", user=root, stdin=alice_new + "\n")
    with grpc.insecure_channel(f"127.0.0.1:{BASE}") as channel:
        with pytest.raises(grpc.RpcError) as err:
            rpc_pb2_grpc.KVStub(channel).Range(r.RangeRequest(key=b"app/a"), timeout=10, metadata=token)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert err.value.details() == "etcdserver: invalid auth token"
    assert ctl("get", "app/a", user=f"alice:{alice_new}").stdout.split() == ["app/a", "1"]

    # ---- restart the whole cluster, then a snapshot into a new one: the auth state stays ----
    c.down()
    c.up()
    c.wait_leader()
    assert ctl("get", "config", ok=False).returncode != 0
    assert ctl("get", "app/a", user=f"alice:{alice_new}").stdout.split() == ["app/a", "1"]
    saved = tmp_path / "backup.db"
    denied = etcdctl(c.endpoints[0], "snapshot", "save", str(saved), user=f"alice:{alice_new}", ok=False)
    assert denied.returncode != 0 and "permission denied" in denied.stderr
    etcdctl(c.endpoints[0], "snapshot", "save", str(saved), user=root)
    c.down()
    restored = tmp_path / "restored"
    res = run_verikv("snapshot", "restore", str(saved), "--data-dir", str(restored))
    assert res.returncode == 0, res.stderr
    new = clusters(BASE + 2 * PORT_BLOCK, "restored")
    new.up()
    new.wait_leader()
    new_eps = ",".join(new.endpoints)
    assert etcdctl(new_eps, "get", "config", ok=False).returncode != 0
    assert etcdctl(new_eps, "user", "list", user=root).stdout.split() == ["alice", "root"]
    assert etcdctl(new_eps, "get", "app/a", user=f"alice:{alice_new}").stdout.split() == ["app/a", "1"]
    old_pw = etcdctl(new_eps, "get", "app/a", user=f"alice:{alice_pw}", ok=False)
    assert old_pw.returncode != 0 and "authentication failed" in old_pw.stderr
    assert "Authentication Disabled" in etcdctl(new_eps, "auth", "disable", user=root).stdout
    assert etcdctl(new_eps, "get", "config").stdout.split() == ["config", "v1"]
    new.down()

    # no password, in any form a client sent it, on any node's disk or in its log
    for base_dir in (c.data_dir, new.data_dir, saved.parent):
        for f in files_under(base_dir):
            data = f.read_bytes()
            for pw in PASSWORDS:
                assert pw.encode() not in data, f"{pw} in {f}"


def etcd3_installed() -> bool:
    return subprocess.run([PYTHON, "-c", "import etcd3"], capture_output=True).returncode == 0


@pytest.mark.skipif(not etcd3_installed(), reason="python3-etcd3 is not installed (./dev setup installs it)")
def test_python_etcd3_with_a_user_and_password_and_certificate_users(clusters):
    c = clusters(TLS_BASE, "tls")
    res = run_verikv("cluster", "up", "--tls", "--data-dir", c.data_dir, "--base-port", TLS_BASE)
    assert res.returncode == 0, f"cluster up --tls failed:\n{res.stdout}\n{res.stderr}"
    flags = next(line.split(": ", 1)[1] for line in res.stdout.splitlines() if line.startswith("etcdctl flags: "))
    certs = c.data_dir / "certs"
    c.wait_leader()

    def ctl(*args, user=None, ok=True):
        env = dict(os.environ, ETCDCTL_API="3")
        cmd = [ETCDCTL, *flags.split(), "--command-timeout=10s"] + ([f"--user={user}"] if user else [])
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
    run = subprocess.run([PYTHON, str(SCENARIO), "127.0.0.1", str(TLS_BASE + 1), "alice", "alicepw",
                          str(certs / "ca.pem"), str(certs / "client.pem"), str(certs / "client-key.pem")],
                         capture_output=True, text=True, timeout=90)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    assert seen["get"] == "2" and seen["config"] == "v1"
    assert seen["put config"] == ["PERMISSION_DENIED", "etcdserver: permission denied"]
    assert seen["wrong password"] == ["INVALID_ARGUMENT",
                                      "etcdserver: authentication failed, invalid user ID or password"]
    assert ctl("get", "app/b", user="root:rootpw").stdout.split() == ["app/b", "2"]
    # a call without a token is made as its client certificate's common name (etcd's rule when
    # clients must show a certificate): no user has that name yet, then one with the role app
    assert "etcdserver: permission denied" in ctl("get", "app/b", ok=False).stderr
    ctl("user", "add", "verikv client", "--no-password", user="root:rootpw")
    ctl("user", "grant-role", "verikv client", "app", user="root:rootpw")
    assert ctl("get", "app/b").stdout.split() == ["app/b", "2"]
    assert "etcdserver: permission denied" in ctl("put", "config", "x", ok=False).stderr
    assert "etcdserver: permission denied" in ctl("user", "list", ok=False).stderr
    assert ctl("user", "list", user="root:rootpw").stdout.splitlines() == ["alice", "root", "verikv client"]
