"""Runtime checks of what the shim assumes about the core, each named after the rule it guards.

The core is proven, but the proof covers the Dafny model, not the extraction, the C++ glue, the
Python conversions or the way the shim drives it. These checks watch the boundary. A failed check
raises `RuntimeCheckFailed`; the node must then stop at once (FATAL log line, non-zero exit) —
never log and carry on. This module must never change what the node does, only observe it.

Checks (names as in dafny/PROTOCOL.md where there is one):
- PersistBeforeSend: no message of a Ready leaves before that Ready's records are durable, nor
  before those of every earlier Ready that needed a sync. Counted here from the Readies (every
  Ready's records go to the WAL, in order), compared with the WAL's own count of synced records
  when a frame is about to leave: it does not rely on where the machine asked for a sync.
- EarlyBeforeSync: the early channel. The records the core emitted before its last early message
  need no sync (commit records only: losing them loses nothing an early message depends on);
  `sync` is set exactly when a record needs one; a Ready with nothing to sync has no late messages.
  The core proves all three (Impl.ReadyIs); this checks its own bookkeeping across the glue.
- PromisedNeverDecreases: status()['promised'] never goes down (BalLt, the core's own order),
  across restarts too (compared with the value recovered from the WAL).
- LeaderUsesOwnBallot: while leading, ballot.node is this node's id.
- CommitsContiguous: ready.commits come in slot order without gaps, from the next slot to apply.
- CommittedSlotNeverChanges: a slot committed twice is committed with the same value.
- CommitUptoNeverDecreases, LogStartNeverDecreases: monotonic progress counters.
- LogStartCoversOnlyApplied: the core never forgets a slot the shim has not applied yet.
- ProposalOnlyAtLeader: propose() accepts a value only while the core says it leads.
- MessageDestinationValid: messages go to another member of the configuration.
- CommittedValuesMatch: replicas agree on what they committed. Every DIGEST_RANGE_SLOTS slots a
  node announces a digest of the values it committed in that range; a peer whose digest for
  the same range differs stops (Agreement, observed across processes).

Counted, not fatal (what a peer sends is the peer's fault, not this node's):
- FrameSenderIsConnectionMember: a peer frame whose payload names a sender (a core message, a
  ReadIndex request, a digest) names the member its connection authenticated (the transport's
  HELLO, bound to the peer's certificate under peer TLS). Such a frame is dropped, logged and
  counted in `counts`; the node goes on.
"""

from __future__ import annotations

import collections
import hashlib

from verikv.verified_core import core as vcore


DIGEST_RANGE_SLOTS = 64
DIGEST_BYTES = 8


def slot_digest(value: bytes) -> bytes:
    return hashlib.blake2b(value, digest_size=DIGEST_BYTES).digest()


class RuntimeCheckFailed(Exception):
    def __init__(self, check: str, detail: str):
        super().__init__(f"runtime check {check} failed: {detail}")
        self.check = check
        self.detail = detail


class Checks:
    """Observations of one node's core; call the hooks in the order the node acts."""

    def __init__(self, node_id: int, cluster_size: int, enabled: bool = True, remember_slots: int = 8192):
        self.node_id = node_id
        self.cluster_size = cluster_size
        self.enabled = enabled
        self.promised: tuple[int, int] | None = None
        self.commit_upto = 0
        self.log_start = 0
        self._digests: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self._remember_slots = remember_slots
        # CommittedValuesMatch: this node's range digests, by the range's last slot, and peers'
        # claims for ranges this node has not committed yet (both bounded).
        self._ranges: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self._claims: collections.OrderedDict[int, tuple[int, bytes]] = collections.OrderedDict()
        self.announcements: list[tuple[int, bytes]] = []  # (last slot, digest) to send to peers
        # PersistBeforeSend: the core's records handed to the WAL (every Ready's, in order; the
        # WAL's written_records), those through the last Ready that needed a sync, and how many
        # must be durable before the next frame leaves (the most any queued message needs)
        self.records_handed = 0
        self._synced_through = 0
        self.durable_needed = 0
        self.failures_seen = 0
        self.counts: collections.Counter[str] = collections.Counter()  # the counted checks' refusals

    def _fail(self, check: str, detail: str) -> None:
        self.failures_seen += 1
        raise RuntimeCheckFailed(check, detail)

    def frame_sender_ok(self, connection_member: int, claimed: int | None) -> bool:
        """FrameSenderIsConnectionMember: whether a frame from `connection_member` whose payload
        names `claimed` (None: names no one) may be handled. Checked even with runtime checks
        off: it guards against peers, not against this node's core."""
        if claimed is None or claimed == connection_member:
            return True
        self.counts["FrameSenderIsConnectionMember"] += 1
        return False

    def before_send(self, synced_records: int) -> None:
        """A frame is about to leave, with `synced_records` of the WAL's records durable."""
        if self.enabled and synced_records < self.durable_needed:
            self._fail("PersistBeforeSend", f"{self.durable_needed - synced_records} records that a core message "
                                            f"waiting to leave depends on are not durable yet")

    def on_ready(self, ready: vcore.Ready) -> tuple[int, int]:
        """Observe a Ready whose records the shim hands to the WAL after every earlier Ready's;
        (early, late): how many of the WAL's records must be durable before its early messages
        leave (those of every earlier Ready that needed a sync), and before its other messages
        (its own too, if it needs a sync)."""
        early = self._synced_through
        self.records_handed += len(ready.records)
        if ready.sync:
            self._synced_through = self.records_handed
        if not self.enabled:
            return early, self._synced_through
        records, no_sync = ready.records, vcore.NO_SYNC_RECORD_TAGS
        if ready.early_after > len(records):
            self._fail("EarlyBeforeSync", f"early messages after record {ready.early_after} of {len(records)}")
        for i in range(ready.early_after):
            if records[i][0] not in no_sync:
                self._fail("EarlyBeforeSync", f"an early message left after record {i}, which needs a sync")
        needs_sync = any(rec[0] not in no_sync for rec in records)
        if needs_sync != ready.sync:
            self._fail("EarlyBeforeSync", f"sync is {ready.sync} for records that {'' if needs_sync else 'do not '}"
                                          f"need one")
        if not ready.sync and ready.messages:
            self._fail("EarlyBeforeSync", f"{len(ready.messages)} late messages in a Ready with nothing to sync")
        return early, self._synced_through

    def on_status(self, status: dict) -> None:
        if not self.enabled:
            return
        promised = tuple(status["promised"])
        if self.promised is not None and vcore.ballot_lt(promised, self.promised):
            self._fail("PromisedNeverDecreases", f"promised went from {self.promised} to {promised}")
        self.promised = promised
        if status["role"] == "leader" and tuple(status["ballot"])[1] != self.node_id:
            self._fail("LeaderUsesOwnBallot", f"node {self.node_id} leads with ballot {status['ballot']}")
        if status["commit_upto"] < self.commit_upto:
            self._fail("CommitUptoNeverDecreases", f"commit_upto went from {self.commit_upto} to "
                                                   f"{status['commit_upto']}")
        self.commit_upto = status["commit_upto"]
        if status["log_start"] < self.log_start:
            self._fail("LogStartNeverDecreases", f"log_start went from {self.log_start} to {status['log_start']}")
        self.log_start = status["log_start"]

    def on_log_start(self, log_start: int, next_to_apply: int) -> None:
        if self.enabled and log_start > next_to_apply:
            self._fail("LogStartCoversOnlyApplied", f"log_start {log_start} is past the next slot to apply "
                                                    f"{next_to_apply}")

    def on_commits(self, commits: list[tuple[int, bytes]], next_to_apply: int) -> None:
        """commits of one Ready; next_to_apply is the first slot the shim has not applied."""
        if not self.enabled:
            return
        expected = None
        for slot, value in commits:
            digest = slot_digest(value)
            known = self._digests.get(slot)
            if known is not None and known != digest:
                self._fail("CommittedSlotNeverChanges", f"slot {slot} was committed again with another value")
            if expected is not None and slot != expected:
                self._fail("CommitsContiguous", f"slot {slot} follows slot {expected - 1} in one Ready")
            if expected is None and slot > next_to_apply:
                self._fail("CommitsContiguous", f"slot {slot} committed while slot {next_to_apply} "
                                                "was never delivered")
            expected = slot + 1
            self._digests[slot] = digest
            self._digests.move_to_end(slot)
            while len(self._digests) > self._remember_slots:
                self._digests.popitem(last=False)
            if (slot + 1) % DIGEST_RANGE_SLOTS == 0:
                self._close_range(slot)

    def _close_range(self, last: int) -> None:
        parts = [self._digests.get(s) for s in range(last + 1 - DIGEST_RANGE_SLOTS, last + 1)]
        if any(p is None for p in parts) or last in self._ranges:
            return  # part of the range is in a snapshot this node started from: nothing to compare
        mine = hashlib.blake2b(b"".join(parts), digest_size=DIGEST_BYTES).digest()
        self._remember(self._ranges, last, mine)
        self.announcements.append((last, mine))
        claim = self._claims.pop(last, None)
        if claim is not None:
            self._compare(last, mine, *claim)

    def on_peer_digest(self, peer: int, last: int, digest: bytes) -> None:
        """A peer's digest of the values it committed in the range ending at slot `last`."""
        if not self.enabled:
            return
        mine = self._ranges.get(last)
        if mine is not None:
            self._compare(last, mine, peer, digest)
        else:
            self._remember(self._claims, last, (peer, digest))

    def _compare(self, last: int, mine: bytes, peer: int, theirs: bytes) -> None:
        if mine != theirs:
            self._fail("CommittedValuesMatch", f"node {peer} committed other values than node {self.node_id} "
                                               f"in slots {last + 1 - DIGEST_RANGE_SLOTS}..{last}")

    def _remember(self, table: collections.OrderedDict, key: int, value) -> None:
        table[key] = value
        while len(table) > self._remember_slots // DIGEST_RANGE_SLOTS:
            table.popitem(last=False)

    def on_propose(self, accepted: bool, status: dict) -> None:
        if self.enabled and accepted and status["role"] != "leader":
            self._fail("ProposalOnlyAtLeader", f"propose() accepted a value while role is {status['role']}")

    def on_messages(self, messages: list[tuple[int, bytes]], durable_needed: int) -> None:
        """Core messages queued to leave once `durable_needed` WAL records are durable (on_ready)."""
        if durable_needed > self.durable_needed:
            self.durable_needed = durable_needed
        if not self.enabled:
            return
        for dst, _ in messages:
            if not (0 <= dst < self.cluster_size) or dst == self.node_id:
                self._fail("MessageDestinationValid", f"message to node {dst} (cluster of "
                                                      f"{self.cluster_size}, this is {self.node_id})")
