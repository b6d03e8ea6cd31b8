"""The Python API of the compiled core: thin calls into `_core`, which Dafny generated.

`Core` is one replica of the Multi-Paxos core (dafny/Impl.i.dfy and the six files it names, `Impl.Replica`), sans-I/O
in the style of etcd-io/raft's Ready: every call takes one input (a received message, a tick,
a proposal, durable records at recovery) and returns one `Ready`, whose duties the caller
performs in order:

1. `ready.early` (destination node id, encoded message) may be sent at once: those messages
   depend on no record of this step that needs a sync (a leader's Accepts go out while it
   persists its own vote); the core emitted `ready.early_after` of the records before the last
   of them, and none of those needs a sync (Impl.ReadyIs; checked by the shim: EarlyBeforeSync);
2. append `ready.records` to the log, in order; if `ready.sync`, make them durable (fdatasync)
   before 3 and 4 and before anything of a later step; if not (commit records only), they may
   become durable later, still in order;
3. send `ready.messages`;
4. apply `ready.commits` (slot, value): newly committed slots, contiguous and in slot order.

This module converts; it must never decide. The ballot and quorum helpers below are the
Dafny definitions of the same names (ballot_lt is Ballots.BalLt, has_quorum is
QuorumFacts.CheckQuorum, ...).
"""

from __future__ import annotations

from typing import Iterable, NamedTuple, Sequence

try:
    from verikv.verified_core import _core
except ImportError as err:  # only on an unbuilt source tree
    raise ImportError(
        "verikv's native core is not built: run `./dev build` "
        "(or `python -m verikv.build`) in the source tree"
    ) from err

Ballot = tuple[int, int]

ballot_lt = _core.ballot_lt
ballot_le = _core.ballot_le
ballot_max = _core.ballot_max
next_ballot = _core.next_ballot
quorum_size = _core.quorum_size
count_acks = _core.count_acks
has_quorum = _core.has_quorum

#: Slots a replica holds at once: [log_start, log_start + WINDOW). The shim snapshots and
#: truncates well before a window fills; until then proposals are refused (back-pressure).
WINDOW: int = _core.WINDOW
#: The first byte of an encoded commit record, with its value (a slot committed with a value
#: this replica did not vote for), and of a learn record (a slot committed with the value of
#: this replica's vote there, named by its ballot): the kinds of record that need no sync.
RECORD_COMMIT_TAG: int = _core.RECORD_COMMIT_TAG
RECORD_LEARN_TAG: int = _core.RECORD_LEARN_TAG
NO_SYNC_RECORD_TAGS: frozenset[int] = frozenset((RECORD_COMMIT_TAG, RECORD_LEARN_TAG))

#: Raised when a runtime check inside the extension fails (e.g. MessageRoundTrip); fatal.
FatalCheck = _core.FatalCheck


class Ready(NamedTuple):
    records: list[bytes]
    messages: list[tuple[int, bytes]]
    commits: list[tuple[int, bytes]]
    accepted: bool  # propose(): the value got a slot (False: not the leader, or window full)
    early: list[tuple[int, bytes]]  # may be sent before this step's records are durable
    sync: bool  # the records must be durable before messages, commits and later steps
    need_snapshot: list[int]  # members that asked for slots truncated here: send them a snapshot
    early_after: int  # how many of `records` came before the last early message (none needs a sync)


class Core:
    """One replica of the verified core. Deterministic: no clock, socket, file or randomness."""

    __slots__ = ("_replica", "node_id", "cluster_size", "_stepped")

    def __init__(self, node_id: int, cluster_size: int, *, election_ticks: int = 20,
                 heartbeat_ticks: int = 3, runtime_checks: bool = True) -> None:
        self._replica = _core.Replica(node_id, cluster_size, election_ticks, heartbeat_ticks, runtime_checks)
        self.node_id = node_id
        self.cluster_size = cluster_size
        self._stepped = False

    def recover(self, records: Iterable[bytes]) -> Ready:
        """Replay durable records in the order they were persisted; commits are every
        committed slot from log_start on. Only on a fresh Core, before any other step."""
        if self._stepped:
            raise RuntimeError("recover() must come before any other step")
        for record in records:
            self._replica.replay(record)
        self._stepped = True
        return Ready(*self._replica.finish_recovery())

    def receive(self, message: bytes) -> Ready:
        """An encoded message from a peer. Raises ValueError if it is malformed."""
        self._stepped = True
        return Ready(*self._replica.receive(message))

    def tick(self) -> Ready:
        self._stepped = True
        return Ready(*self._replica.tick())

    def propose(self, value: bytes) -> Ready:
        """Leader only: give `value` (opaque bytes) a slot. `ready.accepted` says whether it did."""
        self._stepped = True
        return Ready(*self._replica.propose(value))

    def confirm_read(self) -> tuple[Ready, int, int]:
        """Leader: start confirming leadership for the reads waiting now. Returns (ready,
        read_seq, read_slot): serve them once status()['read_confirmed'] >= read_seq and the
        applied slots reach read_slot. read_seq 0 means this node is not the leader."""
        self._stepped = True
        ready, seq, slot = self._replica.confirm_read()
        return Ready(*ready), seq, slot

    def read_index_attested(self, src: int, promised: Ballot) -> int:
        """Leader: a ReadIndex request from member `src`, which had promised exactly `promised`
        when it sent it. Returns the read slot if that member and this leader make a quorum
        confirming this leader for the reads it asks for (three members), else 0 (confirm them
        with confirm_read). Changes nothing."""
        return self._replica.read_index_attested(src, promised)

    def truncate(self, upto_slot: int) -> Ready:
        """Forget slots below upto_slot (covered by a snapshot). Only committed slots go."""
        self._stepped = True
        return Ready(*self._replica.truncate(upto_slot))

    def install_snapshot(self, upto_slot: int) -> Ready:
        """A peer's snapshot of the state after every slot below upto_slot was installed (this
        replica lagged behind the peers' truncation point): jump there. Commits report the
        slots above it this replica had already committed."""
        self._stepped = True
        return Ready(*self._replica.install_snapshot(upto_slot))

    def checkpoint_records(self) -> Sequence[bytes]:
        """The whole durable state as records, to start a fresh log after a snapshot: a sequence
        (len, indexing, iteration) of the records of this moment, each encoded as it is read."""
        return self._replica.checkpoint_records()

    def status(self) -> dict:
        return self._replica.status()


def reencode_message(message: bytes) -> bytes:
    """Decode and encode again (the codec's round trip, for tests and checks)."""
    return _core.decode_message(message)


__all__ = ["Ballot", "Core", "FatalCheck", "Ready", "WINDOW", "ballot_lt", "ballot_le", "ballot_max",
           "next_ballot", "quorum_size", "count_acks", "has_quorum", "reencode_message"]
