"""Commands encode compactly into batches, and requests etcd refuses are refused with etcd's errors
(messages observed on etcd 3.4.23)."""

import pytest

from verikv.etcdpb import rpc_pb2 as r
from verikv.shim.kv import errors
from verikv.shim.kv.commands import (MAX_REQUEST_BYTES, BatchFormatError, Command, Kind, check_txn,
                                  decode_batch, encode_batch, validate)


def P(k, v=b"", **kw):
    return r.RequestOp(request_put=r.PutRequest(key=k, value=v, **kw))


def D(k, e=b""):
    return r.RequestOp(request_delete_range=r.DeleteRangeRequest(key=k, range_end=e))


def T(success=(), failure=()):
    return r.RequestOp(request_txn=r.TxnRequest(success=list(success), failure=list(failure)))


def refused(kind, req):
    with pytest.raises(errors.EtcdError) as info:
        validate(kind, req)
    return info.value


def test_batch_round_trip():
    cmds = [Command(Kind.PUT, 2**64 - 1, 5, 3, b"body"), Command(Kind.RANGE, 1, 0, 0, b"")]
    data = encode_batch([c.encode() for c in cmds])
    assert decode_batch(data) == cmds
    assert len(data) == 8 + 2 * (4 + 25) + 4  # header, per command a length and a 25-byte header


@pytest.mark.parametrize("data,why", [
    (b"", "shorter than its header"),
    (b"XXXX\0\0\0\0", "magic"),
    (encode_batch([b"\x02" + b"x" * 29])[:-1], "claims 30 bytes"),
    (encode_batch([b"\x02" + b"x" * 29]) + b"!", "trailing"),
    (encode_batch([b"\xc8" + b"\0" * 24]), "unknown command kind 200"),
])
def test_malformed_batches_are_refused(data, why):
    with pytest.raises(BatchFormatError, match=why):
        decode_batch(data)


def test_empty_key_everywhere():
    for kind, req in [(Kind.RANGE, r.RangeRequest()), (Kind.PUT, r.PutRequest(value=b"v")),
                      (Kind.DELETE_RANGE, r.DeleteRangeRequest()),
                      (Kind.TXN, r.TxnRequest(compare=[r.Compare(key=b"")])),
                      (Kind.TXN, r.TxnRequest(success=[P(b"")]))]:
        err = refused(kind, req)
        assert (err.code.name, err.message) == ("INVALID_ARGUMENT", "etcdserver: key is not provided")


def test_request_too_large():
    err = refused(Kind.PUT, r.PutRequest(key=b"k", value=b"x" * MAX_REQUEST_BYTES))
    assert (err.code.name, err.message) == ("INVALID_ARGUMENT", "etcdserver: request is too large")
    validate(Kind.PUT, r.PutRequest(key=b"k", value=b"x" * (MAX_REQUEST_BYTES - 100)))


def test_put_flag_conflicts():
    assert refused(Kind.PUT, r.PutRequest(key=b"a", value=b"x", ignore_value=True)) == errors.VALUE_PROVIDED
    assert refused(Kind.PUT, r.PutRequest(key=b"a", lease=5, ignore_lease=True)) == errors.LEASE_PROVIDED


def test_txn_op_count_limit():
    assert refused(Kind.TXN, r.TxnRequest(success=[P(b"k%d" % i) for i in range(129)])) == errors.TOO_MANY_OPS
    validate(Kind.TXN, r.TxnRequest(success=[P(b"k%d" % i) for i in range(128)]))


def test_an_empty_request_op_is_key_not_found():
    assert refused(Kind.TXN, r.TxnRequest(success=[r.RequestOp()])) == errors.KEY_NOT_FOUND


@pytest.mark.parametrize("ops", [
    [P(b"a"), P(b"a")],
    [P(b"a"), D(b"a")],
    [D(b"a", b"c"), P(b"b")],
    [T([P(b"a")]), P(b"a")],
    [T([P(b"a")]), T([P(b"a")])],
    [D(b"a"), T([P(b"a")])],
    [T([D(b"a")]), P(b"a")],  # a nested delete covers this level's put
])
def test_duplicate_keys_in_a_txn_branch(ops):
    assert refused(Kind.TXN, r.TxnRequest(success=ops)) == errors.DUPLICATE_KEY
    assert refused(Kind.TXN, r.TxnRequest(failure=ops)) == errors.DUPLICATE_KEY


@pytest.mark.parametrize("ops", [
    [D(b"a"), D(b"a")],  # two deletes of one key: allowed
    [T([P(b"a")], [P(b"a")])],  # then and else exclude each other
    [P(b"b"), D(b"a", b"\0")],  # etcd's interval check ignores "\0" range ends
])
def test_allowed_txn_shapes(ops):
    check_txn(r.TxnRequest(success=ops))


def test_success_and_failure_may_touch_the_same_key():
    check_txn(r.TxnRequest(success=[P(b"a")], failure=[P(b"a")]))
