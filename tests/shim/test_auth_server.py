"""The Auth service on an in-process 3-node cluster with a client server on every node: a token
drawn by one node is good on the others (its grant went through the log), expires after the TTL
without use and lives on while used, is void once its user's password changes; a write sent
through a follower is checked for its user when the leader's log applies it; a lease's keys are
told only to a user who may read them; a password never
reaches a node's WAL, and one bcrypt cannot take is refused with a message."""

import asyncio

import grpc
import pytest
import pytest_asyncio

from verikv.etcdpb import auth_pb2, rpc_pb2 as r, rpc_pb2_grpc as g
from verikv.shim.api.servicer import build_server

from test_node import leader_of, start_cluster, stop_node

PEERS = 28650 - 25300  # peers 28650-28652 (test_node's BASE_PORT + this)
CLIENTS = 28654  # clients 28654-28656
TTL_S = 1.0


@pytest_asyncio.fixture
async def servers(tmp_path):
    nodes = await start_cluster(tmp_path, PEERS)
    urls = [f"127.0.0.1:{CLIENTS + i}" for i in range(3)]
    started = []
    for n in nodes:
        s = build_server(n, urls[n.node_id], urls, ["http://peer"] * 3, auth_token_ttl_s=TTL_S)
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


async def test_a_token_from_one_node_is_good_on_all_until_unused_for_its_ttl(servers):
    nodes, channels = servers
    follower = next(n.node_id for n in nodes if n is not leader_of(nodes))
    auth = g.AuthStub(channels[follower])
    await setup_users(auth)
    token = (await auth.Authenticate(r.AuthenticateRequest(name="root", password="rootpw"), timeout=10)).token
    md = (("token", token),)
    for i in range(3):  # every node learned the grant from the log
        for _ in range(100):
            if await failure(g.KVStub(channels[i]).Put(r.PutRequest(key=b"k%d" % i, value=b"v"), timeout=10,
                                                       metadata=md)) is None:
                break
            await asyncio.sleep(0.02)  # a node may apply the grant a little after its proposer
        else:
            pytest.fail(f"node {i} never took the token")
    kv = g.KVStub(channels[0])
    for _ in range(4):  # used every half TTL: it lives on
        await asyncio.sleep(TTL_S / 2)
        assert (await kv.Range(r.RangeRequest(key=b"k0"), timeout=10, metadata=md)).count == 1
    await asyncio.sleep(TTL_S * 1.5)  # unused for longer than its TTL: gone
    assert await failure(kv.Range(r.RangeRequest(key=b"k0"), timeout=10, metadata=md)) == (
        grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")


async def test_a_new_password_voids_tokens_and_writes_through_a_follower_are_checked(servers):
    nodes, channels = servers
    follower = next(n.node_id for n in nodes if n is not leader_of(nodes))
    auth, kv = g.AuthStub(channels[follower]), g.KVStub(channels[follower])
    await setup_users(auth)
    root = (("token", (await auth.Authenticate(r.AuthenticateRequest(name="root", password="rootpw"),
                                               timeout=10)).token),)
    alice = (("token", (await auth.Authenticate(r.AuthenticateRequest(name="alice", password="alicepw"),
                                                timeout=10)).token),)
    assert await failure(kv.Put(r.PutRequest(key=b"x", value=b"1"), timeout=10, metadata=alice)) == (
        grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")
    await auth.RoleAdd(r.AuthRoleAddRequest(name="x"), timeout=10, metadata=root)
    write_x = auth_pb2.Permission(permType=auth_pb2.Permission.WRITE, key=b"x")
    await auth.RoleGrantPermission(r.AuthRoleGrantPermissionRequest(name="x", perm=write_x), timeout=10,
                                   metadata=root)
    await auth.UserGrantRole(r.AuthUserGrantRoleRequest(user="alice", role="x"), timeout=10, metadata=root)
    assert await failure(kv.Put(r.PutRequest(key=b"x", value=b"1"), timeout=10, metadata=alice)) is None
    # the keys of a lease are told only to a user who may read them all
    lease = g.LeaseStub(channels[follower])
    await lease.LeaseGrant(r.LeaseGrantRequest(ID=5, TTL=60), timeout=10, metadata=root)
    await kv.Put(r.PutRequest(key=b"secret", value=b"s", lease=5), timeout=10, metadata=root)
    ttl = await lease.LeaseTimeToLive(r.LeaseTimeToLiveRequest(ID=5), timeout=10, metadata=alice)
    assert ttl.grantedTTL == 60 and not ttl.keys
    assert await failure(lease.LeaseTimeToLive(r.LeaseTimeToLiveRequest(ID=5, keys=True), timeout=10,
                                               metadata=alice)) == (
        grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")
    ttl = await lease.LeaseTimeToLive(r.LeaseTimeToLiveRequest(ID=5, keys=True), timeout=10, metadata=root)
    assert list(ttl.keys) == [b"secret"]
    await auth.UserChangePassword(r.AuthUserChangePasswordRequest(name="alice", password="alicepw2"), timeout=10,
                                  metadata=root)
    assert await failure(kv.Put(r.PutRequest(key=b"x", value=b"2"), timeout=10, metadata=alice)) == (
        grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")
    assert await failure(auth.UserAdd(r.AuthUserAddRequest(name="eve", password="a\0b"), timeout=10,
                                      metadata=root)) == (
        grpc.StatusCode.INVALID_ARGUMENT, "verikv: a password may not contain a NUL character")
    for n in nodes:  # what the WAL holds of every node: hashes, never a password
        for f in n.config.data_dir.rglob("*"):
            if f.is_file():
                data = f.read_bytes()
                assert b"rootpw" not in data and b"alicepw" not in data, f  # alicepw2 too

