"""The limit on failed Authenticate calls (shim/api/auth_limit.py): the rule on a fake clock, and
on an in-process 3-node cluster with its client servers: after the limit's failures for a name,
the right password is answered RESOURCE_EXHAUSTED and no password is checked (no bcrypt), other
names are not affected, and the name is let in again once its failures leave the window.
Ports 29240-29246."""

import asyncio

import grpc
import pytest_asyncio

from verikv.etcdpb import rpc_pb2 as r, rpc_pb2_grpc as g
from verikv.shim.api import servicer
from verikv.shim.api.auth_limit import FailureLimit

from test_auth_server import failure, setup_users
from test_node import start_cluster, stop_node

PEERS = 29240 - 25300  # peers 29240-29242 (test_node's BASE_PORT + this)
CLIENTS = 29244  # clients 29244-29246
WINDOW_S = 1.5


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_the_rule_on_a_fake_clock():
    clock = Clock()
    limit = FailureLimit(3, 60, clock)
    for _ in range(3):
        assert limit.admit("alice") is None
        limit.done("alice", False)
        clock.now += 1
    err = limit.admit("alice")
    assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.message == ("verikv: too many failed authentications for user 'alice' on this node (3 in 60 s): "
                           "try again in 57 s")
    assert limit.admit("bob") is None  # another name is not affected
    limit.done("bob", True)
    clock.now += 57  # the first failure leaves the window: one more check
    assert limit.admit("alice") is None
    limit.done("alice", True)  # the right password: its failures are forgotten
    for _ in range(3):
        assert limit.admit("alice") is None
        limit.done("alice", False)
    assert limit.admit("alice") is not None and limit.refused == 2


def test_checks_still_running_count_and_a_user_without_password_is_not_a_failure():
    limit = FailureLimit(2, 60, Clock())
    assert limit.admit("x") is None and limit.admit("x") is None
    assert limit.admit("x") is not None  # two checks running: a third would be beyond the limit
    limit.done("x", None)
    limit.done("x", None)
    assert limit.admit("x") is None  # neither counted as a failure


def test_no_limit_and_names_guessed_at_random_do_not_pile_up():
    clock = Clock()
    off = FailureLimit(0, 60, clock)
    for _ in range(100):
        assert off.admit("a") is None
        off.done("a", False)
    limit = FailureLimit(1, 60, clock)
    for i in range(5000):
        assert limit.admit(f"name{i}") is None
        limit.done(f"name{i}", False)
        clock.now += 0.1  # 600 names a minute
    assert len(limit._failures) < 1300


@pytest_asyncio.fixture
async def servers(tmp_path):
    nodes = await start_cluster(tmp_path, PEERS)
    urls = [f"127.0.0.1:{CLIENTS + i}" for i in range(3)]
    started = []
    for n in nodes:
        s = servicer.build_server(n, urls[n.node_id], urls, ["http://peer"] * 3, auth_max_failures=3,
                                  auth_failure_window_s=WINDOW_S)
        await s.start()
        started.append(s)
    channels = [grpc.aio.insecure_channel(u) for u in urls]
    yield nodes, channels
    for c in channels:
        await c.close()
    for s in started:
        await s.stop(None)
    for n in nodes:
        await stop_node(n)


async def test_beyond_the_limit_the_right_password_is_refused_without_bcrypt(servers, monkeypatch):
    nodes, channels = servers
    auth = g.AuthStub(channels[0])
    await setup_users(auth)
    checks = []
    real = servicer._password_matches

    def counted(password, hashed):
        checks.append(password)
        return real(password, hashed)
    monkeypatch.setattr(servicer, "_password_matches", counted)

    def login(name, pw, channel=channels[0]):
        return failure(g.AuthStub(channel).Authenticate(r.AuthenticateRequest(name=name, password=pw), timeout=10))
    bad = (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: authentication failed, invalid user ID or password")
    for i in range(3):
        assert await login("alice", f"guess{i}") == bad
    assert len(checks) == 3
    code, details = await login("alice", "alicepw")  # the right one, beyond the limit
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert details.startswith("verikv: too many failed authentications for user 'alice' on this node (3 in 1.5 s)")
    assert (await login("alice", "guess3"))[0] == grpc.StatusCode.RESOURCE_EXHAUSTED  # a wrong one too
    assert len(checks) == 3  # no password checked beyond the limit
    assert await login("root", "rootpw") is None  # another user is not affected
    assert await login("alice", "alicepw", channels[1]) is None  # each node counts its own
    for name in ("nobody", "nobody", "nobody"):  # a name no user has counts the same way
        assert await login(name, "x") == bad
    assert (await login("nobody", "x"))[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    await asyncio.sleep(WINDOW_S + 0.1)  # the failures leave the window
    assert await login("alice", "alicepw") is None
