"""Leases in the KV state and on a node's clock: grants, keep-alives, revokes, the refusal of an
expiry or checkpoint that a keep-alive overtook, snapshots, and the clock's deadlines (never
earlier than what the log says, also across a change of leader)."""

import pytest
from hypothesis import given, strategies as st

from answers import execute
from verikv.etcdpb import rpc_pb2 as r
from verikv.shim.kv import errors
from verikv.shim.api.headers import HeaderCache
from verikv.shim.kv.commands import BatchFormatError, KeepAlives, KeptAlives, Kind
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
    store, timers = KVStore(), LeaseTimers(work_clock=lambda: 0.0)  # (no time passes scanning)
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


class Counted(dict):
    """The store's lease table, counting the leases a scan looks up."""
    looked = 0

    def get(self, key, default=None):
        Counted.looked += 1
        return super().get(key, default)


def looked_at(timers, store, now):
    Counted.looked = 0
    out = timers.checkpoints(store.leases, now)
    return out, Counted.looked


def test_a_checkpoint_scan_looks_only_at_leases_whose_time_came_and_at_a_bounded_number():
    """10,005 leases of TTL 60 s (slack 6 s) granted at 0; 10,000 of them kept alive at 3 s.
    Before 6 s no scan looks at any lease; at 6 s one looks at 10,000 (CHECKPOINT_SCAN_LEASES),
    finds the kept-alive ones not due and puts them back at 9 s, the next scan finds the other 5;
    then no scan looks at anything until 7.05 s (those 5 again, as their checkpoint was not
    applied) and 9 s (the 10,000, due then)."""
    from verikv.shim.node import lease_timers
    store, timers = KVStore(), LeaseTimers(work_clock=lambda: 0.0)
    n = lease_timers.CHECKPOINT_SCAN_LEASES + 5
    for i in range(1, n + 1):
        grant(store, i, 60)
    store.leases.leases = Counted(store.leases.leases)
    timers.applied(changes(store), 0.0)
    timers.lead(True, store.leases, 0.0)
    for i in range(1, lease_timers.CHECKPOINT_SCAN_LEASES + 1):
        store.execute(Kind.LEASE_KEEP_ALIVE, r.LeaseKeepAliveRequest(ID=i))
    timers.applied(changes(store), 3.0)
    assert looked_at(timers, store, 5.95) == ([], 0)
    assert looked_at(timers, store, 6.0) == ([], lease_timers.CHECKPOINT_SCAN_LEASES)
    due, looked = looked_at(timers, store, 6.05)
    assert [(i, left) for i, _, left in due] == [(i, 53_950) for i in range(n - 4, n + 1)] and looked == 5
    assert looked_at(timers, store, 6.1) == ([], 0)
    due, looked = looked_at(timers, store, 8.9)  # the 5 again from 7.05: their checkpoint was not applied
    assert [(i, left) for i, _, left in due] == [(i, 51_100) for i in range(n - 4, n + 1)] and looked == 5
    due, looked = looked_at(timers, store, 9.05)
    assert len(due) == lease_timers.CHECKPOINT_SCAN_LEASES and looked == lease_timers.CHECKPOINT_SCAN_LEASES


def test_leases_kept_alive_cost_a_scan_nothing_until_they_can_be_due():
    """1,000 leases of TTL 600 s (slack 60 s), kept alive every 10 s by the log: scans every
    50 ms for two minutes look at each lease about once per slack, not once a second."""
    store, timers = KVStore(), LeaseTimers()
    for i in range(1, 1001):
        grant(store, i, 600)
    store.leases.leases = Counted(store.leases.leases)
    timers.applied(changes(store), 0.0)
    timers.lead(True, store.leases, 0.0)
    total, now = 0, 0.0
    while now < 120.0:
        if int(now * 20) % 200 == 0:  # every 10 s, all of them
            store.execute(Kind.LEASE_KEEP_ALIVES, KeepAlives(list(range(1, 1001))))
            timers.applied(changes(store), now)
        out, looked = looked_at(timers, store, now)
        assert out == []  # never due: kept alive well within the slack
        total += looked
        now += 0.05
    assert total <= 2 * 1000  # at 60 s and 120 s at most; a pass a second would be 120,000


def test_a_turns_keep_alives_in_one_command_renew_as_each_alone_would():
    """KeepAlives (one command for a turn's keep-alives): the same renewals, TTLs and lease
    versions as one LEASE_KEEP_ALIVE command each, in the same order, repeats included."""
    ids = [1, 5, 1, 99, 2, 1]
    one, many = KVStore(), KVStore()
    for store in (one, many):
        grant(store, 1, 10), grant(store, 2, 20), grant(store, 5, 7)
        store.leases.leases[2].remaining_ms = 3  # renewals restore the whole TTL
    grant_version = many.leases.leases[1].version
    alone = [one.execute(Kind.LEASE_KEEP_ALIVE, r.LeaseKeepAliveRequest(ID=i)).TTL for i in ids]
    together = many.execute(Kind.LEASE_KEEP_ALIVES, KeepAlives.FromString(KeepAlives(ids).SerializeToString()))
    assert together.ttls == alone == [10, 7, 10, 0, 20, 10]
    assert together.revision == many.revision
    assert {i: (l.version, l.remaining_ms) for i, l in many.leases.leases.items()} == \
        {i: (l.version, l.remaining_ms) for i, l in one.leases.leases.items()}
    assert many.leases.leases[1].version == one.leases.leases[1].version == grant_version + 3
    # its result is a dedup table's entry like any other: it survives a snapshot
    session = many._sessions.session(7, 1)
    session.remember(1, together)
    copy = KVStore.restore(many.snapshot())
    assert copy.snapshot() == many.snapshot()
    kept = copy._sessions[7].results[1]
    assert (kept.revision, list(kept.ttls)) == (together.revision, together.ttls)


@given(lease_id=st.integers(-2**63, 2**63 - 1), ttl=st.integers(0, 9_000_000_000),
       revision=st.integers(0, 2**63 - 1), term=st.integers(0, 2**40))
def test_a_keep_alive_answer_is_the_bytes_protobuf_makes(lease_id, ttl, revision, term):
    cache = HeaderCache(2)
    header = r.ResponseHeader(revision=revision)
    cache.fill(header, term)
    want = r.LeaseKeepAliveResponse(header=header, ID=lease_id, TTL=ttl).SerializeToString()
    assert KeptAlives(revision, [ttl]).answer(cache.encoded(term, revision), lease_id, ttl) == want


def test_keep_alives_of_a_broken_length_are_refused():
    for broken in (b"\x01", b"\x00" * 9):
        with pytest.raises(BatchFormatError):
            KeepAlives.FromString(broken)
    with pytest.raises(BatchFormatError):
        KeptAlives.FromString(b"\x00" * 4)


def test_a_lease_granted_while_leading_is_checkpointed_when_due():
    store, timers = KVStore(), LeaseTimers()
    timers.lead(True, store.leases, 0.0)
    grant(store, 1, 10)  # slack 1 s
    timers.applied(changes(store), 1.0)
    assert timers.checkpoints(store.leases, 1.95) == []
    assert timers.checkpoints(store.leases, 2.05) == [(1, store.leases.leases[1].version, 8_950)]


class CountedDeadlines(dict):
    """A node's deadlines, counting the leases a scan looks at (by lookup or by iteration)."""
    looked = 0

    def get(self, key, default=None):
        CountedDeadlines.looked += 1
        return super().get(key, default)

    def items(self):
        CountedDeadlines.looked += len(self)
        return super().items()


def test_leases_running_out_one_by_one_cost_a_scan_only_the_ones_due():
    """1,000 leases whose deadlines are a second apart: scans every 50 ms for 100 s propose each
    of the first 100 at its deadline, never early, and look at little more than those (a look at
    every lease whenever one is due would be about 2,000 scans x 1,000 leases)."""
    store, timers = KVStore(), LeaseTimers()
    for i in range(1, 1001):
        grant(store, i, i)  # lease i runs out i seconds after 0
    timers.applied(changes(store), 0.0)
    timers.lead(True, store.leases, 0.0)
    timers.deadlines = CountedDeadlines(timers.deadlines)
    CountedDeadlines.looked = 0
    proposed, now = [], 0.0
    for step in range(2001):
        now = step * 0.05
        for lease_id, version in timers.expiries(store.leases, now):
            assert now >= lease_id  # never early
            proposed.append(lease_id)
    assert proposed == list(range(1, 101))
    assert CountedDeadlines.looked <= 2 * 100


def test_a_new_leader_places_its_leases_a_bounded_number_per_scan_and_leads_once_all_are():
    # Placing 350,000 leases in the heaps at once took 276 ms here, longer than the followers'
    # election timeout: each new leader was replaced before it could lead (a 5-round bench).
    from verikv.shim.node import lease_timers
    store, timers = KVStore(), LeaseTimers(work_clock=lambda: 0.0)  # (no time passes placing)
    per_scan = lease_timers.PLACE_PER_SCAN
    n = 2 * per_scan + 5
    for i in range(1, n + 1):
        grant(store, i, 2)
    timers.applied(changes(store), 0.0)
    timers.lead(True, store.leases, 0.0)
    assert not timers.leading and len(timers._due) == per_scan
    assert timers.expiries(store.leases, 10.0) == []  # it does not lead for leases yet
    grant(store, n + 1, 2)  # granted, and one revoked, while it places
    store.execute(Kind.LEASE_REVOKE, r.LeaseRevokeRequest(ID=1))
    timers.applied(changes(store), 1.0)
    timers.lead(True, store.leases, 1.0)
    assert not timers.leading and len(timers._due) == 2 * per_scan
    timers.lead(True, store.leases, 1.0)
    assert timers.leading
    expired = []
    while batch := timers.expiries(store.leases, 10.0):
        expired += [i for i, _ in batch]
    assert sorted(expired) == list(range(2, n + 2))  # every lease but the revoked one, the late one too


def test_a_leader_deposed_while_placing_starts_again_when_it_leads_again():
    from verikv.shim.node import lease_timers
    store, timers = KVStore(), LeaseTimers(work_clock=lambda: 0.0)
    for i in range(1, lease_timers.PLACE_PER_SCAN + 6):
        grant(store, i, 2)
    timers.applied(changes(store), 0.0)
    timers.lead(True, store.leases, 0.0)
    timers.lead(False, store.leases, 0.5)
    assert not timers.leading and timers._due == {}
    timers.lead(True, store.leases, 1.0)
    assert not timers.leading and len(timers._due) == lease_timers.PLACE_PER_SCAN
    timers.lead(True, store.leases, 1.0)
    assert timers.leading and len(timers._due) == lease_timers.PLACE_PER_SCAN + 5


def test_a_new_leader_places_its_leases_for_a_bounded_time_per_scan():
    # 20,000 a scan took 130-260 ms on a busy machine (a 5-round bench): each scan stops placing
    # once its time budget is spent, whatever the count
    from verikv.shim.node import lease_timers
    t = [0.0]

    def work_clock():  # each chunk placed takes 0.4 of the budget
        t[0] += 0.4 * lease_timers.PLACE_BUDGET_S
        return t[0]
    store, timers = KVStore(), LeaseTimers(work_clock=work_clock)
    chunk = lease_timers.PLACE_CHUNK
    n = 7 * chunk + 1
    for i in range(1, n + 1):
        grant(store, i, 2)
    timers.applied(changes(store), 0.0)
    scans = 0
    while not timers.leading:
        before = len(timers._due)
        timers.lead(True, store.leases, 0.0)
        scans += 1
        assert len(timers._due) - before <= 3 * chunk  # started, +0.4, +0.8, +1.2: three chunks
    assert scans == 3 and len(timers._due) == n


def test_expiry_and_checkpoint_scans_stop_once_their_time_budget_is_spent():
    # 10,000 checkpoints took 18-20 ms on an idle machine, several times that on a busy one
    from verikv.shim.node import lease_timers
    t = [0.0]

    def work_clock():  # each look at the clock: 0.3 of the budget later
        t[0] += 0.3 * lease_timers.SCAN_BUDGET_S
        return t[0]
    every = lease_timers.BUDGET_EVERY
    n = 20 * every
    store, timers = KVStore(), LeaseTimers(work_clock=work_clock)
    for i in range(1, n + 1):
        grant(store, i, 100)  # slack 10 s: due for a checkpoint from 90 s on
    timers.applied(changes(store), 0.0)
    while not timers.leading:
        timers.lead(True, store.leases, 0.0)
    # a scan reads the clock when it starts (its budget ends 1.0 later), then every BUDGET_EVERY
    # leases: +0.3, +0.6, +0.9, +1.2, past its budget at the fourth, after 4 x BUDGET_EVERY - 1
    checkpointed, scans = [], 0
    while batch := timers.checkpoints(store.leases, 95.0):
        assert len(batch) == min(4 * every - 1, n - len(checkpointed))
        checkpointed += [i for i, _, _ in batch]
        scans += 1
    assert sorted(checkpointed) == list(range(1, n + 1)) and scans == -(-n // (4 * every - 1))
    expired, scans = [], 0
    while batch := timers.expiries(store.leases, 200.0):
        assert len(batch) == min(4 * every - 1, n - len(expired))
        expired += [i for i, _ in batch]
        scans += 1
    assert sorted(expired) == list(range(1, n + 1)) and scans == -(-n // (4 * every - 1))
