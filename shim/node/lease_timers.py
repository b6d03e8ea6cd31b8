"""One node's lease clock: when each lease runs out, and what a leader proposes about it.

The KV store keeps, for each lease, the time it had left as of the last command that said so
(shim/kv/leases.py). Every node turns that into a deadline on its own monotonic clock when it
applies the command: now + what the command said (a leader's own clock is the authority, so a
leader does not follow checkpoints, its own or a deposed leader's). Only a leader acts on its
deadlines:

- it proposes an expiry for a lease whose deadline passed, with the lease's version, so that
  the expiry changes nothing if a keep-alive was ordered before it (whoever proposed that). It
  keeps the leases in a heap by deadline (a keep-alive, which moves a deadline later, leaves the
  entry, and a scan that finds it early puts it back), so a scan looks only at the leases whose
  time came, however many run out one by one;
- it proposes a checkpoint of what its clock says a lease has left once the lease ran down by
  more than its slack (a tenth of the TTL, at least a second) below what the log last said (so a
  new leader does not start it from its whole TTL again, as etcd does; the slack keeps the log's
  share small: a lease is checkpointed at most ten times per TTL, and not at all if it is kept
  alive more often than that). The leader keeps each lease in a heap by the earliest time it can
  be due (what the log last said it had left, less its slack, counted from when this node applied
  that); a keep-alive only moves that time later, so it leaves the heap alone, and a scan (every
  50 ms) looks only at the leases whose time came, at most CHECKPOINT_SCAN_LEASES of them and
  for at most SCAN_BUDGET_S, and puts each back at the time it is really due. So the leases cost the loop nothing between their
  due times: a lease is looked at about once per slack (every 60 s for a TTL of 600 s), not once
  a second as a pass over all of them did (100,000 leases: a quarter of a leader's CPU under a
  keep-alive load);
- when it becomes leader, once it has applied everything committed, it keeps the deadlines it
  has: each counts from when this node applied the last command about the lease, so a node that
  was cut off and caught up counts from the last checkpoint it applied, not from an old
  keep-alive, and leaders that follow each other quickly (an unstable partition) do not each
  start from what the log said at the last checkpoint again. It places its leases in its heaps
  for at most PLACE_BUDGET_S of each scan and acts on them once all are placed (placing 350,000
  at once stopped its loop for 276 ms here, longer than the followers' election timeout, and
  each new leader was replaced before it could lead);

Never early: an expiry is refused if any keep-alive was ordered before it (whatever the clock
of whoever proposed it said), so a deadline only decides when an expiry is proposed. And a
deadline is never before a lease's true end: it is the time this node applied the last command
about the lease plus what that command said was left; a keep-alive is committed after the client
sent it, and a checkpoint says what its proposer's deadline (never early either) left when it
proposed it, before anyone applied it. Late by at most: what the last checkpoint a new leader
applied was behind its proposer's clock (the slack plus CHECKPOINT_EVERY_S), plus how late the
new leader applied it (at once if it was connected; its catching up if it was cut off), plus
the scans it takes to place its leases (350,000 leases: 32 scans, 1.6 s, on an idle machine),
plus one scan.

This module must never change the KV state or do I/O: it says what to propose, and when.
"""

from __future__ import annotations

import heapq
import time

CHECKPOINT_EVERY_S = 1.0  # a lease checkpointed is looked at again this much later (if not applied yet)
CHECKPOINT_SCAN_LEASES = 10_000  # leases a scan looks at, at most
MAX_PER_COMMAND = 10_000  # leases per expiry or checkpoint command (the rest at the next scan)
# and for at most this long per scan, each of expiries and checkpoints, looking at the clock
# every BUDGET_EVERY leases (10,000 checkpoints took 18-20 ms on an idle machine, several times
# that on a busy one: with 350,000 leases of TTL 600 s, one scan of such every 1.7 s)
SCAN_BUDGET_S = 0.005
BUDGET_EVERY = 256
# A node that became leader places its leases in its heaps a share at a time before it acts as
# leader for leases (all at once took 276 ms for 350,000 here: longer than an election timeout):
# PLACE_CHUNK at a time, for at most PLACE_BUDGET_S of its time per scan and at most
# PLACE_PER_SCAN (20,000 took 36 ms on an idle machine, 130-260 ms on a busy one: too long).
PLACE_CHUNK = 1_000
PLACE_BUDGET_S = 0.010
PLACE_PER_SCAN = 20_000


MIN_SLACK_S = 1.0
_NEVER = float("inf")
_DUE_NOW = float("-inf")


def slack_ms(ttl_s: int) -> float:
    """How far a lease's time left may run below what the log says before it is checkpointed."""
    return max(MIN_SLACK_S * 1000, ttl_s * 100.0)  # a tenth of the TTL, at least a second


class LeaseTimers:
    def __init__(self, work_clock=time.perf_counter) -> None:
        self._work_clock = work_clock  # what PLACE_BUDGET_S and SCAN_BUDGET_S are measured with
        self.deadlines: dict[int, float] = {}  # lease id: when it runs out, on this node's clock
        self.leading = False
        self._expiring: dict[int, int] = {}  # lease id: the version this leader proposed to expire
        # a leader's: (time, lease id), no later than the lease can be due for a checkpoint; each
        # lease's live entry is the one whose time _due holds (the others are left to surface)
        self._heap: list[tuple[float, int]] = []
        self._due: dict[int, float] = {}
        # a leader's, the same for expiries: (time, lease id), no later than its deadline; the live
        # entry of a lease is the one whose time _ends holds
        self._ends: list[tuple[float, int]] = []
        self._end_at: dict[int, float] = {}
        # a node that became leader and is placing its leases in the heaps: those still to place
        # (None when it is not), and those granted or given a new time meanwhile (placed again
        # at the end, at their new times)
        self._to_place: list[int] | None = None
        self._changed_meanwhile: set[int] = set()

    def applied(self, changes: list[tuple[int, int | None, bool]], now: float) -> None:
        """What commands did to leases (LeaseTable.take_changes()), as this node applied them."""
        due = self._due if self.leading else None
        end_at = self._end_at
        placing = self._to_place is not None
        for lease_id, remaining_ms, by_checkpoint in changes:
            if remaining_ms is None:
                self.deadlines.pop(lease_id, None)
                self._expiring.pop(lease_id, None)
                continue
            if placing:
                self._changed_meanwhile.add(lease_id)
            if not (by_checkpoint and self.leading):
                deadline = self.deadlines[lease_id] = now + remaining_ms / 1000
                if due is not None and deadline < end_at.get(lease_id, _NEVER):
                    self._schedule_end(lease_id, deadline)  # (a later deadline waits for its entry)
            if due is not None and lease_id not in due and lease_id in self.deadlines:
                # (a lease already in the heap is due no earlier than its time there)
                self._schedule(lease_id, self.deadlines[lease_id] - remaining_ms / 1000 + MIN_SLACK_S)

    def _schedule(self, lease_id: int, at: float) -> None:
        self._due[lease_id] = at
        heapq.heappush(self._heap, (at, lease_id))

    def _schedule_end(self, lease_id: int, at: float) -> None:
        self._end_at[lease_id] = at
        heapq.heappush(self._ends, (at, lease_id))

    def reset(self, leases, now: float) -> None:
        """The store was replaced (a snapshot, newer than anything this node applied): follow it."""
        self._expiring = {}
        self.deadlines = {lease_id: now + lease.remaining_ms / 1000 for lease_id, lease in leases.leases.items()}
        if self.leading:
            self._fill_heap(leases)

    def _fill_heap(self, leases) -> None:
        """Every lease in the heap at the time it is due (a leader's, from when it leads)."""
        table = leases.leases
        self._due = {lease_id: deadline - (table[lease_id].remaining_ms - slack_ms(table[lease_id].ttl)) / 1000
                     for lease_id, deadline in self.deadlines.items() if lease_id in table}
        self._heap = [(at, lease_id) for lease_id, at in self._due.items()]
        heapq.heapify(self._heap)
        self._end_at = {lease_id: deadline for lease_id, deadline in self.deadlines.items() if lease_id in table}
        self._ends = [(at, lease_id) for lease_id, at in self._end_at.items()]
        heapq.heapify(self._ends)

    def lead(self, leading: bool, leases, now: float, caught_up: bool = True) -> None:
        """Called every scan with whether this node leads now, and whether it has applied
        everything committed; it acts as the leader once both hold (see the module's text)."""
        if not leading:
            self.leading = False
            self._expiring = {}
            self._heap, self._due = [], {}
            self._ends, self._end_at = [], {}
            self._to_place, self._changed_meanwhile = None, set()
            return
        if self.leading or not caught_up:
            return
        # it places a share of its leases a scan, and leads for leases once all are placed
        if self._to_place is None:
            self._to_place = list(leases.leases)
            self._heap, self._due, self._ends, self._end_at = [], {}, [], {}
        todo, clock = self._to_place, self._work_clock
        until, placed = clock() + PLACE_BUDGET_S, 0
        while todo and placed < PLACE_PER_SCAN:
            self._place(leases, todo[-PLACE_CHUNK:], now)
            del todo[-PLACE_CHUNK:]
            placed += PLACE_CHUNK
            if clock() >= until:
                break
        if not todo:
            self._place(leases, self._changed_meanwhile, now)
            self._to_place, self._changed_meanwhile = None, set()
            self.leading = True

    def _place(self, leases, lease_ids, now: float) -> None:
        """These leases in the heaps, at the times they are due (pushed one by one: heapifying
        350,000 at the end took 80 ms, this costs each scan its share)."""
        table, deadlines = leases.leases, self.deadlines
        due, heap, end_at, ends = self._due, self._heap, self._end_at, self._ends
        for lease_id in lease_ids:
            lease = table.get(lease_id)
            if lease is None:
                continue  # gone meanwhile
            # (every node applies every grant; a deadline set since is kept)
            deadline = deadlines.setdefault(lease_id, now + lease.remaining_ms / 1000)
            at = deadline - (lease.remaining_ms - slack_ms(lease.ttl)) / 1000
            due[lease_id] = at
            heapq.heappush(heap, (at, lease_id))
            end_at[lease_id] = deadline
            heapq.heappush(ends, (deadline, lease_id))

    def remaining_s(self, lease_id: int, now: float) -> float | None:
        deadline = self.deadlines.get(lease_id)
        return None if deadline is None else max(0.0, deadline - now)

    def expiries(self, leases, now: float) -> list[tuple[int, int]]:
        """A leader's: (id, version) of every lease that ran out and was not proposed yet. Looks
        only at the leases whose time in the heap came (a keep-alive moved a deadline later and
        left its entry: it is put back at the new one), for at most SCAN_BUDGET_S."""
        if not self.leading:
            return []
        ends, end_at, deadlines, table = self._ends, self._end_at, self.deadlines, leases.leases
        clock, popped = self._work_clock, 0
        until = clock() + SCAN_BUDGET_S
        out = []
        while ends and ends[0][0] <= now:
            popped += 1
            if popped % BUDGET_EVERY == 0 and clock() >= until:
                break  # the rest at the next scan
            at, lease_id = heapq.heappop(ends)
            if end_at.get(lease_id) != at:
                continue  # an entry left behind (the lease was put back, or is gone)
            del end_at[lease_id]
            deadline, lease = deadlines.get(lease_id), table.get(lease_id)
            if deadline is None or lease is None:
                continue  # gone
            if deadline > now:
                self._schedule_end(lease_id, deadline)
                continue
            if self._expiring.get(lease_id) != lease.version:
                self._expiring[lease_id] = lease.version
                out.append((lease_id, lease.version))
                if len(out) == MAX_PER_COMMAND:
                    break  # the rest at the next scan
            # (an expiry refused for a keep-alive ordered before it comes back through `applied`,
            # a failed proposal through `retry`)
        return out

    def retry(self, expiries: list[tuple[int, int]]) -> None:
        """These expiries were not ordered: propose them again when due."""
        for lease_id, version in expiries:
            if self._expiring.get(lease_id) == version:
                del self._expiring[lease_id]
                if self.leading:
                    self._schedule_end(lease_id, _DUE_NOW)

    def checkpoints(self, leases, now: float) -> list[tuple[int, int, int]]:
        """A leader's: (id, version, ms left) of the leases whose time left ran down by more than
        their slack below what the log says. Looks only at the leases whose time in the heap
        came, at most CHECKPOINT_SCAN_LEASES of them and for at most SCAN_BUDGET_S (the rest at
        the next scan)."""
        if not self.leading:
            return []
        heap, due, deadlines, table = self._heap, self._due, self.deadlines, leases.leases
        clock, popped = self._work_clock, 0
        until = clock() + SCAN_BUDGET_S
        out, looked = [], 0
        while heap and heap[0][0] <= now and looked < CHECKPOINT_SCAN_LEASES:
            popped += 1
            if popped % BUDGET_EVERY == 0 and clock() >= until:
                break  # the rest at the next scan
            at, lease_id = heapq.heappop(heap)
            if due.get(lease_id) != at:
                continue  # an entry left behind (the lease was put back, or is gone)
            del due[lease_id]
            looked += 1
            lease, deadline = table.get(lease_id), deadlines.get(lease_id)
            if lease is None or deadline is None:
                continue  # gone
            left_ms = int(max(0.0, deadline - now) * 1000)
            slack = slack_ms(lease.ttl)
            if lease.remaining_ms - left_ms > slack:
                out.append((lease_id, lease.version, left_ms))
                self._schedule(lease_id, now + CHECKPOINT_EVERY_S)  # in case it is not applied by then
                if len(out) == MAX_PER_COMMAND:
                    break  # the rest at the next scan
            else:  # when it will be due, as the log says now (never this scan again)
                self._schedule(lease_id, max(deadline - (lease.remaining_ms - slack) / 1000, now + 0.001))
        return out
