"""etcd's leases as replicated state: which leases exist, their TTLs, the keys attached to each,
and how much of its TTL each had left as of the last command that said so.

Time never enters here (the KV store stays a pure function of the log). A lease's `remaining_ms`
is what the command that last set it said: a grant or a keep-alive (the whole TTL), or a leader's
checkpoint (what its clock showed when it proposed it). The nodes' clocks (shim/node/lease_timers.py)
turn that into deadlines; only a leader proposes an expiry, and only it acts on its clock.

`version` counts the grants and keep-alives of a lease. An expiry carries the version its
proposer saw: if the lease was kept alive since (by any leader, in a slot before the expiry's),
the expiry changes nothing; a checkpoint likewise only applies to the version it was taken at,
so a deposed leader's stale clock can neither delete a renewed lease nor shorten its time.

This module must never delete keys itself (the store does, in one revision) nor do I/O.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from verikv.etcdpb import rpc_pb2

from verikv.shim.kv import errors

MAX_TTL_S = 9_000_000_000  # etcd's lease.MaxLeaseTTL


@dataclass(slots=True)
class Lease:
    id: int
    ttl: int  # seconds, as granted
    remaining_ms: int  # as of the last grant, keep-alive or checkpoint (see the module's text)
    version: int = 1
    keys: set[bytes] = field(default_factory=set)


class LeaseTable:
    def __init__(self) -> None:
        self.leases: dict[int, Lease] = {}
        # what commands did to leases since take_changes(): (id, remaining_ms, by a checkpoint),
        # remaining_ms None for a lease that is gone; the nodes' clocks follow these
        self._changes: list[tuple[int, int | None, bool]] = []

    def take_changes(self) -> list[tuple[int, int | None, bool]]:
        changes, self._changes = self._changes, []
        return changes

    # ---- commands ----

    def grant(self, r: rpc_pb2.LeaseGrantRequest) -> rpc_pb2.LeaseGrantResponse:
        """The proposer chose the ID and applied the minimum TTL (both are in the log)."""
        if r.ID == 0:
            raise errors.LEASE_NOT_FOUND.fresh()  # etcd's lessor refuses NoLease the same way
        if r.TTL > MAX_TTL_S:
            raise errors.LEASE_TTL_TOO_LARGE.fresh()
        if r.ID in self.leases:
            raise errors.LEASE_EXISTS.fresh()
        self.leases[r.ID] = Lease(r.ID, r.TTL, r.TTL * 1000)
        self._changes.append((r.ID, r.TTL * 1000, False))
        return rpc_pb2.LeaseGrantResponse(ID=r.ID, TTL=r.TTL)

    def keep_alive(self, r: rpc_pb2.LeaseKeepAliveRequest) -> rpc_pb2.LeaseKeepAliveResponse:
        """A renewal: the whole TTL again. A lease that is gone answers TTL 0, as etcd does."""
        lease = self.leases.get(r.ID)
        if lease is None:
            return rpc_pb2.LeaseKeepAliveResponse(ID=r.ID, TTL=0)
        lease.version += 1
        lease.remaining_ms = lease.ttl * 1000
        self._changes.append((r.ID, lease.remaining_ms, False))
        return rpc_pb2.LeaseKeepAliveResponse(ID=r.ID, TTL=lease.ttl)

    def keep_alive_many(self, ids) -> list[int]:
        """Renewals, as keep_alive's, of each of `ids` in order: the TTL of each (0: gone)."""
        leases, changes, ttls = self.leases, self._changes, []
        for lease_id in ids:
            lease = leases.get(lease_id)
            if lease is None:
                ttls.append(0)
                continue
            lease.version += 1
            lease.remaining_ms = lease.ttl * 1000
            changes.append((lease_id, lease.remaining_ms, False))
            ttls.append(lease.ttl)
        return ttls

    def checkpoint(self, c: "LeaseCheckpoints") -> None:
        for lease_id, version, remaining_ms in c.entries:
            lease = self.leases.get(lease_id)
            if lease is not None and lease.version == version and 0 <= remaining_ms < lease.remaining_ms:
                lease.remaining_ms = remaining_ms
                self._changes.append((lease_id, remaining_ms, True))

    def pop(self, lease_id: int) -> Lease:
        lease = self.leases.pop(lease_id, None)
        if lease is None:
            raise errors.LEASE_NOT_FOUND.fresh()
        self._changes.append((lease_id, None, False))
        return lease

    def expired(self, lease_id: int, version: int) -> bool:
        """An expiry proposed at `version` still applies: the lease was not kept alive since."""
        lease = self.leases.get(lease_id)
        return lease is not None and lease.version == version

    # ---- keys ----

    def exists(self, lease_id: int) -> bool:
        return lease_id in self.leases

    def attach(self, key: bytes, old: int, new: int) -> None:
        """The key's lease changed from `old` to `new` (0: none)."""
        if old == new:
            return
        if old:
            lease = self.leases.get(old)
            if lease is not None:
                lease.keys.discard(key)
        if new:
            self.leases[new].keys.add(key)

    # ---- snapshots ----

    _ENTRY = struct.Struct("<qqqq")  # id, ttl, remaining_ms, version

    def encode(self) -> bytes:
        return struct.pack("<I", len(self.leases)) + b"".join(
            self._ENTRY.pack(l.id, l.ttl, l.remaining_ms, l.version) for _, l in sorted(self.leases.items()))

    def decode(self, data: bytes, pos: int) -> int:
        """Read the leases `encode` wrote at `pos` (their keys are attached by the caller);
        returns the position after them."""
        (n,) = struct.unpack_from("<I", data, pos)
        pos += 4
        for _ in range(n):
            lease_id, ttl, remaining_ms, version = self._ENTRY.unpack_from(data, pos)
            pos += self._ENTRY.size
            self.leases[lease_id] = Lease(lease_id, ttl, remaining_ms, version)
        return pos


class LeaseExpiry:
    """A leader's expiry of leases whose time ran out on its clock: (id, version) each."""

    _ENTRY = struct.Struct("<qq")

    def __init__(self, entries: list[tuple[int, int]] = ()):
        self.entries = list(entries)

    def SerializeToString(self) -> bytes:  # noqa: N802 (the protobuf messages' interface)
        return b"".join(self._ENTRY.pack(*e) for e in self.entries)

    def ByteSize(self) -> int:  # noqa: N802
        return self._ENTRY.size * len(self.entries)

    @classmethod
    def FromString(cls, data: bytes) -> "LeaseExpiry":  # noqa: N802
        if len(data) % cls._ENTRY.size:
            raise ValueError(f"a lease expiry of {len(data)} bytes")
        return cls([e for e in cls._ENTRY.iter_unpack(data)])


class LeaseCheckpoints(LeaseExpiry):
    """A leader's checkpoint of what its clock says leases have left: (id, version, ms) each."""

    _ENTRY = struct.Struct("<qqq")
