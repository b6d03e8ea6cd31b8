"""The replicated key-value state machine, with etcd 3.4's revision semantics and history.

It applies committed batches in slot order, each client command exactly once (a retried command is
answered from the dedup table), and answers reads. It must be deterministic: its state after a
sequence of batches depends on nothing else (no clock, no randomness, no I/O, no node identity),
because every replica applies the same log. It must never reorder, skip or re-apply a slot.

Revision rules (checked against a real etcd 3.4): the store revision starts at 1 and grows by one
per request that changes something (a Put always does; a DeleteRange or Txn only if it deletes or
puts something). Each key has create_revision, mod_revision and version (1 on creation, +1 per put;
a deleted key starts again at version 1). Headers here carry only `revision`; the servicer fills
cluster_id, member_id and raft_term.

History (etcd's MVCC): every version of every key since the compaction point is kept, deletes as
tombstones, so a Range may read at any revision from the compaction point to the current one.
`Compact(rev)` (through the log like every write) forgets what no read at `rev` or later can see:
for each key, the versions before its last one at or below `rev`, and that one too if it is a
tombstone. Reads below the compaction point fail with etcd's "required revision has been
compacted", above the current revision with "required revision is a future revision".
"""

from __future__ import annotations

import bisect
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from sortedcontainers import SortedList

from verikv.etcdpb import kv_pb2, rpc_pb2

from verikv.shim.kv import errors
from verikv.shim.kv.auth import NOBODY, READ, WRITE, AuthInfo, AuthStore
from verikv.shim.kv.errors import EtcdError
from verikv.shim.kv.gc_pause import collector_paused
from verikv.shim.kv.commands import MAX_REQUEST_BYTES, Command, KeptAlives, Kind, cost_txn, decode_batch
from verikv.shim.kv.leases import LeaseCheckpoints, LeaseExpiry, LeaseTable
from verikv.shim.kv.sessions import Sessions
from verikv.shim.kv.protowire import varint
from verikv.shim.kv.steps import run as run_steps

# The store's size (Status' dbSize, the quota's measure): every version kept (tombstones
# included) counts its key, its value and VERSION_OVERHEAD bytes (its revisions, version and
# lease, about what etcd's bolt file holds besides key and value); every lease LEASE_OVERHEAD
# (etcd's own estimate of a lease's cost). A pure function of the state, so every node that
# applied the same slots reports the same size.
VERSION_OVERHEAD = 64
LEASE_OVERHEAD = 64
# The most a Range's answer may hold: its keys and values and RANGE_KV_OVERHEAD bytes per key (the
# other fields of its KeyValue). A larger one is refused (RANGE_TOO_LARGE) before anything is
# built, so that one read cannot run the node out of memory (etcd builds such an answer whole and
# fails to send it past gRPC's 2 GiB: its issues 12342 and 12678). A txn's ranges share it, less
# the most its own puts can add (its request's size), and are refused before the txn writes
# anything. The same on every node: a txn's answer is part of the replicated state.
MAX_RANGE_BYTES = 1 << 30
RANGE_KV_OVERHEAD = 32
# What a CORRUPT alarm refuses while it is active (etcd 3.4's corrupt applier: reads, and txns of
# ranges only, go on; a lease's expiry, applied as its own command here, is not a client's revoke
# and goes on)
CORRUPT_REFUSES = frozenset({Kind.PUT, Kind.DELETE_RANGE, Kind.TXN, Kind.COMPACT, Kind.LEASE_GRANT, Kind.LEASE_REVOKE})


class _Rec:
    """One version of a key. Never changed once stored: a put stores a new _Rec, so `wire` (this
    record's encoding in a single-key RangeResponse, made at its first such read) can never be
    stale; a delete or a snapshot restore drops or replaces the records themselves. A tombstone
    (the key deleted at mod_revision) has version 0."""

    __slots__ = ("create_revision", "mod_revision", "version", "value", "lease", "sub", "wire")

    def __init__(self, create_revision: int, mod_revision: int, version: int, value: bytes, lease: int,
                 sub: int = 0):
        self.create_revision = create_revision
        self.mod_revision = mod_revision
        self.version = version
        self.value = value
        self.lease = lease
        self.sub = sub  # etcd's sub-revision: the write's place among its request's writes
        self.wire: bytes | None = None


class EncodedRange:
    """A RangeResponse already in protobuf encoding except its header: the encoded header
    (field 1, which the servicer completes with cluster_id, member_id and raft_term) followed by
    `body` is the whole response, byte for byte what protobuf would write (fields in number order).
    `header_revision` is the header's revision."""

    __slots__ = ("header_revision", "body")

    def __init__(self, header_revision: int, body: bytes):
        self.header_revision = header_revision
        self.body = body


def encode_header(header: rpc_pb2.ResponseHeader) -> bytes:
    """`header` as field 1 of a response (what goes before an EncodedRange's body)."""
    b = header.SerializeToString()
    return b"\x0a" + varint(len(b)) + b


_PAIR = struct.Struct("<II")  # in a snapshot: (key length, version count), (sub-revision, length)


def _mod(rec: _Rec) -> int:
    return rec.mod_revision


def _answer_size(r: rpc_pb2.RangeRequest, items: list[tuple[bytes, "_Rec"]]) -> int:
    """What a Range's answer of these items holds (MAX_RANGE_BYTES' measure)."""
    if r.keys_only:
        return sum(len(k) for k, _ in items) + RANGE_KV_OVERHEAD * len(items)
    return sum(len(k) + len(rec.value) for k, rec in items) + RANGE_KV_OVERHEAD * len(items)


def _kv(key: bytes, rec: _Rec, keys_only: bool = False) -> kv_pb2.KeyValue:
    return kv_pb2.KeyValue(key=key, create_revision=rec.create_revision, mod_revision=rec.mod_revision,
                           version=rec.version, value=b"" if keys_only else rec.value, lease=rec.lease)


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one command of an applied batch, for whoever is waiting for it."""

    command: Command
    result: object  # a response message, or an EtcdError
    duplicate: bool  # True if this command had been applied before (answered from the dedup table)


_SORT_KEYS = {
    rpc_pb2.RangeRequest.KEY: None,
    rpc_pb2.RangeRequest.VERSION: lambda kr: kr[1].version,
    rpc_pb2.RangeRequest.CREATE: lambda kr: kr[1].create_revision,
    rpc_pb2.RangeRequest.MOD: lambda kr: kr[1].mod_revision,
    rpc_pb2.RangeRequest.VALUE: lambda kr: kr[1].value,
}


class _Write:
    """The revision bookkeeping of one mutating request (etcd's storeTxnWrite)."""

    __slots__ = ("begin", "changes")

    def __init__(self, begin: int):
        self.begin = begin
        self.changes = 0

    @property
    def rev(self) -> int:  # what a read inside this request sees
        return self.begin + 1 if self.changes else self.begin


class KVStore:
    """The state machine. `apply(slot, batch)` for committed batches; `range()` for local reads."""

    def __init__(self) -> None:
        self.revision = 1
        self.compact_revision = -1  # etcd's compactMainRev: reads below it fail (-1: never compacted)
        self.next_slot = 0  # the next slot to apply (slots below it are applied)
        self._data: dict[bytes, _Rec] = {}  # the current version of each live key
        # the live keys, sorted (a SortedList: a key is added or removed in O(log n); bisect.insort
        # into one list moves half of it: 183 s for a million puts of keys in random order)
        self._keys = SortedList()
        self._hist: dict[bytes, list[_Rec]] = {}  # every version since the compaction point, oldest first
        self._hist_keys = SortedList()  # the keys of _hist, sorted
        self._hist_bytes = 0  # sum of len(key) + len(value) + VERSION_OVERHEAD over _hist
        self._recent: list[tuple[bytes, _Rec, _Rec | None]] = []  # writes since take_recent()
        self._sessions = Sessions()  # the dedup table (sessions.py)
        self.leases = LeaseTable()
        # etcd's alarm store: (member ID, AlarmType) of every active alarm. While a NOSPACE
        # alarm is active, puts, txns that put and lease grants fail (etcd's capped applier).
        self.alarms: set[tuple[int, int]] = set()
        self.auth = AuthStore()  # users, roles, permissions (shim/kv/auth.py)

    # ---- reads ----

    def read(self, r: rpc_pb2.RangeRequest | bytes):
        """A client's Range now. `r` is a RangeRequest (answered as `execute(Kind.RANGE, r)`) or
        a non-empty key, for RangeRequest(key=r) and nothing else (commands.plain_range_key),
        answered as an EncodedRange from the key's cached encoding."""
        if type(r) is not bytes:
            return self.execute(Kind.RANGE, r)
        key = r
        rec = self._data.get(key)
        if rec is None:
            return EncodedRange(self.revision, b"")  # no kvs, count 0 (not encoded)
        wire = rec.wire
        if wire is None:
            kv = _kv(key, rec).SerializeToString()
            wire = rec.wire = b"\x12" + varint(len(kv)) + kv + b"\x20\x01"  # kvs: [kv], count: 1
        return EncodedRange(self.revision, wire)

    def _keys_in(self, key: bytes, range_end: bytes, keys: SortedList | None = None) -> list[bytes]:
        """The keys of `keys` (the live keys by default) in [key, range_end) as etcd reads it."""
        if keys is None:
            if not range_end:
                return [key] if key in self._data else []
            keys = self._keys
        elif not range_end:
            return [key] if key in self._hist else []
        lo = keys.bisect_left(key)
        if range_end == b"\0":
            return keys[lo:]
        if range_end <= key:
            return []
        return keys[lo:keys.bisect_left(range_end)]

    def _items_at(self, key: bytes, range_end: bytes, rev: int) -> list[tuple[bytes, _Rec]]:
        """The live (key, version) pairs in the range as they were at revision `rev`."""
        out = []
        hist = self._hist
        for k in self._keys_in(key, range_end, self._hist_keys):
            versions = hist[k]
            i = bisect.bisect_right(versions, rev, key=_mod) - 1
            if i >= 0 and versions[i].version:
                out.append((k, versions[i]))
        return out

    def _check_read_revision(self, revision: int, current: int) -> None:
        if revision > current:
            raise errors.FUTURE_REV.fresh()
        if 0 < revision < self.compact_revision:
            raise errors.COMPACTED.fresh()

    def range(self, r: rpc_pb2.RangeRequest, _w: _Write | None = None) -> rpc_pb2.RangeResponse:
        """etcd's Range at the current revision (a serializable read if called outside the log)."""
        if _w is None:
            current = self.revision
            self._check_read_revision(r.revision, current)
        else:  # inside a txn: the revision and size were checked before the txn changed anything
            current = _w.rev
        count, items, more = self._selected(r, current)
        resp = rpc_pb2.RangeResponse(count=count, more=more)
        resp.header.revision = current
        if r.count_only:
            return resp
        if _w is None:
            self._check_range_size(_answer_size(r, items), MAX_RANGE_BYTES)
        resp.kvs.extend(_kv(k, rec, r.keys_only) for k, rec in items)
        return resp

    @staticmethod
    def _check_range_size(size: int, limit: int) -> None:
        if size > limit:
            raise EtcdError(errors.RANGE_TOO_LARGE.code,
                            f"{errors.RANGE_TOO_LARGE.message}: {size} bytes, over {limit} (ask for fewer keys: "
                            "limit, a narrower range, keys_only or count_only)")

    def _selected(self, r: rpc_pb2.RangeRequest, current: int) -> tuple[int, list[tuple[bytes, _Rec]], bool]:
        """(count, the (key, version) pairs answered, more) of a Range at `current`."""
        if 0 < r.revision < current:
            items = self._items_at(r.key, r.range_end, r.revision)
        else:
            items = [(k, self._data[k]) for k in self._keys_in(r.key, r.range_end)]
        count = len(items)
        if r.count_only:
            return count, [], False
        if r.max_mod_revision:
            items = [kr for kr in items if kr[1].mod_revision <= r.max_mod_revision]
        if r.min_mod_revision:
            items = [kr for kr in items if kr[1].mod_revision >= r.min_mod_revision]
        if r.max_create_revision:
            items = [kr for kr in items if kr[1].create_revision <= r.max_create_revision]
        if r.min_create_revision:
            items = [kr for kr in items if kr[1].create_revision >= r.min_create_revision]
        order = r.sort_order
        if r.sort_target != rpc_pb2.RangeRequest.KEY and order == rpc_pb2.RangeRequest.NONE:
            order = rpc_pb2.RangeRequest.ASCEND
        if order != rpc_pb2.RangeRequest.NONE:
            sort_key = _SORT_KEYS.get(r.sort_target) or (lambda kr: kr[0])
            items.sort(key=sort_key, reverse=order == rpc_pb2.RangeRequest.DESCEND)
        more = False
        if r.limit > 0 and len(items) > r.limit:
            items = items[:r.limit]
            more = True
        return count, items, more

    # ---- writes (inside a _Write) ----

    def _put(self, r: rpc_pb2.PutRequest, w: _Write, resp: rpc_pb2.PutResponse | None = None) -> rpc_pb2.PutResponse:
        """The put, answered in `resp` (a new PutResponse if None; a txn's answers its op in place)."""
        if resp is None:
            resp = rpc_pb2.PutResponse()
        key = r.key
        prev = self._data.get(key)
        rev = w.begin + 1
        value = r.value
        lease = r.lease
        if prev is None:
            if r.ignore_value:  # (only a txn that deleted the key before gets here with these)
                value = b""
            if r.ignore_lease:
                lease = 0
            rec = self._data[key] = _Rec(rev, rev, 1, value, lease, w.changes)
            self._keys.add(key)
        else:  # a new record: the old one's cached encoding goes with it
            if r.prev_kv:
                resp.prev_kv.CopyFrom(_kv(key, prev))
            if r.ignore_value:
                value = prev.value
            if r.ignore_lease:
                lease = prev.lease
            rec = self._data[key] = _Rec(prev.create_revision, rev, prev.version + 1, value, lease, w.changes)
        self.leases.attach(key, prev.lease if prev is not None else 0, lease)  # (a no-op when unchanged)
        self._record(key, rec, prev)
        w.changes += 1
        resp.header.revision = rev
        return resp

    def _delete(self, r: rpc_pb2.DeleteRangeRequest, w: _Write) -> rpc_pb2.DeleteRangeResponse:
        keys = self._keys_in(r.key, r.range_end)
        resp = rpc_pb2.DeleteRangeResponse(deleted=len(keys))
        if r.prev_kv:
            resp.prev_kvs.extend(_kv(k, self._data[k]) for k in keys)
        for i, k in enumerate(keys):
            prev = self._data.pop(k)
            self._keys.remove(k)
            self.leases.attach(k, prev.lease, 0)
            self._record(k, _Rec(0, w.begin + 1, 0, b"", 0, w.changes + i), prev)
        w.changes += len(keys)
        resp.header.revision = w.rev
        return resp

    def _record(self, key: bytes, rec: _Rec, prev: _Rec | None) -> None:
        """Add a version to the key's history (a later write of the same revision, which only a
        txn can make, replaces the earlier one: a read at that revision sees the last), and to
        the writes since take_recent(), with the live version it replaced."""
        self._recent.append((key, rec, prev))
        self._hist_bytes += len(key) + len(rec.value) + VERSION_OVERHEAD
        versions = self._hist.get(key)
        if versions is None:
            self._hist[key] = [rec]
            self._hist_keys.add(key)
        elif versions[-1].mod_revision == rec.mod_revision:
            self._hist_bytes -= len(key) + len(versions[-1].value) + VERSION_OVERHEAD
            versions[-1] = rec
        else:
            versions.append(rec)

    def _end(self, w: _Write) -> None:
        if w.changes:
            self.revision = w.begin + 1

    def _check_put_state(self, r: rpc_pb2.PutRequest) -> None:
        # etcd's checkPut, before any change
        if r.lease != 0 and not self.leases.exists(r.lease):
            raise errors.LEASE_NOT_FOUND.fresh()
        if (r.ignore_value or r.ignore_lease) and r.key not in self._data:
            raise errors.KEY_NOT_FOUND.fresh()

    def put(self, r: rpc_pb2.PutRequest) -> rpc_pb2.PutResponse:
        self._check_put_state(r)
        w = _Write(self.revision)
        resp = self._put(r, w)
        self._end(w)
        return resp

    def delete_range(self, r: rpc_pb2.DeleteRangeRequest) -> rpc_pb2.DeleteRangeResponse:
        w = _Write(self.revision)
        resp = self._delete(r, w)
        self._end(w)
        return resp

    def compact(self, r: rpc_pb2.CompactionRequest) -> rpc_pb2.CompactionResponse:
        """etcd's Compact: forget the versions no read at `r.revision` or later can see."""
        rev = r.revision
        if rev <= self.compact_revision:
            raise errors.COMPACTED.fresh()
        if rev > self.revision:
            raise errors.FUTURE_REV.fresh()
        hist = self._hist
        emptied = []
        for k, versions in hist.items():
            i = bisect.bisect_right(versions, rev, key=_mod) - 1
            if i < 0:
                continue  # every version is newer
            keep = i if versions[i].version else i + 1  # a tombstone at or below rev goes too
            if keep:
                self._hist_bytes -= keep * (len(k) + VERSION_OVERHEAD) + sum(len(v.value) for v in versions[:keep])
                del versions[:keep]
                if not versions:
                    emptied.append(k)
        for k in emptied:
            del hist[k]
        if emptied:
            self._hist_keys = SortedList(hist)
        self.compact_revision = rev
        resp = rpc_pb2.CompactionResponse()
        resp.header.revision = self.revision
        return resp

    def take_recent(self) -> list[tuple[bytes, _Rec, _Rec | None]]:
        """The writes since the last call, in order: (key, version, the live version it replaced)."""
        recent, self._recent = self._recent, []
        return recent

    def writes_between(self, first: int, last: int, key: bytes, range_end: bytes) -> list[tuple[bytes, _Rec, _Rec | None]]:
        """From the history: the writes of revisions first..last to keys in the range, in order
        (revision, then sub-revision), as take_recent() gives them. `first` must not be below
        the compaction point (a write there may be forgotten)."""
        out = []
        hist = self._hist
        for k in self._keys_in(key, range_end, self._hist_keys):
            versions = hist[k]
            i = bisect.bisect_left(versions, first, key=_mod)
            for j in range(i, len(versions)):
                rec = versions[j]
                if rec.mod_revision > last:
                    break
                prev = versions[j - 1] if j and versions[j - 1].version else None
                out.append((k, rec, prev))
        out.sort(key=lambda w: (w[1].mod_revision, w[1].sub))
        return out

    @property
    def key_count(self) -> int:
        """How many keys exist now."""
        return len(self._data)

    @property
    def db_size(self) -> int:
        """The store's size in bytes, by the measure stated at VERSION_OVERHEAD."""
        return self._hist_bytes + LEASE_OVERHEAD * len(self.leases.leases)

    def history_size(self) -> int:
        """How many versions (tombstones included) the store keeps."""
        return sum(len(v) for v in self._hist.values())

    # ---- hashes (Maintenance.HashKV and Hash) ----

    def hash_kv(self, revision: int) -> tuple[int, int, int]:
        """etcd's HashByRev: (hash, current revision, compaction point) of every version kept
        with a revision up to `revision` (0: the current one), in key then revision order. Two
        nodes that applied the same slots give the same hash; a CRC-32 of verikv's own encoding,
        not etcd's (which hashes its bolt pages). At once; see hash_steps."""
        return run_steps(self.hash_steps(revision))

    def hash_all(self) -> int:
        """etcd's Hash (of its whole backend): see hash_steps. At once."""
        return run_steps(self.hash_steps(0, whole=True))[0]

    def hash_steps(self, revision: int, whole: bool = False):
        """hash_kv(revision) as a generator that yields after every HASH_STEP_KEYS keys, so that a
        node can go on applying between the steps (returns what hash_kv returns). Writes applied
        meanwhile are above the revision hashed and change nothing; a compaction meanwhile starts
        it again (it may remove versions already hashed). `whole`: etcd's Hash instead, which
        starts from the leases and alarms as of the first step, then every version up to the
        current revision."""
        if 0 < revision <= self.compact_revision:
            raise errors.COMPACTED.fresh()
        if revision > self.revision:
            raise errors.FUTURE_REV.fresh()
        rev = revision or self.revision
        current, compact = self.revision, self.compact_revision
        h = zlib.crc32(b"key")
        if whole:
            h = zlib.crc32(self.leases.encode(), h)
            h = zlib.crc32(b"".join(struct.pack("<Qi", m, t) for m, t in sorted(self.alarms)), h)
        pack = _HASH_REC.pack
        hist = self._hist
        keys = list(self._hist_keys)  # keys created later hold only later revisions
        for start in range(0, len(keys), HASH_STEP_KEYS):
            if start:
                yield
                if self.compact_revision != compact:
                    return (yield from self.hash_steps(revision, whole))
            for k in keys[start:start + HASH_STEP_KEYS]:
                for rec in hist[k]:
                    if rec.mod_revision > rev:
                        break
                    h = zlib.crc32(pack(len(k), rec.mod_revision, rec.sub, rec.create_revision, rec.version,
                                        rec.lease, len(rec.value)), h)
                    h = zlib.crc32(rec.value, zlib.crc32(k, h))
        return h, current, compact

    def versions_steps(self, revision: int, out: list):
        """Append (key, version) to `out` for every version kept with a revision up to
        `revision`, key by key (each key's oldest first), yielding after every HASH_STEP_KEYS
        keys as hash_steps does; returns False, with `out` incomplete, if a compaction came
        meanwhile (the caller starts again), True otherwise. A version is never changed once
        stored (see _Rec); a tombstone has version 0."""
        compact = self.compact_revision
        hist = self._hist
        keys = list(self._hist_keys)
        for start in range(0, len(keys), HASH_STEP_KEYS):
            if start:
                yield
                if self.compact_revision != compact:
                    return False
            for k in keys[start:start + HASH_STEP_KEYS]:
                for rec in hist[k]:
                    if rec.mod_revision > revision:
                        break
                    out.append((k, rec))
        return True

    # ---- alarms ----

    @property
    def no_space(self) -> bool:
        return any(t == rpc_pb2.NOSPACE for _, t in self.alarms)

    @property
    def corrupt(self) -> bool:
        return any(t == rpc_pb2.CORRUPT for _, t in self.alarms)

    def alarm(self, r: rpc_pb2.AlarmRequest) -> rpc_pb2.AlarmResponse:
        """etcd's Alarm as applied: GET lists the active alarms of a type (NONE: all), ACTIVATE
        and DEACTIVATE answer the alarm they added or removed (nothing if there was none)."""
        resp = rpc_pb2.AlarmResponse()
        resp.header.revision = self.revision
        entry = (r.memberID, r.alarm)
        if r.action == rpc_pb2.AlarmRequest.GET:
            for member, t in sorted(self.alarms):
                if r.alarm in (rpc_pb2.NONE, t):
                    resp.alarms.add(memberID=member, alarm=t)
        elif r.action == rpc_pb2.AlarmRequest.ACTIVATE:
            self.alarms.add(entry)  # etcd answers the alarm also if it was already active
            resp.alarms.add(memberID=r.memberID, alarm=r.alarm)
        elif r.action == rpc_pb2.AlarmRequest.DEACTIVATE:
            if entry in self.alarms:
                self.alarms.discard(entry)
                resp.alarms.add(memberID=r.memberID, alarm=r.alarm)
        return resp

    # ---- leases ----

    def lease_revoke(self, lease_id: int) -> rpc_pb2.LeaseRevokeResponse:
        """The lease goes, and its keys with it, all in one revision (in key order, as etcd
        deletes them, so that every node does the same)."""
        lease = self.leases.pop(lease_id)
        w = _Write(self.revision)
        for key in sorted(lease.keys):
            self._delete(rpc_pb2.DeleteRangeRequest(key=key), w)
        self._end(w)
        resp = rpc_pb2.LeaseRevokeResponse()
        resp.header.revision = self.revision
        return resp

    def lease_expire(self, r: LeaseExpiry) -> rpc_pb2.LeaseRevokeResponse:
        """A leader's expiry: each lease not kept alive since its proposer saw it is revoked."""
        for lease_id, version in r.entries:
            if self.leases.expired(lease_id, version):
                self.lease_revoke(lease_id)
        resp = rpc_pb2.LeaseRevokeResponse()
        resp.header.revision = self.revision
        return resp

    def lease_checkpoint(self, r: LeaseCheckpoints) -> rpc_pb2.LeaseRevokeResponse:
        self.leases.checkpoint(r)
        resp = rpc_pb2.LeaseRevokeResponse()  # etcd answers a checkpoint with a header only too
        resp.header.revision = self.revision
        return resp

    def _with_header(self, resp):
        resp.header.revision = self.revision
        return resp

    # ---- txn ----

    def _compare(self, c: rpc_pb2.Compare) -> bool:
        recs = [self._data[k] for k in self._keys_in(c.key, c.range_end)]
        if not recs:
            if c.target == rpc_pb2.Compare.VALUE:
                return False  # etcd: comparing the value of a missing key always fails
            recs = [_Rec(0, 0, 0, b"", 0)]
        return all(self._compare_one(c, rec) for rec in recs)

    @staticmethod
    def _compare_one(c: rpc_pb2.Compare, rec: _Rec) -> bool:
        which = c.WhichOneof("target_union")
        t = c.target
        if t == rpc_pb2.Compare.VALUE:
            mine, theirs = rec.value, c.value if which == "value" else b""
        elif t == rpc_pb2.Compare.CREATE:
            mine, theirs = rec.create_revision, c.create_revision if which == "create_revision" else 0
        elif t == rpc_pb2.Compare.MOD:
            mine, theirs = rec.mod_revision, c.mod_revision if which == "mod_revision" else 0
        elif t == rpc_pb2.Compare.VERSION:
            mine, theirs = rec.version, c.version if which == "version" else 0
        elif t == rpc_pb2.Compare.LEASE:
            mine, theirs = rec.lease, c.lease if which == "lease" else 0
        else:
            return True
        res = c.result
        if res == rpc_pb2.Compare.EQUAL:
            return mine == theirs
        if res == rpc_pb2.Compare.NOT_EQUAL:
            return mine != theirs
        if res == rpc_pb2.Compare.GREATER:
            return mine > theirs
        if res == rpc_pb2.Compare.LESS:
            return mine < theirs
        return True

    def _txn_path(self, r: rpc_pb2.TxnRequest, path: list[bool]) -> None:
        # etcd's compareToPath: every compare (nested ones too) sees the state before the txn.
        ok = all(self._compare(c) for c in r.compare)
        path.append(ok)
        for op in (r.success if ok else r.failure):
            if op.WhichOneof("request") == "request_txn":
                self._txn_path(op.request_txn, path)

    def _txn_check(self, r: rpc_pb2.TxnRequest, path: list[bool], i: int, which: str,
                   budget: list[int] | None = None) -> int:
        """Raise the error of the first `which` op (request_put or request_range) on the txn's
        path that etcd refuses: every put is checked before any range, as etcd does. `budget`:
        the sizes of the ranges' answers so far (MAX_RANGE_BYTES), as of before the txn."""
        ok = path[i]
        i += 1
        for op in (r.success if ok else r.failure):
            kind = op.WhichOneof("request")
            if kind == "request_txn":
                i = self._txn_check(op.request_txn, path, i, which, budget)
            elif kind != which:
                continue
            elif kind == "request_put":
                self._check_put_state(op.request_put)
            else:
                rr = op.request_range
                self._check_read_revision(rr.revision, self.revision)
                if budget is not None and not rr.count_only:
                    budget[0] += _answer_size(rr, self._selected(rr, self.revision)[1])
                    self._check_range_size(budget[0], MAX_RANGE_BYTES - MAX_REQUEST_BYTES)
        return i

    def _txn_apply(self, r: rpc_pb2.TxnRequest, path: list[bool], i: int, w: _Write,
                   resp: rpc_pb2.TxnResponse) -> int:
        ok = path[i]
        i += 1
        resp.succeeded = ok
        for op in (r.success if ok else r.failure):
            which = op.WhichOneof("request")
            out = resp.responses.add()
            if which == "request_range":
                out.response_range.CopyFrom(self.range(op.request_range, w))
            elif which == "request_put":
                self._put(op.request_put, w, out.response_put)
            elif which == "request_delete_range":
                out.response_delete_range.CopyFrom(self._delete(op.request_delete_range, w))
            elif which == "request_txn":
                out.response_txn.header.SetInParent()  # etcd: a nested txn's header is empty
                i = self._txn_apply(op.request_txn, path, i, w, out.response_txn)
        return i

    def txn(self, r: rpc_pb2.TxnRequest) -> rpc_pb2.TxnResponse:
        path: list[bool] = []
        self._txn_path(r, path)
        self._txn_check(r, path, 0, "request_put")  # these raise before any change:
        self._txn_check(r, path, 0, "request_range", [0])  # a failed txn changes nothing
        w = _Write(self.revision)
        resp = rpc_pb2.TxnResponse()
        self._txn_apply(r, path, 0, w, resp)
        self._end(w)
        resp.header.revision = self.revision
        return resp

    # ---- commands and batches ----

    def _authorize(self, kind: Kind, request, who: AuthInfo) -> None:
        """etcd's authApplierV3, while auth is enabled: raise the EtcdError refusing `who`
        this command, or return. (Ranges are checked where they are answered, as etcd's are;
        lease grants, keep-alives, compactions and alarms are not checked, as in etcd 3.4.)"""
        auth = self.auth
        if kind == Kind.PUT:
            auth.check_op(who, request.key, b"", WRITE)
            lease = self.leases.leases.get(request.lease) if request.lease else None
            if lease is not None:
                for key in sorted(lease.keys):
                    auth.check_op(who, key, b"", WRITE)
            if request.prev_kv:
                auth.check_op(who, request.key, b"", READ)
        elif kind == Kind.DELETE_RANGE:
            auth.check_op(who, request.key, request.range_end, WRITE)
            if request.prev_kv:
                auth.check_op(who, request.key, request.range_end, READ)
        elif kind == Kind.TXN:
            auth.check_txn(who, request)
        elif kind == Kind.LEASE_REVOKE:
            lease = self.leases.leases.get(request.ID)
            if lease is not None:
                for key in sorted(lease.keys):
                    auth.check_op(who, key, b"", WRITE)
        elif kind == Kind.USER_GET:
            try:
                auth.check_admin(who)
            except EtcdError:
                if request.name != who.user:
                    raise
        elif kind == Kind.ROLE_GET:
            try:
                auth.check_admin(who)
            except EtcdError:
                u = auth.users.get(who.user)
                if u is None or request.role not in u.roles:
                    raise
        elif Kind.AUTH_ENABLE <= kind < Kind.AUTHENTICATE:
            auth.check_admin(who)

    def _auth_command(self, kind: Kind, r):
        """A command of etcd's Auth service (after its check); its response."""
        auth = self.auth
        if kind == Kind.AUTH_ENABLE:
            auth.enable()
            return self._with_header(rpc_pb2.AuthEnableResponse())
        if kind == Kind.AUTH_DISABLE:
            auth.disable()
            return self._with_header(rpc_pb2.AuthDisableResponse())
        if kind == Kind.USER_ADD:
            auth.user_add(r)
            return self._with_header(rpc_pb2.AuthUserAddResponse())
        if kind == Kind.USER_DELETE:
            auth.user_delete(r.name)
            return self._with_header(rpc_pb2.AuthUserDeleteResponse())
        if kind == Kind.USER_CHANGE_PASSWORD:
            auth.user_change_password(r)
            return self._with_header(rpc_pb2.AuthUserChangePasswordResponse())
        if kind == Kind.USER_GRANT_ROLE:
            auth.user_grant_role(r.user, r.role)
            return self._with_header(rpc_pb2.AuthUserGrantRoleResponse())
        if kind == Kind.USER_REVOKE_ROLE:
            auth.user_revoke_role(r.name, r.role)
            return self._with_header(rpc_pb2.AuthUserRevokeRoleResponse())
        if kind == Kind.USER_GET:
            return self._with_header(rpc_pb2.AuthUserGetResponse(roles=auth.user_get(r.name)))
        if kind == Kind.USER_LIST:
            return self._with_header(rpc_pb2.AuthUserListResponse(users=auth.user_list()))
        if kind == Kind.ROLE_ADD:
            auth.role_add(r.name)
            return self._with_header(rpc_pb2.AuthRoleAddResponse())
        if kind == Kind.ROLE_DELETE:
            auth.role_delete(r.role)
            return self._with_header(rpc_pb2.AuthRoleDeleteResponse())
        if kind == Kind.ROLE_GET:
            return self._with_header(rpc_pb2.AuthRoleGetResponse(perm=auth.role_get(r.role)))
        if kind == Kind.ROLE_LIST:
            return self._with_header(rpc_pb2.AuthRoleListResponse(roles=auth.role_list()))
        if kind == Kind.ROLE_GRANT_PERMISSION:
            auth.role_grant_permission(r.name, r.perm)
            return self._with_header(rpc_pb2.AuthRoleGrantPermissionResponse())
        if kind == Kind.ROLE_REVOKE_PERMISSION:
            auth.role_revoke_permission(r.role, r.key, r.range_end)
            return self._with_header(rpc_pb2.AuthRoleRevokePermissionResponse())
        if kind == Kind.AUTHENTICATE:  # the token itself is added by its proposer, not kept here
            auth.authenticate(r.user, r.revision, r.digest)
            return self._with_header(rpc_pb2.AuthenticateResponse())
        raise ValueError(f"unknown command kind {kind}")

    def execute(self, kind: Kind, request, who: AuthInfo | None = None):
        """Run one request now, for `who` (a command in an AsUser says; none: a request that
        came without a token, or the node's own); return its response or the EtcdError it fails
        with."""
        try:
            if kind == Kind.LEASE_KEEP_ALIVES:  # (its kind's number is above the auth commands')
                return KeptAlives(self.revision, self.leases.keep_alive_many(request.ids))
            if kind == Kind.AS_USER:
                who = AuthInfo(request.user, request.revision)
                kind, request = request.kind, request.request()
            if self.auth.enabled and kind in _AUTHORIZED:
                self._authorize(kind, request, who or NOBODY)
            if kind >= Kind.AUTH_ENABLE:
                return self._auth_command(kind, request)
            if self.alarms:
                if kind in CORRUPT_REFUSES and self.corrupt and not (kind == Kind.TXN and txn_reads_only(request)):
                    raise errors.CORRUPT.fresh()  # etcd's corrupt applier (a txn of ranges only is served around it)
                if self.no_space and (
                        kind == Kind.PUT or kind == Kind.LEASE_GRANT or (kind == Kind.TXN and cost_txn(request))):
                    raise errors.NO_SPACE.fresh()  # etcd's capped applier
            if kind == Kind.RANGE:
                return self.range(request)
            if kind == Kind.PUT:
                return self.put(request)
            if kind == Kind.DELETE_RANGE:
                return self.delete_range(request)
            if kind == Kind.TXN:
                return self.txn(request)
            if kind == Kind.COMPACT:
                return self.compact(request)
            if kind == Kind.LEASE_GRANT:
                return self._with_header(self.leases.grant(request))
            if kind == Kind.LEASE_REVOKE:
                return self.lease_revoke(request.ID)
            if kind == Kind.LEASE_KEEP_ALIVE:
                return self._with_header(self.leases.keep_alive(request))
            if kind == Kind.LEASE_EXPIRE:
                return self.lease_expire(request)
            if kind == Kind.LEASE_CHECKPOINT:
                return self.lease_checkpoint(request)
            if kind == Kind.ALARM:
                return self.alarm(request)
        except EtcdError as err:
            return err
        raise ValueError(f"unknown command kind {kind}")

    def apply_command(self, cmd: Command, slot: int, reads_for: int | None = None) -> Outcome | None:
        """Apply one command exactly once.

        Reads change nothing: they are not deduplicated, and only evaluated if reads_for is None or
        the reader's client_id (other replicas' reads are skipped: None is returned for them).
        """
        if cmd.kind == Kind.RANGE:
            if reads_for is not None and cmd.client_id != reads_for:
                return None
            return Outcome(cmd, self.execute(cmd.kind, cmd.request()), False)
        result, duplicate = self._sessions.apply(cmd, slot, self.execute)
        return Outcome(cmd, result, duplicate)

    def apply(self, slot: int, batch: bytes, reads_for: int | None = None) -> list[Outcome]:
        """Apply the committed batch of `slot`; slots must come exactly in order."""
        if slot != self.next_slot:
            raise ValueError(f"slot {slot} applied out of order (expected {self.next_slot})")
        commands = decode_batch(batch) if batch else []
        outcomes = []
        for cmd in commands:
            out = self.apply_command(cmd, slot, reads_for)
            if out is not None:
                outcomes.append(out)
        self.next_slot = slot + 1
        return outcomes

    # ---- snapshots ----

    _HEAD = struct.Struct("<4sQqQII")  # magic, revision, compaction point, next_slot, keys, sessions
    _MAGIC = b"VKS5"
    _MAGIC_V4 = b"VKS4"  # before auth
    _MAGIC_V3 = b"VKS3"  # before alarms
    _MAGIC_V2 = b"VKS2"  # before leases

    def snapshot(self) -> bytes:
        """The whole state, history included, as bytes; `KVStore.restore(snapshot())` equals this
        store."""
        return b"".join(self.snapshot_parts())

    def snapshot_parts(self) -> Iterator[bytes]:
        """snapshot()'s bytes, in parts, read from the store as they are asked for (so it must not
        change meanwhile: a snapshot's writer reads a child process's copy of it)."""
        yield self._HEAD.pack(self._MAGIC, self.revision, self.compact_revision, self.next_slot,
                              len(self._hist_keys), len(self._sessions))
        for k in self._hist_keys:
            versions = self._hist[k]
            yield struct.pack("<II", len(k), len(versions))
            yield k
            for rec in versions:  # the key is said once, above
                b = _kv(b"", rec).SerializeToString()
                yield struct.pack("<II", rec.sub, len(b))
                yield b
        yield from self._sessions.encode()
        yield self.leases.encode()
        yield struct.pack("<I", len(self.alarms))
        for member, t in sorted(self.alarms):
            yield struct.pack("<Qi", member, t)
        yield self.auth.encode()

    _HEAD_V1 = struct.Struct("<4sQQII")  # magic, revision, next_slot, key count, session count
    _MAGIC_V1 = b"VKS1"  # before history: each key's current version only

    @classmethod
    def restore(cls, data: bytes) -> "KVStore":
        with collector_paused():  # a whole store made at once (gc_pause.py)
            return cls._restore(data)

    @classmethod
    def _restore(cls, data: bytes) -> "KVStore":
        store = cls()
        if data[:4] == cls._MAGIC_V1:
            # A snapshot from before history was kept: nothing below its revision can be read
            # again, so the store starts compacted there.
            _, store.revision, store.next_slot, nkeys, nsessions = cls._HEAD_V1.unpack_from(data)
            store.compact_revision = store.revision
            pos = cls._HEAD_V1.size
            for _ in range(nkeys):
                (n,) = struct.unpack_from("<I", data, pos)
                kv = kv_pb2.KeyValue.FromString(data[pos + 4:pos + 4 + n])
                pos += 4 + n
                rec = _Rec(kv.create_revision, kv.mod_revision, kv.version, kv.value, kv.lease)
                store._data[kv.key] = rec
                store._hist[kv.key] = [rec]
            store._keys = SortedList(store._data)
            store._hist_keys = SortedList(store._keys)
            store._hist_bytes = sum(len(k) + len(r.value) + VERSION_OVERHEAD for k, r in store._data.items())
            return store._restore_after_keys(data, pos, nsessions, leases=False)
        magic, store.revision, store.compact_revision, store.next_slot, nkeys, nsessions = \
            cls._HEAD.unpack_from(data)
        if magic not in (cls._MAGIC, cls._MAGIC_V4, cls._MAGIC_V3, cls._MAGIC_V2):
            raise ValueError(f"not a verikv KV snapshot (magic {magic!r})")
        pos = cls._HEAD.size
        hist_keys, keys = [], []
        hist, live = store._hist, store._data
        pair, parse = _PAIR.unpack_from, kv_pb2.KeyValue.FromString
        hist_bytes = 0
        for _ in range(nkeys):
            klen, nversions = pair(data, pos)
            pos += 8
            key = bytes(data[pos:pos + klen])  # (data may be a memoryview)
            pos += klen
            versions = []
            for _ in range(nversions):
                sub, n = pair(data, pos)
                kv = parse(data[pos + 8:pos + 8 + n])
                pos += 8 + n
                rec = _Rec(kv.create_revision, kv.mod_revision, kv.version, kv.value, kv.lease, sub)
                if versions and versions[-1].mod_revision >= rec.mod_revision:
                    raise ValueError(f"key {key!r}: its versions are not in revision order")
                versions.append(rec)
                hist_bytes += klen + len(rec.value) + VERSION_OVERHEAD
            if not versions:
                raise ValueError(f"key {key!r}: its versions are not in revision order")
            hist[key] = versions
            hist_keys.append(key)
            if rec.version:
                live[key] = rec
                keys.append(key)
        store._hist_bytes = hist_bytes
        if any(a >= b for a, b in zip(hist_keys, hist_keys[1:])):
            raise ValueError("the snapshot's keys are not in order")
        store._hist_keys, store._keys = SortedList(hist_keys), SortedList(keys)
        return store._restore_after_keys(data, pos, nsessions, leases=magic != cls._MAGIC_V2,
                                       alarms=magic in (cls._MAGIC, cls._MAGIC_V4), auth=magic == cls._MAGIC)

    def _restore_after_keys(self, data: bytes, pos: int, nsessions: int, leases: bool,
                          alarms: bool = False, auth: bool = False) -> "KVStore":
        store = self
        pos = store._sessions.decode(data, pos, nsessions)
        if leases:
            pos = store.leases.decode(data, pos)
            for key, rec in store._data.items():
                if rec.lease:
                    if not store.leases.exists(rec.lease):
                        raise ValueError(f"key {key!r} is attached to lease {rec.lease}, which the snapshot lacks")
                    store.leases.attach(key, 0, rec.lease)
        if alarms:
            (n,) = struct.unpack_from("<I", data, pos)
            pos += 4
            for _ in range(n):
                store.alarms.add(struct.unpack_from("<Qi", data, pos))
                pos += 12
        if auth:
            pos = store.auth.decode(data, pos)
        if pos != len(data):
            raise ValueError(f"{len(data) - pos} trailing bytes in KV snapshot")
        return store

    def items(self) -> list[kv_pb2.KeyValue]:
        """Every key, in key order (for tests and debugging)."""
        return [_kv(k, self._data[k]) for k in self._keys]


# the commands etcd checks when it applies them while auth is enabled (KVStore._authorize)
_AUTHORIZED = frozenset([Kind.PUT, Kind.DELETE_RANGE, Kind.TXN, Kind.LEASE_REVOKE,
                         *[k for k in Kind if Kind.AUTH_ENABLE <= k < Kind.AUTHENTICATE]])
HASH_STEP_KEYS = 10_000  # keys hashed per step (about 10 ms here)


_HASH_REC = struct.Struct("<IqIqqqI")  # key length, revision, sub, create revision, version, lease, value length


def txn_reads_only(r: rpc_pb2.TxnRequest) -> bool:
    """Every operation of either branch is a range (etcd's isTxnReadonly: a nested txn is not)."""
    return all(op.WhichOneof("request") == "request_range" for op in list(r.success) + list(r.failure))
