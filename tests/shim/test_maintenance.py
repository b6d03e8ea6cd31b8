"""Maintenance: the store's size (Status' dbSize), HashKV and Hash, etcd's NOSPACE alarm with
--quota-backend-bytes, Defragment and MoveLeader; in the state machine, then on a real 3-node
cluster (ports 28500-28529)."""

import random

import pytest

from verikv.etcdpb import rpc_pb2 as r
from verikv.shim.kv import errors
from verikv.shim.kv.commands import Kind, cost
from verikv.shim.kv.store import LEASE_OVERHEAD, VERSION_OVERHEAD, KVStore

from test_node import leader_of, start_cluster, stop_node, submit, read, wait_for

PORTS = 28500 - 25300  # test_node's BASE_PORT + this = 28500


def measured(kv: KVStore) -> int:
    """db_size's stated measure, counted from scratch over the history."""
    return sum(len(k) + len(v.value) + VERSION_OVERHEAD for k, vs in kv._hist.items() for v in vs) \
        + LEASE_OVERHEAD * len(kv.leases.leases)


def random_ops(kv: KVStore, rng: random.Random, n: int) -> None:
    for _ in range(n):
        k = b"k%d" % rng.randrange(20)
        x = rng.random()
        if x < 0.5:
            kv.execute(Kind.PUT, r.PutRequest(key=k, value=b"v" * rng.randrange(50)))
        elif x < 0.7:
            kv.execute(Kind.DELETE_RANGE, r.DeleteRangeRequest(key=k, range_end=b"k5" if rng.random() < 0.3 else b""))
        elif x < 0.85:
            kv.execute(Kind.TXN, r.TxnRequest(success=[
                r.RequestOp(request_put=r.PutRequest(key=k, value=b"t" * rng.randrange(9))),
                r.RequestOp(request_delete_range=r.DeleteRangeRequest(key=k + b"x"))]))
        elif x < 0.95:
            kv.execute(Kind.LEASE_GRANT, r.LeaseGrantRequest(ID=rng.randrange(1, 5), TTL=10))
        else:
            kv.execute(Kind.COMPACT, r.CompactionRequest(revision=rng.randrange(1, kv.revision + 1)))


def test_the_store_size_follows_every_write_compaction_and_restore():
    rng = random.Random(7)
    kv = KVStore()
    assert kv.db_size == 0
    kv.execute(Kind.PUT, r.PutRequest(key=b"abc", value=b"12345"))
    assert kv.db_size == 3 + 5 + VERSION_OVERHEAD
    for _ in range(20):
        random_ops(kv, rng, 25)
        assert kv.db_size == measured(kv)
        assert KVStore.restore(kv.snapshot()).db_size == kv.db_size
    before = kv.db_size
    kv.execute(Kind.COMPACT, r.CompactionRequest(revision=kv.revision))
    assert kv.db_size == measured(kv) < before  # compaction frees what it forgets


def test_hash_kv_is_the_same_for_the_same_history_and_follows_revisions():
    a, b = KVStore(), KVStore()
    for kv in (a, b):
        random_ops(kv, random.Random(3), 200)
    assert a.hash_kv(0) == b.hash_kv(0) and a.hash_all() == b.hash_all()
    h, rev, compact = a.hash_kv(0)
    assert rev == a.revision and compact == a.compact_revision
    assert a.hash_kv(rev) == (h, rev, compact)
    past = a.hash_kv(rev - 1)[0]
    a.execute(Kind.PUT, r.PutRequest(key=b"new", value=b"1"))
    assert a.hash_kv(0)[0] != h  # a write changes the hash at the new revision ...
    assert a.hash_kv(rev)[0] == h and a.hash_kv(rev - 1)[0] == past  # ... not at the old ones
    assert a.hash_all() != b.hash_all()
    with pytest.raises(errors.EtcdError) as err:
        a.hash_kv(a.revision + 1)
    assert err.value == errors.FUTURE_REV
    a.execute(Kind.COMPACT, r.CompactionRequest(revision=rev))
    with pytest.raises(errors.EtcdError) as err:
        a.hash_kv(rev)  # etcd: at or below the compaction point
    assert err.value == errors.COMPACTED


def alarm(action, member=0, kind=r.NONE):
    return r.AlarmRequest(action=getattr(r.AlarmRequest, action), memberID=member, alarm=kind)


def test_the_nospace_alarm_caps_writes_that_add_data_and_nothing_else():
    kv = KVStore()
    kv.execute(Kind.PUT, r.PutRequest(key=b"a", value=b"1"))
    kv.execute(Kind.LEASE_GRANT, r.LeaseGrantRequest(ID=9, TTL=100))
    got = kv.execute(Kind.ALARM, alarm("ACTIVATE", 2, r.NOSPACE))
    assert [(m.memberID, m.alarm) for m in got.alarms] == [(2, r.NOSPACE)]
    assert kv.execute(Kind.PUT, r.PutRequest(key=b"b", value=b"2")) == errors.NO_SPACE
    assert kv.execute(Kind.LEASE_GRANT, r.LeaseGrantRequest(ID=7, TTL=10)) == errors.NO_SPACE
    put_txn = r.TxnRequest(failure=[r.RequestOp(request_put=r.PutRequest(key=b"c"))])
    assert kv.execute(Kind.TXN, put_txn) == errors.NO_SPACE  # either branch, as etcd's cost counts
    read_txn = r.TxnRequest(success=[r.RequestOp(request_range=r.RangeRequest(key=b"a"))])
    assert kv.execute(Kind.TXN, read_txn).responses[0].response_range.kvs[0].value == b"1"
    assert kv.execute(Kind.RANGE, r.RangeRequest(key=b"a")).count == 1
    assert kv.execute(Kind.LEASE_KEEP_ALIVE, r.LeaseKeepAliveRequest(ID=9)).TTL == 100
    assert kv.execute(Kind.DELETE_RANGE, r.DeleteRangeRequest(key=b"a")).deleted == 1
    assert not isinstance(kv.execute(Kind.COMPACT, r.CompactionRequest(revision=kv.revision)), errors.EtcdError)
    assert not isinstance(kv.execute(Kind.LEASE_REVOKE, r.LeaseRevokeRequest(ID=9)), errors.EtcdError)
    kv.execute(Kind.ALARM, alarm("ACTIVATE", 1, r.CORRUPT))
    listed = kv.execute(Kind.ALARM, alarm("GET"))
    assert [(m.memberID, m.alarm) for m in listed.alarms] == [(1, r.CORRUPT), (2, r.NOSPACE)]
    only = kv.execute(Kind.ALARM, alarm("GET", 0, r.NOSPACE))
    assert [(m.memberID, m.alarm) for m in only.alarms] == [(2, r.NOSPACE)]
    assert KVStore.restore(kv.snapshot()).alarms == kv.alarms
    kv.execute(Kind.ALARM, alarm("DEACTIVATE", 1, r.CORRUPT))
    assert not kv.execute(Kind.ALARM, alarm("DEACTIVATE", 1, r.NOSPACE)).alarms  # not active: nothing
    assert kv.execute(Kind.ALARM, alarm("DEACTIVATE", 2, r.NOSPACE)).alarms[0].memberID == 2
    assert kv.execute(Kind.PUT, r.PutRequest(key=b"b", value=b"2")).header.revision == kv.revision


def test_a_corrupt_alarm_refuses_writes_compactions_writing_txns_and_lease_grants_and_revokes_as_etcd_does():
    kv = KVStore()
    kv.execute(Kind.PUT, r.PutRequest(key=b"a", value=b"1"))
    kv.execute(Kind.LEASE_GRANT, r.LeaseGrantRequest(ID=9, TTL=100))
    kv.execute(Kind.ALARM, alarm("ACTIVATE", 1, r.CORRUPT))
    rev = kv.revision
    refused = [(Kind.PUT, r.PutRequest(key=b"b", value=b"2")), (Kind.DELETE_RANGE, r.DeleteRangeRequest(key=b"a")),
               (Kind.TXN, r.TxnRequest(success=[r.RequestOp(request_range=r.RangeRequest(key=b"a"))],
                                       failure=[r.RequestOp(request_put=r.PutRequest(key=b"a"))])),
               (Kind.COMPACT, r.CompactionRequest(revision=rev)), (Kind.LEASE_GRANT, r.LeaseGrantRequest(ID=7, TTL=10)),
               (Kind.LEASE_REVOKE, r.LeaseRevokeRequest(ID=9))]
    for kind, request in refused:
        assert kv.execute(kind, request) == errors.CORRUPT, kind
    assert errors.CORRUPT.code.name == "DATA_LOSS" and errors.CORRUPT.message == "etcdserver: corrupt cluster"
    assert kv.revision == rev and 9 in kv.leases.leases
    assert kv.execute(Kind.RANGE, r.RangeRequest(key=b"a")).kvs[0].value == b"1"  # reads go on
    reads = r.TxnRequest(success=[r.RequestOp(request_range=r.RangeRequest(key=b"a"))])
    assert kv.execute(Kind.TXN, reads).responses[0].response_range.count == 1  # and txns of reads only
    assert kv.execute(Kind.LEASE_KEEP_ALIVE, r.LeaseKeepAliveRequest(ID=9)).TTL == 100
    assert kv.execute(Kind.ALARM, alarm("DEACTIVATE", 1, r.CORRUPT)).alarms[0].alarm == r.CORRUPT
    assert kv.execute(Kind.PUT, r.PutRequest(key=b"b", value=b"2")).header.revision == rev + 1


def test_an_alarm_of_a_type_etcd_does_not_know_is_kept_as_etcd_keeps_it_and_breaks_nothing():
    # etcd stores any AlarmType an Alarm request names, even one its proto does not define (the
    # hypothesis fuzzing of the client API found a negative one crashing every node: the alarms
    # are hashed and snapshotted as unsigned numbers)
    kv = KVStore()
    kv.execute(Kind.PUT, r.PutRequest(key=b"a", value=b"1"))
    for member, kind in [(2**64 - 1, -1), (1, 5), (3, -2**31)]:
        got = kv.execute(Kind.ALARM, alarm("ACTIVATE", member, kind))
        assert [(m.memberID, m.alarm) for m in got.alarms] == [(member, kind)]
    assert not kv.no_space  # none of them caps writes
    assert kv.execute(Kind.PUT, r.PutRequest(key=b"b", value=b"2")).header.revision == 3
    listed = kv.execute(Kind.ALARM, alarm("GET"))
    assert sorted((m.memberID, m.alarm) for m in listed.alarms) == [(1, 5), (3, -2**31), (2**64 - 1, -1)]
    restored = KVStore.restore(kv.snapshot())
    assert restored.alarms == kv.alarms
    assert run_steps(restored.hash_steps(0, whole=True)) == run_steps(kv.hash_steps(0, whole=True))


def run_steps(steps):
    try:
        while True:
            next(steps)
    except StopIteration as stop:
        return stop.value


def test_etcds_quota_costs():
    assert cost(Kind.PUT, r.PutRequest(key=b"ab", value=b"xyz")) == 256 + 5
    txn = r.TxnRequest(success=[r.RequestOp(request_put=r.PutRequest(key=b"a"))],
                       failure=[r.RequestOp(request_put=r.PutRequest(key=b"a", value=b"12")),
                                r.RequestOp(request_txn=r.TxnRequest(
                                    success=[r.RequestOp(request_put=r.PutRequest(key=b"z" * 99))]))])
    assert cost(Kind.TXN, txn) == 256 + 3  # the larger branch; nested txns are not counted (etcd 3.4)
    assert cost(Kind.LEASE_GRANT, r.LeaseGrantRequest(TTL=5)) == 64
    assert cost(Kind.DELETE_RANGE, r.DeleteRangeRequest(key=b"a")) == 0


async def _call(start, timeout_s=10.0):
    """The answer `start(done)` gives, within timeout_s (else the test fails, not hangs)."""
    import asyncio
    fut = asyncio.get_running_loop().create_future()
    start(lambda answer: fut.done() or fut.set_result(answer))
    return await asyncio.wait_for(fut, timeout_s)


async def test_quota_raises_nospace_through_the_log_and_compact_defrag_disarm_recover(tmp_path):
    quota = 8 * 1024
    nodes = await start_cluster(tmp_path, PORTS, quota_backend_bytes=quota, snapshot_every_slots=100_000)
    try:
        leader = leader_of(nodes)
        follower = next(n for n in nodes if n is not leader)
        value = b"x" * 1000
        i = 0
        while True:
            try:
                await submit(follower, Kind.PUT, r.PutRequest(key=b"k%d" % (i % 3), value=value))
            except errors.EtcdError as err:
                assert err == errors.NO_SPACE
                break
            i += 1
            assert i < 100
        assert follower.kv.db_size + 256 + 2 + 1000 >= quota  # refused only at the quota
        member = follower.node_id + 1
        assert (member, r.NOSPACE) in follower.kv.alarms  # refused once the alarm is applied, as etcd
        await wait_for(lambda: all((member, r.NOSPACE) in n.kv.alarms for n in nodes))
        # every node refuses, the leader too, though its own check would have let small writes in
        for n in nodes:
            with pytest.raises(errors.EtcdError) as err:
                await submit(n, Kind.PUT, r.PutRequest(key=b"tiny", value=b"1"))
            assert err.value == errors.NO_SPACE
        lease = await _call(lambda done: leader.lease_grant(r.LeaseGrantRequest(TTL=30), done))
        assert lease == errors.NO_SPACE
        assert (await read(leader, r.RangeRequest(key=b"k0"), False)).kvs[0].value == value
        assert (await submit(leader, Kind.DELETE_RANGE, r.DeleteRangeRequest(key=b"k2"))).deleted == 1
        listed = await submit(leader, Kind.ALARM, alarm("GET"))
        assert [(m.memberID, m.alarm) for m in listed.alarms] == [(member, r.NOSPACE)]
        # etcd's procedure: compact, defragment, disarm
        await submit(leader, Kind.COMPACT, r.CompactionRequest(revision=leader.kv.revision))
        for n in nodes:
            answer = await _call(n.defragment)
            assert isinstance(answer, r.DefragmentResponse), answer
            assert n.machine.snapshot_slot == n.kv.next_slot  # the WAL starts at the snapshot now
        assert leader.kv.db_size < quota // 2
        disarmed = await submit(leader, Kind.ALARM, alarm("DEACTIVATE", member, r.NOSPACE))
        assert [(m.memberID, m.alarm) for m in disarmed.alarms] == [(member, r.NOSPACE)]
        await wait_for(lambda: all(not n.kv.alarms for n in nodes))
        assert (await submit(follower, Kind.PUT, r.PutRequest(key=b"k0", value=b"back"))).header.revision
    finally:
        for n in nodes:
            if not n._stopping:
                await stop_node(n)


async def test_move_leader_hands_leadership_to_the_target(tmp_path):
    nodes = await start_cluster(tmp_path, PORTS + 10)
    try:
        leader = leader_of(nodes)
        follower = next(n for n in nodes if n is not leader)
        assert await _call(lambda done: follower.move_leader(leader.node_id + 1, done)) == errors.NOT_LEADER
        assert await _call(lambda done: leader.move_leader(0, done)) == errors.BAD_LEADER_TRANSFEREE
        assert await _call(lambda done: leader.move_leader(4, done)) == errors.BAD_LEADER_TRANSFEREE
        same = await _call(lambda done: leader.move_leader(leader.node_id + 1, done))
        assert isinstance(same, r.MoveLeaderResponse) and leader_of(nodes) is leader
        await submit(leader, Kind.PUT, r.PutRequest(key=b"before", value=b"1"))
        for _ in range(2):  # there and back again
            target = next(n for n in nodes if n is not leader)
            moved = await _call(lambda done: leader.move_leader(target.node_id + 1, done))
            assert isinstance(moved, r.MoveLeaderResponse), moved
            await wait_for(lambda: leader_of(nodes) is target)
            assert leader.status["leader"] == target.node_id
            # the old leader forwards to the new one; the new one has every earlier write
            await submit(leader, Kind.PUT, r.PutRequest(key=b"after", value=b"%d" % target.node_id))
            assert (await read(target, r.RangeRequest(key=b"before"), False)).kvs[0].value == b"1"
            assert (await read(target, r.RangeRequest(key=b"after"), False)).kvs[0].value == b"%d" % target.node_id
            leader = target
    finally:
        for n in nodes:
            if not n._stopping:
                await stop_node(n)


async def test_move_leader_to_a_stopped_node_times_out_and_only_the_leader_can_ask(tmp_path):
    import asyncio

    from verikv.shim.node.peer_wire import CAMPAIGN, KIND_CAMPAIGN

    nodes = await start_cluster(tmp_path, PORTS + 70, request_timeout_s=1.0)  # 28570-28572
    try:
        leader = leader_of(nodes)
        a, b = [n for n in nodes if n is not leader]
        # a campaign asked by a node that does not lead is ignored
        a.machine.frame(KIND_CAMPAIGN, CAMPAIGN.pack(b.node_id), b.node_id)  # on b's own connection
        a._wake.set()
        await asyncio.sleep(0.3)
        assert leader_of(nodes) is leader and a.status["role"] == "follower"
        await stop_node(b)
        started = asyncio.get_running_loop().time()
        answer = await _call(lambda done: leader.move_leader(b.node_id + 1, done))
        assert answer == errors.LEADER_TRANSFER_TIMEOUT
        assert 1.0 <= asyncio.get_running_loop().time() - started < 3.0
        assert leader_of(nodes) is leader
    finally:
        for n in nodes:
            if not n._stopping:
                await stop_node(n)


def test_a_hash_in_steps_is_the_hash_at_its_start_whatever_is_applied_between_steps(monkeypatch):
    from verikv.shim.kv import store as store_module

    monkeypatch.setattr(store_module, "HASH_STEP_KEYS", 3)
    kv = KVStore()
    random_ops(kv, random.Random(5), 300)
    rev = kv.revision
    expected, whole = kv.hash_kv(0), kv.hash_all()  # whole: as of revision rev
    assert len(kv._hist_keys) > 4 * 3

    def interleaved(steps):
        i = 0
        while True:
            try:
                next(steps)
            except StopIteration as stop:
                assert i > 4  # it did take steps
                return stop.value
            i += 1  # writes (new keys too) between steps
            kv.execute(Kind.PUT, r.PutRequest(key=b"a%d" % i, value=b"x"))
            kv.execute(Kind.PUT, r.PutRequest(key=b"k%d" % (i % 20), value=b"y"))

    assert interleaved(kv.hash_steps(0)) == expected  # the revision current at its start
    assert interleaved(kv.hash_steps(rev, whole=True))[0] == whole
    assert kv.hash_kv(0)[0] != expected[0] and kv.hash_kv(rev)[0] == expected[0]
    # a compaction between steps: the hash starts again, and is that of the compacted store
    steps = kv.hash_steps(rev)
    next(steps)
    kv.execute(Kind.COMPACT, r.CompactionRequest(revision=rev - 5))
    assert store_module.run_steps(steps) == kv.hash_kv(rev) and kv.hash_kv(rev)[0] != expected[0]


async def test_a_stopping_node_answers_its_pending_transfer_and_defragment(tmp_path):
    nodes = await start_cluster(tmp_path, PORTS + 90)  # 28590-28592
    try:
        leader = leader_of(nodes)
        target = next(n for n in nodes if n is not leader)
        await stop_node(target)
        answers = []
        leader.machine.move_leader(target.node_id + 1, answers.append)
        leader.machine.defragment(answers.append)  # not yet taken by a turn
        leader.machine.fail_pending(errors.NO_LEADER)
        assert answers == [errors.NO_LEADER, errors.NO_LEADER]
    finally:
        for n in nodes:
            if not n._stopping:
                await stop_node(n)
