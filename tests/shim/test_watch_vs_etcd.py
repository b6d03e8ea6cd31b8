"""Watchers see the same events as a real etcd 3.4's, event for event: random sequences of puts,
deletes, txns and compactions, watched live (created before the writes) and from the past
(created after them, from a random start revision), with prefixes, "from key" ranges, filters
and prev_kv. Both sides' events are compared with every field (etcd's revisions shifted as in
test_kv_vs_etcd.py), and so are the cancellations of watchers whose start was compacted.
"""

import os
import queue
import threading
import time
from pathlib import Path

import asyncio

import grpc
import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from answers import execute
from test_grpc_server import CLIENT_PORT, stubs  # noqa: F401 (a fixture)
from verikv.cluster.etcd import ETCD_BINARY, start_etcd_cluster
from verikv.etcdpb import rpc_pb2 as r, rpc_pb2_grpc
from verikv.shim.kv.store import KVStore
from verikv.shim.kv.watch import WatchHub, as_response

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.access(ETCD_BINARY, os.X_OK), reason="etcd is not installed")]

KEYS = [b"a", b"a/1", b"a/2", b"b"]
NOPUT, NODELETE = r.WatchCreateRequest.NOPUT, r.WatchCreateRequest.NODELETE
COMPARED = [0]  # events and cancellations compared, over the examples


@pytest.fixture(scope="module")
def etcd_cluster():
    cluster = start_etcd_cluster(Path("/tmp/verikv-shim-watchcmp"), members=1, base_port=25030)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def etcd(etcd_cluster):
    channel = grpc.insecure_channel(etcd_cluster.client_endpoints[0])
    yield rpc_pb2_grpc.KVStub(channel), rpc_pb2_grpc.WatchStub(channel)
    channel.close()


keys = st.sampled_from(KEYS)
writes = st.one_of(
    st.tuples(st.just("put"), keys, st.sampled_from([b"x", b"y", b""])),
    st.tuples(st.just("delete"), keys, st.sampled_from([b"", b"a0", b"\0"])),
    st.tuples(st.just("txn"), keys, keys),
    st.tuples(st.just("compact"), st.integers(1, 8), st.just(None)),
)
watchers = st.tuples(keys, st.sampled_from([b"", b"a0", b"\0", b"c"]), st.integers(0, 10), st.booleans(),
                     st.sampled_from([[], [NOPUT], [NODELETE]]))


def request_of(write, offset=0):
    kind, a, b = write
    if kind == "put":
        return r.PutRequest(key=a, value=b, prev_kv=True)
    if kind == "delete":
        return r.DeleteRangeRequest(key=a, range_end=b)
    if kind == "txn":  # two writes in one revision, in this order
        ops = [r.RequestOp(request_put=r.PutRequest(key=a, value=b"t1"))]
        if b != a:
            ops.append(r.RequestOp(request_delete_range=r.DeleteRangeRequest(key=b)))
        return r.TxnRequest(success=ops)
    # physical: etcd answers once its backend has dropped what the compaction removes (a tombstone at
    # the compacted revision goes too); without it, a watcher created just after sees that
    # tombstone or not, depending on the backend's timing. verikv's compaction is done when answered.
    return r.CompactionRequest(revision=a + offset, physical=True)


def run_on_etcd(kv, req):
    method = {r.PutRequest: kv.Put, r.DeleteRangeRequest: kv.DeleteRange, r.TxnRequest: kv.Txn,
              r.CompactionRequest: kv.Compact}[type(req)]
    try:
        method(req, timeout=10)
    except grpc.RpcError:
        pass


def create_request(w, start):
    key, range_end, _, prev_kv, filters = w
    return r.WatchCreateRequest(key=key, range_end=range_end, start_revision=start, prev_kv=prev_kv,
                                filters=filters)


def flat(responses, offset):
    """Per watch id: its responses' revisions, their events as comparable tuples, and how it
    was canceled."""
    out: dict[int, list] = {}
    for resp in responses:
        if resp.created:
            out.setdefault(resp.watch_id, [])
            continue
        got = out.setdefault(resp.watch_id, [])
        if resp.events:
            got.append(("response at", shift(resp.header.revision, offset)))
        if resp.canceled:
            got.append(("canceled", resp.compact_revision - offset if resp.compact_revision else 0))
        for e in resp.events:
            kv, prev = e.kv, e.prev_kv
            got.append((e.type, kv.key, kv.value, kv.version, shift(kv.create_revision, offset),
                        shift(kv.mod_revision, offset), e.HasField("prev_kv"), prev.value,
                        shift(prev.mod_revision, offset)))
    return out


def shift(rev, offset):
    return rev - offset if rev > 0 else rev


class EtcdWatchStream:
    """One Watch stream to etcd, its responses collected by a thread."""

    def __init__(self, watch_stub):
        self.requests: queue.Queue = queue.Queue()
        self.responses: list = []
        self.call = watch_stub.Watch(iter(self.requests.get, None))
        self.thread = threading.Thread(target=self._collect, daemon=True)
        self.thread.start()

    def _collect(self):
        try:
            for resp in self.call:
                self.responses.append(resp)
        except grpc.RpcError:
            pass

    def create(self, creq):
        n = sum(1 for x in self.responses if x.created)
        self.requests.put(r.WatchRequest(create_request=creq))
        self.wait(lambda: sum(1 for x in self.responses if x.created) > n)

    def wait(self, cond, timeout_s=5.0):
        deadline = time.monotonic() + timeout_s
        while not cond() and time.monotonic() < deadline:
            time.sleep(0.005)

    def close(self):
        self.call.cancel()
        self.requests.put(None)


@settings(max_examples=int(os.environ.get("VERIKV_ETCD_EXAMPLES", "60")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# a watcher from the compacted revision, where a tombstone was: etcd once sent it, once not
@example(ops=[("put", b"a", b"x"), ("delete", b"a", b""), ("compact", 3, None)],
         live=[(b"a", b"", 0, False, [])], past=[(b"a", b"", 1, False, [])])
@given(ops=st.lists(writes, min_size=3, max_size=10), live=st.lists(watchers, min_size=1, max_size=2),
       past=st.lists(watchers, min_size=1, max_size=3))
def test_same_events_as_etcd(etcd, ops, live, past):
    kv, watch = etcd
    kv.DeleteRange(r.DeleteRangeRequest(key=b"\0", range_end=b"\0"))
    kv.Put(r.PutRequest(key=b"~", value=b"past any compaction"))
    offset = kv.DeleteRange(r.DeleteRangeRequest(key=b"~")).header.revision - 1
    store, hub = KVStore(), WatchHub()
    ours: list = []
    theirs = EtcdWatchStream(watch)
    try:
        for w in live:  # from the next revision on
            ours += [as_response(resp) for _, resp in hub.request(1, r.WatchRequest(create_request=create_request(w, 0)), store)]
            theirs.create(create_request(w, 0))
        for write in ops:
            execute(store, request_of(write))  # a refused compaction changes nothing, on both sides
            ours += [as_response(resp) for _, resp in hub.applied(store, store.take_recent())]
            run_on_etcd(kv, request_of(write, offset))
        for w in past:  # from a revision in the past (or the future)
            # from 2 up to the next revision (etcd's revision 1 here, the offset, is its delete of "~")
            start = 2 + w[2] % store.revision
            ours += [as_response(resp) for _, resp in hub.request(1, r.WatchRequest(create_request=create_request(w, start)), store)]
            theirs.create(create_request(w, start + offset))
        mine = flat(ours, 0)
        expected = sum(len(v) for v in mine.values())
        theirs.wait(lambda: sum(len(v) for v in flat(theirs.responses, offset).values()) >= expected)
        time.sleep(0.05)  # anything etcd sends beyond what verikv sent would arrive now
        assert flat(theirs.responses, offset) == mine, (ops, live, past)
        COMPARED[0] += expected
    finally:
        theirs.close()


def test_the_comparison_saw_events():
    """Runs after the comparison (pytest keeps the file's order): it compared events, not nothing."""
    if COMPARED[0] == 0:
        pytest.skip("the comparison did not run")
    assert COMPARED[0] > 50


BIG = 400_000  # bytes per value: a few events make a response over etcd's limit (2 MiB)


def fragment_scenario(endpoint):
    """Three watchers on prefix frag/: live with prev_kv and `fragment`, live with prev_kv only,
    and (created after the writes) from the first write's revision with `fragment`. Three puts,
    then a txn that overwrites the three keys (one revision of three events, 800 kB each with
    their prev_kv). Returns each watcher's responses as (events, fragment) with events as
    (key, revision since the first write, value size, prev value size)."""
    options = [("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)]
    with grpc.insecure_channel(endpoint, options=options) as channel:
        kv, stream = rpc_pb2_grpc.KVStub(channel), EtcdWatchStream(rpc_pb2_grpc.WatchStub(channel))
        try:
            prefix = dict(key=b"frag/", range_end=b"frag0")
            stream.create(r.WatchCreateRequest(watch_id=1, prev_kv=True, fragment=True, **prefix))
            stream.create(r.WatchCreateRequest(watch_id=2, prev_kv=True, **prefix))
            first = None
            for i in range(3):
                rev = kv.Put(r.PutRequest(key=b"frag/%d" % i, value=b"a" * BIG), timeout=10).header.revision
                first = first or rev
            ops = [r.RequestOp(request_put=r.PutRequest(key=b"frag/%d" % i, value=b"b" * BIG)) for i in range(3)]
            last = kv.Txn(r.TxnRequest(success=ops), timeout=10).header.revision
            stream.create(r.WatchCreateRequest(watch_id=3, start_revision=first, fragment=True, **prefix))

            def seen(watch_id):
                return [resp for resp in stream.responses if resp.watch_id == watch_id and resp.events]

            stream.wait(lambda: all(seen(w) and seen(w)[-1].events[-1].kv.mod_revision == last
                                    and not seen(w)[-1].fragment for w in (1, 2, 3)), timeout_s=20)
            return {w: [([(e.kv.key, e.kv.mod_revision - first, len(e.kv.value), len(e.prev_kv.value))
                          for e in resp.events], resp.fragment) for resp in seen(w)] for w in (1, 2, 3)}
        finally:
            stream.close()


async def test_fragmented_responses_are_split_as_etcd_splits_them(etcd_cluster, stubs):
    """etcd splits a response over its request limit, for watchers that asked for it, into
    fragments; verikv's are the same, event for event, and a watcher that did not ask gets the
    whole response."""
    follower = stubs[-1]
    theirs = await asyncio.to_thread(fragment_scenario, etcd_cluster.client_endpoints[0])
    ours = await asyncio.to_thread(fragment_scenario, f"127.0.0.1:{CLIENT_PORT + follower.node_id}")
    assert ours == theirs
    # what the comparison covered: the txn split in two for watcher 1, whole for watcher 2, and
    # the catch-up of watcher 3 split in two
    assert [[len(events) for events, _ in ours[w]] for w in (1, 2, 3)] == [[1, 1, 1, 2, 1], [1, 1, 1, 3], [5, 1]]
    assert [frag for _, frag in ours[1]] == [False] * 3 + [True, False]
