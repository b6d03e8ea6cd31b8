"""The Auth service answers as a real etcd 3.4's does, call for call: users, roles and permissions
and their errors, the root rules, enabling and disabling auth, Authenticate, and what a token
lets its user do (reads, writes, txns over both branches, watches, lease revokes, the maintenance
calls reserved to root), what a request without a token or with a bad one gets, and what a change
of permissions or password does to a token already handed out. The same scenario runs over gRPC
on a verikv node and on an etcd; revisions are compared relative to the scenario's first put."""

import asyncio
import os
import time
from pathlib import Path

import grpc
import pytest

from verikv.cluster.etcd import ETCD_BINARY, start_etcd_cluster
from verikv.etcdpb import auth_pb2, rpc_pb2 as r, rpc_pb2_grpc
from verikv.shim.api.servicer import build_server

from test_node import leader_of, start_cluster, stop_node

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.access(ETCD_BINARY, os.X_OK), reason="etcd is not installed")]

VERIKV_PORTS = 28630 - 25300  # peers 28630-28632 (test_node's BASE_PORT + this)
VERIKV_CLIENT = 28634
ETCD_BASE = 28636  # 28636-28637


def perm(kind, key, end=b""):
    return auth_pb2.Permission(permType=kind, key=key, range_end=end)


def auth_scenario(endpoint):
    out = []
    with grpc.insecure_channel(endpoint) as channel:
        kv, auth = rpc_pb2_grpc.KVStub(channel), rpc_pb2_grpc.AuthStub(channel)
        maint, lease = rpc_pb2_grpc.MaintenanceStub(channel), rpc_pb2_grpc.LeaseStub(channel)
        watch = rpc_pb2_grpc.WatchStub(channel)
        first = kv.Put(r.PutRequest(key=b"a/0", value=b"0"), timeout=10).header.revision

        def call(method, request, token=None):
            md = (("token", token),) if token is not None else None
            try:
                resp = method(request, timeout=10, metadata=md)
            except grpc.RpcError as err:
                return err.code(), err.details()
            return resp

        def ok(what, method, request, token=None):
            """The answer without its header (its revision relative to the first put)."""
            resp = call(method, request, token)
            if isinstance(resp, tuple):
                out.append((what, resp))
                return resp
            rev = resp.header.revision - first if resp.HasField("header") else None
            resp.ClearField("header")
            out.append((what, rev, type(resp).__name__, str(resp)))
            return resp

        def token_of(name, password):
            resp = call(auth.Authenticate, r.AuthenticateRequest(name=name, password=password))
            out.append((f"authenticate {name}", type(resp).__name__ if not isinstance(resp, tuple) else resp))
            return resp.token if not isinstance(resp, tuple) else None

        def watch_create(key, end, token):
            md = (("token", token),) if token is not None else ()
            stream = watch.Watch(iter([r.WatchRequest(create_request=r.WatchCreateRequest(key=key, range_end=end))]),
                                 timeout=5, metadata=md)
            try:
                got = next(stream)
                return got.created, got.canceled, got.cancel_reason
            except grpc.RpcError as err:
                return err.code(), err.details()
            finally:
                stream.cancel()

        # ---- before auth ----
        ok("authenticate, disabled", auth.Authenticate, r.AuthenticateRequest(name="root", password="x"))
        ok("enable without root", auth.AuthEnable, r.AuthEnableRequest())
        ok("user add, empty", auth.UserAdd, r.AuthUserAddRequest(name="", password="x"))
        ok("user add root", auth.UserAdd, r.AuthUserAddRequest(name="root", password="rootpw"))
        ok("user add root again", auth.UserAdd, r.AuthUserAddRequest(name="root", password="rootpw"))
        ok("enable without the root role", auth.AuthEnable, r.AuthEnableRequest())
        ok("role add, empty", auth.RoleAdd, r.AuthRoleAddRequest(name=""))
        ok("grant root root", auth.UserGrantRole, r.AuthUserGrantRoleRequest(user="root", role="root"))
        ok("role add root", auth.RoleAdd, r.AuthRoleAddRequest(name="root"))
        ok("role add r1", auth.RoleAdd, r.AuthRoleAddRequest(name="r1"))
        ok("role add r1 again", auth.RoleAdd, r.AuthRoleAddRequest(name="r1"))
        for name, pw in (("alice", "apw"), ("bob", "bpw")):
            ok(f"user add {name}", auth.UserAdd, r.AuthUserAddRequest(name=name, password=pw))
        ok("user add nopw", auth.UserAdd, r.AuthUserAddRequest(name="nopw", options=auth_pb2.UserAddOptions(no_password=True)))
        ok("grant to nobody", auth.UserGrantRole, r.AuthUserGrantRoleRequest(user="carol", role="r1"))
        ok("grant no such role", auth.UserGrantRole, r.AuthUserGrantRoleRequest(user="alice", role="r9"))
        ok("grant alice r1", auth.UserGrantRole, r.AuthUserGrantRoleRequest(user="alice", role="r1"))
        ok("grant alice r1 again", auth.UserGrantRole, r.AuthUserGrantRoleRequest(user="alice", role="r1"))
        ok("grant nopw r1", auth.UserGrantRole, r.AuthUserGrantRoleRequest(user="nopw", role="r1"))
        for p in (perm(auth_pb2.Permission.READWRITE, b"a/", b"a0"), perm(auth_pb2.Permission.READ, b"k1"),
                  perm(auth_pb2.Permission.WRITE, b"w1", b"w5"), perm(auth_pb2.Permission.READ, b"z", b"\0"),
                  perm(auth_pb2.Permission.WRITE, b"k1", b"k2")):
            ok("grant permission", auth.RoleGrantPermission, r.AuthRoleGrantPermissionRequest(name="r1", perm=p))
        ok("grant permission, no role", auth.RoleGrantPermission,
           r.AuthRoleGrantPermissionRequest(name="r9", perm=perm(auth_pb2.Permission.READ, b"x")))
        ok("role get r1", auth.RoleGet, r.AuthRoleGetRequest(role="r1"))
        ok("user get alice", auth.UserGet, r.AuthUserGetRequest(name="alice"))
        ok("user get carol", auth.UserGet, r.AuthUserGetRequest(name="carol"))
        ok("user list", auth.UserList, r.AuthUserListRequest())
        ok("role list", auth.RoleList, r.AuthRoleListRequest())
        ok("revoke a permission not granted", auth.RoleRevokePermission,
           r.AuthRoleRevokePermissionRequest(role="r1", key=b"nope"))
        ok("revoke a role not granted", auth.UserRevokeRole, r.AuthUserRevokeRoleRequest(name="bob", role="r1"))
        ok("role delete, none", auth.RoleDelete, r.AuthRoleDeleteRequest(role="r9"))
        ok("user delete, none", auth.UserDelete, r.AuthUserDeleteRequest(name="carol"))
        ok("password of nobody", auth.UserChangePassword, r.AuthUserChangePasswordRequest(name="carol", password="x"))

        # ---- auth enabled ----
        ok("enable", auth.AuthEnable, r.AuthEnableRequest())
        ok("enable again", auth.AuthEnable, r.AuthEnableRequest())
        ok("get, no token", kv.Range, r.RangeRequest(key=b"a/0"))
        ok("put, no token", kv.Put, r.PutRequest(key=b"a/1", value=b"x"))
        ok("user list, no token", auth.UserList, r.AuthUserListRequest())
        ok("get, bad token", kv.Range, r.RangeRequest(key=b"a/0"), "nosuchtoken.1")
        ok("put, bad token", kv.Put, r.PutRequest(key=b"a/0"), "nosuchtoken.1")
        ok("wrong password", auth.Authenticate, r.AuthenticateRequest(name="alice", password="nope"))
        ok("no such user", auth.Authenticate, r.AuthenticateRequest(name="carol", password="nope"))
        ok("no-password user", auth.Authenticate, r.AuthenticateRequest(name="nopw", password=""))
        root, alice, bob = token_of("root", "rootpw"), token_of("alice", "apw"), token_of("bob", "bpw")
        ok("alice: put a/1", kv.Put, r.PutRequest(key=b"a/1", value=b"1"), alice)
        ok("alice: put b", kv.Put, r.PutRequest(key=b"b", value=b"1"), alice)
        ok("alice: put k1 (read only)", kv.Put, r.PutRequest(key=b"k1", value=b"1"), alice)
        ok("alice: put w2 (write only)", kv.Put, r.PutRequest(key=b"w2", value=b"1"), alice)
        ok("alice: put w2 prev_kv", kv.Put, r.PutRequest(key=b"w2", value=b"2", prev_kv=True), alice)
        ok("alice: get a/1", kv.Range, r.RangeRequest(key=b"a/1"), alice)
        ok("alice: get a/1 serializable", kv.Range, r.RangeRequest(key=b"a/1", serializable=True), alice)
        ok("alice: get a/ prefix", kv.Range, r.RangeRequest(key=b"a/", range_end=b"a0"), alice)
        ok("alice: get a/..a1", kv.Range, r.RangeRequest(key=b"a/", range_end=b"a1"), alice)
        ok("alice: get k1..k2 (read k1, write the range)", kv.Range, r.RangeRequest(key=b"k1", range_end=b"k2"), alice)
        ok("alice: get w2", kv.Range, r.RangeRequest(key=b"w2"), alice)
        ok("alice: get z from-key", kv.Range, r.RangeRequest(key=b"z", range_end=b"\0"), alice)
        ok("alice: get zz", kv.Range, r.RangeRequest(key=b"zz"), alice)
        ok("alice: delete w1..w5", kv.DeleteRange, r.DeleteRangeRequest(key=b"w1", range_end=b"w5"), alice)
        ok("alice: delete w1..w6", kv.DeleteRange, r.DeleteRangeRequest(key=b"w1", range_end=b"w6"), alice)
        ok("alice: delete w1..w5 prev_kv", kv.DeleteRange,
           r.DeleteRangeRequest(key=b"w1", range_end=b"w5", prev_kv=True), alice)

        def txn(compare_key, then_key, else_key):
            return r.TxnRequest(compare=[r.Compare(key=compare_key, target=r.Compare.VERSION, version=0)],
                                success=[r.RequestOp(request_put=r.PutRequest(key=then_key, value=b"t"))],
                                failure=[r.RequestOp(request_put=r.PutRequest(key=else_key, value=b"e"))])

        ok("alice: txn in a/", kv.Txn, txn(b"a/9", b"a/2", b"a/3"), alice)
        ok("alice: txn, else outside", kv.Txn, txn(b"a/9", b"a/2", b"b"), alice)
        ok("alice: txn, compare outside", kv.Txn, txn(b"b", b"a/2", b"a/3"), alice)
        ok("alice: compact", kv.Compact, r.CompactionRequest(revision=first), alice)
        out.append(("alice: watch a/", watch_create(b"a/", b"a0", alice)))
        out.append(("alice: watch b", watch_create(b"b", b"", alice)))
        out.append(("watch, no token", watch_create(b"a/", b"a0", None)))
        out.append(("root: watch b", watch_create(b"b", b"", root)))
        g = call(lease.LeaseGrant, r.LeaseGrantRequest(ID=77, TTL=60), alice)
        out.append(("alice: lease grant", g.ID if not isinstance(g, tuple) else g))
        call(lease.LeaseGrant, r.LeaseGrantRequest(ID=78, TTL=60), root)
        ok("root: put b with lease 78", kv.Put, r.PutRequest(key=b"b", value=b"l", lease=78), root)
        ok("alice: put a/5 with lease 78", kv.Put, r.PutRequest(key=b"a/5", value=b"l", lease=78), alice)
        ok("alice: revoke 78", lease.LeaseRevoke, r.LeaseRevokeRequest(ID=78), alice)
        ok("alice: put a/6 with lease 77", kv.Put, r.PutRequest(key=b"a/6", value=b"l", lease=77), alice)
        ok("alice: revoke 77", lease.LeaseRevoke, r.LeaseRevokeRequest(ID=77), alice)
        ok("alice: hashkv", maint.HashKV, r.HashKVRequest(), alice)
        ok("alice: hash", maint.Hash, r.HashRequest(), alice)
        ok("alice: defragment", maint.Defragment, r.DefragmentRequest(), alice)
        snap = maint.Snapshot(r.SnapshotRequest(), timeout=10, metadata=(("token", alice),))
        try:
            next(snap)
            out.append(("alice: snapshot", "served"))
        except grpc.RpcError as err:
            out.append(("alice: snapshot", err.code(), err.details()))
        status = call(maint.Status, r.StatusRequest(), alice)
        out.append(("alice: status", type(status).__name__))
        ok("alice: user list", auth.UserList, r.AuthUserListRequest(), alice)
        ok("alice: user get alice", auth.UserGet, r.AuthUserGetRequest(name="alice"), alice)
        ok("alice: user get bob", auth.UserGet, r.AuthUserGetRequest(name="bob"), alice)
        ok("alice: role get r1", auth.RoleGet, r.AuthRoleGetRequest(role="r1"), alice)
        ok("alice: role get root", auth.RoleGet, r.AuthRoleGetRequest(role="root"), alice)
        ok("alice: role add", auth.RoleAdd, r.AuthRoleAddRequest(name="r2"), alice)
        ok("alice: disable", auth.AuthDisable, r.AuthDisableRequest(), alice)
        ok("bob: get a/1", kv.Range, r.RangeRequest(key=b"a/1"), bob)
        ok("root: get b", kv.Range, r.RangeRequest(key=b"b"), root)
        out.append(("root: hashkv", type(call(maint.HashKV, r.HashKVRequest(), root)).__name__))
        ok("root: user list", auth.UserList, r.AuthUserListRequest(), root)
        ok("root: delete root", auth.UserDelete, r.AuthUserDeleteRequest(name="root"), root)
        ok("root: delete role root", auth.RoleDelete, r.AuthRoleDeleteRequest(role="root"), root)
        ok("root: revoke root from root", auth.UserRevokeRole, r.AuthUserRevokeRoleRequest(name="root", role="root"), root)

        # ---- changes under a token already handed out ----
        ok("root: revoke a/ from r1", auth.RoleRevokePermission,
           r.AuthRoleRevokePermissionRequest(role="r1", key=b"a/", range_end=b"a0"), root)
        ok("alice: get a/1, revoked", kv.Range, r.RangeRequest(key=b"a/1"), alice)
        ok("alice: put a/1, revoked", kv.Put, r.PutRequest(key=b"a/1", value=b"2"), alice)
        ok("root: grant bob r1", auth.UserGrantRole, r.AuthUserGrantRoleRequest(user="bob", role="r1"), root)
        ok("bob: get k1", kv.Range, r.RangeRequest(key=b"k1"), bob)
        ok("root: new password for bob", auth.UserChangePassword,
           r.AuthUserChangePasswordRequest(name="bob", password="new"), root)
        ok("bob: old token", kv.Range, r.RangeRequest(key=b"k1"), bob)
        ok("bob: old password", auth.Authenticate, r.AuthenticateRequest(name="bob", password="bpw"))
        bob = token_of("bob", "new")
        ok("bob: new token", kv.Range, r.RangeRequest(key=b"k1"), bob)
        ok("root: revoke r1 from bob", auth.UserRevokeRole, r.AuthUserRevokeRoleRequest(name="bob", role="r1"), root)
        ok("root: delete bob", auth.UserDelete, r.AuthUserDeleteRequest(name="bob"), root)
        ok("bob: token of a deleted user", kv.Range, r.RangeRequest(key=b"k1"), bob)
        ok("root: delete r1", auth.RoleDelete, r.AuthRoleDeleteRequest(role="r1"), root)
        ok("root: alice's roles", auth.UserGet, r.AuthUserGetRequest(name="alice"), root)
        ok("root: disable", auth.AuthDisable, r.AuthDisableRequest(), root)

        # ---- auth disabled again ----
        ok("get, no token, disabled", kv.Range, r.RangeRequest(key=b"a/1"))
        ok("get, old token, disabled", kv.Range, r.RangeRequest(key=b"a/1"), root)
        ok("user list, disabled", auth.UserList, r.AuthUserListRequest())
        ok("authenticate, disabled again", auth.Authenticate, r.AuthenticateRequest(name="root", password="rootpw"))
    return out


def test_auth_answers_as_etcd(tmp_path):
    cluster = start_etcd_cluster(Path("/tmp/verikv-shim-authcmp"), members=1, base_port=ETCD_BASE)
    try:
        theirs = auth_scenario(cluster.client_endpoints[0])
    finally:
        cluster.stop()

    async def ours():
        nodes = await start_cluster(tmp_path, VERIKV_PORTS)
        server = build_server(leader_of(nodes), f"127.0.0.1:{VERIKV_CLIENT}", [""] * 3, [""] * 3)
        await server.start()
        try:
            return await asyncio.to_thread(auth_scenario, f"127.0.0.1:{VERIKV_CLIENT}")
        finally:
            await server.stop(None)
            for n in nodes:
                await stop_node(n)

    mine = asyncio.run(ours())
    assert ("alice: put b", (grpc.StatusCode.PERMISSION_DENIED, "etcdserver: permission denied")) in theirs
    differences = [(a, b) for a, b in zip(mine, theirs) if a != b]
    assert not differences, "\n".join(f"verikv: {a}\netcd:   {b}" for a, b in differences)
    assert len(mine) == len(theirs)
