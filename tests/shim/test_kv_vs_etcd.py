"""The state machine gives the same answers as a real etcd 3.4 for random sequences of
Put/DeleteRange/Range/Txn/Compact, reads at past revisions included (responses compared field by
field, errors by code and message).

Each example starts by deleting every key in etcd (and then putting and deleting a key of its
own, so that etcd's revision is past any compaction an earlier example made); etcd's revisions
are then shifted by the revision this leaves, so both sides count from 1 (the store starts empty
at 1, never compacted).
"""

import os
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from verikv.cluster.etcd import ETCD_BINARY, start_etcd_cluster
from verikv.etcdpb import rpc_pb2 as r, rpc_pb2_grpc
from verikv.shim.kv import errors
from verikv.shim.kv.store import KVStore
from verikv.shim.kv.commands import Kind, validate

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.access(ETCD_BINARY, os.X_OK), reason="etcd is not installed")]

KEYS = [b"a", b"b", b"c", b"d"]


@pytest.fixture(scope="module")
def etcd():
    cluster = start_etcd_cluster(Path("/tmp/verikv-shim-kvcmp"), members=1, base_port=25010)
    channel = grpc.insecure_channel(cluster.client_endpoints[0])
    yield rpc_pb2_grpc.KVStub(channel)
    channel.close()
    cluster.stop()


keys = st.sampled_from(KEYS)
values = st.sampled_from([b"", b"x", b"y", b"zz"])


@st.composite
def range_ends(draw, key):
    return draw(st.sampled_from([b"", b"\0", key + b"\0", b"c", b"e"]))


@st.composite
def range_requests(draw):
    key = draw(keys)
    return r.RangeRequest(
        key=key, range_end=draw(range_ends(key)), limit=draw(st.sampled_from([0, 0, 1, 2])),
        sort_order=draw(st.sampled_from([0, 0, 1, 2])), sort_target=draw(st.sampled_from([0, 0, 1, 2, 3, 4])),
        keys_only=draw(st.booleans()), count_only=draw(st.sampled_from([False, False, True])),
        min_mod_revision=draw(st.sampled_from([0, 0, 0, 3])),
        revision=draw(st.sampled_from([0, 0, 0, 1, 2, 3, 4, 6, 9])))


@st.composite
def put_requests(draw):
    ignore = draw(st.sampled_from([False, False, False, True]))
    return r.PutRequest(key=draw(keys), value=b"" if ignore else draw(values), prev_kv=draw(st.booleans()),
                        ignore_value=ignore)


@st.composite
def delete_requests(draw):
    key = draw(keys)
    return r.DeleteRangeRequest(key=key, range_end=draw(range_ends(key)), prev_kv=draw(st.booleans()))


@st.composite
def compares(draw):
    key = draw(keys)
    target = draw(st.sampled_from(["VALUE", "VERSION", "CREATE", "MOD"]))
    c = r.Compare(key=key, range_end=draw(st.sampled_from([b"", b"", b"\0", b"c"])),
                  target=getattr(r.Compare, target),
                  result=draw(st.sampled_from([0, 1, 2, 3])))
    if target == "VALUE":
        c.value = draw(values)
    elif target == "VERSION":
        c.version = draw(st.integers(0, 3))
    elif target == "CREATE":
        c.create_revision = draw(st.integers(0, 6))
    else:
        c.mod_revision = draw(st.integers(0, 6))
    return c


def request_ops(depth):
    leaves = [range_requests().map(lambda q: r.RequestOp(request_range=q)),
              put_requests().map(lambda q: r.RequestOp(request_put=q)),
              delete_requests().map(lambda q: r.RequestOp(request_delete_range=q))]
    if depth > 0:
        leaves.append(txn_requests(depth - 1).map(lambda q: r.RequestOp(request_txn=q)))
    return st.one_of(leaves)


@st.composite
def txn_requests(draw, depth=1):
    return r.TxnRequest(compare=draw(st.lists(compares(), max_size=2)),
                        success=draw(st.lists(request_ops(depth), max_size=3)),
                        failure=draw(st.lists(request_ops(depth), max_size=3)))


compact_requests = st.integers(1, 9).map(lambda rev: r.CompactionRequest(revision=rev))

requests = st.one_of(
    range_requests().map(lambda q: (Kind.RANGE, q)), put_requests().map(lambda q: (Kind.PUT, q)),
    delete_requests().map(lambda q: (Kind.DELETE_RANGE, q)), txn_requests().map(lambda q: (Kind.TXN, q)),
    compact_requests.map(lambda q: (Kind.COMPACT, q)))


def shift_revisions(msg, offset):
    """Subtract offset from every non-zero revision in an etcd response (recursively)."""
    for fd, value in msg.ListFields():
        if fd.type == fd.TYPE_MESSAGE:
            for sub in (value if fd.label == fd.LABEL_REPEATED else [value]):
                shift_revisions(sub, offset)
        elif fd.name in ("revision", "create_revision", "mod_revision") and value > 0:
            setattr(msg, fd.name, value - offset)
    if msg.DESCRIPTOR.name == "ResponseHeader":
        msg.cluster_id = msg.member_id = msg.raft_term = 0


def to_etcd(kind, req, offset):
    """The same request for etcd: revisions inside it shifted into etcd's numbering."""
    req = type(req).FromString(req.SerializeToString())
    if kind == Kind.TXN:
        stack = [req]
        while stack:
            t = stack.pop()
            for c in t.compare:
                if c.WhichOneof("target_union") in ("create_revision", "mod_revision"):
                    field = c.WhichOneof("target_union")
                    if getattr(c, field) > 0:
                        setattr(c, field, getattr(c, field) + offset)
            for op in list(t.success) + list(t.failure):
                if op.WhichOneof("request") == "request_txn":
                    stack.append(op.request_txn)
                elif op.WhichOneof("request") == "request_range":
                    shift_range(op.request_range, offset)
    elif kind == Kind.RANGE:
        shift_range(req, offset)
    elif kind == Kind.COMPACT and req.revision > 0:
        req.revision += offset
    return req


def shift_range(req, offset):
    if req.min_mod_revision:
        req.min_mod_revision += offset
    if req.revision > 0:
        req.revision += offset


def crashes_etcd(kind, req) -> bool:
    """etcd 3.4.23 panics ("unexpected error during txn: key not found") on a txn that deletes a
    key through a "\\0" range end and then puts it with ignore_value: its duplicate-key check
    misses the overlap. Such txns are not sent (verikv answers them without crashing)."""
    if kind != Kind.TXN:
        return False
    ops, stack = [], [req]
    while stack:
        t = stack.pop()
        for op in list(t.success) + list(t.failure):
            ops.append(op)
            if op.WhichOneof("request") == "request_txn":
                stack.append(op.request_txn)
    return (any(op.request_delete_range.range_end == b"\0" for op in ops)
            and any(op.request_put.ignore_value for op in ops))


def call_etcd(stub, kind, req):
    method = {Kind.RANGE: stub.Range, Kind.PUT: stub.Put, Kind.DELETE_RANGE: stub.DeleteRange,
              Kind.TXN: stub.Txn, Kind.COMPACT: stub.Compact}[kind]
    try:
        return method(req, timeout=10)
    except grpc.RpcError as e:
        return errors.EtcdError(e.code(), e.details())


def call_store(store, kind, req):
    try:
        validate(kind, req)
    except errors.EtcdError as err:
        return err
    return store.execute(kind, req)


@settings(max_examples=int(os.environ.get("VERIKV_ETCD_EXAMPLES", "150")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=st.lists(requests, min_size=1, max_size=10))
def test_same_answers_as_etcd(etcd, ops):
    assume(not any(crashes_etcd(kind, req) for kind, req in ops))
    etcd.DeleteRange(r.DeleteRangeRequest(key=b"\0", range_end=b"\0"))
    etcd.Put(r.PutRequest(key=b"~", value=b"past any compaction"))
    base = etcd.DeleteRange(r.DeleteRangeRequest(key=b"~")).header.revision
    offset = base - 1
    store = KVStore()
    for i, (kind, req) in enumerate(ops):
        theirs = call_etcd(etcd, kind, to_etcd(kind, req, offset))
        ours = call_store(store, kind, req)
        if isinstance(theirs, errors.EtcdError) or isinstance(ours, errors.EtcdError):
            assert ours == theirs, f"op {i} {kind.name} {req}"
            continue
        shift_revisions(theirs, offset)
        assert ours == theirs, f"op {i} {kind.name} {req}\nours:\n{ours}\netcd:\n{theirs}"
