"""--quota-backend-bytes and the NOSPACE alarm, Defragment and HashKV answer as a real etcd 3.4's
do: the same scenario runs over gRPC on a verikv node and on an etcd, each with a small quota.
The point where the quota is reached differs (verikv's store size is its own measure, etcd's the
bolt file's), so the scenario records what happens, not after how many puts."""

import asyncio
import os
from pathlib import Path

import grpc
import pytest

from verikv.cluster.etcd import ETCD_BINARY, start_etcd_cluster
from verikv.etcdpb import rpc_pb2 as r, rpc_pb2_grpc
from verikv.shim.api.servicer import build_server

from test_node import leader_of, start_cluster, stop_node

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.access(ETCD_BINARY, os.X_OK), reason="etcd is not installed")]

QUOTA = 1024 * 1024  # etcd's bolt file starts near 20 KiB and grows by its pages
VERIKV_PORTS = 28520 - 25300  # peers 28520-28522 (test_node's BASE_PORT + this)
VERIKV_CLIENT = 28530
ETCD_BASE = 28540


def quota_scenario(endpoint):
    out = []
    with grpc.insecure_channel(endpoint) as channel:
        kv, maint = rpc_pb2_grpc.KVStub(channel), rpc_pb2_grpc.MaintenanceStub(channel)
        lease = rpc_pb2_grpc.LeaseStub(channel)

        def call(method, request):
            try:
                return method(request, timeout=10)
            except grpc.RpcError as err:
                return err.code(), err.details()

        me = maint.Status(r.StatusRequest(), timeout=10).header.member_id
        out.append(("no alarm", list(call(maint.Alarm, r.AlarmRequest()).alarms)))
        h1 = maint.HashKV(r.HashKVRequest(), timeout=10)
        out.append(("hashkv, fresh", h1.header.revision, h1.compact_revision))
        refused = None
        for i in range(2000):
            got = call(kv.Put, r.PutRequest(key=b"big/%04d" % i, value=b"v" * 16 * 1024))
            if isinstance(got, tuple):
                refused = got
                break
        out.append(("quota reached", refused))
        listed = call(maint.Alarm, r.AlarmRequest())
        out.append(("alarm list", [(a.memberID == me, r.AlarmType.Name(a.alarm)) for a in listed.alarms]))
        errors = maint.Status(r.StatusRequest(), timeout=10).errors
        out.append(("status errors", [e.replace(str(me), "ME") for e in errors]))
        out.append(("small put", call(kv.Put, r.PutRequest(key=b"small", value=b"1"))))
        out.append(("lease grant", call(lease.LeaseGrant, r.LeaseGrantRequest(TTL=30))))
        put_txn = r.TxnRequest(failure=[r.RequestOp(request_put=r.PutRequest(key=b"small", value=b"1"))])
        out.append(("txn that puts", call(kv.Txn, put_txn)))
        read_txn = r.TxnRequest(success=[r.RequestOp(request_range=r.RangeRequest(key=b"big/0000"))])
        got = call(kv.Txn, read_txn)
        out.append(("txn that reads", got.succeeded, got.responses[0].response_range.count))
        out.append(("get", call(kv.Range, r.RangeRequest(key=b"big/", range_end=b"big0", count_only=True)).count > 0))
        deleted = call(kv.DeleteRange, r.DeleteRangeRequest(key=b"big/", range_end=b"big0"))
        out.append(("delete", deleted.deleted > 0))
        out.append(("still refused", call(kv.Put, r.PutRequest(key=b"small", value=b"1"))))
        rev = deleted.header.revision
        h2 = maint.HashKV(r.HashKVRequest(revision=rev), timeout=10)
        out.append(("hashkv at a revision", h2.header.revision == rev, h2.compact_revision))
        out.append(("hashkv, future", call(maint.HashKV, r.HashKVRequest(revision=rev + 1))))
        out.append(("compact", type(call(kv.Compact, r.CompactionRequest(revision=rev))).__name__))
        out.append(("hashkv, compacted", call(maint.HashKV, r.HashKVRequest(revision=rev - 1))))
        out.append(("hashkv after compaction", maint.HashKV(r.HashKVRequest(), timeout=10).compact_revision == rev))
        out.append(("defragment", type(call(maint.Defragment, r.DefragmentRequest())).__name__))
        disarm = r.AlarmRequest(action=r.AlarmRequest.DEACTIVATE, memberID=me, alarm=r.NOSPACE)
        out.append(("disarm", [(a.memberID == me, a.alarm) for a in call(maint.Alarm, disarm).alarms]))
        out.append(("disarm again", list(call(maint.Alarm, disarm).alarms)))
        out.append(("alarms after", list(call(maint.Alarm, r.AlarmRequest()).alarms)))
        out.append(("put after", type(call(kv.Put, r.PutRequest(key=b"small", value=b"1"))).__name__))
        out.append(("status errors after", list(maint.Status(r.StatusRequest(), timeout=10).errors)))
        out.append(("move-leader to a stranger", call(maint.MoveLeader, r.MoveLeaderRequest(targetID=12345))))
    return out


def both(tmp_path, scenario, etcd_args=(), **node_kw):
    """The scenario's record on a real etcd (one member) and on a verikv node: the leader of an
    in-process 3-node cluster (MoveLeader's errors come from the leader, as etcdctl asks it)."""
    cluster = start_etcd_cluster(Path("/tmp/verikv-shim-maintcmp"), members=1, base_port=ETCD_BASE,
                                 extra_args=tuple(etcd_args))
    try:
        theirs = scenario(cluster.client_endpoints[0])
    finally:
        cluster.stop()

    async def ours():
        nodes = await start_cluster(tmp_path, VERIKV_PORTS, **node_kw)
        server = build_server(leader_of(nodes), f"127.0.0.1:{VERIKV_CLIENT}", [""] * 3, [""] * 3)
        await server.start()
        try:
            return await asyncio.to_thread(scenario, f"127.0.0.1:{VERIKV_CLIENT}")
        finally:
            await server.stop(None)
            for n in nodes:
                await stop_node(n)

    return asyncio.run(ours()), theirs


def test_quota_alarm_defragment_and_hashkv_as_etcd(tmp_path):
    mine, theirs = both(tmp_path, quota_scenario, ("--quota-backend-bytes", str(QUOTA)), quota_backend_bytes=QUOTA)
    assert theirs[2][1] == (grpc.StatusCode.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded")
    assert mine == theirs


def corrupt_scenario(endpoint):
    out = []
    with grpc.insecure_channel(endpoint) as channel:
        kv, maint = rpc_pb2_grpc.KVStub(channel), rpc_pb2_grpc.MaintenanceStub(channel)
        lease = rpc_pb2_grpc.LeaseStub(channel)

        def call(method, request):
            try:
                got = method(request, timeout=10)
                return type(got).__name__
            except grpc.RpcError as err:
                return err.code(), err.details()

        me = maint.Status(r.StatusRequest(), timeout=10).header.member_id
        rev = kv.Put(r.PutRequest(key=b"a", value=b"1"), timeout=10).header.revision
        granted = lease.LeaseGrant(r.LeaseGrantRequest(TTL=60), timeout=10).ID
        arm = r.AlarmRequest(action=r.AlarmRequest.ACTIVATE, memberID=me, alarm=r.CORRUPT)
        out.append(("arm", [(a.memberID == me, a.alarm) for a in maint.Alarm(arm, timeout=10).alarms]))
        out.append(("put", call(kv.Put, r.PutRequest(key=b"b", value=b"2"))))
        out.append(("get", call(kv.Range, r.RangeRequest(key=b"a"))))
        out.append(("delete", call(kv.DeleteRange, r.DeleteRangeRequest(key=b"a"))))
        out.append(("txn that reads", call(kv.Txn, r.TxnRequest(
            success=[r.RequestOp(request_range=r.RangeRequest(key=b"a"))]))))
        out.append(("compact", call(kv.Compact, r.CompactionRequest(revision=rev))))
        out.append(("lease grant", call(lease.LeaseGrant, r.LeaseGrantRequest(TTL=60))))
        out.append(("lease revoke", call(lease.LeaseRevoke, r.LeaseRevokeRequest(ID=granted))))
        disarm = r.AlarmRequest(action=r.AlarmRequest.DEACTIVATE, memberID=me, alarm=r.CORRUPT)
        out.append(("disarm", [(a.memberID == me, a.alarm) for a in maint.Alarm(disarm, timeout=10).alarms]))
        out.append(("put after", call(kv.Put, r.PutRequest(key=b"b", value=b"2"))))
    return out


def test_a_corrupt_alarm_refuses_what_etcds_refuses(tmp_path):
    mine, theirs = both(tmp_path, corrupt_scenario)
    assert theirs[1][1] == (grpc.StatusCode.DATA_LOSS, "etcdserver: corrupt cluster")
    assert mine == theirs
