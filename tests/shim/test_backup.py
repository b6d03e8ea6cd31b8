"""The saved-snapshot file (shim/kv/backup.py): a bolt file whose etcd buckets hold the store's
history as etcd 3.4 encodes it (read back here version by version against the store's own
answers), whose `verikv` bucket gives the node's state back exactly, taken at one revision while
the node goes on; every damage refused with what is wrong."""

import hashlib
import json
import shutil
import struct
import subprocess

import pytest

from verikv.etcdpb import auth_pb2, kv_pb2, rpc_pb2 as r
from verikv.shim.kv import backup, bolt
from verikv.shim.kv.steps import run as yield_all
from verikv.shim.kv.store import HASH_STEP_KEYS, KVStore

ETCDCTL = shutil.which("etcdctl")


def busy_store() -> KVStore:
    s = KVStore()
    for i in range(300):
        s.put(r.PutRequest(key=b"k%d" % (i % 40), value=b"v%d" % i))
    s.delete_range(r.DeleteRangeRequest(key=b"k1", range_end=b"k2"))  # tombstones, several in one revision
    s.txn(r.TxnRequest(success=[r.RequestOp(request_put=r.PutRequest(key=b"t1", value=b"a")),
                                r.RequestOp(request_put=r.PutRequest(key=b"t2", value=b"b"))]))
    s.compact(r.CompactionRequest(revision=200))
    s.leases.grant(r.LeaseGrantRequest(ID=7, TTL=60))
    s.put(r.PutRequest(key=b"leased", value=b"x", lease=7))
    s.delete_range(r.DeleteRangeRequest(key=b"k5"))
    s.alarms.add((3, r.AlarmType.NOSPACE))
    s.auth.users["root"] = auth_pb2.User(name=b"root", password=b"$2b$10$hash", roles=[b"root"])
    s.auth.roles["root"] = auth_pb2.Role(name=b"root")
    return s


def test_the_state_comes_back_exactly_from_a_file_of_etcdctls_shape():
    for store in (KVStore(), busy_store()):
        data = backup.encode(store)
        assert len(data) % 512 == 32  # etcdctl's rule for a file with its sha256
        assert backup.decode(data) == store.snapshot()


def test_the_etcd_buckets_hold_every_version_kept_as_etcd_encodes_it():
    store = busy_store()
    body = backup.encode(store)[:-32]
    rows = list(bolt.read(body, b"key"))
    kept = []
    assert (yield_all(store.versions_steps(store.revision, kept))) is True
    assert len(rows) == len(kept) > 300 - 200
    tombstones = 0
    for rev_key, value in rows:
        main, sep, sub = struct.unpack(">QcQ", rev_key[:17])
        assert sep == b"_"
        kv = kv_pb2.KeyValue.FromString(value)
        # below the compaction point, only a key's last version there is kept (never a tombstone)
        answer = store.range(r.RangeRequest(key=kv.key, revision=max(main, store.compact_revision)))
        if rev_key[17:] == b"t":  # etcd's tombstone: the key alone
            tombstones += 1
            assert kv == kv_pb2.KeyValue(key=kv.key) and not answer.kvs
        else:
            assert rev_key[17:] == b"" and answer.kvs[0] == kv and kv.mod_revision == main
    assert tombstones > 0
    subs = [struct.unpack(">QcQ", k[:17])[2] for k, _ in rows]
    assert max(subs) >= 1  # the txn's second put, and the deleted range's later keys
    meta = dict(bolt.read(body, b"meta"))
    assert meta[b"consistent_index"] == store.next_slot.to_bytes(8, "big")
    assert meta[b"finishedCompactRev"] == meta[b"scheduledCompactRev"] == struct.pack(">QcQ", 200, b"_", 0)
    assert list(bolt.read(body, b"lease")) == [((7).to_bytes(8, "big"), b"\x08\x07\x10\x3c")]  # ID 7, TTL 60
    [(alarm, _)] = bolt.read(body, b"alarm")
    assert r.AlarmMember.FromString(alarm) == r.AlarmMember(memberID=3, alarm=r.AlarmType.NOSPACE)
    assert dict(bolt.read(body, b"auth")) == {b"authEnabled": b"\x00", b"authRevision": (1).to_bytes(8, "big")}
    [(name, user)] = bolt.read(body, b"authUsers")
    assert name == b"root" and auth_pb2.User.FromString(user).password == b"$2b$10$hash"
    for empty in (b"members", b"members_removed", b"cluster"):
        assert list(bolt.read(body, empty)) == []


@pytest.mark.skipif(ETCDCTL is None, reason="etcdctl is not installed")
def test_etcdctl_snapshot_status_reads_it(tmp_path):
    store = busy_store()
    path = tmp_path / "saved.db"
    path.write_bytes(backup.encode(store))
    res = subprocess.run([ETCDCTL, "snapshot", "status", str(path), "-w", "json"], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    status = json.loads(res.stdout)
    body = path.read_bytes()[:-32]
    assert status["revision"] == store.revision  # the last version's revision
    assert status["totalKey"] == sum(len(list(bolt.read(body, b))) for b in bolt.buckets(body))
    assert status["totalSize"] == len(body)


def test_taken_at_one_revision_while_the_node_goes_on():
    store = KVStore()
    for i in range(HASH_STEP_KEYS + 10):  # more than one step
        store.put(r.PutRequest(key=b"k%06d" % i, value=b"v"))
    at_start = store.snapshot()
    steps = backup.encode_steps(store)
    next(steps)
    store.put(r.PutRequest(key=b"late", value=b"after the start"))
    data = yield_all(steps)
    assert backup.decode(data) == at_start
    rows = list(bolt.read(data[:-32], b"key"))
    assert len(rows) == HASH_STEP_KEYS + 10 and b"late" not in rows[-1][1]

    steps = backup.encode_steps(store)  # a compaction meanwhile: it starts again, at the later state
    next(steps)
    store.compact(r.CompactionRequest(revision=5))
    data = yield_all(steps)
    assert backup.decode(data) == store.snapshot()
    assert dict(bolt.read(data[:-32], b"meta"))[b"finishedCompactRev"] == struct.pack(">QcQ", 5, b"_", 0)


def test_damage_is_refused_with_what_is_wrong():
    data = backup.encode(busy_store())
    with pytest.raises(ValueError, match="sha256 does not match"):
        backup.decode(data[:-1])
    with pytest.raises(ValueError, match="sha256 does not match"):
        backup.decode(data[:5] + b"X" + data[6:])
    for foreign, why in [(b"\0" * 512, "no valid meta page"),
                         (bolt.write({b"key": [], b"meta": []}), "no bucket 'verikv'")]:  # etcd's, say
        with pytest.raises(ValueError, match=f"not a snapshot saved from verikv \\(.*{why}.*etcdctl snapshot restore"):
            backup.decode(foreign + hashlib.sha256(foreign).digest())
    lying = backup.MAGIC + (10**6).to_bytes(8, "little") + bytes(496)
    with pytest.raises(ValueError, match="length field is larger"):
        backup.decode(lying + hashlib.sha256(lying).digest())


def test_a_file_saved_in_the_earlier_format_still_restores():
    state = busy_store().snapshot()
    head = backup.MAGIC + len(state).to_bytes(8, "little")
    body = head + state + bytes(-len(head + state) % 512)
    assert backup.decode(body + hashlib.sha256(body).digest()) == state
