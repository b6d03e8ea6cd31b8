"""Deterministic simulation of a 3-node cluster running the REAL node code (Node, its WAL over a
FaultyDisk, the KV state machine and the compiled verified core), driven by a hypothesis rule-based
state machine over a simulated network, disk and clock.

- Network: `SimNetwork` replaces the TCP transport (Node's `transport_factory` seam). A frame sits
  in flight until a rule delivers, drops or duplicates it; rules pick any frame (reordering) and
  can isolate a node (frames across the cut are dropped at send and at delivery).
- Disk: each node has one `FaultyDisk` (real files in a temporary directory), which holds every
  written byte until a sync. The WAL writes lazily persisted commit records at once and syncs on
  the loop's thread when a turn waits for durability, so commit records may still be unsynced
  when a node crashes. A crash keeps a drawn prefix of the unsynced bytes (a torn write), loses
  the rest, discards the Node object and starts a new Node over the same disk. The loop's
  default executor is `ManualExecutor`, which runs nothing on a thread.
- Clock: Node's `clock` seam reads a per-node simulated monotonic clock, advanced only by tick
  rules; `tick_timer=False` turns off the call_later ticks: rules add `_ticks_due` and run
  `_turn()` themselves. Nothing sleeps; no thread runs.

Invariants (after every rule, and across restarts): every slot applied anywhere has one batch,
one revision after it and one KV state after it (per-slot digests, recorded by wrapping the KV
store's `apply` in a Node subclass: no product logic is copied); a node re-applying a slot after
a restart applies the same thing; a node recovered from a snapshot holds exactly the state
recorded for that slot; within a batch the revision grows by exactly one per mutating command;
every acknowledged request was applied with the revision its response names; a linearizable read
sees at least the revision of every write acknowledged before it was issued. In teardown, after a
run without failure: heal everything, run without faults until every node has applied the same
slots and every client request is answered, then the nodes hold identical KV stores (snapshot
bytes) and every acknowledged put is reflected in them. A node that cannot catch up because the
others truncated past it fails with ReplicaStuckBehindTruncation. Two runs: snapshots at the
default interval (never reached: pure log replication and WAL recovery), and every 4 slots
(snapshot recovery, snapshot transfer to lagging nodes).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import random
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)

from verikv.etcdpb import rpc_pb2 as r
from verikv.shim.io.disk import FaultyDisk
from verikv.shim.kv.errors import EtcdError
from verikv.shim.io.runner import Node, NodeConfig
from verikv.shim.kv.commands import Kind
from verikv.verified_core.core import Core

N = 3
TICK_MS = 10
KEYS = [b"a", b"b", b"c"]
MAX_IN_FLIGHT = 300  # like the real transport's bounded queues: the oldest frame goes
SETTLE_ROUNDS = 600
ROUNDS = st.integers(0, 3)  # fault-free rounds a client rule runs after submitting (progress)


def _h(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


# ---- simulated disk executor ----

class ManualExecutor(concurrent.futures.ThreadPoolExecutor):
    """The loop's default executor: holds submitted jobs until the test runs them, on the test's
    thread. Never starts a thread. (The node submits none today; this keeps the run deterministic
    if one ever does.)"""

    def __init__(self):
        super().__init__(max_workers=1)
        self.jobs: list[tuple[object, tuple, concurrent.futures.Future]] = []

    def submit(self, fn, /, *args, **kwargs):
        assert not kwargs
        fut = concurrent.futures.Future()
        self.jobs.append((fn, args, fut))
        return fut

    def jobs_of(self, wal) -> list:
        return [j for j in self.jobs if getattr(j[0], "__self__", None) is wal]

    def run_jobs_of(self, wal) -> bool:
        ran = False
        for job in self.jobs_of(wal):
            self.jobs.remove(job)
            fn, args, fut = job
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn(*args))
                except BaseException as err:  # noqa: BLE001 - handed to the awaiting WAL
                    fut.set_exception(err)
            ran = True
        return ran


# ---- simulated network ----

class SimTransport:
    """Same interface as shim.transport.Transport, over a SimNetwork."""

    def __init__(self, network: "SimNetwork", node_id: int, addresses, on_frame):
        self.network = network
        self.node_id = node_id
        self.on_frame = on_frame
        self.closed = False

    async def start(self) -> None:
        self.network.endpoints[self.node_id] = self

    async def close(self) -> None:
        self.closed = True

    def send(self, dst: int, kind: int, payload: bytes) -> None:
        if not (0 <= dst < N) or dst == self.node_id:
            raise ValueError(f"node {self.node_id} has no peer {dst}")
        if not self.closed:
            self.network.send(self.node_id, dst, kind, bytes(payload))


class SimNetwork:
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.in_flight: list[tuple[int, int, int, bytes]] = []  # (src, dst, kind, payload)
        self.endpoints: dict[int, SimTransport] = {}
        self.isolated: set[int] = set()
        self.sent = self.delivered = self.dropped = 0

    def factory(self, node_id, addresses, on_frame):
        return SimTransport(self, node_id, addresses, on_frame)

    def cut(self, src: int, dst: int) -> bool:
        return src in self.isolated or dst in self.isolated

    def send(self, src, dst, kind, payload) -> None:
        self.sent += 1
        if self.cut(src, dst):
            self.dropped += 1
            return
        self.in_flight.append((src, dst, kind, payload))
        if len(self.in_flight) > MAX_IN_FLIGHT:
            self.in_flight.pop(0)
            self.dropped += 1

    def deliver(self, frame) -> int | None:
        """Hand one frame to the destination's current incarnation at the loop's next iteration
        (the caller drains the loop); returns its destination, None if the frame was lost."""
        src, dst, kind, payload = frame
        if self.cut(src, dst) or dst not in self.endpoints:
            self.dropped += 1
            return None
        self.delivered += 1
        self.loop.call_soon(self.endpoints[dst].on_frame, kind, payload)  # as the real one: from the loop
        return dst


# ---- the node, observed ----

class SimNode(Node):
    """The real Node; its KV store's apply is wrapped (whenever the node sets self.kv) so the test
    sees every applied slot. Nothing of the node's behaviour changes."""

    sim: "NodeSimulation"

    @property
    def kv(self):
        return self._sim_kv

    @kv.setter
    def kv(self, store) -> None:
        sim, node_id = self.sim, self.node_id
        orig = store.apply

        def apply(slot, batch, reads_for=None):
            before = store.revision
            outcomes = orig(slot, batch, reads_for)
            sim.on_apply(node_id, store, slot, batch, before, outcomes)
            return outcomes

        store.apply = apply
        self._sim_kv = store


def guarded(fn):
    """Marks the machine as mid-step while fn runs, so teardown skips settling after a failure."""
    @functools.wraps(fn)
    def step(self, *args, **kwargs):
        self.in_step = True
        fn(self, *args, **kwargs)
        self.in_step = False
    return step


class Op:
    def __init__(self, op_id, kind, node_id, incarnation, client_id, seq, request, task, acked_rev_before):
        self.op_id = op_id
        self.kind = kind
        self.node_id = node_id
        self.incarnation = incarnation
        self.client_id = client_id
        self.seq = seq
        self.request = request
        self.task = task
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

    def __init__(self):
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="verikv-sim-"))
        self.loop = asyncio.new_event_loop()
        self.executor = ManualExecutor()
        self.loop.set_default_executor(self.executor)
        self.net = SimNetwork(self.loop)
        self.disks = [FaultyDisk() for _ in range(N)]
        self.clocks = [1000.0 + i for i in range(N)]
        self.nodes: list[SimNode | None] = [None] * N
        self.incarnation = [0] * N
        self.retired: list[SimNode] = []
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
        self.loop_errors: list[dict] = []
        self.loop.set_exception_handler(lambda loop, context: self.loop_errors.append(context))
        self.stats = {"acked": 0, "crashes": 0, "torn": 0, "snapshots": 0}

    # ---- plumbing ----

    def where(self, i: int | None = None) -> str:
        s = f"seed={self.seed:#x}"
        if i is not None:
            s += f" node={i} incarnation={self.incarnation[i]}"
        return s

    def _drain(self) -> None:
        """Run the loop until nothing is ready (no timers exist: nothing sleeps)."""
        for _ in range(10_000):
            self.loop.run_until_complete(asyncio.sleep(0))
            if not self.loop._ready:  # noqa: SLF001 - the test owns this loop
                return
        raise AssertionError(f"the event loop never went idle ({self.where()})")

    def run(self, i: int, coro):
        """Run a coroutine of node i to the end, running node i's disk jobs when it waits on them."""
        task = self.loop.create_task(coro)
        wal = self.nodes[i].wal if self.nodes[i] else None
        while True:
            self._drain()
            if task.done():
                break
            wal = self.nodes[i].wal
            if wal is None or not self.executor.run_jobs_of(wal):
                task.cancel()
                self._drain()
                raise AssertionError(f"node {i} is stuck with no disk job to run ({self.where(i)})")
        err = task.exception()
        if err is not None:
            raise AssertionError(f"node {i} failed: {type(err).__name__}: {err} ({self.where(i)})") from err
        self._collect()
        return task.result()

    def config(self, i: int) -> NodeConfig:
        peers = [("sim", j) for j in range(N)]
        return NodeConfig(node_id=i, peer_addresses=peers, data_dir=self.tmp / f"n{i}", tick_ms=TICK_MS,
                          request_timeout_s=1.0, retry_after_s=0.1,
                          snapshot_every_slots=self.snapshot_every_slots)

    def start_node(self, i: int) -> None:
        async def make():
            node = SimNode.__new__(SimNode)
            node.sim = self
            Node.__init__(node, self.config(i), Core(i, N, election_ticks=6, heartbeat_ticks=2),
                          self.disks[i], transport_factory=self.net.factory,
                          clock=lambda: self.clocks[i], tick_timer=False)
            node.client_id = (self.rng.getrandbits(62) << 1) | 1  # a new session per incarnation
            return node

        self.incarnation[i] += 1
        node = self.loop.run_until_complete(make())
        self.nodes[i] = node
        self.run(i, node.start())
        self.check_recovered_state(i)

    def _collect(self) -> None:
        """Classify the client requests that finished."""
        for op in self.ops:
            if op.outcome is not None or not op.task.done():
                continue
            if op.task.cancelled():
                op.outcome = "unknown"
                continue
            err = op.task.exception()
            if err is not None:
                assert isinstance(err, EtcdError), f"{op} raised {err!r} ({self.where(op.node_id)})"
                op.outcome, op.result = "error", err
                continue
            op.outcome, op.result = "ok", op.task.result()
            self.check_acknowledged(op)

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
            else:
                assert got in (rev, rev + 1), f"slot {slot}: a txn went from revision {rev} to {got} ({w})"
            rev = got
            key = (out.command.client_id, out.command.request_seq)
            known = self.results.setdefault(key, (got, slot, i))
            assert known[:2] == (got, slot), \
                f"command {key} applied at slot {slot} with revision {got} at node {i}, but at slot " \
                f"{known[1]} with revision {known[0]} at node {known[2]} ({w})"
        assert store.revision == rev, \
            f"slot {slot}: store revision {store.revision}, but its responses say {rev} ({w})"
        record = (_h(batch), store.revision, _h(store.snapshot()))
        mine = self.applied[i].setdefault(slot, record)
        assert mine == record, f"node {i} applied slot {slot} as {record}, earlier as {mine} ({w})"
        theirs = self.chosen.setdefault(slot, record + (i,))
        assert theirs[:3] == record, \
            f"slot {slot}: node {i} applied {record}, node {theirs[3]} applied {theirs[:3]} ({w})"

    def check_recovered_state(self, i: int) -> None:
        node = self.nodes[i]
        if node._snapshot_slot:
            self.stats["snapshots"] += 1
        nxt = node.kv.next_slot
        if nxt == 0:
            return
        expected = self.chosen.get(nxt - 1)
        assert expected is not None, f"node {i} recovered up to slot {nxt - 1}, never applied anywhere ({self.where(i)})"
        state = (node.kv.revision, _h(node.kv.snapshot()))
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
        node = self.nodes[i]
        seq = node._next_seq
        coro = node.read(request, serializable=False) if kind == Kind.RANGE else node.submit(kind, request)
        task = self.loop.create_task(coro)
        op = Op(len(self.ops), kind, i, self.incarnation[i], node.client_id, seq, request, task,
                self.max_acked_rev)
        self.ops.append(op)
        self._drain()
        self._collect()
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

    @rule(i=st.integers(0, N - 1), key=st.sampled_from(KEYS), rounds=ROUNDS)
    @guarded
    def linearizable_read(self, i, key, rounds):
        self._submit(i, Kind.RANGE, r.RangeRequest(key=key), rounds)

    def _turn(self, i: int, ticks: int = 0) -> None:
        node = self.nodes[i]
        self.clocks[i] += ticks * TICK_MS / 1000.0
        node._ticks_due += ticks
        self.run(i, node._turn())

    @rule(i=st.integers(0, N - 1), ticks=st.integers(1, 8))
    @guarded
    def tick(self, i, ticks):
        self._turn(i, ticks)

    @rule(i=st.integers(0, N - 1))
    @guarded
    def turn(self, i):
        self._turn(i)

    @precondition(lambda self: self.net.in_flight)
    @rule(index=st.integers(0, 10**6), then_turn=st.booleans())
    @guarded
    def deliver(self, index, then_turn):
        dst = self.net.deliver(self.net.in_flight.pop(index % len(self.net.in_flight)))
        self._drain()
        if dst is not None and then_turn:
            self._turn(dst)

    def _round(self, ticks: int) -> None:
        """Every frame in flight now is delivered (in order; the cut ones are dropped), then every
        node ticks and takes a turn."""
        frames, self.net.in_flight = self.net.in_flight, []
        for frame in frames:
            self.net.deliver(frame)
        self._drain()
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
        """Power loss at node i: what was not fsynced is lost, except a prefix of `keep` bytes
        that reached the file (a torn write); then a new Node recovers from the same disk."""
        node, disk = self.nodes[i], self.disks[i]
        unsynced = sum(len(buf) for buf in disk._pending.values())
        if keep and keep < unsynced:
            self.stats["torn"] += 1
        disk.crash(keep_unsynced_bytes=keep)
        node.wal._fd = None  # its descriptor died with the crash
        node.transport.closed = True  # a dead process sends nothing more
        for op in self.ops:
            if op.node_id == i and op.incarnation == self.incarnation[i] and not op.task.done():
                op.task.cancel()  # its client sees the connection drop: outcome unknown
        self._drain()
        self._collect()
        self.nodes[i] = None
        self.retired.append(node)  # kept alive: a GC'd pending task would log at a random time
        self.stats["crashes"] += 1
        self.start_node(i)

    # ---- invariants ----

    @invariant()
    @guarded
    def nothing_failed_in_the_background(self):
        assert not self.loop_errors, f"errors in loop callbacks: {self.loop_errors} ({self.where()})"

    @invariant()
    @guarded
    def applied_slots_agree(self):
        # on_apply checks every slot as it is applied; here, the nodes' current positions.
        for i, node in enumerate(self.nodes):
            if node is None:
                continue
            nxt = node.kv.next_slot
            if nxt:
                assert self.chosen[nxt - 1][1] == node.kv.revision, \
                    f"node {i} is at slot {nxt} with revision {node.kv.revision}, " \
                    f"recorded {self.chosen[nxt - 1][1]} ({self.where(i)})"

    # ---- teardown: heal and settle ----

    def behind_truncation(self) -> list[int]:
        """Nodes that have not applied a slot every other node has truncated (in a snapshot)."""
        return [i for i, n in enumerate(self.nodes)
                if n.kv.next_slot < min(m.status["log_start"] for j, m in enumerate(self.nodes) if j != i)]

    def settle(self) -> list[int]:
        """Heal, then run fault-free rounds until the nodes agree and every request is answered.
        Returns the nodes that caught up (all of them)."""
        self.net.isolated = set()
        stable = progress = 0
        last = None
        for rnd in range(SETTLE_ROUNDS):
            self.stats["settle_rounds"] = rnd + 1
            for i in range(N):
                self.executor.run_jobs_of(self.nodes[i].wal)
            self._drain()
            self._round(1)
            self._collect()
            self.nothing_failed_in_the_background()
            state = tuple((n.kv.next_slot, n.status["commit_upto"]) for n in self.nodes)
            progress = progress if state == last else rnd
            last = state
            behind = self.behind_truncation()
            stuck = behind if rnd - progress >= 50 else []
            if stuck:
                raise ReplicaStuckBehindTruncation(
                    f"node(s) {stuck} applied up to slot(s) {[self.nodes[i].kv.next_slot for i in stuck]}, "
                    f"but the other nodes have truncated their logs past that (log_start per node "
                    f"{[n.status['log_start'] for n in self.nodes]}): no progress in 50 fault-free "
                    f"rounds; statuses {[n.status for n in self.nodes]} ({self.where()})")
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
                             f"statuses {[n.status for n in self.nodes]} ({self.where()})")

    def check_settled(self, live: list[int]) -> None:
        ref = self.nodes[live[0]].kv
        for i in live[1:]:
            kv = self.nodes[i].kv
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
            for job in self.executor.jobs:
                job[2].cancel()
            for task in asyncio.all_tasks(self.loop):
                task.cancel()
            try:
                self._drain()
            finally:
                self.loop.close()
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
    recover from snapshots and lagging nodes need the others' snapshots to catch up."""

    snapshot_every_slots = 4


def test_node_simulation_with_snapshots():
    run_state_machine_as_test(NodeSimulationWithSnapshots, settings=SETTINGS)
