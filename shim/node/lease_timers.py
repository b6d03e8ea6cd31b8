"""One node's lease clock: when each lease runs out, and what a leader proposes about it.

The KV store keeps, for each lease, the time it had left as of the last command that said so
(shim/kv/leases.py). Every node turns that into a deadline on its own monotonic clock when it
applies the command: now + what the command said (a leader's own clock is the authority, so a
leader does not follow checkpoints, its own or a deposed leader's). Only a leader acts on its
deadlines:

- it proposes an expiry for a lease whose deadline passed, with the lease's version, so that
  the expiry changes nothing if a keep-alive was ordered before it (whoever proposed that);
- every CHECKPOINT_EVERY_S it proposes a checkpoint of what its clock says leases have left, for
  those that ran down by more than their slack (a tenth of the TTL, at least a second) below what
  the log last said (so a new leader does not start them from their whole TTL again, as etcd
  does; the slack keeps the log's share small: a lease is checkpointed at most ten times per
  TTL, and not at all if it is kept alive more often than that). A pass over the leases looks at
  CHECKPOINT_SCAN_LEASES of them per scan (the node scans every 50 ms), so no scan holds the
  loop long: with 100,000 leases a pass was one stop of about 120 ms a second on this project's
  2-core test machine, now 10 scans of at most about 20 ms; a pass takes longer than
  CHECKPOINT_EVERY_S only beyond 200,000 leases;
- when it becomes leader, once it has applied everything committed, it keeps the deadlines it
  has: each counts from when this node applied the last command about the lease, so a node that
  was cut off and caught up counts from the last checkpoint it applied, not from an old
  keep-alive, and leaders that follow each other quickly (an unstable partition) do not each
  start from what the log said at the last checkpoint again.

Never early: an expiry is refused if any keep-alive was ordered before it (whatever the clock
of whoever proposed it said), so a deadline only decides when an expiry is proposed. And a
deadline is never before a lease's true end: it is the time this node applied the last command
about the lease plus what that command said was left; a keep-alive is committed after the client
sent it, and a checkpoint says what its proposer's deadline (never early either) left when it
proposed it, before anyone applied it. Late by at most: what the last checkpoint a new leader
applied was behind its proposer's clock (CHECKPOINT_EVERY_S plus the slack), plus how late the
new leader applied it (at once if it was connected; its catching up if it was cut off), plus
one scan.

This module must never change the KV state or do I/O: it says what to propose, and when.
"""

from __future__ import annotations

CHECKPOINT_EVERY_S = 1.0
CHECKPOINT_SCAN_LEASES = 10_000  # leases a checkpoint pass looks at per scan
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
        self._pass: list[int] = []  # the lease ids of the checkpoint pass under way, from _pass_at on
        self._pass_at = 0
        # no deadline not yet proposed falls before this: a scan before it looks at no lease
        self._quiet_until = float("-inf")

    def applied(self, changes: list[tuple[int, int | None, bool]], now: float) -> None:
        """What commands did to leases (LeaseTable.take_changes()), as this node applied them."""
        for lease_id, remaining_ms, by_checkpoint in changes:
            if remaining_ms is None:
                self.deadlines.pop(lease_id, None)
                self._expiring.pop(lease_id, None)
            elif not (by_checkpoint and self.leading):
                deadline = self.deadlines[lease_id] = now + remaining_ms / 1000
                self._quiet_until = min(self._quiet_until, deadline)

    def reset(self, leases, now: float) -> None:
        """The store was replaced (a snapshot, newer than anything this node applied): follow it."""
        self._expiring = {}
        self._quiet_until = float("-inf")
        self._pass = []
        self.deadlines = {lease_id: now + lease.remaining_ms / 1000 for lease_id, lease in leases.leases.items()}

    def lead(self, leading: bool, leases, now: float, caught_up: bool = True) -> None:
        """Called every scan with whether this node leads now, and whether it has applied
        everything committed; it acts as the leader once both hold (see the module's text)."""
        if not leading:
            self.leading = False
            self._expiring = {}
            self._pass = []
            return
        if not self.leading and caught_up:
            for lease_id, lease in leases.leases.items():  # (every node applies every grant)
                self.deadlines.setdefault(lease_id, now + lease.remaining_ms / 1000)
            self._next_checkpoint = now + CHECKPOINT_EVERY_S
            self._quiet_until = float("-inf")
            self.leading = True

    def remaining_s(self, lease_id: int, now: float) -> float | None:
        deadline = self.deadlines.get(lease_id)
        return None if deadline is None else max(0.0, deadline - now)

    def expiries(self, leases, now: float) -> list[tuple[int, int]]:
        """A leader's: (id, version) of every lease that ran out and was not proposed yet."""
        if not self.leading or now < self._quiet_until:
            return []
        out, quiet_until = [], float("inf")
        for lease_id, deadline in self.deadlines.items():
            if deadline > now:
                quiet_until = min(quiet_until, deadline)
                continue
            lease = leases.leases.get(lease_id)
            if lease is not None and self._expiring.get(lease_id) != lease.version:
                self._expiring[lease_id] = lease.version
                out.append((lease_id, lease.version))
                if len(out) == MAX_PER_COMMAND:
                    return out  # the rest at the next scan (quiet_until not raised)
        self._quiet_until = quiet_until
        return out

    def retry(self, expiries: list[tuple[int, int]]) -> None:
        """These expiries were not ordered: propose them again when due."""
        for lease_id, version in expiries:
            if self._expiring.get(lease_id) == version:
                del self._expiring[lease_id]
        self._quiet_until = float("-inf")

    def checkpoints(self, leases, now: float) -> list[tuple[int, int, int]]:
        """A leader's: (id, version, ms left) of the leases whose time left ran down by more than
        their slack below what the log says; a pass over every lease starts every
        CHECKPOINT_EVERY_S and looks at CHECKPOINT_SCAN_LEASES of them per call."""
        if not self.leading:
            return []
        if self._pass_at >= len(self._pass):
            if now < self._next_checkpoint:
                return []
            self._next_checkpoint = now + CHECKPOINT_EVERY_S
            self._pass, self._pass_at = list(self.deadlines), 0
        ids, start = self._pass, self._pass_at
        stop = min(len(ids), start + CHECKPOINT_SCAN_LEASES)
        out = []
        deadlines, table = self.deadlines, leases.leases
        for k in range(start, stop):
            lease_id = ids[k]
            lease, deadline = table.get(lease_id), deadlines.get(lease_id)
            if lease is None or deadline is None:
                continue  # gone since the pass began
            left_ms = int(max(0.0, deadline - now) * 1000)
            if lease.remaining_ms - left_ms > slack_ms(lease.ttl):
                out.append((lease_id, lease.version, left_ms))
                if len(out) == MAX_PER_COMMAND:
                    stop = k + 1  # the rest at the next scan
                    break
        self._pass_at = stop
        if stop >= len(ids):
            self._pass = []
        return out
