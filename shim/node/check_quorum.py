"""A leader's leadership confirmations, and what they tell it: when a quorum last heard from it.

A leadership confirmation is one heartbeat round (`core.confirm_read`): once a quorum answered
heartbeats numbered at least its read_seq, the core reports it in `read_confirmed`, and this
node is known to have led when the confirmation started. Linearizable reads start them
(reads.py); so does an idle leader's probe, every PROBE_EVERY_S, so that the leader knows when a
quorum last heard from it even without reads (etcd's CheckQuorum: a leader that no quorum heard
for check_quorum_s tells clients there is no leader). Every confirmation counts for both: the one
in flight covers the reads that arrived before it started, and tells the leader when a quorum
heard it once it is confirmed. One is in flight at a time, whoever started it: the reads that
arrive meanwhile wait for the next one (one that started before they arrived cannot confirm
them), and the probe waits for any in flight. One in flight is not lost while this node leads:
the core's periodic heartbeats carry its newest read_seq.

This module must never change the KV state or decide anything the core decides.
"""

from __future__ import annotations

import collections

PROBE_EVERY_S = 0.1  # how often an otherwise idle leader confirms that a quorum hears it


class CheckQuorum:
    """The leadership confirmations of one node while it leads (see the module's text)."""

    def __init__(self, machine) -> None:
        self.m = machine  # the NodeMachine: its status, core, step(), clock() and config
        # started and not yet seen confirmed: (read_seq, when it started), oldest first
        self._pending: collections.deque[tuple[int, float]] = collections.deque()
        self._heard_at: float | None = None  # when the newest confirmed one started

    def confirm(self, readies: list) -> tuple[int, int]:
        """Start a leadership confirmation; its read_seq (0: the core refused, this node does
        not lead) and read slot."""
        m = self.m
        rd, read_seq, read_slot = m.step(m.core.confirm_read)
        readies.append(rd)
        if read_seq:
            self._pending.append((read_seq, m.clock()))
        return read_seq, read_slot

    def in_flight(self) -> bool:
        """A confirmation this leader started is not confirmed yet."""
        pending = self._pending
        return bool(pending) and pending[-1][0] > self.m.status.get("read_confirmed", 0)

    def probe(self, readies: list) -> None:
        """Once a turn: note the confirmations confirmed since the last turn, and start one if
        none started for PROBE_EVERY_S and none is in flight."""
        m = self.m
        if m.status.get("role") != "leader":
            self._pending.clear()  # a new leadership numbers its confirmations from 1 again
            self._heard_at = None
            return
        now = m.clock()
        heard_at = self._heard_at
        if heard_at is None:
            heard_at = now  # it has just been elected: a quorum promised to it
        pending, confirmed = self._pending, m.status.get("read_confirmed", 0)
        while pending and pending[0][0] <= confirmed:
            heard_at = max(heard_at, pending.popleft()[1])
        self._heard_at = heard_at
        if not pending and now - heard_at >= PROBE_EVERY_S:
            self.confirm(readies)

    def has_quorum(self) -> bool:
        """This node leads and a quorum heard from it within check_quorum_s (see NodeConfig)."""
        m = self.m
        return (m.status.get("role") == "leader" and self._heard_at is not None
                and m.clock() - self._heard_at <= m.config.check_quorum_s)
