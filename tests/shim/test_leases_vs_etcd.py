"""The Lease service answers as a real etcd 3.4's does, call for call: grants (the client's ID
or the server's), etcd's errors, puts and txns with a lease, time-to-live with keys, the list,
keep-alives on a stream (TTL 0 for a lease that is not there), a compare on a key's lease,
`ignore_lease`, and a revoke that deletes the lease's keys in one revision (watchers see the
deletes together); and a lease left alone expires between its TTL and a second more, on both.
The same scenario runs on both systems over gRPC; revisions are compared relative to its first
put."""

import asyncio
import os
import time
from pathlib import Path

import grpc
import pytest

from verikv.cluster.etcd import ETCD_BINARY, start_etcd_cluster
from verikv.etcdpb import rpc_pb2 as r, rpc_pb2_grpc

from test_grpc_server import CLIENT_PORT, stubs  # noqa: F401 (a fixture)
from test_watch_vs_etcd import EtcdWatchStream

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.access(ETCD_BINARY, os.X_OK), reason="etcd is not installed")]


@pytest.fixture(scope="module")
def etcd_endpoint():
    cluster = start_etcd_cluster(Path("/tmp/verikv-shim-leasecmp"), members=1, base_port=25040)
    yield cluster.client_endpoints[0]
    cluster.stop()


def lease_scenario(endpoint):
    out = []
    with grpc.insecure_channel(endpoint) as channel:
        kv, lease = rpc_pb2_grpc.KVStub(channel), rpc_pb2_grpc.LeaseStub(channel)

        def call(method, request):
            try:
                return method(request, timeout=10)
            except grpc.RpcError as err:
                return err.code(), err.details()

        g = lease.LeaseGrant(r.LeaseGrantRequest(ID=1000, TTL=30), timeout=10)
        out.append(("grant", g.ID, g.TTL))
        out.append(("again", call(lease.LeaseGrant, r.LeaseGrantRequest(ID=1000, TTL=30))))
        out.append(("too large", call(lease.LeaseGrant, r.LeaseGrantRequest(ID=1001, TTL=9_000_000_001))))
        auto = lease.LeaseGrant(r.LeaseGrantRequest(TTL=5), timeout=10)
        out.append(("server's id", auto.ID > 0, auto.TTL))
        first = kv.Put(r.PutRequest(key=b"l/a", value=b"1", lease=1000), timeout=10).header.revision
        kv.Put(r.PutRequest(key=b"l/b", value=b"1", lease=1000), timeout=10)
        kv.Put(r.PutRequest(key=b"l/c", value=b"1"), timeout=10)
        out.append(("no such lease", call(kv.Put, r.PutRequest(key=b"l/d", value=b"1", lease=999))))
        txn = r.TxnRequest(success=[r.RequestOp(request_put=r.PutRequest(key=b"l/d", value=b"1", lease=999))])
        out.append(("txn, no such lease", call(kv.Txn, txn)))
        ttl = lease.LeaseTimeToLive(r.LeaseTimeToLiveRequest(ID=1000, keys=True), timeout=10)
        out.append(("time to live", ttl.ID, ttl.grantedTTL, sorted(ttl.keys), 28 <= ttl.TTL <= 30))  # etcd: any order
        none = lease.LeaseTimeToLive(r.LeaseTimeToLiveRequest(ID=424242), timeout=10)
        out.append(("time to live, none", none.ID, none.TTL, none.grantedTTL))
        listed = {x.ID for x in lease.LeaseLeases(r.LeaseLeasesRequest(), timeout=10).leases}
        out.append(("leases", listed == {1000, auto.ID}))
        alive = lease.LeaseKeepAlive(iter([r.LeaseKeepAliveRequest(ID=1000), r.LeaseKeepAliveRequest(ID=424242)]),
                                     timeout=10)
        out.append(("keep-alive", [(x.ID, x.TTL) for x in alive]))
        cmp = r.Compare(key=b"l/a", target=r.Compare.LEASE, result=r.Compare.EQUAL, lease=1000)
        out.append(("compare lease", kv.Txn(r.TxnRequest(compare=[cmp]), timeout=10).succeeded))
        kv.Put(r.PutRequest(key=b"l/b", value=b"2", ignore_lease=True), timeout=10)  # keeps lease 1000
        stream = EtcdWatchStream(rpc_pb2_grpc.WatchStub(channel))
        try:
            stream.create(r.WatchCreateRequest(key=b"l/", range_end=b"l0"))
            revoked = lease.LeaseRevoke(r.LeaseRevokeRequest(ID=1000), timeout=10).header.revision
            stream.wait(lambda: any(x.events for x in stream.responses))
            time.sleep(0.1)  # anything more would arrive now
            events = [[(e.type, e.kv.key, e.kv.mod_revision - first) for e in x.events]
                      for x in stream.responses if x.events]
        finally:
            stream.close()
        out.append(("revoke", revoked - first, events))
        out.append(("revoke again", call(lease.LeaseRevoke, r.LeaseRevokeRequest(ID=1000))))
        left = kv.Range(r.RangeRequest(key=b"l/", range_end=b"l0"), timeout=10).kvs
        out.append(("left", [(x.key, x.lease) for x in left]))
        lease.LeaseRevoke(r.LeaseRevokeRequest(ID=auto.ID), timeout=10)

        # a lease left alone: its key goes after its TTL, not before
        sent = time.monotonic()
        short = lease.LeaseGrant(r.LeaseGrantRequest(TTL=2), timeout=10)
        kv.Put(r.PutRequest(key=b"l/short", value=b"1", lease=short.ID), timeout=10)
        while kv.Range(r.RangeRequest(key=b"l/short"), timeout=10).count and time.monotonic() - sent < 10:
            time.sleep(0.01)
        out.append(("expired after", 2.0 <= time.monotonic() - sent <= 3.5, round(time.monotonic() - sent, 2)))
    return out


async def test_the_lease_service_answers_as_etcd(etcd_endpoint, stubs):
    follower = stubs[-1]
    theirs = await asyncio.to_thread(lease_scenario, etcd_endpoint)
    ours = await asyncio.to_thread(lease_scenario, f"127.0.0.1:{CLIENT_PORT + follower.node_id}")
    expired = ours.pop(), theirs.pop()  # (what, within bounds, seconds): the seconds differ
    assert ours == theirs
    assert [e[:2] for e in expired] == [("expired after", True)] * 2, expired
    # what the comparison covered
    assert dict((x[0], x[1:]) for x in ours)["revoke"] == (4, [[(1, b"l/a", 4), (1, b"l/b", 4)]])
