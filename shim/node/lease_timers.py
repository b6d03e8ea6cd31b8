"""One node's lease clock: when each lease runs out, and what a leader proposes about it.

The KV store keeps, for each lease, the time it had left as of the last command that said so
(shim/kv/leases.py). Every node turns that into a deadline on its own monotonic clock when it
applies the command: now + what the command said, never earlier than a deadline it already had.
Only a leader acts on its deadlines:

- it proposes an expiry for a lease whose deadline passed, with the lease's version, so that
  the expiry changes nothing if a keep-alive was ordered before it (whoever proposed that);
- every CHECKPOINT_EVERY_S it proposes a checkpoint of what its clock says leases have left, for
  those that ran down by more than their slack (a tenth of the TTL, at least a second) below what
  the log last said (so a new leader does not start them from their whole TTL again, as etcd
  does; the slack keeps the log's share small: a lease is checkpointed at most ten times per
  TTL, and not at all if it is kept alive more often than that);
- when it becomes leader, once it has applied everything committed, each lease's deadline
  becomes now + what the log last said it had left, whatever this node's clock said before: a
  node that applied a keep-alive late (it was cut off, and caught up) would otherwise count the
  whole TTL from its catching up, not from the keep-alive.

Never early: an expiry is refused if any keep-alive was ordered before it (whatever the clock
of whoever proposed it said), so a deadline only decides when an expiry is proposed. And a
leader's deadline is never before a lease's true end: it is the time this node applied (or,
taking over, found in the log) the last command about the lease, plus what that command said
was left; a keep-alive is committed after the client sent it, and a checkpoint says what its
proposer's deadline (never early either) left at the time it proposed it. Late by at most, per
change of leader since the last keep-alive: the election, plus CHECKPOINT_EVERY_S plus the slack
(the log's figure is at most that stale), plus the new leader's catching up and one scan.

This module must never change the KV state or do I/O: it says what to propose, and when.
"""

from __future__ import annotations

CHECKPOINT_EVERY_S = 1.0
MAX_PER_COMMAND = 10_000  # leases per expiry or checkpoint command (the rest at the next scan)


def slack_ms(ttl_s: int) -> float:
    """How far a lease's time left may run below what the log says before it is checkpointed."""
    return max(1000.0, ttl_s * 100.0)  # a tenth of the TTL, at least a second


class LeaseTimers:
    def __init__(self) -> None:
        self.deadlines: dict[int, float] = {}  # lease id: when it runs out, on this node's clock
        self.leading = False
        self._expiring: dict[int, int] = {}  # lease id: the version this leader proposed to expire
        self._next_checkpoint = float("-inf")

    def applied(self, changes: list[tuple[int, int | None]], now: float) -> None:
        """What commands did to leases (LeaseTable.take_changes()), as this node applied them."""
        for lease_id, remaining_ms in changes:
            if remaining_ms is None:
                self.deadlines.pop(lease_id, None)
                self._expiring.pop(lease_id, None)
            else:
                deadline = now + remaining_ms / 1000
                if deadline > self.deadlines.get(lease_id, float("-inf")):
                    self.deadlines[lease_id] = deadline

    def reset(self, leases, now: float) -> None:
        """The store was replaced (a snapshot): follow what it says."""
        old, self.deadlines = self.deadlines, {}
        self._expiring = {}
        for lease_id, lease in leases.leases.items():
            self.deadlines[lease_id] = max(old.get(lease_id, float("-inf")), now + lease.remaining_ms / 1000)

    def lead(self, leading: bool, leases, now: float, caught_up: bool = True) -> None:
        """Called every scan with whether this node leads now, and whether it has applied
        everything committed; it acts as the leader once both hold (see the module's text)."""
        if not leading:
            self.leading = False
            self._expiring = {}
            return
        if not self.leading and caught_up:
            self.deadlines = {lease_id: now + lease.remaining_ms / 1000 for lease_id, lease in leases.leases.items()}
            self._next_checkpoint = now + CHECKPOINT_EVERY_S
            self.leading = True

    def remaining_s(self, lease_id: int, now: float) -> float | None:
        deadline = self.deadlines.get(lease_id)
        return None if deadline is None else max(0.0, deadline - now)

    def expiries(self, leases, now: float) -> list[tuple[int, int]]:
        """A leader's: (id, version) of every lease that ran out and was not proposed yet."""
        if not self.leading:
            return []
        out = []
        for lease_id, deadline in self.deadlines.items():
            if deadline <= now:
                lease = leases.leases.get(lease_id)
                if lease is not None and self._expiring.get(lease_id) != lease.version:
                    self._expiring[lease_id] = lease.version
                    out.append((lease_id, lease.version))
                    if len(out) == MAX_PER_COMMAND:
                        break
        return out

    def retry(self, expiries: list[tuple[int, int]]) -> None:
        """These expiries were not ordered: propose them again when due."""
        for lease_id, version in expiries:
            if self._expiring.get(lease_id) == version:
                del self._expiring[lease_id]

    def checkpoints(self, leases, now: float) -> list[tuple[int, int, int]]:
        """A leader's, every CHECKPOINT_EVERY_S: (id, version, ms left) of the leases whose time
        left ran down by more than their slack below what the log says."""
        if not self.leading or now < self._next_checkpoint:
            return []
        self._next_checkpoint = now + CHECKPOINT_EVERY_S
        out = []
        for lease_id, deadline in self.deadlines.items():
            lease = leases.leases.get(lease_id)
            if lease is None:
                continue
            left_ms = int(max(0.0, deadline - now) * 1000)
            if lease.remaining_ms - left_ms > slack_ms(lease.ttl):
                out.append((lease_id, lease.version, left_ms))
                if len(out) == MAX_PER_COMMAND:
                    self._next_checkpoint = now  # the rest at the next scan
                    break
        return out
