"""The Auth service with `--auth-token jwt,...` on an in-process 3-node cluster, a client server on
every node: a token from one node is good on every other at once (no grant in the log, no table);
any change of the auth state voids it with etcd's "revision of auth store is old"; it expires at
its exp; a tampered token or one signed with another key is an invalid auth token; a node with
only the public key verifies tokens but cannot hand them out; a password is still checked, and
checked again if the auth state changed meanwhile (the token names the revision it was checked at)."""

import asyncio
import time

import grpc
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from verikv.etcdpb import rpc_pb2 as r, rpc_pb2_grpc as g
from verikv.shim.api import servicer
from verikv.shim.api.servicer import build_server
from verikv.shim.io import auth_token

from test_node import leader_of, start_cluster, stop_node

PEERS = 29000 - 25300  # peers 29000-29002 (test_node's BASE_PORT + this)
CLIENTS = 29004  # clients 29004-29006
OLD = (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: revision of auth store is old")
INVALID = (grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")


def write_key(path, key):
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    pub = path.with_suffix(".pub")
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return path, pub


@pytest_asyncio.fixture
async def servers(tmp_path):
    """Nodes 0 and 1 sign and verify (RS256, ttl 2s); node 2 has only the public key."""
    priv, pub = write_key(tmp_path / "jwt.key", rsa.generate_private_key(65537, 2048))
    signer = auth_token.parse(f"jwt,pub-key={pub},priv-key={priv},sign-method=RS256,ttl=2s")
    verifier = auth_token.parse(f"jwt,pub-key={pub},sign-method=RS256,ttl=2s")
    nodes = await start_cluster(tmp_path, PEERS)
    urls = [f"127.0.0.1:{CLIENTS + i}" for i in range(3)]
    started = []
    for n in nodes:
        s = build_server(n, urls[n.node_id], urls, ["http://peer"] * 3,
                         jwt=verifier if n.node_id == 2 else signer)
        await s.start()
        started.append(s)
    channels = [grpc.aio.insecure_channel(u) for u in urls]
    yield nodes, channels, tmp_path
    for c in channels:
        await c.close()
    for s in started:
        await s.stop(None)
    for n in nodes:
        await stop_node(n)


async def failure(call):
    try:
        await call
    except grpc.aio.AioRpcError as err:
        return err.code(), err.details()
    return None


async def setup_users(auth):
    for name, pw in (("root", "rootpw"), ("alice", "alicepw")):
        await auth.UserAdd(r.AuthUserAddRequest(name=name, password=pw), timeout=10)
    await auth.RoleAdd(r.AuthRoleAddRequest(name="root"), timeout=10)
    await auth.UserGrantRole(r.AuthUserGrantRoleRequest(user="root", role="root"), timeout=10)
    await auth.AuthEnable(r.AuthEnableRequest(), timeout=10)


async def token_of(channel, name, password):
    resp = await g.AuthStub(channel).Authenticate(r.AuthenticateRequest(name=name, password=password), timeout=10)
    return resp


async def test_a_jwt_is_good_on_every_node_at_once_until_the_auth_state_changes(servers):
    nodes, channels, _ = servers
    follower = next(n.node_id for n in nodes if n is not leader_of(nodes) and n.node_id != 2)
    await setup_users(g.AuthStub(channels[follower]))
    resp = await token_of(channels[follower], "root", "rootpw")
    assert resp.header.revision > 0 and resp.header.member_id == follower + 1
    assert resp.token.count(".") == 2  # a JWS, not a simple token
    md = (("token", resp.token),)
    for n in nodes:  # no grant went through the log: no node holds the token, yet all take it
        assert n.kv.auth.take_grants() == []
    for i in range(3):
        assert await failure(g.KVStub(channels[i]).Put(r.PutRequest(key=b"k%d" % i, value=b"v"), timeout=10,
                                                       metadata=md)) is None
        assert (await g.KVStub(channels[i]).Range(r.RangeRequest(key=b"k0"), timeout=10, metadata=md)).count == 1
    assert await failure(token_of(channels[0], "root", "wrong")) == (
        grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: authentication failed, invalid user ID or password")
    # any change of users, roles or permissions: the token's revision is old, on every node
    await g.AuthStub(channels[0]).RoleAdd(r.AuthRoleAddRequest(name="x"), timeout=10, metadata=md)
    for i in range(3):
        for _ in range(100):  # a node may apply the change a little after the leader
            got = await failure(g.KVStub(channels[i]).Range(r.RangeRequest(key=b"k0"), timeout=10, metadata=md))
            if got is not None:
                break
            await asyncio.sleep(0.02)
        assert got == OLD
        assert await failure(g.KVStub(channels[i]).Put(r.PutRequest(key=b"k", value=b"v"), timeout=10,
                                                       metadata=md)) == OLD
    # a new token works again
    md = (("token", (await token_of(channels[follower], "root", "rootpw")).token),)
    assert await failure(g.KVStub(channels[2]).Put(r.PutRequest(key=b"k", value=b"v"), timeout=10,
                                                   metadata=md)) is None


async def test_a_jwt_expires_and_a_tampered_or_foreign_one_is_invalid(servers):
    nodes, channels, tmp_path = servers
    await setup_users(g.AuthStub(channels[0]))
    token = (await token_of(channels[1], "alice", "alicepw")).token
    md = (("token", token),)
    kv = g.KVStub(channels[0])
    assert await failure(kv.Range(r.RangeRequest(key=b"a"), timeout=10, metadata=md)) == (
        grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")  # alice: who she is is known
    head, body, sig = token.split(".")
    tampered = f"{head}.{body}.{sig[:-6]}{'AAAAAA' if sig[-6:] != 'AAAAAA' else 'BBBBBB'}"
    assert await failure(kv.Range(r.RangeRequest(key=b"a"), timeout=10, metadata=(("token", tampered),))) == INVALID
    _, other_pub = write_key(tmp_path / "other.key", rsa.generate_private_key(65537, 2048))
    foreign = auth_token.parse(f"jwt,priv-key={tmp_path / 'other.key'},sign-method=RS256").make("root", 99)
    assert await failure(kv.Put(r.PutRequest(key=b"a", value=b"1"), timeout=10,
                                metadata=(("token", foreign),))) == INVALID
    await asyncio.sleep(3)  # ttl 2s
    for i in range(3):
        assert await failure(g.KVStub(channels[i]).Range(r.RangeRequest(key=b"a"), timeout=10,
                                                         metadata=md)) == INVALID


async def test_a_verify_only_node_takes_tokens_but_hands_out_none(servers):
    nodes, channels, _ = servers
    await setup_users(g.AuthStub(channels[0]))
    assert await failure(token_of(channels[2], "root", "rootpw")) == (
        grpc.StatusCode.UNKNOWN, "auth: token signing attempted with verify-only key")
    assert await failure(token_of(channels[2], "root", "wrong")) == (  # the password is checked first
        grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: authentication failed, invalid user ID or password")
    md = (("token", (await token_of(channels[0], "root", "rootpw")).token),)
    assert await failure(g.KVStub(channels[2]).Put(r.PutRequest(key=b"v", value=b"1"), timeout=10,
                                                   metadata=md)) is None
    # etcd checks a JWT while auth is disabled too: a good one is taken, a bad one refused
    await g.AuthStub(channels[2]).AuthDisable(r.AuthDisableRequest(), timeout=10, metadata=md)
    assert await failure(g.KVStub(channels[2]).Put(r.PutRequest(key=b"v", value=b"2"), timeout=10,
                                                   metadata=md)) is None
    assert await failure(g.KVStub(channels[2]).Put(r.PutRequest(key=b"v", value=b"3"), timeout=10,
                                                   metadata=(("token", "x.y.z"),))) == INVALID


async def test_a_change_while_the_password_is_checked_makes_authenticate_check_again(servers, monkeypatch):
    nodes, channels, _ = servers
    await setup_users(g.AuthStub(channels[0]))
    root = (("token", (await token_of(channels[0], "root", "rootpw")).token),)
    checks, matches = [], servicer._password_matches

    def slow_matches(password, hashed):  # on a worker thread
        checks.append(password)
        if len(checks) == 1:
            time.sleep(0.5)  # the RoleAdd below is applied meanwhile
        return matches(password, hashed)

    monkeypatch.setattr(servicer, "_password_matches", slow_matches)
    authenticating = asyncio.ensure_future(token_of(channels[0], "alice", "alicepw"))
    await asyncio.sleep(0.1)
    await g.AuthStub(channels[0]).RoleAdd(r.AuthRoleAddRequest(name="meanwhile"), timeout=10, metadata=root)
    alice = (("token", (await authenticating).token),)
    assert checks == ["alicepw", "alicepw"]  # checked again at the new revision
    assert await failure(g.KVStub(channels[0]).Range(r.RangeRequest(key=b"a"), timeout=10, metadata=alice)) == (
        grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")  # not "old"
