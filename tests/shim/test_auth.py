"""etcd's auth store as the state machine applies it (shim/kv/auth.py, through KVStore): users,
roles, permissions over key ranges, the root rules, the admin checks, the auth revision and the
refusal of a command authorised at an older one, the checks of every key a write or txn touches
(both branches), and that the auth state survives a snapshot and never holds a password."""

import hashlib

import pytest

from verikv.etcdpb import auth_pb2, rpc_pb2 as r
from verikv.shim.kv import errors
from verikv.shim.kv.auth import READ, READWRITE, WRITE, AuthInfo, AuthStore, _covers
from verikv.shim.kv.commands import AsUser, Command, Kind, TokenGrant, encode_batch
from verikv.shim.kv.store import KVStore


def user(name, password_hash=b"$2b$10$hash", no_password=False):
    return auth_pb2.User(name=name.encode(), password=password_hash,
                         options=auth_pb2.UserAddOptions(no_password=no_password))


def grant(kv, role, kind, key, end=b"", who=None):
    return kv.execute(Kind.ROLE_GRANT_PERMISSION, r.AuthRoleGrantPermissionRequest(
        name=role, perm=auth_pb2.Permission(permType=kind, key=key, range_end=end)), who)


def as_user(kv, who, kind, request):
    """A command as a client with `who`'s token sends it: in an AsUser, through its bytes."""
    wrapped = AsUser(who.user, who.revision, kind, request.SerializeToString()).SerializeToString()
    return kv.execute(Kind.AS_USER, AsUser.FromString(wrapped))


def now(kv, name):
    """`name`'s AuthInfo as a node would make it from a token now."""
    return AuthInfo(name, kv.auth.revision)


@pytest.fixture
def kv():
    """Root (with the root role), alice with role r1 (readwrite a/ prefix, read k1, write
    [w1, w5)), bob with no role; auth enabled."""
    kv = KVStore()
    for name in ("root", "alice", "bob"):
        assert not isinstance(kv.execute(Kind.USER_ADD, user(name)), errors.EtcdError)
    for role in ("root", "r1"):
        kv.execute(Kind.ROLE_ADD, r.AuthRoleAddRequest(name=role))
    kv.execute(Kind.USER_GRANT_ROLE, r.AuthUserGrantRoleRequest(user="root", role="root"))
    kv.execute(Kind.USER_GRANT_ROLE, r.AuthUserGrantRoleRequest(user="alice", role="r1"))
    grant(kv, "r1", READWRITE, b"a/", b"a0")
    grant(kv, "r1", READ, b"k1")
    grant(kv, "r1", WRITE, b"w1", b"w5")
    assert isinstance(kv.execute(Kind.AUTH_ENABLE, r.AuthEnableRequest()), r.AuthEnableResponse)
    return kv


def test_enabling_auth_needs_root_with_the_root_role():
    kv = KVStore()
    assert kv.execute(Kind.AUTH_ENABLE, r.AuthEnableRequest()) == errors.ROOT_USER_NOT_EXIST
    kv.execute(Kind.USER_ADD, user("root"))
    assert kv.execute(Kind.AUTH_ENABLE, r.AuthEnableRequest()) == errors.ROOT_ROLE_NOT_EXIST
    # granting "root" needs no role named root (etcd's rule), and enabling does not move the revision
    assert isinstance(kv.execute(Kind.USER_GRANT_ROLE, r.AuthUserGrantRoleRequest(user="root", role="root")),
                      r.AuthUserGrantRoleResponse)
    rev = kv.auth.revision
    assert isinstance(kv.execute(Kind.AUTH_ENABLE, r.AuthEnableRequest()), r.AuthEnableResponse)
    assert kv.auth.enabled and kv.auth.revision == rev


def test_user_and_role_management_errors_are_etcds(kv):
    root = now(kv, "root")
    assert as_user(kv, root, Kind.USER_ADD, user("")) == errors.USER_EMPTY
    assert as_user(kv, root, Kind.USER_ADD, user("alice")) == errors.USER_ALREADY_EXIST
    assert as_user(kv, root, Kind.ROLE_ADD, r.AuthRoleAddRequest(name="")) == errors.ROLE_EMPTY
    assert as_user(kv, root, Kind.ROLE_ADD, r.AuthRoleAddRequest(name="r1")) == errors.ROLE_ALREADY_EXIST
    assert as_user(kv, root, Kind.USER_GRANT_ROLE,
                   r.AuthUserGrantRoleRequest(user="carol", role="r1")) == errors.USER_NOT_FOUND
    assert as_user(kv, root, Kind.USER_GRANT_ROLE,
                   r.AuthUserGrantRoleRequest(user="bob", role="nope")) == errors.ROLE_NOT_FOUND
    assert as_user(kv, root, Kind.USER_REVOKE_ROLE,
                   r.AuthUserRevokeRoleRequest(name="bob", role="r1")) == errors.ROLE_NOT_GRANTED
    assert as_user(kv, root, Kind.ROLE_REVOKE_PERMISSION,
                   r.AuthRoleRevokePermissionRequest(role="r1", key=b"zz")) == errors.PERMISSION_NOT_GRANTED
    assert as_user(kv, root, Kind.ROLE_GET, r.AuthRoleGetRequest(role="nope")) == errors.ROLE_NOT_FOUND
    assert as_user(kv, root, Kind.USER_GET, r.AuthUserGetRequest(name="carol")) == errors.USER_NOT_FOUND
    # while auth is enabled, root cannot be removed nor lose its role
    assert as_user(kv, root, Kind.USER_DELETE, r.AuthUserDeleteRequest(name="root")) == errors.INVALID_AUTH_MGMT
    assert as_user(kv, root, Kind.ROLE_DELETE, r.AuthRoleDeleteRequest(role="root")) == errors.INVALID_AUTH_MGMT
    assert as_user(kv, root, Kind.USER_REVOKE_ROLE,
                   r.AuthUserRevokeRoleRequest(name="root", role="root")) == errors.INVALID_AUTH_MGMT


def test_lists_and_gets_are_sorted_as_etcds(kv):
    root = now(kv, "root")
    assert list(as_user(kv, root, Kind.USER_LIST, r.AuthUserListRequest()).users) == ["alice", "bob", "root"]
    assert list(as_user(kv, root, Kind.ROLE_LIST, r.AuthRoleListRequest()).roles) == ["r1", "root"]
    got = as_user(kv, root, Kind.ROLE_GET, r.AuthRoleGetRequest(role="r1")).perm
    assert [(p.permType, p.key, p.range_end) for p in got] == [
        (READWRITE, b"a/", b"a0"), (READ, b"k1", b""), (WRITE, b"w1", b"w5")]
    grant(kv, "r1", WRITE, b"k1", who=now(kv, "root"))  # the same key and end: its type changes
    got = as_user(kv, now(kv, "root"), Kind.ROLE_GET, r.AuthRoleGetRequest(role="r1")).perm
    assert [(p.permType, p.key) for p in got] == [(READWRITE, b"a/"), (WRITE, b"k1"), (WRITE, b"w1")]


def test_management_needs_root_and_a_user_may_read_itself_and_its_roles(kv):
    alice = now(kv, "alice")
    assert as_user(kv, alice, Kind.USER_LIST, r.AuthUserListRequest()) == errors.PERMISSION_DENIED
    assert as_user(kv, alice, Kind.ROLE_ADD, r.AuthRoleAddRequest(name="x")) == errors.PERMISSION_DENIED
    assert as_user(kv, alice, Kind.AUTH_DISABLE, r.AuthDisableRequest()) == errors.PERMISSION_DENIED
    assert list(as_user(kv, alice, Kind.USER_GET, r.AuthUserGetRequest(name="alice")).roles) == ["r1"]
    assert as_user(kv, alice, Kind.USER_GET, r.AuthUserGetRequest(name="bob")) == errors.PERMISSION_DENIED
    assert len(as_user(kv, alice, Kind.ROLE_GET, r.AuthRoleGetRequest(role="r1")).perm) == 3
    assert as_user(kv, alice, Kind.ROLE_GET, r.AuthRoleGetRequest(role="root")) == errors.PERMISSION_DENIED
    assert kv.execute(Kind.USER_LIST, r.AuthUserListRequest()) == errors.USER_EMPTY  # no token
    assert as_user(kv, AuthInfo("ghost", kv.auth.revision), Kind.USER_LIST,
                   r.AuthUserListRequest()) == errors.USER_NOT_FOUND


def test_writes_are_checked_on_every_key_they_touch(kv):
    alice = now(kv, "alice")
    assert isinstance(as_user(kv, alice, Kind.PUT, r.PutRequest(key=b"a/1", value=b"v")), r.PutResponse)
    assert as_user(kv, alice, Kind.PUT, r.PutRequest(key=b"b", value=b"v")) == errors.PERMISSION_DENIED
    assert as_user(kv, alice, Kind.PUT, r.PutRequest(key=b"k1", value=b"v")) == errors.PERMISSION_DENIED  # read only
    assert isinstance(as_user(kv, alice, Kind.PUT, r.PutRequest(key=b"w2", value=b"v")), r.PutResponse)
    # write-only: prev_kv needs read too
    assert as_user(kv, alice, Kind.PUT, r.PutRequest(key=b"w2", value=b"v", prev_kv=True)) == errors.PERMISSION_DENIED
    assert isinstance(as_user(kv, alice, Kind.DELETE_RANGE, r.DeleteRangeRequest(key=b"w1", range_end=b"w5")),
                      r.DeleteRangeResponse)
    assert as_user(kv, alice, Kind.DELETE_RANGE,
                   r.DeleteRangeRequest(key=b"w1", range_end=b"w6")) == errors.PERMISSION_DENIED
    assert as_user(kv, alice, Kind.DELETE_RANGE, r.DeleteRangeRequest(key=b"a/", range_end=b"\0")) \
        == errors.PERMISSION_DENIED  # from a/ to the end is more than a/ to a0
    assert kv.execute(Kind.PUT, r.PutRequest(key=b"a/1", value=b"v")) == errors.USER_EMPTY  # no token
    assert isinstance(as_user(kv, now(kv, "root"), Kind.PUT, r.PutRequest(key=b"zz")), r.PutResponse)
    assert as_user(kv, now(kv, "bob"), Kind.PUT, r.PutRequest(key=b"a/1")) == errors.PERMISSION_DENIED
    assert as_user(kv, now(kv, "ghost"), Kind.PUT, r.PutRequest(key=b"a/1")) == errors.PERMISSION_DENIED
    assert [x.key for x in kv.items()] == [b"a/1", b"zz"]  # nothing refused changed anything


def test_a_txn_is_checked_on_its_compares_and_both_branches(kv):
    alice = now(kv, "alice")

    def txn(compare_key, then_key, else_key):
        return r.TxnRequest(compare=[r.Compare(key=compare_key, target=r.Compare.VERSION, version=0)],
                            success=[r.RequestOp(request_put=r.PutRequest(key=then_key))],
                            failure=[r.RequestOp(request_put=r.PutRequest(key=else_key))])

    assert isinstance(as_user(kv, alice, Kind.TXN, txn(b"a/1", b"a/2", b"a/3")), r.TxnResponse)
    assert as_user(kv, alice, Kind.TXN, txn(b"a/1", b"a/2", b"b")) == errors.PERMISSION_DENIED  # else: never run
    assert as_user(kv, alice, Kind.TXN, txn(b"b", b"a/2", b"a/3")) == errors.PERMISSION_DENIED  # compare: read
    ranged = r.TxnRequest(success=[r.RequestOp(request_range=r.RangeRequest(key=b"w1"))])
    assert as_user(kv, alice, Kind.TXN, ranged) == errors.PERMISSION_DENIED  # write only
    # a nested txn's ops are checked too (etcd 3.4 lets them through unchecked)
    nested = r.TxnRequest(success=[r.RequestOp(request_txn=txn(b"a/1", b"a/2", b"b"))])
    assert as_user(kv, alice, Kind.TXN, nested) == errors.PERMISSION_DENIED
    assert kv.execute(Kind.RANGE, r.RangeRequest(key=b"b")).count == 0  # not written
    nested = r.TxnRequest(success=[r.RequestOp(request_txn=txn(b"a/1", b"a/2", b"a/3"))])
    assert isinstance(as_user(kv, alice, Kind.TXN, nested), r.TxnResponse)


def test_the_keys_of_a_lease_are_told_only_to_who_may_read_them(kv):
    alice = now(kv, "alice")
    kv.auth.check_lease_keys(alice, [b"a/1", b"k1"])
    with pytest.raises(errors.EtcdError) as refused:
        kv.auth.check_lease_keys(alice, [b"a/1", b"b"])
    assert refused.value == errors.PERMISSION_DENIED
    with pytest.raises(errors.EtcdError) as refused:
        kv.auth.check_lease_keys(AuthInfo(), [])
    assert refused.value == errors.USER_EMPTY


def test_a_lease_revoke_needs_write_on_its_keys(kv):
    root, alice = now(kv, "root"), now(kv, "alice")
    kv.execute(Kind.LEASE_GRANT, r.LeaseGrantRequest(ID=7, TTL=60))
    kv.execute(Kind.LEASE_GRANT, r.LeaseGrantRequest(ID=8, TTL=60))
    assert isinstance(as_user(kv, root, Kind.PUT, r.PutRequest(key=b"b", lease=7)), r.PutResponse)
    assert isinstance(as_user(kv, alice, Kind.PUT, r.PutRequest(key=b"a/x", lease=8)), r.PutResponse)
    assert as_user(kv, alice, Kind.LEASE_REVOKE, r.LeaseRevokeRequest(ID=7)) == errors.PERMISSION_DENIED
    assert as_user(kv, alice, Kind.PUT, r.PutRequest(key=b"a/y", lease=7)) == errors.PERMISSION_DENIED
    assert isinstance(as_user(kv, alice, Kind.LEASE_REVOKE, r.LeaseRevokeRequest(ID=8)), r.LeaseRevokeResponse)


def test_a_command_authorised_before_a_change_is_refused_when_applied(kv):
    alice = now(kv, "alice")
    rev = kv.auth.revision
    as_user(kv, now(kv, "root"), Kind.ROLE_ADD, r.AuthRoleAddRequest(name="other"))  # any change moves it
    assert kv.auth.revision == rev + 1
    assert as_user(kv, alice, Kind.PUT, r.PutRequest(key=b"a/1")) == errors.AUTH_OLD_REVISION
    assert isinstance(as_user(kv, now(kv, "alice"), Kind.PUT, r.PutRequest(key=b"a/1")), r.PutResponse)
    # a revoked permission cannot be used by a request in flight, nor by a new one
    in_flight = now(kv, "alice")
    as_user(kv, now(kv, "root"), Kind.ROLE_REVOKE_PERMISSION,
            r.AuthRoleRevokePermissionRequest(role="r1", key=b"a/", range_end=b"a0"))
    assert as_user(kv, in_flight, Kind.PUT, r.PutRequest(key=b"a/1")) == errors.AUTH_OLD_REVISION
    assert as_user(kv, now(kv, "alice"), Kind.PUT, r.PutRequest(key=b"a/1")) == errors.PERMISSION_DENIED


def test_reads_are_checked_with_etcds_interval_rules(kv):
    a = kv.auth
    alice = now(kv, "alice")
    a.check_op(alice, b"a/x", b"", READ)
    a.check_op(alice, b"a/", b"a0", READ)
    a.check_op(alice, b"k1", b"", READ)
    for key, end in [(b"a/", b"a1"), (b"a", b"a0"), (b"k", b""), (b"k1", b"k2"), (b"w1", b"")]:
        with pytest.raises(errors.EtcdError) as refused:
            a.check_op(alice, key, end, READ)
        assert refused.value == errors.PERMISSION_DENIED, (key, end)
    with pytest.raises(errors.EtcdError) as refused:
        a.check_op(AuthInfo(), b"a/x", b"", READ)
    assert refused.value == errors.USER_EMPTY
    # the union of several permissions covers a range none covers alone; "\0" is "to the end"
    assert _covers([(b"a", b"c"), (b"c", b"e")], b"b", b"d")
    assert not _covers([(b"a", b"c"), (b"d", b"e")], b"b", b"d")
    assert _covers([(b"a", b"")], b"x", b"")
    assert not _covers([(b"a", b"z")], b"x", b"")


def test_disabling_auth_lifts_every_check_and_moves_the_revision(kv):
    rev = kv.auth.revision
    assert isinstance(as_user(kv, now(kv, "root"), Kind.AUTH_DISABLE, r.AuthDisableRequest()), r.AuthDisableResponse)
    assert kv.auth.revision == rev + 1 and kv.auth.disables == 1
    assert isinstance(kv.execute(Kind.PUT, r.PutRequest(key=b"b")), r.PutResponse)


def test_authenticate_grants_a_token_digest_only_at_the_revision_checked(kv):
    digest = hashlib.sha256(b"tok.1").digest()
    assert isinstance(kv.execute(Kind.AUTHENTICATE, TokenGrant("alice", kv.auth.revision, digest)),
                      r.AuthenticateResponse)
    assert kv.auth.take_grants() == [(digest, "alice", b"$2b$10$hash", 0)]
    assert kv.execute(Kind.AUTHENTICATE, TokenGrant("alice", kv.auth.revision - 1, digest)) == errors.AUTH_OLD_REVISION
    assert kv.execute(Kind.AUTHENTICATE, TokenGrant("carol", kv.auth.revision, digest)) == errors.AUTH_FAILED
    as_user(kv, now(kv, "root"), Kind.USER_ADD, user("nopw", b"", no_password=True))
    assert kv.execute(Kind.AUTHENTICATE, TokenGrant("nopw", kv.auth.revision, digest)) == errors.AUTH_FAILED
    assert kv.auth.take_grants() == []


def test_the_auth_state_is_replicated_through_batches_and_kept_by_snapshots(kv):
    """The same commands in a batch, applied by two stores, and a store restored from the
    snapshot of one: the same auth state, permissions and revision."""
    def cmd(seq, kind, request, who=None):
        body = request.SerializeToString()
        if who is not None:
            body = AsUser(who.user, who.revision, kind, body).SerializeToString()
            kind = Kind.AS_USER
        return Command(kind, 1, seq, 0, body).encode()

    a, b = KVStore(), KVStore()
    batch = encode_batch([
        cmd(1, Kind.USER_ADD, user("root")), cmd(2, Kind.USER_GRANT_ROLE, r.AuthUserGrantRoleRequest(user="root", role="root")),
        cmd(3, Kind.USER_ADD, user("alice")), cmd(4, Kind.ROLE_ADD, r.AuthRoleAddRequest(name="r1")),
        cmd(5, Kind.ROLE_GRANT_PERMISSION, r.AuthRoleGrantPermissionRequest(
            name="r1", perm=auth_pb2.Permission(permType=READ, key=b"x", range_end=b"y"))),
        cmd(6, Kind.USER_GRANT_ROLE, r.AuthUserGrantRoleRequest(user="alice", role="r1")),
        cmd(7, Kind.AUTH_ENABLE, r.AuthEnableRequest()),
        cmd(8, Kind.PUT, r.PutRequest(key=b"x1"), AuthInfo("alice", 7)),  # alice may only read x..y
        cmd(9, Kind.PUT, r.PutRequest(key=b"x1"), AuthInfo("root", 7)),
    ])
    outs = a.apply(0, batch)
    b.apply(0, batch)
    assert outs[7].result == errors.PERMISSION_DENIED and isinstance(outs[8].result, r.PutResponse)
    for store in (b, KVStore.restore(a.snapshot())):
        assert store.snapshot() == a.snapshot()
        assert store.auth.enabled and store.auth.revision == a.auth.revision == 7
        store.auth.check_op(AuthInfo("alice", 7), b"x1", b"", READ)
        with pytest.raises(errors.EtcdError):
            store.auth.check_op(AuthInfo("alice", 7), b"x1", b"", WRITE)
    # a duplicate is answered from the dedup table, also after a restore
    again = KVStore.restore(a.snapshot()).apply(1, encode_batch([cmd(8, Kind.PUT, r.PutRequest(key=b"x1"),
                                                                     AuthInfo("alice", 7))]))
    assert again[0].duplicate and again[0].result == errors.PERMISSION_DENIED


def test_a_snapshot_holds_hashes_only_and_old_snapshots_restore_without_auth(kv):
    snap = kv.snapshot()
    assert b"$2b$10$hash" in snap  # what the proposer put in the log: a hash
    restored = KVStore.restore(snap)
    assert restored.auth.users.keys() == kv.auth.users.keys()
    old = KVStore()
    old.execute(Kind.PUT, r.PutRequest(key=b"k", value=b"v"))
    v4 = b"VKS4" + old.snapshot()[4:-len(AuthStore().encode())]
    back = KVStore.restore(v4)
    assert not back.auth.enabled and back.auth.users == {} and [x.key for x in back.items()] == [b"k"]


def test_a_malformed_asuser_is_a_format_error():
    from verikv.shim.kv.commands import BatchFormatError
    with pytest.raises(BatchFormatError):
        AsUser.FromString(b"\x01")
    inner = AsUser("x", 1, Kind.PUT, b"").SerializeToString()
    with pytest.raises(BatchFormatError):
        AsUser.FromString(AsUser("x", 1, Kind.AS_USER, inner).SerializeToString())
