"""Leases in the KV state and on a node's clock: grants, keep-alives, revokes, the refusal of an
expiry or checkpoint that a keep-alive overtook, snapshots, and the clock's deadlines (never
earlier than what the log says, also across a change of leader)."""

import pytest

from answers import execute
from verikv.etcdpb import rpc_pb2 as r
from verikv.shim.kv import errors
from verikv.shim.kv.commands import Kind
from verikv.shim.kv.leases import LeaseCheckpoints, LeaseExpiry
from verikv.shim.kv.store import KVStore
from verikv.shim.node.lease_timers import CHECKPOINT_EVERY_S, LeaseTimers


def grant(store, lease_id, ttl):
    return store.execute(Kind.LEASE_GRANT, r.LeaseGrantRequest(ID=lease_id, TTL=ttl))


def test_grant_put_revoke_deletes_the_leases_keys_in_one_revision():
    store = KVStore()
    assert grant(store, 7, 10).ID == 7
    execute(store, r.PutRequest(key=b"b", value=b"1", lease=7))
    execute(store, r.PutRequest(key=b"a", value=b"1", lease=7))
    execute(store, r.PutRequest(key=b"c", value=b"1", lease=7))
    execute(store, r.PutRequest(key=b"c", value=b"2"))  # no longer attached
    execute(store, r.PutRequest(key=b"d", value=b"1", lease=7))
    execute(store, r.DeleteRangeRequest(key=b"d"))  # gone: detached
    assert store.leases.leases[7].keys == {b"a", b"b"}
    store.take_recent()
    before = store.revision
    resp = store.execute(Kind.LEASE_REVOKE, r.LeaseRevokeRequest(ID=7))
    assert resp.header.revision == before + 1
    deletes = store.take_recent()
    assert [(k, rec.mod_revision, rec.version) for k, rec, _ in deletes] == [(b"a", before + 1, 0), (b"b", before + 1, 0)]
    assert [kv.key for kv in store.items()] == [b"c"] and not store.leases.exists(7)
    assert store.execute(Kind.LEASE_REVOKE, r.LeaseRevokeRequest(ID=7)) == errors.LEASE_NOT_FOUND


def test_etcds_errors_and_answers():
    store = KVStore()
    grant(store, 1, 5)
    assert grant(store, 1, 5) == errors.LEASE_EXISTS
    assert grant(store, 2, 9_000_000_001) == errors.LEASE_TTL_TOO_LARGE
    assert execute(store, r.PutRequest(key=b"k", value=b"v", lease=3)) == errors.LEASE_NOT_FOUND
    txn = r.TxnRequest(success=[r.RequestOp(request_put=r.PutRequest(key=b"k", value=b"v", lease=3))])
    assert execute(store, txn) == errors.LEASE_NOT_FOUND and store.revision == 1  # nothing changed
    ka = store.execute(Kind.LEASE_KEEP_ALIVE, r.LeaseKeepAliveRequest(ID=3))
    assert (ka.ID, ka.TTL) == (3, 0)  # etcd's answer for a lease that does not exist
    ka = store.execute(Kind.LEASE_KEEP_ALIVE, r.LeaseKeepAliveRequest(ID=1))
    assert (ka.ID, ka.TTL) == (1, 5)
    # a compare on the lease a key is attached to
    execute(store, r.PutRequest(key=b"k", value=b"v", lease=1))
    cmp = r.Compare(key=b"k", target=r.Compare.LEASE, result=r.Compare.EQUAL, lease=1)
    assert execute(store, r.TxnRequest(compare=[cmp])).succeeded


def test_an_expiry_or_checkpoint_overtaken_by_a_keep_alive_changes_nothing():
    store = KVStore()
    grant(store, 1, 10)
    execute(store, r.PutRequest(key=b"k", value=b"v", lease=1))
    version = store.leases.leases[1].version
    store.execute(Kind.LEASE_KEEP_ALIVE, r.LeaseKeepAliveRequest(ID=1))  # ordered first
    store.execute(Kind.LEASE_CHECKPOINT, LeaseCheckpoints([(1, version, 500)]))
    assert store.leases.leases[1].remaining_ms == 10_000  # the stale checkpoint was refused
    store.execute(Kind.LEASE_EXPIRE, LeaseExpiry([(1, version)]))
    assert store.leases.exists(1) and [kv.key for kv in store.items()] == [b"k"]
    # a current one applies
    version = store.leases.leases[1].version
    store.execute(Kind.LEASE_CHECKPOINT, LeaseCheckpoints([(1, version, 4_000)]))
    assert store.leases.leases[1].remaining_ms == 4_000
    store.execute(Kind.LEASE_EXPIRE, LeaseExpiry([(1, version)]))
    assert not store.leases.exists(1) and store.items() == []


def test_leases_survive_a_snapshot_with_their_keys():
    store = KVStore()
    grant(store, 1, 10)
    grant(store, 2, 20)
    execute(store, r.PutRequest(key=b"a", value=b"v", lease=1))
    execute(store, r.PutRequest(key=b"b", value=b"v", lease=2))
    version = store.leases.leases[2].version
    store.execute(Kind.LEASE_CHECKPOINT, LeaseCheckpoints([(2, version, 7_000)]))
    copy = KVStore.restore(store.snapshot())
    assert copy.snapshot() == store.snapshot()
    assert {i: (l.ttl, l.remaining_ms, l.version, l.keys) for i, l in copy.leases.leases.items()} == {
        1: (10, 10_000, 1, {b"a"}), 2: (20, 7_000, 1, {b"b"})}
    copy.execute(Kind.LEASE_REVOKE, r.LeaseRevokeRequest(ID=1))
    assert [kv.key for kv in copy.items()] == [b"b"]


def test_a_snapshot_whose_key_names_a_missing_lease_is_refused():
    store = KVStore()
    grant(store, 1, 10)
    execute(store, r.PutRequest(key=b"a", value=b"v", lease=1))
    snapshot = store.snapshot()
    auth = len(store.auth.encode())  # the auth state comes last
    data, rest = snapshot[:-auth], snapshot[-auth:]  # data ends with the one lease: id, ttl, ms left, version
    broken = data[:-32] + (5).to_bytes(8, "little") + data[-24:] + rest  # the lease is now number 5
    with pytest.raises(ValueError, match="lease 1"):
        KVStore.restore(broken)


# ---- the clock ----

def changes(store):
    return store.leases.take_changes()


def test_deadlines_follow_the_last_command_a_node_applied_but_a_leader_keeps_its_own():
    store, timers = KVStore(), LeaseTimers()
    grant(store, 1, 10)
    timers.applied(changes(store), now=100.0)
    assert timers.remaining_s(1, 100.0) == 10.0
    version = store.leases.leases[1].version
    store.execute(Kind.LEASE_CHECKPOINT, LeaseCheckpoints([(1, version, 2_000)]))
    timers.applied(changes(store), now=101.0)  # a follower: the leader's clock said 2 s were left
    assert timers.remaining_s(1, 101.0) == 2.0
    timers.lead(True, store.leases, 101.0)
    store.execute(Kind.LEASE_CHECKPOINT, LeaseCheckpoints([(1, version, 1_000)]))
    timers.applied(changes(store), now=101.5)  # a leader's own clock is the authority
    assert timers.remaining_s(1, 101.5) == 1.5
    store.execute(Kind.LEASE_KEEP_ALIVE, r.LeaseKeepAliveRequest(ID=1))
    timers.applied(changes(store), now=105.0)
    assert timers.remaining_s(1, 105.0) == 10.0
    store.execute(Kind.LEASE_REVOKE, r.LeaseRevokeRequest(ID=1))
    timers.applied(changes(store), now=106.0)
    assert timers.remaining_s(1, 106.0) is None


def test_only_a_leader_expires_once_per_version_and_again_after_a_failed_proposal():
    store, timers = KVStore(), LeaseTimers()
    grant(store, 1, 2)
    timers.applied(changes(store), now=0.0)
    timers.lead(False, store.leases, 0.0)
    assert timers.expiries(store.leases, 5.0) == []  # a follower never proposes
    timers.lead(True, store.leases, 1.0)  # it counts from when it applied the grant
    assert timers.expiries(store.leases, 1.9) == []  # not yet: never early
    assert timers.expiries(store.leases, 2.0) == [(1, 1)]
    assert timers.expiries(store.leases, 2.5) == []  # proposed already
    timers.retry([(1, 1)])  # the proposal was not ordered
    assert timers.expiries(store.leases, 2.6) == [(1, 1)]


def test_a_new_leader_keeps_the_time_left_from_the_last_checkpoint_not_the_whole_ttl():
    store, leader, follower = KVStore(), LeaseTimers(), LeaseTimers()
    grant(store, 1, 60)
    ch = changes(store)
    leader.applied(ch, 0.0)
    follower.applied(ch, 0.0)
    leader.lead(True, store.leases, 0.0)
    follower.lead(False, store.leases, 0.0)
    assert leader.checkpoints(store.leases, 0.5) == []  # not due yet
    (cp,) = leader.checkpoints(store.leases, 30.0)
    assert cp == (1, 1, 30_000)
    store.execute(Kind.LEASE_CHECKPOINT, LeaseCheckpoints([cp]))
    follower.applied(changes(store), 30.0)
    assert leader.checkpoints(store.leases, 30.0 + CHECKPOINT_EVERY_S) == []  # within the slack (6 s)
    # the leader dies at 31; the follower leads from 33: the lease runs out when the checkpoint it
    # applied at 30 said (30 + 30), not 33 + 60 (etcd's reset), and never before the old leader's 60
    follower.lead(True, store.leases, 33.0)
    assert follower.expiries(store.leases, 59.9) == []
    assert follower.expiries(store.leases, 60.0) == [(1, 1)]


def test_many_leases_at_once_go_in_commands_of_bounded_size():
    from verikv.shim.node import lease_timers
    store, timers = KVStore(), LeaseTimers()
    n = lease_timers.MAX_PER_COMMAND + 5
    for i in range(1, n + 1):
        grant(store, i, 2)
    timers.applied(changes(store), 0.0)
    timers.lead(True, store.leases, 0.0)
    first = timers.expiries(store.leases, 10.0)
    second = timers.expiries(store.leases, 10.0)
    assert len(first) == lease_timers.MAX_PER_COMMAND and len(second) == 5
    assert {i for i, _ in first + second} == set(range(1, n + 1))
    assert timers.expiries(store.leases, 10.0) == []


def test_a_node_that_applied_a_keep_alive_late_counts_from_the_log_when_it_leads():
    """A node cut off while a lease was kept alive applies the keep-alive only when it catches
    up, with the checkpoint that followed it: it counts from the checkpoint (the last command),
    not the whole TTL from its catching up; and it acts as leader only once caught up."""
    store, timers = KVStore(), LeaseTimers()
    grant(store, 1, 4)
    timers.applied(changes(store), 0.0)
    store.execute(Kind.LEASE_KEEP_ALIVE, r.LeaseKeepAliveRequest(ID=1))  # at 20 s, elsewhere
    store.execute(Kind.LEASE_CHECKPOINT, LeaseCheckpoints([(1, 2, 2_900)]))  # at 21.1 s: 2.9 s left
    timers.applied(changes(store), 22.0)  # caught up at 22 s: 22 + 2.9, not 22 + 4
    assert abs(timers.remaining_s(1, 22.0) - 2.9) < 1e-9
    timers.lead(True, store.leases, 22.3, caught_up=False)
    assert timers.expiries(store.leases, 30.0) == []  # not acting before it has caught up
    timers.lead(True, store.leases, 22.4, caught_up=True)
    assert timers.expiries(store.leases, 24.8) == []
    assert timers.expiries(store.leases, 24.9) == [(1, 2)]


class Untouchable(dict):
    def items(self):
        raise AssertionError("the scan looked at the leases")


def test_a_scan_before_the_earliest_deadline_looks_at_no_lease_yet_misses_none():
    """The leader's scan skips the leases while none can be due, and still finds each one at
    its deadline, also one whose deadline moved earlier (a follower's checkpoint) or a retry."""
    store, timers = KVStore(), LeaseTimers()
    for i, ttl in [(1, 5), (2, 9)]:
        grant(store, i, ttl)
    timers.applied(changes(store), 0.0)
    timers.lead(True, store.leases, 0.0)
    assert timers.expiries(store.leases, 1.0) == []
    kept = timers.deadlines
    timers.deadlines = Untouchable()  # a scan before 5 s must not look at the leases
    assert timers.expiries(store.leases, 4.9) == []
    timers.deadlines = kept
    assert timers.expiries(store.leases, 5.0) == [(1, 1)]
    assert timers.expiries(store.leases, 6.0) == []
    timers.applied([(2, 1000, False)], 6.0)  # a later command says 1 s left: due at 7, not 9
    assert timers.expiries(store.leases, 7.0) == [(2, 1)]
    timers.retry([(1, 1)])
    assert timers.expiries(store.leases, 7.1) == [(1, 1)]


def test_a_checkpoint_pass_looks_at_a_bounded_number_of_leases_per_scan():
    """A pass over 10,005 leases, of which only the last 5 ran down past their slack: the first
    scan looks at the first CHECKPOINT_SCAN_LEASES (none due) and holds the loop no longer, the
    next finds the 5; the pass is then over until CHECKPOINT_EVERY_S later."""
    from verikv.shim.node import lease_timers
    store, timers = KVStore(), LeaseTimers()
    n = lease_timers.CHECKPOINT_SCAN_LEASES + 5
    for i in range(1, n + 1):
        grant(store, i, 60)
    timers.applied(changes(store), 0.0)
    timers.lead(True, store.leases, 0.0)
    for i in range(1, lease_timers.CHECKPOINT_SCAN_LEASES + 1):  # kept alive at 25 s: not due at 30 s
        store.execute(Kind.LEASE_KEEP_ALIVE, r.LeaseKeepAliveRequest(ID=i))
    timers.applied(changes(store), 25.0)
    assert timers.checkpoints(store.leases, 30.0) == []
    due = timers.checkpoints(store.leases, 30.05)
    assert [(i, left) for i, _, left in due] == [(i, 29_950) for i in range(n - 4, n + 1)]
    assert timers.checkpoints(store.leases, 30.1) == []  # the pass is over
    assert len(timers.checkpoints(store.leases, 30.0 + CHECKPOINT_EVERY_S)) == 0  # a new pass: the first 10,000
    assert len(timers.checkpoints(store.leases, 31.05)) == 5
