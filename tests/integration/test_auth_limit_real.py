"""The limit on failed Authenticate calls on a real `verikv serve` node, with the real etcdctl:
after --auth-max-failures wrong passwords for a user, etcdctl with the right one gets the
limit's message (no traceback), and gets in once the window has passed. A real etcd 3.4.23,
which has no such limit, lets the right password in at once: the difference the README states.
Ports 29250-29259."""

import os
import shutil
import signal
import subprocess
import time

import pytest

from integration_helpers import VERIKV
from verikv.cluster.etcd import ETCD_BINARY, start_etcd_cluster

ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"
CLIENT, PEER = 29250, 29251
ETCD_BASE = 29254  # one etcd member: client 29254, peer 29255
WINDOW_S = 3

pytestmark = pytest.mark.slow


def etcdctl(endpoint, *args, user=None):
    env = dict(os.environ, ETCDCTL_API="3")
    return subprocess.run([ETCDCTL, "--endpoints", endpoint, "--dial-timeout=3s", "--command-timeout=10s",
                           *(["--user", user] if user else []), *args],
                          capture_output=True, text=True, timeout=60, env=env)


def enable_auth(endpoint):
    for args in (("user", "add", "root:rootpw"), ("role", "add", "root"), ("user", "grant-role", "root", "root"),
                 ("auth", "enable")):
        res = etcdctl(endpoint, *args)
        assert res.returncode == 0, res


def wrong_then_right(endpoint, tries):
    for i in range(tries):
        res = etcdctl(endpoint, "get", "k", user=f"root:wrong{i}")
        assert res.returncode != 0 and "authentication failed, invalid user ID or password" in res.stderr, res
    return etcdctl(endpoint, "get", "k", user="root:rootpw")


def test_verikv_refuses_the_right_password_after_the_limits_failures(tmp_path):
    endpoint = f"127.0.0.1:{CLIENT}"
    logf = tmp_path / "node.log"
    with open(logf, "wb") as log:
        proc = subprocess.Popen(VERIKV + ["serve", "--id", "0", "--peers", f"127.0.0.1:{PEER}", "--client-listen",
                                          endpoint, "--data-dir", str(tmp_path / "node"), "--auth-max-failures", "3",
                                          "--auth-failure-window", str(WINDOW_S)],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while etcdctl(endpoint, "put", "k", "v").returncode != 0:
            assert proc.poll() is None and time.monotonic() < deadline, logf.read_text()
            time.sleep(0.3)
        enable_auth(endpoint)
        res = wrong_then_right(endpoint, 3)
        assert res.returncode != 0, res
        assert "verikv: too many failed authentications for user 'root' on this node (3 in 3 s)" in res.stderr
        assert "Traceback" not in res.stderr + logf.read_text()
        time.sleep(WINDOW_S + 0.5)
        res = etcdctl(endpoint, "get", "k", "--print-value-only", user="root:rootpw")
        assert res.returncode == 0 and res.stdout.strip() == "v", res
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(not os.access(ETCD_BINARY, os.X_OK), reason="etcd not installed (Debian etcd-server)")
def test_etcd_has_no_limit(tmp_path):
    with start_etcd_cluster(tmp_path / "etcd", 1, ETCD_BASE) as etcd:
        endpoint = etcd.client_endpoints[0]
        assert etcdctl(endpoint, "put", "k", "v").returncode == 0
        enable_auth(endpoint)
        res = wrong_then_right(endpoint, 3)
        assert res.returncode == 0 and "v" in res.stdout, res


@pytest.mark.parametrize("flag,value,message", [
    ("--auth-max-failures", "-1", "'-1' is not a count (0 or more)"),
    ("--auth-failure-window", "0", "'0' is not a number of seconds over 0"),
    ("--auth-failure-window", "nan", "'nan' is not a number of seconds over 0"),
    ("--max-concurrent-streams", "x", "'x' is not a number of streams"),
    ("--max-connections-per-client", "-1", "'-1' is not a number of connections"),
    ("--snapshot-count", "0", "'0' is not a number of slots (1 or more)"),
    ("--snapshot-count", "1e5", "'1e5' is not a number of slots (1 or more)"),
])
def test_serve_refuses_bad_limit_flags(tmp_path, flag, value, message):
    res = subprocess.run(VERIKV + ["serve", "--id", "0", "--peers", f"127.0.0.1:{PEER}", "--client-listen",
                                   f"127.0.0.1:{CLIENT}", "--data-dir", str(tmp_path / "d"), f"{flag}={value}"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, res
    assert not (tmp_path / "d" / "wal").exists()
