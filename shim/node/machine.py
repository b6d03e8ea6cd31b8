"""The node's logic as a deterministic machine: events in, I/O actions out (no asyncio, no clock,
no randomness of its own, no file or socket).

Events: `command` (a client write, or a read ordered through the log), `read`, `frame` (from a
peer), `tick`. Then `turn()`, a generator of the turn's I/O actions, which the caller carries out
in order before it asks for the next one:
  Send(frames, now)             hand these peer frames to the transport; now: let them leave
                                before the next action (the caller yields to its loop once)
  Append(records, durable)      append to the WAL; durable: resume only once they are on disk
  WriteState(slot, kv_state, core_records)  start writing the next snapshot: the KV state at
                                `slot` and the core's state, as `kv_state()` and `core_records(..)`
                                give them when the action is carried out, when the WAL starts a new
                                segment for the records after it; it may become durable after later
                                actions and turns: the caller then says so with `state_written(slot,
                                bytes)`
  WriteSnapshot(slot, kv_state, core_records)  make a snapshot durable (WAL.install_snapshot):
                                its state is kv_state and core_records, or (None, None) the
                                snapshot written for `slot`
At start, `restore(snapshot)` (if the WAL has one), then `recover(records)`: the actions of
replaying the WAL. Answers to clients are given by calling the `done` each request came with,
once, with its response or EtcdError; every failure reaches the client that way. The clock and
the random source are passed in, so a simulation with a simulated clock, network and disk
replays the same run from the same seed.

Each turn: feed the core every input that arrived (ticks, peer messages, proposals, read
confirmations); make every record of the turn durable with one group commit; only then send the
turn's messages; then apply the newly committed slots to the KV state and answer the clients.
Client commands are in proposals.py, linearizable reads in reads.py.

This module must never decide anything the core decides (who leads, what is chosen), never let a
message leave before the records it depends on are durable, and never go on after a runtime
check, a WAL failure or a core FatalCheck: those propagate out of `turn()`.
"""

from __future__ import annotations

import collections
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, NamedTuple

from verikv.etcdpb import rpc_pb2
from verikv.shim.kv import errors
from verikv.shim.kv.commands import AsUser, Kind, check_size, cost, encode_batch, validate
from verikv.shim.kv.leases import LeaseCheckpoints, LeaseExpiry
from verikv.shim.kv.store import KVStore
from verikv.shim.node.check_quorum import CheckQuorum
from verikv.shim.node.checks import Checks
from verikv.shim.node.compaction import AutoCompaction
from verikv.shim.node.lease_timers import LeaseTimers
from verikv.shim.node.peer_wire import (CAMPAIGN, DIGEST, KIND_CAMPAIGN, KIND_CORE, KIND_DIGEST, KIND_FORWARD,
                                        KIND_READ_INDEX, KIND_READ_INDEX_REPLY, KIND_SNAPSHOT, KIND_SNAPSHOT_ACK,
                                        KIND_SNAPSHOT_CHUNK, READ_ASK, READ_REPLY, SNAPSHOT_ACK, SNAPSHOT_CHUNK,
                                        claimed_sender)
from verikv.shim.node.proposals import Proposals
from verikv.shim.node.reads import Reads
from verikv.shim.node.snapshot_transfer import MAX_BYTES, SnapshotReceiver, SnapshotSender
from verikv.verified_core.core import WINDOW

log = logging.getLogger("verikv.node")


class Send(NamedTuple):
    frames: list  # (destination node id, frame kind, payload)
    now: bool = False  # leave before the next action, not at the end of the turn


class Append(NamedTuple):
    records: list  # the core's records, in order
    durable: bool  # the turn resumes only once they (and everything before) are on disk


class WriteState(NamedTuple):
    slot: int  # the KV state after every slot below this one ...
    # ... is what this gives when the action is carried out, in parts read from the store as they
    # are asked for: they are read from a copy that nothing changes (a child process's), or at once
    kv_state: Callable[[], Iterable[bytes]]
    # the core's whole durable state then (every record handed over before this action), which
    # the records after it follow (a restart replays both: CheckpointRestartIsCrash):
    # core_records(None) as it is; core_records(slot) truncated at `slot` first, leaving out the
    # log the KV state covers (TruncatedCheckpointRestartIsCrash), which truncates the core: only
    # in a copy of it that nothing uses after (the runner's child)
    core_records: Callable[[int | None], list]


class WriteSnapshot(NamedTuple):
    slot: int  # the KV state is the state after every slot below this one
    kv_state: bytes | None  # None: the snapshot written for `slot` (WriteState, then state_written)
    core_records: list | None  # the core's whole durable state, which starts the new log (None
    # with kv_state None: written with the state)


@dataclass
class NodeConfig:
    node_id: int
    peer_addresses: list[tuple[str, int]]  # index = node id
    data_dir: Path
    tick_ms: int = 10
    runtime_checks: bool = True
    request_timeout_s: float = 5.0
    retry_after_s: float = 1.0
    # A snapshot is taken once `snapshot_every_slots` slots were applied since the last one and
    # either the records logged since then are as many bytes as the last snapshot's state and at
    # least `snapshot_min_log_bytes`, or `snapshot_max_slots` slots were applied (None: as many as
    # the core's window allows; serve's --snapshot-count); at most so many that the core's window
    # keeps room for the slots applied while the state is written (see `_snapshot_due`).
    snapshot_every_slots: int = 1024
    snapshot_min_log_bytes: int = 4 * 1024 * 1024
    snapshot_max_slots: int | None = None
    max_batch_bytes: int = 4 * 1024 * 1024
    max_pending_requests: int = 20_000
    max_inbox_messages: int = 50_000
    max_catch_up_ticks: int = 10
    auto_compaction_mode: str = "revision"  # etcd's --auto-compaction-mode (see compaction.py)
    auto_compaction_retention: float = 10_000  # revisions, or seconds in periodic mode; 0: off
    min_lease_ttl_s: int = 1  # etcd's: 1.5 election timeouts, rounded up (a shorter TTL is raised to it)
    # a leader that has not heard from a quorum for this long tells clients there is no leader
    # (etcd's raft steps down then: CheckQuorum)
    check_quorum_s: float = 1.0
    # etcd's --quota-backend-bytes: a put, txn or lease grant that would take the store's size
    # (KVStore.db_size) to it or beyond is refused, and the NOSPACE alarm raised (0 or less: no quota)
    quota_backend_bytes: int = 2 * 1024 * 1024 * 1024  # etcd's default, 2 GiB
    # the largest snapshot this node assembles from a peer (in memory, one at a time)
    max_snapshot_bytes: int = MAX_BYTES
    # a snapshot transfer with no answer from its receiver for this long is given up
    snapshot_abandon_s: float = 30.0


# A node asked to campaign (MoveLeader) ticks its core until it starts an election: at most its
# election timeout, which the core staggers up to twice its election ticks.
MAX_CAMPAIGN_TICKS = 100_000


def term_of(promised) -> int:
    """etcd's raft_term for a node whose promise is the ballot (round, node): round + 1, and 0
    before it promised anything. Its own ballot, when it leads or campaigns, is its promise, so
    this covers every ballot it has seen. The first election's ballot can have round 0 (node 1's
    first is (0, 1)): etcd's term is at least 1 wherever there is a leader, and so is this."""
    return 0 if tuple(promised) == (0, 0) else promised[0] + 1


class NodeMachine:
    """One node's logic around its core (see the module's text).

    `core` is a verikv.verified_core.core.Core (or a test double with its methods), `clock()`
    the monotonic time in seconds, `rng` a random.Random; the session id of this node's client
    commands is drawn from it."""

    def __init__(self, config: NodeConfig, core, *, clock, rng):
        self.config = config
        self.node_id = config.node_id
        self.cluster_size = len(config.peer_addresses)
        self.core = core
        self.clock = clock
        self.kv = KVStore()
        self.checks = Checks(self.node_id, self.cluster_size, enabled=config.runtime_checks)
        self.proposals = Proposals(rng.getrandbits(63) | 1, request_timeout_s=config.request_timeout_s,
                                   retry_after_s=config.retry_after_s,
                                   max_pending=config.max_pending_requests,
                                   max_batch_bytes=config.max_batch_bytes)
        self.reads = Reads(self)
        self.check_quorum = CheckQuorum(self)
        self.compaction = AutoCompaction(config.auto_compaction_mode, config.auto_compaction_retention)
        self.lease_timers = LeaseTimers()
        # called with no argument after each batch of commits is applied, before its clients are
        # answered: watchers hear of a write no later than its writer, as etcd notifies them
        # in the apply, before the response (the runner hands the writes to the watch hub)
        self.applied_hook = None
        self._rng = rng
        self.status: dict = {}
        self.term = 0  # etcd's raft_term: term_of(the ballot this node promised)
        self.leader_changes = 0  # how often the leader this node knows changed (etcd's metric)
        self._last_leader: int | None = None
        self._status_stale = True  # the core took a step since self.status was read and checked
        self._out: list[tuple[int, int, bytes]] = []  # frames for the next Send
        self._inbox: collections.deque[bytes] = collections.deque(maxlen=config.max_inbox_messages)
        self._ticks_due = 0
        self._peer_digests: list[tuple[int, int, bytes]] = []  # checked at the next turn
        # Snapshot transfer (snapshot_transfer.py): a peer's KV snapshot waiting to be installed
        # (the newest one: the store, its verified bytes and the transfer to answer, if any), and
        # the transfers this node streams to peers and assembles from one
        self._snapshot_in: tuple | None = None
        self.snapshot_sender = SnapshotSender(self.node_id, stall_s=config.retry_after_s,
                                              abandon_s=config.snapshot_abandon_s, retry_s=config.retry_after_s)
        self.snapshot_receiver = SnapshotReceiver(self.node_id, max_bytes=config.max_snapshot_bytes,
                                                  stall_s=config.retry_after_s)
        self.snapshot_slot = 0
        self._restored_records: list[bytes] = []  # the core's records in the snapshot restored
        self.peer_snapshots_installed = 0
        self._last_scan = float("-inf")
        self._nospace_waiting: list = []  # refused writes, answered once this node's NOSPACE alarm is applied
        self._defragments: list = []  # the `done`s of Defragment requests for the next turn
        # this node's own snapshot: the slot of the state being written (None if none is), the
        # slot of one that became durable (the snapshot is due), the Defragments waiting for it
        self._snapshot_writing: int | None = None
        self._snapshot_durable: int | None = None
        # what decides when the next one is due (_snapshot_due): the bytes of the records logged
        # since the last one began, its state's bytes, and the slots applied while it was written
        self._logged_bytes = 0
        self._state_bytes = 0
        self._slots_while_writing = 0
        self._defragments_waiting: list = []
        self._campaign = False  # MoveLeader: this node is to start an election at the next turn
        self._transfers: list = []  # MoveLeader at this leader: (target, deadline, done)
        self._role_logged_at = float("-inf")
        self._promises_unlogged = 0
        self.turns = 0

    @property
    def client_id(self) -> int:
        return self.proposals.client_id

    # ---- events ----

    def command(self, kind: Kind, request, body: bytes, done, who=None) -> None:
        """A client's write (or a read to order through the log): `request` parsed from `body`,
        the bytes the client sent, which go into the log as they are; `who`: the AuthInfo of the
        client's token (shim/kv/auth.py), checked when the command is applied, or None."""
        try:
            validate(kind, request, len(body))
        except errors.EtcdError as err:
            done(err)
            return
        if (kind == Kind.PUT or kind == Kind.TXN) and self.over_quota(kind, request, done):
            return
        self.order(kind, body, done, who)

    def over_quota(self, kind: Kind, request, done) -> bool:
        """etcd's quota check before proposing: a request that writes (etcd's cost) and would
        take the store to the quota or beyond is refused, and this node raises the NOSPACE alarm
        through the log (every node then refuses such writes as it applies them, until an
        operator disarms it). As etcd, the refusal is answered once the alarm is applied."""
        quota = self.config.quota_backend_bytes
        if quota <= 0:
            return False
        charge = cost(kind, request)
        if not charge or self.kv.db_size + charge < quota:
            return False
        member = self.node_id + 1
        if (member, rpc_pb2.NOSPACE) in self.kv.alarms:
            done(errors.NO_SPACE)
            return True
        self._nospace_waiting.append(done)
        if len(self._nospace_waiting) == 1:
            log.warning("store of %d bytes: over the quota of %d bytes with this request; raising NOSPACE",
                        self.kv.db_size, quota)
            alarm = rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.ACTIVATE, memberID=member,
                                         alarm=rpc_pb2.NOSPACE)
            self.order(Kind.ALARM, alarm.SerializeToString(), self._nospace_raised)
        return True

    def _nospace_raised(self, answer) -> None:
        if isinstance(answer, errors.EtcdError):
            log.info("raising the NOSPACE alarm: %s", answer.message)
        waiting, self._nospace_waiting = self._nospace_waiting, []
        for done in waiting:
            done(errors.NO_SPACE)

    def defragment(self, done) -> None:
        """etcd's Defragment, for this node only, as verikv's store can be: at the next turn the
        node takes a snapshot of its state (unless it took one at the slot it has applied) and
        truncates its WAL, so the disk holds the state once rather than the commands that made it."""
        self._defragments.append(done)

    def move_leader(self, target: int, done) -> None:
        """etcd's MoveLeader at this node: `target` is a member ID (node id + 1). The leader asks
        the target to campaign; it answers once the target leads (as this node sees it), or with
        etcd's time-out after request_timeout_s."""
        status = self.current_status()
        if status.get("role") != "leader":
            done(errors.NOT_LEADER)
            return
        node = target - 1
        if not 0 <= node < self.cluster_size:
            done(errors.BAD_LEADER_TRANSFEREE)
            return
        if node == self.node_id:
            done(self._with_header(rpc_pb2.MoveLeaderResponse()))
            return
        log.info("leadership transfer to node %d starting", node)
        self.send(node, KIND_CAMPAIGN, CAMPAIGN.pack(self.node_id))
        self._transfers.append((node, self.clock() + self.config.request_timeout_s, done))

    def _with_header(self, resp):
        resp.header.revision = self.kv.revision
        return resp

    def lease_grant(self, request: rpc_pb2.LeaseGrantRequest, done, who=None) -> None:
        """A client's LeaseGrant: the ID (if the client left it to the server) and the minimum
        TTL are settled here, as etcd's server does before proposing, so every node applies the
        same grant."""
        if self.over_quota(Kind.LEASE_GRANT, request, done):
            return
        if request.ID == 0:
            request.ID = self._rng.getrandbits(63) or 1  # etcd's IDs are positive too
        request.TTL = max(request.TTL, self.config.min_lease_ttl_s)
        self.order(Kind.LEASE_GRANT, request.SerializeToString(), done, who)

    def order(self, kind: Kind, body: bytes, done, who=None) -> None:
        """A valid command for the log (proposed or forwarded at the next turn), in an AsUser
        naming `who` if it is not None."""
        if who is not None:
            body = AsUser(who.user, who.revision, kind, body).SerializeToString()
            kind = Kind.AS_USER
        self.proposals.add(kind, body, done, self.clock())

    def read(self, request, serializable: bool, done) -> None:
        """A Range: `request` is a RangeRequest or a key (bytes) for RangeRequest(key=...) and
        nothing else. Serializable: answered now; linearizable: answered by a later turn."""
        try:
            if type(request) is bytes:
                if not request:
                    raise errors.EMPTY_KEY.fresh()
                check_size(len(request))
            else:
                validate(Kind.RANGE, request)
        except errors.EtcdError as err:
            done(err)
            return
        if serializable:
            done(self.kv.read(request))
        else:
            self.reads.arrived.append((request, done))  # routed at the next turn, together

    def frame(self, kind: int, payload: bytes, sender: int) -> None:
        """A frame from peer `sender` (the member its connection authenticated; see peer_wire.py);
        malformed ones, and ones whose payload names another sender, are dropped."""
        claimed = claimed_sender(kind, payload)
        if not self.checks.frame_sender_ok(sender, claimed):
            log.warning("dropped a peer frame (kind %d) claiming to come from node %d on node %d's connection",
                        kind, claimed, sender)
            return
        if kind == KIND_CORE:
            self._inbox.append(payload)
        elif kind == KIND_FORWARD:
            self.proposals.add_forwarded(payload)
        elif kind == KIND_DIGEST and len(payload) == DIGEST.size:
            last, sender, digest = DIGEST.unpack(payload)
            if sender < self.cluster_size and len(self._peer_digests) < 1024:
                self._peer_digests.append((sender, last, digest))
        elif kind == KIND_SNAPSHOT_CHUNK and len(payload) >= SNAPSHOT_CHUNK.size:
            complete = self.snapshot_receiver.on_chunk(sender, payload, self.kv.next_slot, self.clock(), self.send)
            if complete is not None:
                self._snapshot_arrived(complete)
        elif kind == KIND_SNAPSHOT_ACK and len(payload) == SNAPSHOT_ACK.size:
            self.snapshot_sender.on_ack(sender, payload, self.clock())
        elif kind == KIND_SNAPSHOT:  # from a node that sends its snapshot in one frame
            try:
                store = KVStore.restore(payload)
            except Exception as err:  # noqa: BLE001 - a malformed snapshot is dropped, loudly
                log.warning("dropped a malformed snapshot from a peer (%d bytes): %s", len(payload), err)
            else:
                if self._snapshot_in is None or store.next_slot > self._snapshot_in[0].next_slot:
                    self._snapshot_in = (store, None, None)
        elif kind == KIND_READ_INDEX and len(payload) == READ_ASK.size:
            self.reads.on_ask(payload, self.cluster_size, self.config.max_pending_requests)
        elif kind == KIND_READ_INDEX_REPLY and len(payload) == READ_REPLY.size:
            self.reads.on_reply(payload)
        elif kind == KIND_CAMPAIGN and len(payload) == CAMPAIGN.size:
            (sender,) = CAMPAIGN.unpack(payload)
            if sender < self.cluster_size and sender == self.status.get("leader"):
                self._campaign = True  # only the leader this node follows hands over
        else:  # a kind whose payload has a fixed size (or a header), with another size
            log.warning("dropped a malformed peer frame (kind %d, %d bytes: not its size) from node %d",
                        kind, len(payload), sender)

    def tick(self, ticks: int = 1) -> None:
        self._ticks_due += ticks

    def fail_pending(self, err: errors.EtcdError) -> None:
        """Answer every command still waiting with `err` (the node stops): proposals (a NOSPACE
        alarm on its way answers the writes it refused), leader transfers, defragmentations."""
        self.proposals.fail_all(err)
        transfers, self._transfers = self._transfers, []
        defragments, self._defragments = self._defragments, []
        for done in [done for _, _, done in transfers] + defragments:
            done(err)

    @property
    def wants_turn(self) -> bool:
        """A turn now would propose something (e.g. commands queued again for a retry), or finish
        a snapshot that became durable."""
        return bool(self.proposals.local) or self._snapshot_durable is not None

    # ---- for the parts of the machine ----

    def send(self, dst: int, kind: int, payload: bytes) -> None:
        self._out.append((dst, kind, payload))

    def step(self, step, *args):
        """Call one of the core's steps; its status is read (and checked) again when next needed."""
        self._status_stale = True
        return step(*args)

    def current_status(self) -> dict:
        """The core's status, read again and checked if the core took a step since the last
        read (a status is a function of the core's state, which only its steps change)."""
        if self._status_stale:
            status = self.core.status()
            self.checks.on_status(status)
            old = self.status
            if status["role"] != old.get("role") or status["promised"] != old.get("promised"):
                self._log_role(status, status["role"] != old.get("role"))
            if status["leader"] is not None and status["leader"] != self._last_leader:
                self._last_leader = status["leader"]
                self.leader_changes += 1
            self.status = status
            self.term = term_of(status["promised"])
            self._status_stale = False
        return self.status

    # ---- start ----

    def restore(self, snapshot) -> None:
        """Start from a snapshot (slot, kv_state, core_records): the KV state after every slot
        below `slot`; `recover` then replays the core's records after it."""
        self.kv = KVStore.restore(snapshot.kv_state)
        self.lease_timers.reset(self.kv.leases, self.clock())
        self.snapshot_slot = snapshot.slot
        self._state_bytes = len(snapshot.kv_state)
        self._restored_records = list(snapshot.core_records)

    def recover(self, records: list[bytes]):
        """The actions of starting from the WAL's `records` (after the snapshot, if `restore`d)."""
        records = self._restored_records + records
        self._restored_records = []
        log.info("recovering: snapshot at slot %s, %d WAL records",
                 self.snapshot_slot if self.snapshot_slot else None, len(records))
        ready = self.step(self.core.recover, records)
        self.current_status()
        yield from self._honour([ready])
        yield from self._flush()

    # ---- the turn ----

    def turn(self):
        """One turn: the actions to carry out, in order (see the module's text)."""
        self.turns += 1
        if self._peer_digests:
            claims, self._peer_digests = self._peer_digests, []
            for sender, last, digest in claims:
                self.checks.on_peer_digest(sender, last, digest)
        core = self.core
        readies = []
        if self._snapshot_in is not None:
            yield from self._install_peer_snapshot(readies)
        ticks = min(self._ticks_due, self.config.max_catch_up_ticks)
        self._ticks_due = 0
        if ticks:
            self._status_stale = True
            for _ in range(ticks):
                readies.append(core.tick())
        if self._campaign:
            self._campaign = False
            self._start_campaign(readies)
        inbox = self._inbox
        if inbox:
            self._status_stale = True
            while inbox:
                msg = inbox.popleft()
                try:
                    readies.append(core.receive(msg))
                except ValueError as err:
                    log.warning("dropped a malformed peer message (%d bytes): %s", len(msg), err)
        self.current_status()
        self._propose(readies)
        reads = self.reads
        if reads.arrived:
            reads.route()
        if reads.asks:
            reads.answer_asks()
        reads.confirm(readies)
        self.check_quorum.probe(readies)
        yield from self._honour(readies)
        reads.serve()
        now = self.clock()
        if now - self._last_scan >= 0.05:
            self._last_scan = now
            self.proposals.scan(now)
            reads.retry(now - self.config.retry_after_s)
            self._auto_compact(now)
            self._lease_duties(now)
        if self._transfers:
            self._check_transfers(now)
        if self._snapshot_durable is not None:
            yield from self._snapshot_done()
        if self._snapshot_writing is None and self._snapshot_due():
            yield from self._snapshot()
        if self._defragments and self._snapshot_writing is None:
            done_list, self._defragments = self._defragments, []
            if self.kv.next_slot > self.snapshot_slot:
                self._defragments_waiting += done_list  # answered once the snapshot is durable
                yield from self._snapshot()
            else:
                for done in done_list:
                    done(self._with_header(rpc_pb2.DefragmentResponse()))
        if self.snapshot_sender.transfers:
            self.snapshot_sender.pump(now, self.send)
        yield from self._flush()

    def _start_campaign(self, readies: list) -> None:
        """MoveLeader's target: the core's clock runs ahead (ticks, with no message in between)
        until its election timeout passes and it starts an election, as it would had the leader
        gone quiet. Time is the core's input: an early election is one the core decides itself."""
        if self.current_status().get("role") == "leader":
            return
        for _ in range(MAX_CAMPAIGN_TICKS):
            readies.append(self.step(self.core.tick))
            if self.current_status().get("role") != "follower":
                break
        log.info("campaigning at the leader's request: %s at ballot %s", self.status.get("role"),
                 tuple(self.status.get("ballot", ())))

    def _check_transfers(self, now: float) -> None:
        leader = self.current_status().get("leader")
        pending = []
        for target, deadline, done in self._transfers:
            if leader == target:
                log.info("leadership transfer to node %d finished", target)
                done(self._with_header(rpc_pb2.MoveLeaderResponse()))
            elif now >= deadline:
                done(errors.LEADER_TRANSFER_TIMEOUT)
            else:
                pending.append((target, deadline, done))
        self._transfers = pending

    def _flush(self, now: bool = False):
        if self._out:
            frames, self._out = self._out, []
            yield Send(frames, now)

    def _honour(self, readies: list):
        """Each Ready in turn order: early messages at once; records in order; a `sync` Ready's
        records durable (one group commit for the turn) before its messages and commits and
        before anything of the Readies after it. Messages leave before commits are applied (as
        etcd's leader sends the commit index before it applies): a follower learns of a commit
        without waiting for the leader's watchers and writers."""
        records = [r for rd in readies for r in rd.records]
        if records:
            self._logged_bytes += sum(map(len, records))
        barrier = next((i for i, rd in enumerate(readies) if rd.sync), len(readies))
        needs = []  # per Ready: the WAL records durable before its (early, late) messages leave
        for rd in readies:
            needs.append(self.checks.on_ready(rd))
            if rd.need_snapshot:
                self._send_snapshot(rd.need_snapshot)
        # nothing of the Readies before the barrier waits for a sync
        yield from self._send_then_apply(readies[:barrier], needs)
        if barrier == len(readies):
            if records:
                yield Append(records, False)
        else:
            # independent of the barrier's own records: they leave while this node syncs
            self._messages(readies[barrier].early, needs[barrier][0])
            yield from self._flush()
            yield Append(records, True)
            yield from self._send_then_apply(readies[barrier:], needs[barrier:], skip_early=1)
        self.checks.on_log_start(self.current_status()["log_start"], self.kv.next_slot)

    def _send_then_apply(self, readies: list, needs: list, skip_early: int = 0):
        """The Readies' messages (but the first `skip_early` Readies' early ones, already sent),
        on their way before their commits are applied."""
        for i, rd in enumerate(readies):
            early, late = needs[i]
            if i >= skip_early:
                self._messages(rd.early, early)
            self._messages(rd.messages, late)
        if any(rd.commits for rd in readies):
            yield from self._flush(now=True)
            for rd in readies:
                self._apply(rd.commits)

    def _messages(self, messages: list, durable_needed: int) -> None:
        if messages:
            self.checks.on_messages(messages, durable_needed)
            out = self._out
            for dst, msg in messages:
                out.append((dst, KIND_CORE, msg))

    def _apply(self, commits: list) -> None:
        if not commits:
            return
        kv = self.kv
        self.checks.on_commits(commits, kv.next_slot)
        outcomes = [kv.apply(slot, value, reads_for=self.client_id)
                    for slot, value in commits
                    if slot >= kv.next_slot]  # else already in the KV state (e.g. redelivered after recovery)
        if self.applied_hook is not None:
            self.applied_hook()
        answer = self.proposals.answer
        for outcome in outcomes:
            answer(outcome)
        changes = kv.leases.take_changes()
        if changes:
            self.lease_timers.applied(changes, self.clock())
        if self.checks.announcements:
            for last, digest in self.checks.announcements:
                payload = DIGEST.pack(last, self.node_id, digest)
                for peer in range(self.cluster_size):
                    if peer != self.node_id:
                        self.send(peer, KIND_DIGEST, payload)
            self.checks.announcements = []

    def _propose(self, readies: list) -> None:
        p = self.proposals
        if not p.local and not p.forwarded:
            return
        role, leader = self.status.get("role"), self.status.get("leader")
        if role == "leader":
            commands = p.local + p.forwarded
            p.local, p.forwarded = [], []
            for batch in p.batches(commands):
                rd = self.step(self.core.propose, encode_batch(batch))
                readies.append(rd)
                self.checks.on_propose(rd.accepted, self.current_status())
                if not rd.accepted:  # not leading any more, or the window is full: retry later
                    break
            return
        p.forwarded = []  # the originators retry them
        if leader is not None and leader != self.node_id and p.local:
            for batch in p.batches(p.local):
                self.send(leader, KIND_FORWARD, encode_batch(batch))
        p.local = []  # with no leader known, the retry scan queues them again later

    def _auto_compact(self, now: float) -> None:
        kv = self.kv
        target = self.compaction.due(now, kv.revision, kv.compact_revision,
                                     self.status.get("role") == "leader")
        if target:
            body = rpc_pb2.CompactionRequest(revision=target).SerializeToString()
            self.order(Kind.COMPACT, body, functools.partial(self._compacted, target))

    def leader_has_quorum(self) -> bool:
        """This node leads and a quorum heard from it within check_quorum_s (check_quorum.py)."""
        return self.check_quorum.has_quorum()

    def _lease_duties(self, now: float) -> None:
        """A leader's expiries and checkpoints (see lease_timers.py)."""
        timers, leases = self.lease_timers, self.kv.leases
        timers.lead(self.status.get("role") == "leader", leases, now,
                    caught_up=self.kv.next_slot >= self.status.get("commit_upto", 0))
        expiries = timers.expiries(leases, now)
        if expiries:
            self.order(Kind.LEASE_EXPIRE, LeaseExpiry(expiries).SerializeToString(),
                       functools.partial(self._leases_expired, expiries))
        checkpoints = timers.checkpoints(leases, now)
        if checkpoints:
            self.order(Kind.LEASE_CHECKPOINT, LeaseCheckpoints(checkpoints).SerializeToString(),
                       functools.partial(self._lease_answer, "checkpoint of %d leases" % len(checkpoints)))

    def _leases_expired(self, expiries: list, answer) -> None:
        if isinstance(answer, errors.EtcdError):  # not ordered (e.g. timed out): proposed again
            log.info("expiry of leases %s: %s", [i for i, _ in expiries], answer.message)
            self.lease_timers.retry(expiries)

    @staticmethod
    def _lease_answer(what: str, answer) -> None:
        if isinstance(answer, errors.EtcdError):
            log.info("%s: %s", what, answer.message)

    def _compacted(self, target: int, answer) -> None:
        if isinstance(answer, errors.EtcdError):
            log.info("automatic compaction to revision %d: %s", target, answer.message)
        else:
            log.info("compacted to revision %d (%s mode, retention %g); %d versions kept",
                     target, self.compaction.mode, self.compaction.retention, self.kv.history_size())

    # ---- snapshots ----

    def _send_snapshot(self, peers: list[int]) -> None:
        """Peers asked for slots this node truncated: stream them its KV snapshot (a transfer per
        peer at a time, started again at most every retry_after_s; see snapshot_transfer.py)."""
        self.snapshot_sender.start(peers, self.clock(), self.kv, self._rng)

    def _snapshot_arrived(self, complete) -> None:
        """A peer's snapshot arrived whole and its sha256 matched: parse it; install it at the
        next turn (the newest, if several arrive)."""
        receiver = self.snapshot_receiver
        try:
            store = KVStore.restore(complete.data)
            if store.next_slot != complete.slot:
                raise ValueError(f"it holds the slots below {store.next_slot}, its transfer says {complete.slot}")
        except Exception as err:  # noqa: BLE001 - a snapshot that does not parse is refused, loudly
            receiver.refuse(self.send, complete, f"it does not parse: {err}")
            return
        answer = (complete.sender, complete.tid, len(complete.data))
        if self._snapshot_in is not None and self._snapshot_in[0].next_slot >= store.next_slot:
            receiver.finished(self.send, *answer)  # an as recent one waits already
            return
        if self._snapshot_in is not None and self._snapshot_in[2] is not None:
            receiver.finished(self.send, *self._snapshot_in[2])
        self._snapshot_in = (store, complete.data, answer)

    def _install_peer_snapshot(self, readies: list):
        """This node lags behind a peer's truncation point: install the peer's snapshot."""
        (store, data, answer), self._snapshot_in = self._snapshot_in, None
        # the answers to its last chunks leave now, not after the write below (which can take
        # seconds for a large state): its sender would take the wait for lost chunks
        yield from self._flush()
        if answer is not None:  # its sender hears once it is durable here, or not needed
            self.snapshot_receiver.finished(self.send, *answer)
        slot = store.next_slot
        if slot <= self.kv.next_slot:
            return  # caught up meanwhile
        rd = self.step(self.core.install_snapshot, slot)
        if self.current_status()["log_start"] != slot:
            return  # the core refused (it is not behind): keep the own state
        self.kv = store
        self.lease_timers.reset(store.leases, self.clock())
        # the verified bytes are the state (restore(data) is `store`; snapshot() would give them again)
        if data is None:
            data = store.snapshot()
        yield WriteSnapshot(slot, data, self.core.checkpoint_records())
        self.snapshot_slot = slot
        self._state_bytes, self._logged_bytes = len(data), 0
        self.peer_snapshots_installed += 1
        readies.append(rd)  # commits of slots above the snapshot that this node already had
        log.info("installed a peer's snapshot at slot %d (revision %d)", slot, store.revision)

    def _snapshot_due(self) -> bool:
        """Whether to start a snapshot. Each one writes the whole state (seconds for a large one)
        in a burst that slows this node's WAL syncs while it lasts; so a snapshot is taken once
        the records logged since the last one are about as many bytes as its state (so the state's
        bytes cost no more than the records they save replaying), or after `snapshot_max_slots` slots,
        and never before `snapshot_every_slots`; never so late that the core's window (WINDOW
        slots from the last snapshot) would fill while the state is written, judging by how many
        slots came while the last one was written. Both bounds shrink with the node's id (node i
        of n: by i/2n), so that the nodes, which apply the same slots, do not all write their
        state at once: a write waits for the leader and one follower, and while one node writes,
        the others' syncs are the quick ones.
        A small state is not written before `snapshot_min_log_bytes` of records: every snapshot
        also forks the node (its loop stops 10-20 ms here, and every request in flight waits), so
        one client's small puts beside a small state, which made a snapshot every 1,024 slots (a
        second), now make one every ~10,000."""
        config = self.config
        since = self.kv.next_slot - self.snapshot_slot
        least = config.snapshot_every_slots
        if config.snapshot_max_slots is not None:
            least = min(least, config.snapshot_max_slots)
        if since < least:
            return False
        share = 2 * self.cluster_size - self.node_id  # (of 2n)
        worth = max(self._state_bytes, config.snapshot_min_log_bytes)
        if 2 * self.cluster_size * self._logged_bytes >= share * worth:
            return True
        most = WINDOW - config.snapshot_every_slots - 2 * self._slots_while_writing
        if config.snapshot_max_slots is not None:
            most = min(most, config.snapshot_max_slots)
        return 2 * self.cluster_size * since >= share * most

    def _snapshot(self):
        """Start a snapshot: the KV state after every slot applied, and the core's state of the
        same moment (when a child writes it, truncated at the snapshot's slot: only the log from
        that slot on), are written apart while the node goes on (by a child process of the
        runner, with a copy of both: a large state takes seconds), and the records after them go
        to a new WAL segment; once the file is durable
        (`state_written`), `_snapshot_done` makes it the snapshot and truncates the core's log at
        `slot`. Replayed from it, the core's state, then the records after it; the slots from
        the snapshot's on come from the core's log (`_apply` skips those the KV state has). (The
        core's state used to be taken once the KV state was durable, and written in the loop: with
        16 KiB values, hundreds of MB of log since `slot`, 0.4-2.9 s.)"""
        slot = self.kv.next_slot
        yield from self._flush()
        self._snapshot_writing = slot
        self._logged_bytes = 0
        yield WriteState(slot, self.kv.snapshot_parts, self._checkpoint_records)

    def _checkpoint_records(self, truncate_at: int | None) -> list:
        """The core's records (WriteState.core_records): with `truncate_at`, of the core truncated
        there, which changes the core: only in a copy of this process that goes on no further.
        After a burst, the core's log since the last snapshot held every value of it: each node's
        writer wrote 217-232 MB in about 1.5 s for a KV state of 173 KB, and the live node's syncs
        waited behind it."""
        core = self.core
        if truncate_at is not None:
            core.truncate(truncate_at)  # (its Ready is dropped: the checkpoint's first record is the log's start)
        return core.checkpoint_records()

    def state_written(self, slot: int, kv_state_bytes: int) -> None:
        """The caller made the state of this node's snapshot at `slot` durable (see WriteState);
        it is `kv_state_bytes` long."""
        if slot != self._snapshot_writing:
            raise RuntimeError(f"state_written({slot}) while the state being written is at "
                               f"slot {self._snapshot_writing}")
        self._snapshot_durable = slot
        self._state_bytes = kv_state_bytes
        self._slots_while_writing = self.kv.next_slot - slot

    def _snapshot_done(self):
        slot, self._snapshot_durable, self._snapshot_writing = self._snapshot_durable, None, None
        if slot > self.snapshot_slot:  # (not if a peer's later snapshot was installed meanwhile)
            rd = self.step(self.core.truncate, slot)
            yield from self._flush()
            # The snapshot is durable before any record says the log starts at `slot`: a crash or
            # a failed write in between recovers from the previous snapshot and the whole log.
            yield WriteSnapshot(slot, None, None)
            yield from self._honour([rd])
            self.snapshot_slot = slot
            log.info("snapshot at slot %d", slot)
        done_list, self._defragments_waiting = self._defragments_waiting, []
        for done in done_list:
            done(self._with_header(rpc_pb2.DefragmentResponse()))

    def _log_role(self, s: dict, role_changed: bool) -> None:
        """A line per change of role; a new promise in the same role (elections that keep failing,
        in a partition) at most once a second, with how many were not logged."""
        now = self.clock()
        if not role_changed and now - self._role_logged_at < 1.0:
            self._promises_unlogged += 1
            return
        more = f" ({self._promises_unlogged} more promises since the last line)" if self._promises_unlogged else ""
        self._role_logged_at, self._promises_unlogged = now, 0
        log.info("%s at ballot %s, promised %s, leader %s; log [%d, %d), committed below %d%s",
                 s["role"], tuple(s["ballot"]), tuple(s["promised"]), s["leader"],
                 s["log_start"], s["next_slot"], s["commit_upto"], more)

