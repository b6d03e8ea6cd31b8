"""KVStore.read: a single-key Range answered from the record's cached encoding is byte for byte
the protobuf encoding of what `range()` answers, and never stale: every put, delete, txn and
snapshot restore is followed by a read that must see the new state."""

from hypothesis import given, settings, strategies as st

from answers import decoded
from verikv.etcdpb import rpc_pb2 as r
from verikv.shim.kv.store import EncodedRange, KVStore, encode_header
from verikv.shim.kv.commands import Command, Kind, encode_batch

HEADER = dict(cluster_id=0x766B5F3300000001, member_id=2, raft_term=7)


def wire(kv: KVStore, key: bytes) -> bytes:
    """The bytes the servicer sends for a plain Range of `key` (header completed as it does)."""
    got = kv.read(key)  # the servicer's form of RangeRequest(key=key)
    assert isinstance(got, EncodedRange)
    assert kv.read(r.RangeRequest(key=key)) == kv.execute(Kind.RANGE, r.RangeRequest(key=key))
    return encode_header(r.ResponseHeader(revision=got.header_revision, **HEADER)) + got.body


def expected(kv: KVStore, key: bytes) -> bytes:
    resp = kv.range(r.RangeRequest(key=key))
    resp.header.cluster_id, resp.header.member_id, resp.header.raft_term = (
        HEADER["cluster_id"], HEADER["member_id"], HEADER["raft_term"])
    return resp.SerializeToString()


def read(kv: KVStore, key: bytes) -> r.RangeResponse:
    """What a client decodes from the cached path, checked against range()."""
    b = wire(kv, key)
    assert b == expected(kv, key)
    return r.RangeResponse.FromString(b)


def test_put_then_read_sees_each_new_value():
    kv = KVStore()
    assert read(kv, b"k").count == 0
    kv.put(r.PutRequest(key=b"k", value=b"v1"))
    first = read(kv, b"k")
    assert (first.count, first.kvs[0].value, first.kvs[0].version, first.header.revision) == (1, b"v1", 1, 2)
    assert read(kv, b"k") == first  # served from the cache: the same answer
    kv.put(r.PutRequest(key=b"k", value=b"v2"))
    second = read(kv, b"k")
    assert second.kvs[0].value == b"v2"
    assert (second.kvs[0].version, second.kvs[0].mod_revision, second.kvs[0].create_revision) == (2, 3, 2)
    assert second.header.revision == 3


def test_put_of_another_key_changes_only_the_header():
    kv = KVStore()
    kv.put(r.PutRequest(key=b"a", value=b"x"))
    before = read(kv, b"a")
    kv.put(r.PutRequest(key=b"b", value=b"y"))
    after = read(kv, b"a")
    assert after.kvs == before.kvs and after.header.revision == before.header.revision + 1


def test_ignore_value_put_keeps_value_with_new_revision():
    kv = KVStore()
    kv.put(r.PutRequest(key=b"k", value=b"v"))
    read(kv, b"k")
    kv.put(r.PutRequest(key=b"k", ignore_value=True))
    got = read(kv, b"k")
    assert (got.kvs[0].value, got.kvs[0].version, got.kvs[0].mod_revision) == (b"v", 2, 3)


def test_delete_then_read_sees_no_key():
    kv = KVStore()
    kv.put(r.PutRequest(key=b"k", value=b"v"))
    read(kv, b"k")
    kv.delete_range(r.DeleteRangeRequest(key=b"k"))
    gone = read(kv, b"k")
    assert gone.count == 0 and not gone.kvs and gone.header.revision == 3
    kv.put(r.PutRequest(key=b"k", value=b"again"))
    back = read(kv, b"k")
    assert (back.kvs[0].value, back.kvs[0].version, back.kvs[0].create_revision) == (b"again", 1, 4)


def test_range_delete_then_read_sees_no_key():
    kv = KVStore()
    for k in (b"p/1", b"p/2"):
        kv.put(r.PutRequest(key=k, value=b"v"))
        read(kv, k)
    kv.delete_range(r.DeleteRangeRequest(key=b"p/", range_end=b"p0"))
    assert read(kv, b"p/1").count == 0 and read(kv, b"p/2").count == 0


def test_txn_put_and_delete_then_read_sees_them():
    kv = KVStore()
    kv.put(r.PutRequest(key=b"a", value=b"1"))
    kv.put(r.PutRequest(key=b"b", value=b"1"))
    read(kv, b"a"), read(kv, b"b")
    resp = kv.txn(r.TxnRequest(
        compare=[r.Compare(key=b"a", target=r.Compare.VALUE, result=r.Compare.EQUAL, value=b"1")],
        success=[r.RequestOp(request_put=r.PutRequest(key=b"a", value=b"2")),
                 r.RequestOp(request_delete_range=r.DeleteRangeRequest(key=b"b"))]))
    assert resp.succeeded
    a = read(kv, b"a")
    assert (a.kvs[0].value, a.kvs[0].version, a.header.revision) == (b"2", 2, 4)
    assert read(kv, b"b").count == 0
    # the failure branch, inside a nested txn
    kv.txn(r.TxnRequest(
        compare=[r.Compare(key=b"a", target=r.Compare.VALUE, result=r.Compare.EQUAL, value=b"nope")],
        failure=[r.RequestOp(request_txn=r.TxnRequest(success=[
            r.RequestOp(request_put=r.PutRequest(key=b"a", value=b"3"))]))]))
    assert read(kv, b"a").kvs[0].value == b"3"


def test_applied_batches_then_read_sees_them():
    kv = KVStore()

    def apply(seq, kind, req):
        kv.apply(kv.next_slot, encode_batch([Command(kind, 5, seq, seq, req.SerializeToString()).encode()]))

    apply(1, Kind.PUT, r.PutRequest(key=b"k", value=b"v1"))
    assert read(kv, b"k").kvs[0].value == b"v1"
    apply(2, Kind.PUT, r.PutRequest(key=b"k", value=b"v2"))
    assert read(kv, b"k").kvs[0].value == b"v2"
    apply(3, Kind.DELETE_RANGE, r.DeleteRangeRequest(key=b"k"))
    assert read(kv, b"k").count == 0


def test_snapshot_restore_then_read_sees_the_snapshot():
    old = KVStore()
    old.put(r.PutRequest(key=b"k", value=b"old"))
    old.put(r.PutRequest(key=b"gone", value=b"x"))
    assert read(old, b"k").kvs[0].value == b"old" and read(old, b"gone").count == 1
    newer = KVStore()
    for v in (b"a", b"b", b"new"):
        newer.put(r.PutRequest(key=b"k", value=v))
    restored = KVStore.restore(newer.snapshot())
    got = read(restored, b"k")
    assert (got.kvs[0].value, got.kvs[0].version, got.header.revision) == (b"new", 3, 4)
    assert read(restored, b"gone").count == 0
    # and a restore of a store whose records were read (cached) gives the same answers
    again = KVStore.restore(restored.snapshot())
    assert read(again, b"k") == got


def test_other_requests_take_the_general_path():
    kv = KVStore()
    kv.put(r.PutRequest(key=b"k", value=b"v"))
    for req in (r.RangeRequest(key=b"k", limit=1), r.RangeRequest(key=b"k", keys_only=True),
                r.RangeRequest(key=b"k", count_only=True), r.RangeRequest(key=b"k", serializable=True),
                r.RangeRequest(key=b"k", range_end=b"l"), r.RangeRequest(key=b"k", revision=2),
                r.RangeRequest(key=b"k", sort_order=r.RangeRequest.DESCEND),
                r.RangeRequest(key=b"k", max_mod_revision=1)):
        got = kv.read(req)
        assert not isinstance(got, EncodedRange), req
        assert got == kv.execute(Kind.RANGE, req)
    assert kv.read(r.RangeRequest(key=b"k", max_mod_revision=1)).count == 1 and not kv.read(
        r.RangeRequest(key=b"k", max_mod_revision=1)).kvs


def test_long_keys_and_values_encode_like_protobuf():
    kv = KVStore()
    for key, value in ((b"k" * 127, b"v"), (b"k" * 128, b"v" * 300), (b"x" * 20000, b"y" * 70000)):
        kv.put(r.PutRequest(key=key, value=value))
        got = read(kv, key)
        assert got.kvs[0].key == key and got.kvs[0].value == value
    assert decoded(EncodedRange(9, b"")) == r.RangeResponse(header=r.ResponseHeader(revision=9))


KEYS = [b"a", b"b", b"c"]
OPS = st.one_of(
    st.tuples(st.just("put"), st.sampled_from(KEYS), st.binary(max_size=200)),
    st.tuples(st.just("del"), st.sampled_from(KEYS), st.booleans()),
    st.tuples(st.just("txn"), st.sampled_from(KEYS), st.binary(max_size=8)),
    st.tuples(st.just("restore"), st.just(b""), st.just(b"")),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(OPS, max_size=30))
def test_cached_reads_always_equal_range(ops):
    kv = KVStore()
    for op, key, arg in ops:
        if op == "put":
            kv.put(r.PutRequest(key=key, value=arg))
        elif op == "del":
            kv.delete_range(r.DeleteRangeRequest(key=key, range_end=b"\0" if arg else b""))
        elif op == "txn":
            kv.txn(r.TxnRequest(
                compare=[r.Compare(key=key, target=r.Compare.VERSION, result=r.Compare.GREATER, version=1)],
                success=[r.RequestOp(request_put=r.PutRequest(key=key, value=arg))],
                failure=[r.RequestOp(request_delete_range=r.DeleteRangeRequest(key=b"a", range_end=b"z"))]))
        else:
            kv = KVStore.restore(kv.snapshot())
        for k in KEYS:
            read(kv, k)  # checks the cached bytes against range() after every step
