"""The file `etcdctl snapshot save` stores from a verikv node (Maintenance.Snapshot), and its
reading back by `verikv snapshot restore`.

The file is what etcd's is: a bolt file (shim/kv/bolt.py), then the sha256 of everything
before it. Its buckets hold the node's state at one revision, in etcd 3.4's buckets and
encodings, so that etcd's own tools read it (`etcdctl snapshot status`; `etcdctl snapshot
restore` builds an etcd data directory from it):
- `key`: every version kept since the compaction point, by revision (8 bytes big-endian, `_`,
  the sub-revision; a tombstone's ends in `t`), each an mvccpb.KeyValue;
- `meta`: `consistent_index` (the slots applied), and `scheduledCompactRev` and
  `finishedCompactRev` once compacted;
- `lease` (leasepb.Lease by ID), `alarm` (each AlarmMember), `auth` (`authEnabled`,
  `authRevision`), `authUsers` and `authRoles` (authpb, bcrypt hashes as etcd keeps them);
- `members`, `members_removed` and `cluster`, empty: a restored cluster names its own members;
- `verikv`: the node's own state (KVStore.snapshot(): the same history, the lease clocks, the
  dedup table, auth), in chunks of at most STATE_CHUNK_BYTES: what `verikv snapshot restore`
  reads, so that a restored verikv cluster answers exactly as the one saved.

Files saved by earlier versions (the state alone after a VKBACKUP magic) are still read.

This module must never touch anything but what it is given.
"""

from __future__ import annotations

import hashlib
import struct

from verikv.etcdpb import kv_pb2, rpc_pb2

from verikv.shim.kv import bolt, steps
from verikv.shim.kv.protowire import varint_field

MAGIC = b"VKBACKUP"  # the earlier format's
_PAGE = 512
STATE_BUCKET = b"verikv"
STATE_CHUNK_BYTES = 256 << 20
_REV = struct.Struct(">QcQ")  # etcd's revToBytes: main, '_', sub
ITEMS_PER_STEP = 10_000  # versions encoded between two yields of encode_steps


def _revision(main: int, sub: int = 0) -> bytes:
    return _REV.pack(main, b"_", sub)


def _lease(lease_id: int, ttl: int) -> bytes:
    """leasepb.Lease{ID, TTL}: RemainingTTL 0, as etcd 3.4 keeps it without checkpoints."""
    return varint_field(1, lease_id) + varint_field(2, ttl)


def encode_steps(store):
    """The whole file for `store` (a KVStore), sha256 included, at the store's revision when it
    starts. A generator that yields between steps, so that a node goes on applying meanwhile
    (writes applied meanwhile are above that revision and left out; a compaction meanwhile
    starts it again); returns the file's bytes."""
    while True:
        state = store.snapshot()
        revision, compact, applied = store.revision, store.compact_revision, store.next_slot
        leases = [(lease.id, lease.ttl) for lease in store.leases.leases.values()]
        alarms = sorted(store.alarms)
        auth = store.auth
        users = sorted((u.name, u.SerializeToString(deterministic=True)) for u in auth.users.values())
        roles = sorted((r.name, r.SerializeToString(deterministic=True)) for r in auth.roles.values())
        auth_rows = [(b"authEnabled", b"\x01" if auth.enabled else b"\x00"),
                     (b"authRevision", auth.revision.to_bytes(8, "big"))]
        versions: list = []
        if (yield from store.versions_steps(revision, versions)):
            break
    rows = []
    for i, (k, rec) in enumerate(versions):
        if rec.version:
            kv = kv_pb2.KeyValue(key=k, create_revision=rec.create_revision, mod_revision=rec.mod_revision,
                                 version=rec.version, value=rec.value, lease=rec.lease)
            rows.append((_revision(rec.mod_revision, rec.sub), kv.SerializeToString()))
        else:  # etcd's tombstone: the key alone, at a revision marked `t`
            rows.append((_revision(rec.mod_revision, rec.sub) + b"t", kv_pb2.KeyValue(key=k).SerializeToString()))
        if i % ITEMS_PER_STEP == ITEMS_PER_STEP - 1:
            yield
    del versions
    rows.sort()
    meta = [(b"consistent_index", applied.to_bytes(8, "big"))]
    if compact > 0:
        meta = [(b"finishedCompactRev", _revision(compact)), *meta, (b"scheduledCompactRev", _revision(compact))]
        meta.sort()
    alarm_rows = sorted((rpc_pb2.AlarmMember(memberID=m, alarm=t).SerializeToString(), b"") for m, t in alarms)
    buckets = {
        b"key": rows,
        b"meta": meta,
        b"lease": sorted((lease_id.to_bytes(8, "big", signed=True), _lease(lease_id, ttl)) for lease_id, ttl in leases),
        b"alarm": alarm_rows,
        b"auth": auth_rows,
        b"authUsers": users,
        b"authRoles": roles,
        b"members": [], b"members_removed": [], b"cluster": [],
        STATE_BUCKET: [(b"state-%04d" % (i // STATE_CHUNK_BYTES), state[i:i + STATE_CHUNK_BYTES])
                       for i in range(0, max(len(state), 1), STATE_CHUNK_BYTES)],
    }
    body = yield from bolt.write_steps(buckets)
    yield
    return body + hashlib.sha256(body).digest()


def encode(store) -> bytes:
    """encode_steps at once."""
    return steps.run(encode_steps(store))


def decode(data: bytes) -> bytes:
    """The node's state (KVStore.snapshot()) in a file `encode` wrote; ValueError saying what is
    wrong otherwise."""
    body, digest = data[:-32], data[-32:]
    if len(data) < 32 or hashlib.sha256(body).digest() != digest:
        raise ValueError("its sha256 does not match its contents (cut short, or not a snapshot saved from verikv)")
    if body.startswith(MAGIC):
        length = int.from_bytes(body[len(MAGIC):len(MAGIC) + 8], "little")
        if len(MAGIC) + 8 + length > len(body):
            raise ValueError("its length field is larger than the file")
        return body[len(MAGIC) + 8:len(MAGIC) + 8 + length]
    try:
        return b"".join(v for _, v in bolt.read(body, STATE_BUCKET))
    except bolt.BoltError as err:
        raise ValueError(f"not a snapshot saved from verikv ({err}; an etcd snapshot is restored with "
                         "`etcdctl snapshot restore`)") from None
