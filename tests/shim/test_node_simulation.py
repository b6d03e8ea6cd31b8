"""Deterministic simulation of a 3-node cluster running the node's real logic (NodeMachine,
with its WAL over a FaultyDisk, the KV state machine and the compiled verified core), driven by
a hypothesis rule-based state machine over a simulated network, disk and clock. No event loop, no
thread, no sleep: the simulation carries out the machine's actions itself.

- Network: `SimNetwork` holds every frame a machine sends until a rule delivers, drops or
  duplicates it; rules pick any frame (reordering) and can isolate a node (frames across the cut
  are dropped at send and at delivery). Delivery is `machine.frame(kind, payload, src)`.
- Disk: each node has one `FaultyDisk` (real files in a temporary directory), which holds every
  written byte until a sync, under the real WAL. Records the machine does not need durable are
  written lazily, so commit records may still be unsynced when a node crashes. A crash keeps a
  drawn prefix of the unsynced bytes (a torn write), loses the rest, discards the machine and
  starts a new one over the same disk.
- Clock and randomness: each machine reads a per-node simulated clock, advanced only by tick
  rules, and draws its session id from a random.Random seeded from the run's seed; so a seed
  replays the same run (test_the_same_seed_replays_the_same_run).

Invariants (after every rule, and across restarts): every slot applied anywhere has one batch,
one revision after it and one KV state after it (per-slot digests, recorded by observing the KV
store's apply: no product logic is copied); a node recovered from its WAL or a snapshot holds
exactly the state recorded for that slot; within a batch the revision grows by exactly one per
mutating command; every acknowledged request was applied with the revision its response names;
a linearizable read sees at least the revision of every write acknowledged before it was issued;
no frame leaves before the records the machine asked to be durable are synced. In teardown,
after a run without failure: heal everything, run without faults until every node has applied
the same slots and every client request is answered, then the nodes hold identical KV stores
(snapshot bytes) and every acknowledged put is reflected in them. A node that cannot catch up
because the others truncated past it fails with ReplicaStuckBehindTruncation. Two runs:
snapshots at the default interval (never reached: pure log replication and WAL recovery), and
every 4 slots (snapshot recovery, snapshot transfer to lagging nodes; a third run streams them in
chunks of 64 bytes).
"""

from __future__ import annotations

import functools
import hashlib
import random
import shutil
import tempfile
from pathlib import Path

import pytest
from answers import decoded
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)

from verikv.etcdpb import rpc_pb2 as r
from verikv.shim.io.disk import FaultyDisk
from verikv.shim.io.wal import Wal
from verikv.shim.kv.commands import Kind
from verikv.shim.kv.errors import EtcdError
from verikv.shim.node import snapshot_transfer
from verikv.shim.node.machine import Append, NodeConfig, NodeMachine, Send, WriteSnapshot, WriteState
from verikv.verified_core.core import Core

N = 3
TICK_MS = 10
SEGMENT_BYTES = 256 * 1024
KEYS = [b"a", b"b", b"c"]
MAX_IN_FLIGHT = 300  # like the real transport's bounded queues: the oldest frame goes
SETTLE_ROUNDS = 600
ROUNDS = st.integers(0, 3)  # fault-free rounds a client rule runs after submitting (progress)


def _h(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


# ---- simulated network ----

class SimNetwork:
    def __init__(self):
        self.in_flight: list[tuple[int, int, int, bytes]] = []  # (src, dst, kind, payload)
        self.machines: dict[int, NodeMachine] = {}  # the current incarnation of each node
        self.isolated: set[int] = set()
        self.sent = self.delivered = self.dropped = 0
        self.trace = hashlib.blake2b(digest_size=16)  # every frame sent, in order

    def cut(self, src: int, dst: int) -> bool:
        return src in self.isolated or dst in self.isolated

    def send(self, src, dst, kind, payload) -> None:
        if not (0 <= dst < N) or dst == src:
            raise AssertionError(f"node {src} sent a frame to {dst}, which is not a peer")
        self.sent += 1
        self.trace.update(b"%d %d %d %d " % (src, dst, kind, len(payload)) + payload)
        if self.cut(src, dst):
            self.dropped += 1
            return
        self.in_flight.append((src, dst, kind, bytes(payload)))
        if len(self.in_flight) > MAX_IN_FLIGHT:
            self.in_flight.pop(0)
            self.dropped += 1

    def deliver(self, frame) -> int | None:
        """Hand one frame to the destination's current incarnation; returns its destination,
        None if the frame was lost."""
        src, dst, kind, payload = frame
        if self.cut(src, dst) or dst not in self.machines:
            self.dropped += 1
            return None
        self.delivered += 1
        self.machines[dst].frame(kind, payload, src)
        return dst


# ---- one node: its machine, with simulated I/O ----

# the core's state in the snapshots written: (node, slot) -> whether truncated at the slot; and
# how many restarts, in every run, began from a truncated one
TRUNCATED_CHECKPOINTS: dict[tuple[int, int], bool] = {}
RESTARTS_FROM_TRUNCATED: list[int] = []

class PowerLoss(Exception):
    """Raised by a SimNode part-way through its actions: the node loses power there."""


class SimNode:
    """A NodeMachine whose actions go to the SimNetwork and to a real WAL over a FaultyDisk.
    The KV store's apply is observed (wrapped on the store the machine holds) so the simulation
    sees every applied slot; nothing of the machine is replaced."""

    def __init__(self, sim: "NodeSimulation", i: int, machine: NodeMachine, wal: Wal):
        self.sim, self.i, self.machine, self.wal = sim, i, machine, wal
        self.observed = None
        # a snapshot begun, not written yet: (StateFile, the KV state's bytes, the core's records)
        self.state_writing = None

    def finish_state(self) -> None:
        if self.state_writing is not None:
            (state, kv_state, core_records), self.state_writing = self.state_writing, None
            self.wal.write_state(state, kv_state, core_records)
            self.wal.state_written(state)
            self.machine.state_written(state.slot, state.kv_state_bytes)

    def core_records(self, action: WriteState) -> list:
        """The core's records as the runner writes them: as they are (in its loop), or as its
        child does, truncated at the snapshot's slot in a copy of the core. The copy here is a
        fresh core that replays the live one's records (the same durable state, and so the same
        records), given to the machine's own `core_records` in place of the live core."""
        if self.sim.rng.random() < 0.5:
            TRUNCATED_CHECKPOINTS[self.i, action.slot] = False
            return action.core_records(None)
        copy = Core(self.i, N, election_ticks=6, heartbeat_ticks=2)
        copy.recover(action.core_records(None))
        live, self.machine.core = self.machine.core, copy
        try:
            records = action.core_records(action.slot)
        finally:
            self.machine.core = live
        assert copy.status()["log_start"] == action.slot, (copy.status(), action.slot)
        TRUNCATED_CHECKPOINTS[self.i, action.slot] = True
        return records

    def carry_out(self, actions) -> None:
        if self.state_writing is not None and self.sim.rng.random() < 0.3:
            self.finish_state()
        for action in actions:
            self.observe()
            if type(action) is Send:
                self.machine.checks.before_send(self.wal.synced_records)
                for dst, kind, payload in action.frames:
                    self.sim.net.send(self.i, dst, kind, payload)
            elif type(action) is Append:
                self.wal.append_lazy(action.records)
                if action.durable:
                    self.wal.drain()
            elif type(action) is WriteState:
                self.finish_state()  # one at a time
                state = self.wal.begin_state(action.slot)
                self.wal.start_segment(state)
                self.state_writing = (state, list(action.kv_state()), self.core_records(action))
                if self.sim.rng.random() < 0.5:
                    self.finish_state()
                # else written as the runner's child writes it: both states as of now, made
                # durable and reported after later turns (or never: a crash before then)
            elif type(action) is WriteSnapshot:
                self.finish_state()  # the runner waits for it too
                self.wal.drain()
                if action.kv_state is None and self.sim.rng.random() < 0.2:
                    raise PowerLoss  # while its snapshot is made (its file not renamed yet)
                if action.kv_state is not None:  # a peer's: the core's state as it is
                    TRUNCATED_CHECKPOINTS[self.i, action.slot] = False
                self.wal.install_snapshot(action.slot, action.kv_state, action.core_records)
            else:
                raise AssertionError(f"unknown action {action!r}")
        self.observe()

    def observe(self) -> None:
        store = self.machine.kv
        if store is self.observed:
            return
        sim, i, apply = self.sim, self.i, store.apply

        def observed_apply(slot, batch, reads_for=None):
            before = store.revision
            outcomes = apply(slot, batch, reads_for)
            sim.on_apply(i, store, slot, batch, before, outcomes)
            return outcomes

        store.apply = observed_apply
        self.observed = store


def guarded(fn):
    """Marks the machine as mid-step while fn runs, so teardown skips settling after a failure."""
    @functools.wraps(fn)
    def step(self, *args, **kwargs):
        self.in_step = True
        fn(self, *args, **kwargs)
        self.in_step = False
    return step


class Op:
    def __init__(self, op_id, kind, node_id, incarnation, client_id, seq, request, acked_rev_before):
        self.op_id = op_id
        self.kind = kind
        self.node_id = node_id
        self.incarnation = incarnation
        self.client_id = client_id
        self.seq = seq
        self.request = request
        self.acked_rev_before = acked_rev_before  # for reads: max revision acknowledged before issue
        self.outcome = None  # None (pending), "ok", "error", "unknown"
        self.result = None

    def __repr__(self):
        return (f"op#{self.op_id}({self.kind.name} at node {self.node_id}/inc {self.incarnation}, "
                f"client {self.client_id:#x} seq {self.seq}, {self.outcome})")


class ReplicaStuckBehindTruncation(AssertionError):
    """Liveness: a replica needs slots every peer has truncated (covered by their snapshots)."""


class NodeSimulation(RuleBasedStateMachine):
    snapshot_every_slots = 1024  # the default: no run here gets that far, so no truncation
    auto_compaction_retention = 0  # no automatic compaction

    def __init__(self):
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="verikv-sim-"))
        TRUNCATED_CHECKPOINTS.clear()  # (of the run before)
        self.net = SimNetwork()
        self.disks = [FaultyDisk() for _ in range(N)]
        self.clocks = [1000.0 + i for i in range(N)]
        self.nodes: list[SimNode | None] = [None] * N
        self.incarnation = [0] * N
        self.seed = 0
        self.rng = random.Random(0)
        # what was applied: per node id (across restarts) and for the cluster, slot -> record
        self.applied: list[dict[int, tuple[str, int, str]]] = [{} for _ in range(N)]
        self.chosen: dict[int, tuple[str, int, str, int]] = {}  # slot -> (batch, rev, state, by node)
        self.results: dict[tuple[int, int], tuple[int, int, int]] = {}  # (client, seq) -> (rev, slot, node)
        self.ops: list[Op] = []
        self.max_acked_rev = 1
        self.values = 0
        self.in_step = False
        self.stats = {"acked": 0, "crashes": 0, "torn": 0, "snapshots": 0, "crashes in a snapshot": 0}
        self.lease_ids: list[int] = [424242]  # granted (and one that never is)

    # ---- plumbing ----

    def where(self, i: int | None = None) -> str:
        s = f"seed={self.seed:#x}"
        if i is not None:
            s += f" node={i} incarnation={self.incarnation[i]}"
        return s

    def run(self, i: int, actions) -> None:
        """Carry out the actions of node i (a turn or its recovery) to the end."""
        try:
            self.nodes[i].carry_out(actions)
        except PowerLoss:
            self.stats["crashes in a snapshot"] += 1
            self.power_loss(i, keep=0)
        except Exception as err:
            raise AssertionError(f"node {i} failed: {type(err).__name__}: {err} ({self.where(i)})") from err

    def config(self, i: int) -> NodeConfig:
        peers = [("sim", j) for j in range(N)]
        return NodeConfig(node_id=i, peer_addresses=peers, data_dir=self.tmp / f"n{i}", tick_ms=TICK_MS,
                          request_timeout_s=1.0, retry_after_s=0.1,
                          snapshot_every_slots=self.snapshot_every_slots,
                          snapshot_max_slots=3 * self.snapshot_every_slots,
                          auto_compaction_mode="revision",
                          auto_compaction_retention=self.auto_compaction_retention)

    def start_node(self, i: int) -> None:
        self.incarnation[i] += 1
        config = self.config(i)
        machine = NodeMachine(config, Core(i, N, election_ticks=6, heartbeat_ticks=2),
                              clock=lambda: self.clocks[i], rng=random.Random(self.rng.getrandbits(64)))
        # small segments: they roll often (a path worth driving), and three nodes' worth of
        # simulated restarts do not preallocate gigabytes of disk
        wal, rec = Wal.open(config.data_dir / "wal", self.disks[i], segment_bytes=SEGMENT_BYTES)
        self.nodes[i] = node = SimNode(self, i, machine, wal)
        self.net.machines[i] = machine
        if rec.snapshot is not None:
            machine.restore(rec.snapshot)
            if TRUNCATED_CHECKPOINTS.get((i, rec.snapshot.slot)):
                RESTARTS_FROM_TRUNCATED.append(rec.snapshot.slot)
        node.observe()  # recovery re-applies slots: they must be what was applied before
        self.run(i, machine.recover(rec.records))
        self.check_recovered_state(i)

    def answered(self, op: Op, answer) -> None:
        """A client request's answer (given once, by the machine that took the request)."""
        if op.outcome is not None:
            return  # its node crashed: the client saw the connection drop
        if isinstance(answer, EtcdError):
            op.outcome, op.result = "error", answer
            return
        op.outcome, op.result = "ok", decoded(answer)
        self.check_acknowledged(op)
        if op.kind == Kind.LEASE_GRANT:
            self.lease_ids.append(op.result.ID)

    # ---- observations ----

    def on_apply(self, i, store, slot, batch, before, outcomes) -> None:
        w = self.where(i)
        rev = before
        for out in outcomes:
            res, kind = out.result, out.command.kind
            if kind == Kind.RANGE or out.duplicate or isinstance(res, EtcdError):
                continue
            got = res.header.revision
            if kind == Kind.PUT:
                assert got == rev + 1, f"slot {slot}: a put went from revision {rev} to {got} ({w})"
            elif kind == Kind.DELETE_RANGE:
                assert got == rev + (1 if res.deleted else 0), \
                    f"slot {slot}: a delete of {res.deleted} keys went from revision {rev} to {got} ({w})"
            elif kind in (Kind.COMPACT, Kind.LEASE_GRANT, Kind.LEASE_KEEP_ALIVE, Kind.LEASE_CHECKPOINT):
                assert got == rev, f"slot {slot}: a {kind.name} went from revision {rev} to {got} ({w})"
            elif kind == Kind.LEASE_EXPIRE:  # each lease that goes (with keys) in a revision of its own
                assert got >= rev, f"slot {slot}: an expiry went from revision {rev} to {got} ({w})"
            else:
                assert got in (rev, rev + 1), f"slot {slot}: a {kind.name} went from revision {rev} to {got} ({w})"
            rev = got
            key = (out.command.client_id, out.command.request_seq)
            known = self.results.setdefault(key, (got, slot, i))
            assert known[:2] == (got, slot), \
                f"command {key} applied at slot {slot} with revision {got} at node {i}, but at slot " \
                f"{known[1]} with revision {known[0]} at node {known[2]} ({w})"
        assert store.revision == rev, \
            f"slot {slot}: store revision {store.revision}, but its responses say {rev} ({w})"
        leased = {k: rec.lease for k, rec in store._data.items() if rec.lease}
        attached = {k: i for i, lease in store.leases.leases.items() for k in lease.keys}
        assert leased == attached, f"slot {slot}: keys with a lease {leased}, attached to leases {attached} ({w})"
        record = (_h(batch), store.revision, _h(store.snapshot()))
        mine = self.applied[i].setdefault(slot, record)
        assert mine == record, f"node {i} applied slot {slot} as {record}, earlier as {mine} ({w})"
        theirs = self.chosen.setdefault(slot, record + (i,))
        assert theirs[:3] == record, \
            f"slot {slot}: node {i} applied {record}, node {theirs[3]} applied {theirs[:3]} ({w})"

    def check_recovered_state(self, i: int) -> None:
        machine = self.nodes[i].machine
        if machine.snapshot_slot:
            self.stats["snapshots"] += 1
        kv = machine.kv
        nxt = kv.next_slot
        if nxt == 0:
            return
        expected = self.chosen.get(nxt - 1)
        assert expected is not None, f"node {i} recovered up to slot {nxt - 1}, never applied anywhere ({self.where(i)})"
        state = (kv.revision, _h(kv.snapshot()))
        assert state == expected[1:3], \
            f"node {i} recovered at slot {nxt} with {state}, applied as {expected[1:3]} ({self.where(i)})"

    def check_acknowledged(self, op: Op) -> None:
        w = self.where(op.node_id)
        if op.kind == Kind.RANGE:
            got = op.result.header.revision
            assert got >= op.acked_rev_before, \
                f"{op}: a linearizable read saw revision {got}, but revision {op.acked_rev_before} " \
                f"was acknowledged before it was issued ({w})"
            return
        self.stats["acked"] += 1
        key = (op.client_id, op.seq)
        assert key in self.results, f"{op} was acknowledged but never applied ({w})"
        rev, slot, _ = self.results[key]
        assert op.result.header.revision == rev, \
            f"{op} answered revision {op.result.header.revision}, applied at slot {slot} with {rev} ({w})"
        self.max_acked_rev = max(self.max_acked_rev, rev)

    # ---- rules ----

    @initialize(seed=st.integers(0, 2**32 - 1), rounds=st.integers(0, 12))
    @guarded
    def boot(self, seed, rounds):
        self.seed = seed
        self.rng = random.Random(seed)
        for i in range(N):
            self.start_node(i)
        for _ in range(rounds):  # usually enough for an election: 6 ticks and a few messages
            self._round(1)

    def _submit(self, i: int, kind: Kind, request, rounds: int = 0) -> None:
        machine = self.nodes[i].machine
        op = Op(len(self.ops), kind, i, self.incarnation[i], machine.client_id, machine.proposals.next_seq,
                request, self.max_acked_rev)
        self.ops.append(op)
        done = functools.partial(self.answered, op)
        if kind == Kind.RANGE:
            machine.read(request, False, done)
        elif kind == Kind.LEASE_GRANT:
            machine.lease_grant(request, done)
        else:
            machine.command(kind, request, request.SerializeToString(), done)
        for _ in range(rounds):
            self._round(1)

    def _value(self) -> bytes:
        self.values += 1
        return b"v%d" % self.values

    @rule(i=st.integers(0, N - 1), key=st.sampled_from(KEYS), rounds=ROUNDS)
    @guarded
    def put(self, i, key, rounds):
        self._submit(i, Kind.PUT, r.PutRequest(key=key, value=self._value()), rounds)

    @rule(i=st.integers(0, N - 1), key=st.sampled_from(KEYS), rounds=ROUNDS)
    @guarded
    def delete(self, i, key, rounds):
        self._submit(i, Kind.DELETE_RANGE, r.DeleteRangeRequest(key=key), rounds)

    @rule(i=st.integers(0, N - 1), key=st.sampled_from(KEYS), version=st.integers(0, 3), rounds=ROUNDS)
    @guarded
    def cas(self, i, key, version, rounds):
        txn = r.TxnRequest(
            compare=[r.Compare(key=key, target=r.Compare.VERSION, result=r.Compare.EQUAL, version=version)],
            success=[r.RequestOp(request_put=r.PutRequest(key=key, value=self._value()))],
            failure=[r.RequestOp(request_range=r.RangeRequest(key=key))])
        self._submit(i, Kind.TXN, txn, rounds)

    @rule(i=st.integers(0, N - 1), ttl=st.integers(1, 3), rounds=ROUNDS)
    @guarded
    def lease_grant(self, i, ttl, rounds):
        self._submit(i, Kind.LEASE_GRANT, r.LeaseGrantRequest(TTL=ttl), rounds)

    @rule(i=st.integers(0, N - 1), key=st.sampled_from(KEYS), lease=st.integers(0, 10**6), rounds=ROUNDS)
    @guarded
    def put_with_lease(self, i, key, lease, rounds):
        lease_id = self.lease_ids[lease % len(self.lease_ids)]
        self._submit(i, Kind.PUT, r.PutRequest(key=key, value=self._value(), lease=lease_id), rounds)

    @rule(i=st.integers(0, N - 1), lease=st.integers(0, 10**6), revoke=st.booleans(), rounds=ROUNDS)
    @guarded
    def lease_keep_alive_or_revoke(self, i, lease, revoke, rounds):
        lease_id = self.lease_ids[lease % len(self.lease_ids)]
        if revoke:
            self._submit(i, Kind.LEASE_REVOKE, r.LeaseRevokeRequest(ID=lease_id), rounds)
        else:
            self._submit(i, Kind.LEASE_KEEP_ALIVE, r.LeaseKeepAliveRequest(ID=lease_id), rounds)

    @rule(i=st.integers(0, N - 1), key=st.sampled_from(KEYS), rounds=ROUNDS)
    @guarded
    def linearizable_read(self, i, key, rounds):
        self._submit(i, Kind.RANGE, r.RangeRequest(key=key), rounds)

    def _turn(self, i: int, ticks: int = 0) -> None:
        machine = self.nodes[i].machine
        self.clocks[i] += ticks * TICK_MS / 1000.0
        machine.tick(ticks)
        self.run(i, machine.turn())

    @rule(i=st.integers(0, N - 1), ticks=st.integers(1, 8))
    @guarded
    def tick(self, i, ticks):
        self._turn(i, ticks)

    @rule(i=st.integers(0, N - 1))
    @guarded
    def turn(self, i):
        self._turn(i)

    @rule(i=st.integers(0, N - 1), seconds=st.sampled_from([0.5, 1.0, 2.5]))
    @guarded
    def stall(self, i, seconds):
        """Node i's clock jumps ahead (the process was paused): timeouts, retries and automatic
        compactions fall due."""
        self.clocks[i] += seconds
        self._turn(i, 1)

    @precondition(lambda self: self.net.in_flight)
    @rule(index=st.integers(0, 10**6), then_turn=st.booleans())
    @guarded
    def deliver(self, index, then_turn):
        dst = self.net.deliver(self.net.in_flight.pop(index % len(self.net.in_flight)))
        if dst is not None and then_turn:
            self._turn(dst)

    def _round(self, ticks: int) -> None:
        """Every frame in flight now is delivered (in order; the cut ones are dropped), then every
        node ticks and takes a turn."""
        frames, self.net.in_flight = self.net.in_flight, []
        for frame in frames:
            self.net.deliver(frame)
        for i in range(N):
            self._turn(i, ticks)

    @rule(rounds=st.integers(1, 6))
    @guarded
    def run_rounds(self, rounds):
        for _ in range(rounds):
            self._round(1)

    @precondition(lambda self: self.net.in_flight)
    @rule()
    @guarded
    def deliver_all(self):
        self._round(0)

    @precondition(lambda self: self.net.in_flight)
    @rule(index=st.integers(0, 10**6))
    @guarded
    def drop(self, index):
        self.net.in_flight.pop(index % len(self.net.in_flight))
        self.net.dropped += 1

    @precondition(lambda self: self.net.in_flight)
    @rule(index=st.integers(0, 10**6))
    @guarded
    def duplicate(self, index):
        frame = self.net.in_flight[index % len(self.net.in_flight)]
        self.net.in_flight.insert(self.rng.randrange(len(self.net.in_flight) + 1), frame)

    @rule(i=st.integers(0, N - 1))
    @guarded
    def isolate(self, i):
        self.net.isolated = {i}

    @precondition(lambda self: self.net.isolated)
    @rule()
    @guarded
    def heal(self):
        self.net.isolated = set()

    @rule(i=st.integers(0, N - 1), keep=st.one_of(st.just(0), st.integers(1, 200), st.just(10**9)))
    @guarded
    def crash(self, i, keep):
        self.stats["crashes"] += 1
        self.power_loss(i, keep)

    def power_loss(self, i, keep):
        """Power loss at node i: what was not fsynced is lost, except a prefix of `keep` bytes
        that reached the file (a torn write); then a new machine recovers from the same disk."""
        disk = self.disks[i]
        unsynced = sum(len(buf) for buf in disk._pending.values())
        if keep and keep < unsynced:
            self.stats["torn"] += 1
        disk.crash(keep_unsynced_bytes=keep)
        self.nodes[i].wal._fd = None  # its descriptor died with the crash
        for op in self.ops:
            if op.node_id == i and op.incarnation == self.incarnation[i] and op.outcome is None:
                op.outcome = "unknown"  # its client sees the connection drop
        self.nodes[i] = None
        del self.net.machines[i]  # a dead process receives nothing
        self.start_node(i)

    # ---- invariants ----

    @invariant()
    @guarded
    def applied_slots_agree(self):
        # on_apply checks every slot as it is applied; here, the nodes' current positions.
        for i, node in enumerate(self.nodes):
            if node is None:
                continue
            kv = node.machine.kv
            if kv.next_slot:
                assert self.chosen[kv.next_slot - 1][1] == kv.revision, \
                    f"node {i} is at slot {kv.next_slot} with revision {kv.revision}, " \
                    f"recorded {self.chosen[kv.next_slot - 1][1]} ({self.where(i)})"

    # ---- teardown: heal and settle ----

    def behind_truncation(self) -> list[int]:
        """Nodes that have not applied a slot every other node has truncated (in a snapshot)."""
        machines = [n.machine for n in self.nodes]
        return [i for i, m in enumerate(machines)
                if m.kv.next_slot < min(o.status["log_start"] for j, o in enumerate(machines) if j != i)]

    def settle(self) -> list[int]:
        """Heal, then run fault-free rounds until the nodes agree and every request is answered.
        Returns the nodes that caught up (all of them)."""
        self.net.isolated = set()
        stable = progress = 0
        last = None
        for rnd in range(SETTLE_ROUNDS):
            self.stats["settle_rounds"] = rnd + 1
            self._round(1)
            machines = [n.machine for n in self.nodes]
            state = tuple((m.kv.next_slot, m.status["commit_upto"]) for m in machines)
            progress = progress if state == last else rnd
            last = state
            behind = self.behind_truncation()
            stuck = behind if rnd - progress >= 50 else []
            if stuck:
                raise ReplicaStuckBehindTruncation(
                    f"node(s) {stuck} applied up to slot(s) {[machines[i].kv.next_slot for i in stuck]}, "
                    f"but the other nodes have truncated their logs past that (log_start per node "
                    f"{[m.status['log_start'] for m in machines]}): no progress in 50 fault-free "
                    f"rounds; statuses {[m.status for m in machines]} ({self.where()})")
            live = [i for i in range(N) if i not in behind]
            done = (not any(op.outcome is None for op in self.ops)
                    and len({state[i][0] for i in live}) == 1
                    and all(state[i][1] == state[i][0] for i in live)
                    and (not behind or stuck))
            stable = stable + 1 if done else 0
            if stable >= 3:
                self.stats["stuck"] = len(stuck)
                return live
        raise AssertionError(f"no agreement after {SETTLE_ROUNDS} fault-free rounds: (applied, commit_upto) "
                             f"per node {last}, pending {[op for op in self.ops if op.outcome is None]}, "
                             f"statuses {[n.machine.status for n in self.nodes]} ({self.where()})")

    def check_settled(self, live: list[int]) -> None:
        ref = self.nodes[live[0]].machine.kv
        for i in live:  # every frame was delivered with its real sender: none was refused for its sender
            assert not self.nodes[i].machine.checks.counts, (i, self.nodes[i].machine.checks.counts)
        for i in live[1:]:
            kv = self.nodes[i].machine.kv
            assert kv.snapshot() == ref.snapshot(), \
                f"after settling, node {i} (slot {kv.next_slot}, revision {kv.revision}) and node " \
                f"{live[0]} (slot {ref.next_slot}, revision {ref.revision}) hold different KV stores " \
                f"({self.where(i)})"
        final = {kv.key: kv for kv in ref.items()}
        for op in self.ops:
            if op.outcome != "ok" or op.kind == Kind.RANGE:
                continue
            rev, slot, _ = self.results[(op.client_id, op.seq)]
            assert slot < ref.next_slot, f"{op} acknowledged at slot {slot}, not applied ({self.where()})"
            if op.kind == Kind.PUT:
                kv = final.get(op.request.key)
                assert ref.revision >= rev
                if kv is not None and kv.mod_revision == rev:
                    assert kv.value == op.request.value, \
                        f"{op}: key {op.request.key!r} at revision {rev} holds {kv.value!r}, " \
                        f"acknowledged {op.request.value!r} ({self.where()})"
                # else a later write (in the log every live node applied) replaced or deleted it
                assert kv is None or kv.mod_revision >= rev, \
                    f"{op}: acknowledged put at revision {rev} is missing, key at {kv.mod_revision} ({self.where()})"

    def teardown(self):
        try:
            if not self.in_step and all(self.nodes):
                self.check_settled(self.settle())
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


SETTINGS = settings(
    max_examples=40, stateful_step_count=80, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])


def test_node_simulation():
    # A plain function (not NodeSimulation.TestCase): pytest-asyncio's auto mode mistakes the
    # TestCase's runTest for an async hypothesis test.
    run_state_machine_as_test(NodeSimulation, settings=SETTINGS)


class NodeSimulationWithSnapshots(NodeSimulation):
    """The same, with a snapshot (and a core truncation) every 4 applied slots, so restarts
    recover from snapshots and lagging nodes need the others' snapshots to catch up, and an
    automatic compaction (proposed by the leader) keeping the last 3 revisions of history."""

    snapshot_every_slots = 4
    auto_compaction_retention = 3


def test_node_simulation_with_snapshots():
    before = len(RESTARTS_FROM_TRUNCATED)
    run_state_machine_as_test(NodeSimulationWithSnapshots, settings=SETTINGS)
    # some restarts began from a snapshot whose core state was written as the runner's child
    # writes it, truncated at the snapshot's slot
    assert len(RESTARTS_FROM_TRUNCATED) > before, "no restart began from a truncated checkpoint"
    print(f"{len(RESTARTS_FROM_TRUNCATED) - before} restarts from a truncated checkpoint")


def test_node_simulation_with_snapshots_streamed_in_small_chunks(monkeypatch):
    """The same with snapshots streamed in chunks of 64 bytes, so that a transfer spans many
    chunks and meets loss, duplication, reordering, partitions and crashes part-way."""
    monkeypatch.setattr(snapshot_transfer, "CHUNK_BYTES", 64)
    on_chunk, multi = snapshot_transfer.SnapshotReceiver.on_chunk, []

    def counting(self, *args, **kw):
        done = on_chunk(self, *args, **kw)
        if done is not None and len(done.data) > 64 * 4:
            multi.append(len(done.data))
        return done
    monkeypatch.setattr(snapshot_transfer.SnapshotReceiver, "on_chunk", counting)
    run_state_machine_as_test(NodeSimulationWithSnapshots, settings=SETTINGS)
    assert multi, "no transfer spanned more than a window of chunks"
    print(f"{len(multi)} transfers of more than a window of chunks, up to {max(multi)} bytes")


def scripted_run(seed: int) -> tuple[str, list[bytes]]:
    """A fixed sequence of the simulation's rules (writes, reads, loss, duplication, a partition,
    a torn crash, a snapshot every 4 slots); the trace of every frame sent, and each node's
    final KV state."""
    sim = NodeSimulationWithSnapshots()
    try:
        sim.boot(seed=seed, rounds=12)
        for step in range(12):
            sim.put(i=step % N, key=KEYS[step % 3], rounds=1)
            sim.linearizable_read(i=(step + 1) % N, key=KEYS[step % 3], rounds=0)
            if sim.net.in_flight:
                sim.duplicate(index=step)
                sim.drop(index=step * 7)
            if step == 4:
                sim.isolate(i=1)
            if step == 7:
                sim.crash(i=2, keep=37)
                sim.heal()
            sim.tick(i=step % N, ticks=3)
        sim.check_settled(sim.settle())
        assert sim.stats["acked"] > 0 and sim.stats["crashes"] == 1
        return sim.net.trace.hexdigest(), [n.machine.kv.snapshot() for n in sim.nodes]
    finally:
        shutil.rmtree(sim.tmp, ignore_errors=True)


def test_the_same_seed_replays_the_same_run():
    """The machine's clock and random source come from the simulation, and nothing else varies:
    the same seed gives the same frames, byte for byte, and the same stores; another seed (other
    session ids) gives other frames."""
    first, again, other = scripted_run(7), scripted_run(7), scripted_run(8)
    assert first == again
    assert other[0] != first[0]


def test_a_lease_is_kept_alive_then_expires_through_the_log_on_every_node():
    """In simulated time: a lease of 1 s kept alive through another node for 3 s keeps its key;
    left alone, the leader expires it through the log, and every node deletes the key, and
    not before the TTL has passed on the leader's clock since the last keep-alive."""
    sim = NodeSimulation()
    try:
        sim.boot(seed=3, rounds=12)
        sim.lease_grant(i=0, ttl=1, rounds=4)
        assert len(sim.lease_ids) == 2, "the grant was not acknowledged"
        sim.put_with_lease(i=1, key=b"a", lease=1, rounds=4)
        for _ in range(30):  # 30 x 10 rounds of 10 ms: 3 s
            last_keep_alive = list(sim.clocks)  # every node's clock when the client sends it
            sim.lease_keep_alive_or_revoke(i=2, lease=1, revoke=False, rounds=10)
            assert sim.ops[-1].outcome == "ok" and sim.ops[-1].result.TTL == 1
        assert all(b"a" in n.machine.kv._data for n in sim.nodes)
        rounds = 0
        while any(b"a" in n.machine.kv._data for n in sim.nodes):
            sim._round(1)
            rounds += 1
            assert rounds < 300, "the lease did not expire in 3 s"
        elapsed = [now - then for now, then in zip(sim.clocks, last_keep_alive)]
        assert min(elapsed) >= 1.0 and max(elapsed) < 1.5, elapsed  # never early, and not much late
        assert all(not n.machine.kv.leases.leases for n in sim.nodes)
    finally:
        shutil.rmtree(sim.tmp, ignore_errors=True)


def test_raft_term_is_at_least_one_wherever_a_leader_is_known():
    """etcd's raft_term is one more than the round of the promised ballot: a first election can be
    won at round 0 (node 1's or 2's first ballot), and etcd's term is never 0 under a leader.
    With node 0 first and with node 0 cut off at the start (then node 1 or 2 wins at round 0)."""
    from verikv.shim.node.machine import term_of

    assert (term_of((0, 0)), term_of((0, 2)), term_of((3, 1))) == (0, 1, 4)
    rounds_seen = set()
    for seed in range(4):
        sim = NodeSimulation()
        try:
            if seed % 2:  # node 0, whose election timeout comes first, cut off: node 1 or 2 leads
                sim.net.isolated = {0}
            sim.boot(seed=seed, rounds=30)
            sim.put(i=1, key=KEYS[0], rounds=20)
            for n in sim.nodes[1:] if seed % 2 else sim.nodes:
                status = n.machine.current_status()
                if status["leader"] is not None:
                    assert n.machine.term == status["promised"][0] + 1 >= 1, status
                    rounds_seen.add(status["promised"][0])
        finally:
            shutil.rmtree(sim.tmp, ignore_errors=True)
    assert 0 in rounds_seen  # a leader at round 0 was among them: the case this guards
