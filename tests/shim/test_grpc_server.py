"""The gRPC API over real nodes: etcd's statuses for bad requests, UNIMPLEMENTED (with a message
naming verikv) for what verikv does not serve, and working KV/Maintenance/Cluster calls."""

import asyncio

import grpc
import pytest
import pytest_asyncio

from verikv.etcdpb import health_pb2, rpc_pb2 as r, rpc_pb2_grpc as g
from verikv.shim.api.servicer import build_server
from verikv.shim.kv import errors
from verikv.shim.kv.commands import MAX_REQUEST_BYTES

from test_node import leader_of, start_cluster, start_node, stop_node, wait_for

CLIENT_PORT = 25390


@pytest_asyncio.fixture
async def stubs(tmp_path):
    nodes = await start_cluster(tmp_path, 80)
    follower = next(n for n in nodes if n is not leader_of(nodes))
    urls = [f"127.0.0.1:{CLIENT_PORT + i}" for i in range(3)]
    server = build_server(follower, urls[follower.node_id], urls, ["http://peer"] * 3,
                          progress_notify_interval_s=0.3, watch_backlog_bytes=(512 * 1024, 128 * 1024),
                          require_leader_timeout_s=0.2)
    await server.start()
    follower.client_server = server
    follower.cluster = nodes
    channel = grpc.aio.insecure_channel(urls[follower.node_id])
    yield g.KVStub(channel), g.MaintenanceStub(channel), g.ClusterStub(channel), channel, follower
    await channel.close()
    await server.stop(None)
    for n in nodes:
        await stop_node(n)


async def status_of(call):
    try:
        await call
    except grpc.aio.AioRpcError as err:
        return err.code(), err.details()
    raise AssertionError("the call succeeded")


async def test_kv_through_a_follower(stubs):
    kv, _, _, _, follower = stubs
    put = await kv.Put(r.PutRequest(key=b"k", value=b"v"))
    assert put.header.revision == 2 and put.header.member_id == follower.node_id + 1
    got = await kv.Range(r.RangeRequest(key=b"k"))
    assert got.kvs[0].value == b"v" and got.count == 1
    txn = await kv.Txn(r.TxnRequest(compare=[r.Compare(key=b"k", target=r.Compare.VALUE, value=b"v")],
                                    success=[r.RequestOp(request_delete_range=r.DeleteRangeRequest(key=b"k"))]))
    assert txn.succeeded and txn.header.revision == 3


async def test_range_of_one_key_sees_every_change(stubs):
    """Plain single-key Ranges are answered from cached encodings: each write must show."""
    kv, _, _, _, follower = stubs
    for i, value in enumerate([b"a", b"b" * 300]):
        await kv.Put(r.PutRequest(key=b"c", value=value))
        got = await kv.Range(r.RangeRequest(key=b"c"))
        assert (got.kvs[0].value, got.kvs[0].version, got.count) == (value, i + 1, 1)
        assert got.header.revision == got.kvs[0].mod_revision == i + 2
        assert got.header.member_id == follower.node_id + 1 and got.header.cluster_id and got.header.raft_term
    await kv.DeleteRange(r.DeleteRangeRequest(key=b"c"))
    gone = await kv.Range(r.RangeRequest(key=b"c"))
    assert gone.count == 0 and not gone.kvs and gone.header.revision == 4
    await kv.Txn(r.TxnRequest(success=[r.RequestOp(request_put=r.PutRequest(key=b"c", value=b"t"))]))
    back = await kv.Range(r.RangeRequest(key=b"c"))
    assert (back.kvs[0].value, back.kvs[0].version, back.header.revision) == (b"t", 1, 5)


async def test_etcd_errors(stubs):
    kv = stubs[0]
    assert await status_of(kv.Put(r.PutRequest(key=b""))) == (
        grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided")
    assert await status_of(kv.Put(r.PutRequest(key=b"k", value=b"x" * MAX_REQUEST_BYTES))) == (
        grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: request is too large")
    code, _ = await status_of(kv.Put(r.PutRequest(key=b"k", value=b"x" * (3 * 1024 * 1024))))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED  # over gRPC's limit, as in etcd
    assert await status_of(kv.Txn(r.TxnRequest(success=[
        r.RequestOp(request_put=r.PutRequest(key=b"a")), r.RequestOp(request_put=r.PutRequest(key=b"a"))]))) == (
        grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request")
    # Each error was raised as a fresh instance: the module's shared ones hold no traceback,
    # which would keep the frames of their last raise (and this test's calls) alive.
    shared = [e for e in vars(errors).values() if isinstance(e, errors.EtcdError)]
    assert len(shared) > 20 and [e for e in shared if e.__traceback__ is not None] == []


async def test_history_and_compaction_over_grpc(stubs):
    kv, _, _, channel, _ = stubs
    first = (await kv.Put(r.PutRequest(key=b"k", value=b"v1"))).header.revision
    await kv.Put(r.PutRequest(key=b"k", value=b"v2"))
    old = await kv.Range(r.RangeRequest(key=b"k", revision=first))
    assert [kv_.value for kv_ in old.kvs] == [b"v1"] and old.header.revision == first + 1
    done = await kv.Compact(r.CompactionRequest(revision=first + 1))
    assert done.header.revision == first + 1
    assert await status_of(kv.Range(r.RangeRequest(key=b"k", revision=first))) == (
        grpc.StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")
    assert await status_of(kv.Compact(r.CompactionRequest(revision=first + 1))) == (
        grpc.StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")
    assert await status_of(kv.Range(r.RangeRequest(key=b"k", revision=first + 5))) == (
        grpc.StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision")


async def test_watch_streams_at_a_follower(stubs):
    """Watchers on a follower see the writes it applies, in order, with etcd's responses; a
    watcher from the past is caught up; a client that cancels its stream is forgotten."""
    kv, _, _, channel, follower = stubs
    requests: asyncio.Queue = asyncio.Queue()

    async def client_side():
        while (req := await requests.get()) is not None:
            yield req

    stream = g.WatchStub(channel).Watch(client_side())
    requests.put_nowait(r.WatchRequest(create_request=r.WatchCreateRequest(key=b"w/", range_end=b"w0", prev_kv=True)))
    created = await asyncio.wait_for(stream.read(), 10)
    assert created.created and created.watch_id == 0 and created.header.member_id == follower.node_id + 1
    first = (await kv.Put(r.PutRequest(key=b"w/a", value=b"1"))).header.revision
    await kv.Put(r.PutRequest(key=b"other", value=b"x"))
    await kv.Put(r.PutRequest(key=b"w/a", value=b"2"))
    await kv.DeleteRange(r.DeleteRangeRequest(key=b"w/a"))
    seen = []
    while len(seen) < 3:
        resp = await asyncio.wait_for(stream.read(), 10)
        seen += [(e.type, e.kv.key, e.kv.value, e.kv.mod_revision, e.prev_kv.value) for e in resp.events]
    assert seen == [(0, b"w/a", b"1", first, b""), (0, b"w/a", b"2", first + 2, b"1"),
                    (1, b"w/a", b"", first + 3, b"2")]
    requests.put_nowait(r.WatchRequest(create_request=r.WatchCreateRequest(key=b"w/a", start_revision=first)))
    created, past = await asyncio.wait_for(stream.read(), 10), await asyncio.wait_for(stream.read(), 10)
    assert created.created and created.watch_id == 1
    assert [(e.type, e.kv.mod_revision) for e in past.events] == [(0, first), (0, first + 2), (1, first + 3)]
    requests.put_nowait(r.WatchRequest(cancel_request=r.WatchCancelRequest(watch_id=1)))
    canceled = await asyncio.wait_for(stream.read(), 10)
    assert canceled.canceled and canceled.watch_id == 1
    hub = follower.client_server.watches
    assert len(hub.streams) == 1 and list(next(iter(hub.streams.values()))) == [0]
    requests.put_nowait(r.WatchRequest(create_request=r.WatchCreateRequest(key=b"quiet", progress_notify=True)))
    created = await asyncio.wait_for(stream.read(), 10)
    progress = await asyncio.wait_for(stream.read(), 10)  # within an interval (0.3 s here)
    assert (progress.watch_id, list(progress.events), progress.header.revision) == (
        created.watch_id, [], first + 3)
    stream.cancel()
    await wait_for(lambda: not hub.streams)


async def test_a_watch_client_that_does_not_read_is_paused_then_caught_up_without_a_gap(stubs):
    kv, _, _, channel, follower = stubs
    requests: asyncio.Queue = asyncio.Queue()

    async def client_side():
        while (req := await requests.get()) is not None:
            yield req

    # without BDP probing the client's flow-control window stays small: a client that does not
    # read soon stops taking what the server writes
    slow = grpc.aio.insecure_channel(follower.client_server.listen, options=[("grpc.http2.bdp_probe", 0)])
    stream = g.WatchStub(slow).Watch(client_side())
    requests.put_nowait(r.WatchRequest(create_request=r.WatchCreateRequest(key=b"big")))
    assert (await asyncio.wait_for(stream.read(), 10)).created
    hub = follower.client_server.watches
    value = b"v" * 100_000
    first = None
    for i in range(40):  # 4 MB of events, far over the test server's 512 KiB backlog bound
        rev = (await kv.Put(r.PutRequest(key=b"big", value=value + b"%d" % i))).header.revision
        first = first or rev
    assert hub.pauses >= 1  # the client read nothing: its stream was paused
    seen = []
    while len(seen) < 40:
        resp = await asyncio.wait_for(stream.read(), 10)
        seen += [(e.kv.mod_revision, e.kv.value[-2:]) for e in resp.events]
    assert seen == [(first + i, (b"%d" % i).rjust(2, b"v")) for i in range(40)]  # every one, in order
    await wait_for(lambda: not hub.paused)
    stream.cancel()
    await slow.close()


async def test_a_watch_that_requires_a_leader_ends_when_the_node_has_none(stubs):
    """etcd's WithRequireLeader (metadata hasleader=true): the stream works while the node has a
    leader and ends with etcd's "no leader" once it has had none for a while."""
    kv, _, _, channel, follower = stubs
    requests: asyncio.Queue = asyncio.Queue()

    async def client_side():
        while (req := await requests.get()) is not None:
            yield req

    stream = g.WatchStub(channel).Watch(client_side(), metadata=(("hasleader", "true"),))
    requests.put_nowait(r.WatchRequest(create_request=r.WatchCreateRequest(key=b"k")))
    assert (await asyncio.wait_for(stream.read(), 10)).created
    await kv.Put(r.PutRequest(key=b"k", value=b"v"))
    assert (await asyncio.wait_for(stream.read(), 10)).events[0].kv.value == b"v"
    for n in [n for n in follower.cluster if n is not follower]:
        await stop_node(n)
        follower.cluster.remove(n)  # stopped: the fixture's teardown leaves it alone
    assert await asyncio.wait_for(status_of(stream.read()), 10) == (
        grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader")
    requests.put_nowait(None)  # the client's side ends too
    assert not follower.client_server.watches.streams
    status = await g.MaintenanceStub(channel).Status(r.StatusRequest())  # a candidate has no leader
    assert (status.leader, list(status.errors)) == (0, ["etcdserver: no leader"])
    assert (await health_check(channel)).status == health_pb2.HealthCheckResponse.NOT_SERVING
    again = g.WatchStub(channel).Watch(iter([]), metadata=(("hasleader", "true"),))  # refused at once
    assert await asyncio.wait_for(status_of(again.read()), 10) == (grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader")


async def test_unsupported_features_are_unimplemented_and_say_so(stubs):
    kv, _, _, channel, _ = stubs
    member_add = channel.unary_unary("/etcdserverpb.Cluster/MemberAdd")
    code, msg = await status_of(member_add(b""))
    assert code == grpc.StatusCode.UNIMPLEMENTED and "/etcdserverpb.Cluster/MemberAdd" in msg
    unknown = channel.stream_stream("/etcdserverpb.Nothing/Chat")
    code, msg = await status_of(unknown(iter([b""])).read())
    assert code == grpc.StatusCode.UNIMPLEMENTED and "/etcdserverpb.Nothing/Chat" in msg
    remove = channel.unary_unary("/etcdserverpb.Cluster/MemberRemove")
    code, msg = await status_of(remove(b""))
    assert code == grpc.StatusCode.UNIMPLEMENTED and "verikv" in msg


def health_check(channel, service=""):
    check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                                response_deserializer=health_pb2.HealthCheckResponse.FromString)
    return check(health_pb2.HealthCheckRequest(service=service))


async def test_grpc_health_checks_say_serving_while_the_node_has_a_leader(stubs):
    _, _, _, channel, _ = stubs
    assert (await health_check(channel)).status == health_pb2.HealthCheckResponse.SERVING
    code, msg = await status_of(health_check(channel, "no.such.Service"))
    assert code == grpc.StatusCode.NOT_FOUND and "no.such.Service" in msg


async def test_status_and_member_list(stubs):
    _, maintenance, cluster, _, follower = stubs
    st = await maintenance.Status(r.StatusRequest())
    assert st.leader in (1, 2, 3) and st.leader != follower.node_id + 1 and not st.errors
    members = await cluster.MemberList(r.MemberListRequest())
    assert [m.ID for m in members.members] == [1, 2, 3]
    assert members.members[0].clientURLs == [f"127.0.0.1:{CLIENT_PORT}"]


async def test_malformed_request_bytes_are_invalid_argument(stubs):
    channel = stubs[3]
    raw = channel.unary_unary("/etcdserverpb.KV/Put", request_serializer=None, response_deserializer=None)
    assert await status_of(raw(b"\xff\xff\xff")) == (
        grpc.StatusCode.INVALID_ARGUMENT, "verikv: /etcdserverpb.KV/Put: the request is not a valid PutRequest")
    # the server keeps serving after a bad call
    assert (await stubs[0].Put(r.PutRequest(key=b"after", value=b"v"))).header.revision >= 2


async def test_a_handler_that_fails_answers_its_call_internal_and_the_server_serves_on(stubs):
    kv, _, cluster, _, follower = stubs
    server = follower.client_server

    def broken(request, body, done):
        raise RuntimeError("boom")

    server._methods["/etcdserverpb.Cluster/MemberList"] = (r.MemberListRequest, broken)
    calls = [cluster.MemberList(r.MemberListRequest()) for _ in range(3)] + [kv.Put(r.PutRequest(key=b"k", value=b"v"))]
    outcomes = await asyncio.wait_for(asyncio.gather(*[status_of(c) for c in calls[:3]], calls[3]), 10)
    assert outcomes[:3] == [(grpc.StatusCode.INTERNAL,
                             "verikv: internal error in /etcdserverpb.Cluster/MemberList: RuntimeError: boom")] * 3
    assert outcomes[3].header.revision >= 2  # a call in the same batch as the failing ones


async def test_a_stopping_server_answers_waiting_calls_unavailable(tmp_path):
    node = await start_node(0, tmp_path, 90)  # its peers never start: no leader, a put waits
    url = f"127.0.0.1:{CLIENT_PORT + 9}"
    server = build_server(node, url, [url] * 3, ["http://peer"] * 3)
    await server.start()
    channel = grpc.aio.insecure_channel(url)
    call = g.KVStub(channel).Put(r.PutRequest(key=b"k", value=b"v"), timeout=20)
    await wait_for(lambda: node.machine.proposals.waiting)
    await server.stop(0.5)
    assert await status_of(call) == (grpc.StatusCode.UNAVAILABLE, "verikv: the node is stopping")
    await channel.close()
    await stop_node(node)


async def test_maintenance_status_hashes_alarms_defragment_and_move_leader(stubs):
    kv, maint, _, _, follower = stubs
    leader = leader_of(follower.cluster)
    await kv.Put(r.PutRequest(key=b"size", value=b"x" * 100))
    st = await maint.Status(r.StatusRequest())
    assert st.dbSize == st.dbSizeInUse == follower.kv.db_size >= 100 + 4
    assert st.raftAppliedIndex == follower.kv.next_slot and st.raftIndex >= st.raftAppliedIndex
    assert st.raftTerm == follower.machine.term >= 1 and st.leader == leader.node_id + 1
    await wait_for(lambda: leader.kv.revision == follower.kv.revision)
    h = await maint.HashKV(r.HashKVRequest())
    assert (h.hash, h.header.revision, h.compact_revision) == leader.kv.hash_kv(0)
    assert (await maint.HashKV(r.HashKVRequest(revision=1))).hash != h.hash
    assert await status_of(maint.HashKV(r.HashKVRequest(revision=99))) == (
        grpc.StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision")
    assert (await maint.Hash(r.HashRequest())).hash == follower.kv.hash_all()
    assert not (await maint.Alarm(r.AlarmRequest())).alarms
    nospace = r.AlarmRequest(action=r.AlarmRequest.ACTIVATE, memberID=3, alarm=r.NOSPACE)
    assert [a.memberID for a in (await maint.Alarm(nospace)).alarms] == [3]
    assert await status_of(kv.Put(r.PutRequest(key=b"k", value=b"v"))) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded")
    assert "memberID:3 alarm:NOSPACE " in (await maint.Status(r.StatusRequest())).errors
    assert (await kv.DeleteRange(r.DeleteRangeRequest(key=b"size"))).deleted == 1
    nospace.action = r.AlarmRequest.DEACTIVATE
    assert [a.memberID for a in (await maint.Alarm(nospace)).alarms] == [3]
    assert (await kv.Put(r.PutRequest(key=b"k", value=b"v"))).header.revision
    defrag = await maint.Defragment(r.DefragmentRequest())
    assert defrag.header.member_id == follower.node_id + 1
    assert follower.machine.snapshot_slot == follower.kv.next_slot
    assert await status_of(maint.MoveLeader(r.MoveLeaderRequest(targetID=1))) == (
        grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: not leader")


async def test_a_range_too_large_to_answer_gets_a_status_saying_what_to_do(stubs, monkeypatch):
    from verikv.shim.kv import store as store_module
    kv, _, _, _, _ = stubs
    for i in range(5):
        await kv.Put(r.PutRequest(key=b"r/%d" % i, value=b"v" * 100))
    monkeypatch.setattr(store_module, "MAX_RANGE_BYTES", 300)
    for serializable in (False, True):
        code, details = await status_of(kv.Range(r.RangeRequest(key=b"r/", range_end=b"r0", serializable=serializable)))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert details.startswith("verikv: the range's answer is too large: ") and "limit" in details
    got = await kv.Range(r.RangeRequest(key=b"r/", range_end=b"r0", limit=2))
    assert len(got.kvs) == 2 and got.more and got.count == 5
