"""The KV state machine answers like etcd 3.4 (cases observed on a real etcd 3.4.23) and applies
every client command exactly once, in slot order."""

import pytest
from hypothesis import given, settings, strategies as st

from verikv.etcdpb import rpc_pb2 as r
from verikv.shim.kv import errors
from verikv.shim.kv.sessions import MAX_RESULTS_PER_SESSION
from verikv.shim.kv.store import KVStore
from verikv.shim.kv.commands import Command, Kind, encode_batch


def P(k, v=b"", **kw):
    return r.RequestOp(request_put=r.PutRequest(key=k, value=v, **kw))


def D(k, e=b"", **kw):
    return r.RequestOp(request_delete_range=r.DeleteRangeRequest(key=k, range_end=e, **kw))


def R(k, e=b"", **kw):
    return r.RequestOp(request_range=r.RangeRequest(key=k, range_end=e, **kw))


def cmp(key, target, result, **kw):
    return r.Compare(key=key, target=getattr(r.Compare, target), result=getattr(r.Compare, result), **kw)


def keys(resp):
    return [kv.key for kv in resp.kvs]


@pytest.fixture
def kv():
    return KVStore()


def test_fresh_store_is_at_revision_1(kv):
    resp = kv.range(r.RangeRequest(key=b"a"))
    assert resp.header.revision == 1 and resp.count == 0 and not resp.kvs


def test_put_creates_then_versions_a_key(kv):
    assert kv.put(r.PutRequest(key=b"a", value=b"1")).header.revision == 2
    assert kv.put(r.PutRequest(key=b"a", value=b"2")).header.revision == 3
    (a,) = kv.range(r.RangeRequest(key=b"a")).kvs
    assert (a.create_revision, a.mod_revision, a.version, a.value) == (2, 3, 2, b"2")


def test_put_of_the_same_value_still_moves_the_revision(kv):
    kv.put(r.PutRequest(key=b"a", value=b"1"))
    assert kv.put(r.PutRequest(key=b"a", value=b"1")).header.revision == 3


def test_put_prev_kv_returns_the_previous_pair_only_if_asked(kv):
    assert not kv.put(r.PutRequest(key=b"a", value=b"1", prev_kv=True)).HasField("prev_kv")
    resp = kv.put(r.PutRequest(key=b"a", value=b"2", prev_kv=True))
    assert resp.prev_kv.value == b"1" and resp.prev_kv.version == 1 and resp.prev_kv.mod_revision == 2
    assert not kv.put(r.PutRequest(key=b"a", value=b"3")).HasField("prev_kv")


def test_delete_resets_version_and_create_revision(kv):
    kv.put(r.PutRequest(key=b"a", value=b"1"))
    kv.put(r.PutRequest(key=b"a", value=b"2"))
    d = kv.delete_range(r.DeleteRangeRequest(key=b"a", prev_kv=True))
    assert d.deleted == 1 and d.header.revision == 4 and d.prev_kvs[0].value == b"2"
    kv.put(r.PutRequest(key=b"a", value=b"3"))
    (a,) = kv.range(r.RangeRequest(key=b"a")).kvs
    assert (a.create_revision, a.mod_revision, a.version) == (5, 5, 1)


def test_delete_of_nothing_does_not_move_the_revision(kv):
    resp = kv.delete_range(r.DeleteRangeRequest(key=b"nothing"))
    assert resp.deleted == 0 and resp.header.revision == 1 and kv.revision == 1


def test_delete_range_deletes_many_keys_in_one_revision(kv):
    for k in (b"a", b"b", b"c"):
        kv.put(r.PutRequest(key=k, value=k))
    d = kv.delete_range(r.DeleteRangeRequest(key=b"a", range_end=b"c", prev_kv=True))
    assert d.deleted == 2 and [p.key for p in d.prev_kvs] == [b"a", b"b"] and d.header.revision == 5
    assert keys(kv.range(r.RangeRequest(key=b"\0", range_end=b"\0"))) == [b"c"]


def test_range_end_forms(kv):
    for k in (b"a", b"ab", b"b", b"c"):
        kv.put(r.PutRequest(key=k, value=b"v"))
    assert keys(kv.range(r.RangeRequest(key=b"a"))) == [b"a"]  # single key
    assert keys(kv.range(r.RangeRequest(key=b"a", range_end=b"b"))) == [b"a", b"ab"]  # [a, b)
    assert keys(kv.range(r.RangeRequest(key=b"ab", range_end=b"\0"))) == [b"ab", b"b", b"c"]  # >= ab
    assert keys(kv.range(r.RangeRequest(key=b"\0", range_end=b"\0"))) == [b"a", b"ab", b"b", b"c"]  # all
    assert keys(kv.range(r.RangeRequest(key=b"z", range_end=b"a"))) == []  # end before start


def test_range_limit_sets_more_and_count_is_the_total(kv):
    for k in (b"a", b"b", b"c"):
        kv.put(r.PutRequest(key=k, value=b"v"))
    resp = kv.range(r.RangeRequest(key=b"a", range_end=b"\0", limit=2))
    assert keys(resp) == [b"a", b"b"] and resp.more and resp.count == 3
    resp = kv.range(r.RangeRequest(key=b"a", range_end=b"\0", limit=3))
    assert not resp.more and resp.count == 3


def test_count_only_and_keys_only(kv):
    kv.put(r.PutRequest(key=b"a", value=b"v"))
    kv.put(r.PutRequest(key=b"b", value=b"w"))
    c = kv.range(r.RangeRequest(key=b"a", range_end=b"\0", count_only=True))
    assert c.count == 2 and not c.kvs
    k = kv.range(r.RangeRequest(key=b"a", range_end=b"\0", keys_only=True))
    assert keys(k) == [b"a", b"b"] and all(kv_.value == b"" and kv_.version == 1 for kv_ in k.kvs)


def test_sort_by_target_defaults_to_ascending_and_ties_keep_key_order(kv):
    kv.put(r.PutRequest(key=b"a", value=b"z"))
    kv.put(r.PutRequest(key=b"b", value=b"y"))
    kv.put(r.PutRequest(key=b"c", value=b"y"))
    by_value = kv.range(r.RangeRequest(key=b"\0", range_end=b"\0", sort_target=r.RangeRequest.VALUE))
    assert keys(by_value) == [b"b", b"c", b"a"]
    desc = kv.range(r.RangeRequest(key=b"\0", range_end=b"\0", sort_target=r.RangeRequest.VALUE,
                                   sort_order=r.RangeRequest.DESCEND))
    assert keys(desc) == [b"a", b"b", b"c"]
    by_key_desc = kv.range(r.RangeRequest(key=b"\0", range_end=b"\0", sort_order=r.RangeRequest.DESCEND))
    assert keys(by_key_desc) == [b"c", b"b", b"a"]
    limited = kv.range(r.RangeRequest(key=b"\0", range_end=b"\0", sort_order=r.RangeRequest.DESCEND, limit=1))
    assert keys(limited) == [b"c"] and limited.more


def test_min_max_revision_filters(kv):
    for k in (b"a", b"b", b"c"):  # mod revisions 2, 3, 4
        kv.put(r.PutRequest(key=k, value=b"v"))
    resp = kv.range(r.RangeRequest(key=b"\0", range_end=b"\0", min_mod_revision=3, max_mod_revision=3))
    assert keys(resp) == [b"b"] and resp.count == 3


def test_range_at_a_past_revision_sees_that_revision_and_future_is_out_of_range(kv):
    kv.put(r.PutRequest(key=b"a", value=b"v1"))  # 2
    kv.put(r.PutRequest(key=b"b", value=b"v"))  # 3
    kv.put(r.PutRequest(key=b"a", value=b"v2"))  # 4
    kv.delete_range(r.DeleteRangeRequest(key=b"b"))  # 5
    everything = dict(key=b"\0", range_end=b"\0")
    assert keys(kv.range(r.RangeRequest(**everything, revision=1))) == []
    at3 = kv.range(r.RangeRequest(**everything, revision=3))
    assert [(x.key, x.value, x.version, x.mod_revision) for x in at3.kvs] == [(b"a", b"v1", 1, 2), (b"b", b"v", 1, 3)]
    assert at3.header.revision == 5 and at3.count == 2  # the header says the current revision
    assert [x.value for x in kv.range(r.RangeRequest(**everything, revision=4)).kvs] == [b"v2", b"v"]
    assert keys(kv.range(r.RangeRequest(**everything, revision=5))) == [b"a"]
    assert kv.execute(Kind.RANGE, r.RangeRequest(key=b"a", revision=6)) == errors.FUTURE_REV


def test_compaction_forgets_only_what_no_later_read_sees(kv):
    kv.put(r.PutRequest(key=b"a", value=b"v1"))  # 2
    kv.put(r.PutRequest(key=b"b", value=b"v"))  # 3
    kv.put(r.PutRequest(key=b"a", value=b"v2"))  # 4
    kv.delete_range(r.DeleteRangeRequest(key=b"b"))  # 5
    kv.put(r.PutRequest(key=b"c", value=b"v"))  # 6
    before = {rev: kv.range(r.RangeRequest(key=b"\0", range_end=b"\0", revision=rev)) for rev in range(1, 7)}
    assert kv.history_size() == 5
    assert kv.execute(Kind.COMPACT, r.CompactionRequest(revision=5)).header.revision == 6
    # a@2 is shadowed by a@4; b's tombstone at 5 is the last of b at or below 5: both go
    assert kv.history_size() == 2
    for rev in range(5, 7):
        assert kv.range(r.RangeRequest(key=b"\0", range_end=b"\0", revision=rev)) == before[rev]
    for rev in range(1, 5):
        assert kv.execute(Kind.RANGE, r.RangeRequest(key=b"a", revision=rev)) == errors.COMPACTED
    assert kv.execute(Kind.COMPACT, r.CompactionRequest(revision=5)) == errors.COMPACTED
    assert kv.execute(Kind.COMPACT, r.CompactionRequest(revision=4)) == errors.COMPACTED
    assert kv.execute(Kind.COMPACT, r.CompactionRequest(revision=7)) == errors.FUTURE_REV
    restored = KVStore.restore(kv.snapshot())
    assert restored.snapshot() == kv.snapshot() and restored.compact_revision == 5
    assert restored.execute(Kind.RANGE, r.RangeRequest(key=b"a", revision=4)) == errors.COMPACTED
    assert restored.range(r.RangeRequest(key=b"\0", range_end=b"\0", revision=5)) == before[5]


def test_put_ignore_value_keeps_the_value_and_needs_the_key(kv):
    assert kv.execute(Kind.PUT, r.PutRequest(key=b"a", ignore_value=True)) == errors.KEY_NOT_FOUND
    assert kv.revision == 1
    kv.put(r.PutRequest(key=b"a", value=b"keep"))
    assert kv.put(r.PutRequest(key=b"a", ignore_value=True)).header.revision == 3
    (a,) = kv.range(r.RangeRequest(key=b"a")).kvs
    assert a.value == b"keep" and a.version == 2


def test_put_with_a_lease_fails_as_lease_not_found(kv):
    err = kv.execute(Kind.PUT, r.PutRequest(key=b"a", value=b"v", lease=12345))
    assert err == errors.LEASE_NOT_FOUND and err.code.name == "NOT_FOUND" and kv.revision == 1


def test_txn_compare_value_on_a_missing_key_always_fails(kv):
    t = kv.txn(r.TxnRequest(compare=[cmp(b"nope", "VALUE", "EQUAL", value=b"")], failure=[R(b"a")]))
    assert not t.succeeded and t.header.revision == 1
    assert t.responses[0].response_range.header.revision == 1


def test_txn_compare_on_missing_key_uses_zero_fields(kv):
    t = kv.txn(r.TxnRequest(compare=[cmp(b"nope", "VERSION", "EQUAL", version=0),
                                     cmp(b"nope", "CREATE", "EQUAL", create_revision=0)]))
    assert t.succeeded


def test_txn_compare_over_a_range_needs_every_key(kv):
    kv.put(r.PutRequest(key=b"a", value=b"1"))
    kv.put(r.PutRequest(key=b"b", value=b"2"))
    assert kv.txn(r.TxnRequest(compare=[cmp(b"a", "VALUE", "GREATER", value=b"0", range_end=b"c")])).succeeded
    assert not kv.txn(r.TxnRequest(compare=[cmp(b"a", "VALUE", "GREATER", value=b"1",
                                                 range_end=b"c")])).succeeded
    assert kv.txn(r.TxnRequest(compare=[cmp(b"a", "MOD", "LESS", mod_revision=4, range_end=b"\0")])).succeeded
    assert kv.txn(r.TxnRequest(compare=[cmp(b"a", "VERSION", "NOT_EQUAL", version=2)])).succeeded


def test_txn_writes_share_one_revision_and_reads_see_earlier_ops(kv):
    kv.put(r.PutRequest(key=b"a", value=b"1"))  # rev 2
    t = kv.txn(r.TxnRequest(success=[R(b"q"), P(b"q", b"1"), R(b"q"), D(b"a"), P(b"z", b"2"), D(b"none")]))
    assert t.succeeded and t.header.revision == 3
    heads = [t.responses[i] for i in range(6)]
    assert heads[0].response_range.header.revision == 2 and not heads[0].response_range.kvs
    assert heads[1].response_put.header.revision == 3
    assert heads[2].response_range.header.revision == 3 and heads[2].response_range.kvs[0].mod_revision == 3
    assert heads[3].response_delete_range.deleted == 1
    assert heads[4].response_put.header.revision == 3
    assert heads[5].response_delete_range.deleted == 0 and heads[5].response_delete_range.header.revision == 3


def test_txn_that_changes_nothing_keeps_the_revision(kv):
    assert kv.txn(r.TxnRequest()).header.revision == 1 and kv.txn(r.TxnRequest()).succeeded
    assert kv.txn(r.TxnRequest(success=[D(b"none"), R(b"a")])).header.revision == 1


def test_nested_txn_compares_see_the_state_before_the_txn(kv):
    t = kv.txn(r.TxnRequest(success=[
        P(b"a", b"1"),
        r.RequestOp(request_txn=r.TxnRequest(compare=[cmp(b"a", "VERSION", "EQUAL", version=0)],
                                             success=[P(b"b", b"then")], failure=[P(b"b", b"else")]))]))
    nested = t.responses[1].response_txn
    assert nested.succeeded and nested.HasField("header") and nested.header.revision == 0
    assert kv.range(r.RangeRequest(key=b"b")).kvs[0].value == b"then"


def test_txn_failing_its_put_check_changes_nothing(kv):
    err = kv.execute(Kind.TXN, r.TxnRequest(success=[P(b"a", b"1"), P(b"b", ignore_value=True)]))
    assert err == errors.KEY_NOT_FOUND and kv.revision == 1 and not kv.items()


def test_two_deletes_of_one_key_in_a_txn(kv):
    kv.put(r.PutRequest(key=b"a", value=b"1"))
    t = kv.txn(r.TxnRequest(success=[D(b"a"), D(b"a")]))
    assert [x.response_delete_range.deleted for x in t.responses] == [1, 0] and t.header.revision == 3


# ---- batches, slots, exactly once ----

def put_cmd(client, seq, key, value, acked=0):
    return Command(Kind.PUT, client, seq, acked, r.PutRequest(key=key, value=value).SerializeToString())


def batch(*cmds):
    return encode_batch([c.encode() for c in cmds])


def test_batches_apply_in_slot_order_only(kv):
    kv.apply(0, batch(put_cmd(1, 1, b"a", b"1")))
    with pytest.raises(ValueError, match="out of order"):
        kv.apply(2, batch(put_cmd(1, 2, b"a", b"2")))
    with pytest.raises(ValueError, match="out of order"):
        kv.apply(0, batch(put_cmd(1, 2, b"a", b"2")))
    assert kv.next_slot == 1


def test_a_retried_command_is_applied_once_and_answered_from_the_dedup_table(kv):
    (first,) = kv.apply(0, batch(put_cmd(7, 1, b"a", b"1")))
    (again,) = kv.apply(1, batch(put_cmd(7, 1, b"a", b"1")))
    assert not first.duplicate and again.duplicate and again.result == first.result
    (a,) = kv.range(r.RangeRequest(key=b"a")).kvs
    assert a.version == 1 and kv.revision == 2


def test_results_below_acked_are_forgotten(kv):
    kv.apply(0, batch(put_cmd(7, 1, b"a", b"1"), put_cmd(7, 2, b"b", b"1", acked=2)))
    (late,) = kv.apply(1, batch(put_cmd(7, 1, b"a", b"1")))
    assert late.duplicate and late.result == errors.OUTCOME_UNKNOWN and kv.revision == 3


def test_the_dedup_table_is_bounded(kv):
    cmds = [put_cmd(9, seq, b"k", b"v") for seq in range(MAX_RESULTS_PER_SESSION + 10)]
    kv.apply(0, batch(*cmds))
    assert len(kv._sessions[9].results) == MAX_RESULTS_PER_SESSION


def test_empty_committed_value_is_a_no_op_slot(kv):
    assert kv.apply(0, b"") == [] and kv.next_slot == 1 and kv.revision == 1


def test_snapshot_round_trip_keeps_state_and_dedup(kv):
    kv.apply(0, batch(put_cmd(7, 1, b"a", b"1"), put_cmd(8, 1, b"b", b"2")))
    kv.apply(1, batch(Command(Kind.PUT, 7, 2, 0, r.PutRequest(key=b"x", ignore_value=True).SerializeToString())))
    copy = KVStore.restore(kv.snapshot())
    assert copy.snapshot() == kv.snapshot()
    assert copy.items() == kv.items() and copy.revision == kv.revision and copy.next_slot == 2
    (again,) = copy.apply(2, batch(put_cmd(7, 1, b"a", b"1")))
    assert again.duplicate and again.result.header.revision == 2
    (err,) = copy.apply(3, batch(Command(Kind.PUT, 7, 2, 0, b"")))
    assert err.duplicate and err.result == errors.KEY_NOT_FOUND


def test_a_txn_that_crashes_etcd_is_answered(kv):
    # etcd 3.4.23 panics on this one ("unexpected error during txn"): its duplicate-key check
    # misses a "\\0" range end; verikv gives the missing key an empty value instead of crashing.
    kv.put(r.PutRequest(key=b"b", value=b"1"))
    t = kv.txn(r.TxnRequest(success=[D(b"a", b"\0"), P(b"b", ignore_value=True)]))
    assert t.succeeded and kv.range(r.RangeRequest(key=b"b")).kvs[0].version == 1


def test_a_snapshot_from_before_history_restores_compacted_at_its_revision():
    """A data directory written before the store kept history (snapshot format VKS1) still
    starts: its keys and dedup table as they were, nothing below its revision readable."""
    import struct

    from verikv.etcdpb import kv_pb2

    parts = [struct.pack("<4sQQII", b"VKS1", 5, 7, 2, 1)]  # revision 5, next slot 7, 2 keys, 1 session
    for kv_ in (kv_pb2.KeyValue(key=b"a", create_revision=2, mod_revision=4, version=2, value=b"x"),
                kv_pb2.KeyValue(key=b"b", create_revision=3, mod_revision=3, version=1, value=b"y")):
        b = kv_.SerializeToString()
        parts += [struct.pack("<I", len(b)), b]
    answered = r.PutResponse(header=r.ResponseHeader(revision=4)).SerializeToString()
    parts += [struct.pack("<QQQI", 99, 3, 6, 1), struct.pack("<QBI", 3, 2, len(answered)), answered]
    store = KVStore.restore(b"".join(parts))
    assert (store.revision, store.next_slot, store.compact_revision) == (5, 7, 5)
    assert [(x.key, x.value, x.version) for x in store.items()] == [(b"a", b"x", 2), (b"b", b"y", 1)]
    assert store.execute(Kind.RANGE, r.RangeRequest(key=b"a", revision=4)) == errors.COMPACTED
    retried = store.apply_command(Command(Kind.PUT, 99, 3, 3, r.PutRequest(key=b"a").SerializeToString()), 7)
    assert retried.duplicate and retried.result.header.revision == 4
    store.put(r.PutRequest(key=b"a", value=b"z"))
    assert store.range(r.RangeRequest(key=b"a", revision=5)).kvs[0].value == b"x"
    assert KVStore.restore(store.snapshot()).snapshot() == store.snapshot()


def test_a_range_answer_over_the_limit_is_refused_before_it_is_built(kv, monkeypatch):
    from verikv.shim.kv import store as store_module
    for i in range(10):
        kv.put(r.PutRequest(key=b"big/%d" % i, value=b"x" * 1000))
    whole = r.RangeRequest(key=b"big/", range_end=b"big0")
    size = 10 * (len(b"big/0") + 1000 + store_module.RANGE_KV_OVERHEAD)
    monkeypatch.setattr(store_module, "MAX_RANGE_BYTES", size)
    assert len(kv.range(whole).kvs) == 10  # at the limit: answered
    monkeypatch.setattr(store_module, "MAX_RANGE_BYTES", size - 1)
    with pytest.raises(errors.EtcdError) as refused:
        kv.range(whole)
    assert refused.value.code == errors.RANGE_TOO_LARGE.code
    assert f"{size} bytes, over {size - 1}" in refused.value.message and "limit" in refused.value.message
    # what the message suggests is answered
    assert len(kv.range(r.RangeRequest(key=b"big/", range_end=b"big0", limit=9)).kvs) == 9
    assert kv.range(r.RangeRequest(key=b"big/", range_end=b"big0", count_only=True)).count == 10
    assert len(kv.range(r.RangeRequest(key=b"big/", range_end=b"big0", keys_only=True)).kvs) == 10


def test_a_txns_ranges_share_the_limit_and_a_refused_txn_writes_nothing(kv, monkeypatch):
    from verikv.shim.kv import store as store_module
    from verikv.shim.kv.commands import MAX_REQUEST_BYTES
    for i in range(4):
        kv.put(r.PutRequest(key=b"big/%d" % i, value=b"x" * 1000))
    one = len(b"big/0") + 1000 + store_module.RANGE_KV_OVERHEAD
    monkeypatch.setattr(store_module, "MAX_RANGE_BYTES", MAX_REQUEST_BYTES + 6 * one)
    revision = kv.revision
    ok = kv.txn(r.TxnRequest(success=[R(b"big/0", b"big/3"), R(b"big/0", b"big/3"), P(b"after", b"1")]))
    assert [len(x.response_range.kvs) for x in ok.responses[:2]] == [3, 3] and kv.revision == revision + 1
    with pytest.raises(errors.EtcdError) as refused:  # 3 + 4 answers: one over
        kv.txn(r.TxnRequest(success=[P(b"first", b"1"), R(b"big/0", b"big/3"),
                                     r.RequestOp(request_txn=r.TxnRequest(success=[R(b"big/", b"big0")]))]))
    assert refused.value.code == errors.RANGE_TOO_LARGE.code
    assert kv.revision == revision + 1 and not kv.range(r.RangeRequest(key=b"first")).kvs


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 60), st.integers(0, 70)), min_size=1, max_size=120))
def test_the_dedup_table_forgets_exactly_as_the_plain_rule_says(commands):
    """Each session's results kept, their forgetting below acked_below and the eviction of the
    lowest past MAX_RESULTS_PER_SESSION are those of the plain rule (a model: a dict scanned
    whole), whatever the order seqs come in."""
    from verikv.shim.kv import sessions as sessions_module
    limit = 8
    kv = KVStore()
    model_results, model_acked = {}, 0
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sessions_module, "MAX_RESULTS_PER_SESSION", limit)
        for slot, (seq, acked) in enumerate(commands):
            cmd = Command(Kind.PUT, 7, seq, acked, r.PutRequest(key=b"k%d" % seq, value=b"v").SerializeToString())
            out = kv.apply(slot, encode_batch([cmd.encode()]))[0]
            if seq in model_results:
                assert out.duplicate and out.result == model_results[seq]
            elif seq < model_acked:
                assert out.duplicate and out.result == errors.OUTCOME_UNKNOWN
            else:
                assert not out.duplicate
                model_results[seq] = out.result
            if acked > model_acked:
                model_acked = acked
                model_results = {q: v for q, v in model_results.items() if q >= model_acked}
            while len(model_results) > limit:
                lowest = min(model_results)
                del model_results[lowest]
                model_acked = max(model_acked, lowest + 1)
            session = kv._sessions[7]
            assert session.results == model_results and session.acked_below == model_acked
    restored = KVStore.restore(kv.snapshot())  # and the same after a snapshot round trip
    assert restored._sessions[7].results.keys() == model_results.keys()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(min_size=1, max_size=3), st.binary(max_size=3)),
                min_size=1, max_size=80))
def test_keys_written_in_any_order_are_read_in_key_order_now_and_at_every_past_revision(ops):
    """Puts and range deletes of keys in any order: every range read, now and at each earlier
    revision, and after a snapshot round trip, gives exactly the model's keys in byte order."""
    kv = KVStore()
    model, states = {}, []  # key -> value; (revision, copy of the model) after each write
    for is_put, key, end in ops:
        if is_put:
            kv.put(r.PutRequest(key=key, value=end))
            model[key] = end
        else:
            kv.delete_range(r.DeleteRangeRequest(key=key, range_end=end))
            for k in [k for k in model if (key <= k < end if end and end != b"\0" else
                                           k >= key if end == b"\0" else k == key)]:
                del model[k]
        states.append((kv.revision, dict(model)))
    copy = KVStore.restore(kv.snapshot())
    for store in (kv, copy):
        for revision, state in states:
            for key, end in ((b"\0", b"\0"), (b"\x40", b"\xc0"), (b"\x80", b"")):
                got = store.range(r.RangeRequest(key=key, range_end=end, revision=revision))
                want = sorted(k for k in state if (key <= k < end if end and end != b"\0" else
                                                    k >= key if end == b"\0" else k == key))
                assert [x.key for x in got.kvs] == want
                assert [x.value for x in got.kvs] == [state[k] for k in want]


def test_a_snapshot_whose_keys_are_out_of_order_or_repeated_is_refused():
    """Restoring checks that the snapshot's keys are strictly increasing: a reordered or a
    repeated key (a corrupt or forged snapshot) is refused rather than read into a store whose
    range reads would be wrong."""
    kv = KVStore()
    kv.put(r.PutRequest(key=b"a", value=b"1"))
    kv.put(r.PutRequest(key=b"b", value=b"2"))
    parts = list(kv.snapshot_parts())
    head, a, b, rest = parts[0], parts[1:5], parts[5:9], parts[9:]
    assert a[1] == b"a" and b[1] == b"b"
    assert KVStore.restore(b"".join([head] + a + b + rest)).items() == kv.items()
    with pytest.raises(ValueError, match="not in order"):
        KVStore.restore(b"".join([head] + b + a + rest))
    with pytest.raises(ValueError, match="not in order"):
        KVStore.restore(b"".join([head] + a + a + rest))


def test_a_snapshot_whose_key_has_no_versions_or_versions_out_of_order_is_refused():
    import struct

    kv = KVStore()
    kv.put(r.PutRequest(key=b"a", value=b"1"))
    kv.put(r.PutRequest(key=b"a", value=b"2"))
    parts = list(kv.snapshot_parts())
    head, count, key, v1, v2, rest = parts[0], parts[1], parts[2], parts[3:5], parts[5:7], parts[7:]
    assert count == struct.pack("<II", 1, 2) and key == b"a"
    assert KVStore.restore(b"".join([head, count, key] + v1 + v2 + rest)).items() == kv.items()
    with pytest.raises(ValueError, match="not in revision order"):
        KVStore.restore(b"".join([head, count, key] + v2 + v1 + rest))
    with pytest.raises(ValueError, match="not in revision order"):
        KVStore.restore(b"".join([head, count, key] + v1 + v1 + rest))
    with pytest.raises(ValueError, match="not in revision order"):
        KVStore.restore(b"".join([head, struct.pack("<II", 1, 0), key] + rest))


def test_the_dedup_table_evicts_the_least_recently_used_session(monkeypatch):
    """Past MAX_SESSIONS, a new client's session replaces the one used longest ago (the lowest
    client id among equals): that client's retried command is then applied again."""
    from verikv.shim.kv import sessions as sessions_module
    monkeypatch.setattr(sessions_module, "MAX_SESSIONS", 3)
    kv = KVStore()
    slot = 0
    for client in (1, 2, 3, 1):  # client 2's session is now the one used longest ago
        kv.apply(slot, batch(put_cmd(client, 1, b"k%d" % client, b"v")))
        slot += 1
    kv.apply(slot, batch(put_cmd(4, 1, b"k4", b"v")))
    assert sorted(c for c in (1, 2, 3, 4) if _has_session(kv, c)) == [1, 3, 4]
    revision = kv.revision
    (again,) = kv.apply(slot + 1, batch(put_cmd(1, 1, b"k1", b"v")))  # remembered: not applied again
    assert again.duplicate and kv.revision == revision
    (fresh,) = kv.apply(slot + 2, batch(put_cmd(2, 1, b"k2", b"v")))  # forgotten: applied again
    assert not fresh.duplicate and kv.revision == revision + 1
    restored = KVStore.restore(kv.snapshot())
    assert sorted(c for c in (1, 2, 3, 4) if _has_session(restored, c)) == [1, 2, 4]


def _has_session(kv: KVStore, client: int) -> bool:
    try:
        kv._sessions[client]
    except KeyError:
        return False
    return True
