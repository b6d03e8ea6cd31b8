"""One verikv node: the verified core driven by one asyncio loop, with its WAL, peers and KV state.

Each loop turn: feed the core every input that arrived (ticks, peer messages, proposals, read
confirmations); make every record of the turn durable with one group commit; only then send the
turn's messages; then apply the newly committed slots to the KV state and answer the clients.

Client requests: this node gives each command (client_id = a random session id of this process,
request_seq) and puts it in a batch. At the leader the batch is proposed to the core; a follower
forwards its commands over the peer transport to the leader, which batches them with its own, and
the follower answers its client when it applies that slot itself. A command not answered after
`retry_after_s` is sent again; the KV dedup table makes the retry harmless. Linearizable reads at
the leader wait for `core.confirm_read()` and then read locally; a follower asks the leader for a
read slot (ReadIndex) and reads locally once it has applied that far. One confirmation (one
ReadIndex request at a follower) is in flight at a time: reads that arrive meanwhile wait for the
next one, which covers them all, so under load the heartbeats per read shrink instead of growing.
A ReadIndex request carries the ballot the follower had promised when it asked; in a cluster of
three, the core answers it at once when that ballot is the leader's own (the follower and the
leader are a quorum that a newer leader would have needed), without a heartbeat round.
Without a leader, reads go through the log as read-only commands. Serializable reads are local.

This module must never decide anything the core decides (who leads, what is chosen), never send a
message before the records of its turn are durable, and never keep running after a runtime check,
a WAL failure or a core FatalCheck: those propagate out of `run()` and the process exits.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import struct
import time
from dataclasses import dataclass
from typing import Callable
from pathlib import Path
from typing import Protocol

import grpc

from verikv.etcdpb import rpc_pb2
from verikv.shim.kv import errors
from verikv.shim.node.checks import Checks
from verikv.shim.kv.errors import EtcdError
from verikv.shim.kv.store import EncodedRange, KVStore
from verikv.shim.kv.commands import Command, Kind, check_size, decode_batch, encode_batch, validate
from verikv.shim.io.transport import (KIND_CORE, KIND_DIGEST, KIND_FORWARD, KIND_READ_INDEX,
                                   KIND_READ_INDEX_REPLY, KIND_SNAPSHOT, MAX_FRAME_BYTES, Transport)
from verikv.shim.io.wal import Wal

log = logging.getLogger("verikv.node")

READ_ASK = struct.Struct("<QIQQ")  # request id, asking node, its promised ballot (round, node) when it asked
READ_REPLY = struct.Struct("<QQ")  # request id, read slot (0: ask again through the log)
DIGEST = struct.Struct("<QI8s")  # last slot of the range, sender, digest (CommittedValuesMatch)
Done = Callable[[object], object]  # called once with a read's response or its EtcdError

TOO_MANY_REQUESTS = EtcdError(grpc.StatusCode.RESOURCE_EXHAUSTED, "etcdserver: too many requests")
CLUSTER_ID = 0x766B5F3300000001  # one local cluster; member ids are node id + 1


class ReadyLike(Protocol):
    records: list[bytes]
    messages: list[tuple[int, bytes]]
    commits: list[tuple[int, bytes]]
    accepted: bool


class CoreLike(Protocol):
    """The part of verikv.verified_core.core.Core the node uses."""

    def recover(self, records: list[bytes]) -> ReadyLike: ...
    def tick(self) -> ReadyLike: ...
    def receive(self, message: bytes) -> ReadyLike: ...
    def propose(self, value: bytes) -> ReadyLike: ...
    def confirm_read(self) -> tuple[ReadyLike, int, int]: ...
    def read_index_attested(self, src: int, promised: tuple[int, int]) -> int: ...
    def truncate(self, upto_slot: int) -> ReadyLike: ...
    def checkpoint_records(self) -> list[bytes]: ...
    def status(self) -> dict: ...


class _SteppingCore:
    """The core as the node calls it: a call that may change the core's state (a step) marks
    the node's copy of the core's status stale, so Node._current_status reads and checks it
    again then, and only then (read_index_attested, checkpoint_records and status change
    nothing)."""

    __slots__ = ("_core", "_node")

    def __init__(self, core: CoreLike, node: "Node"):
        self._core, self._node = core, node

    def recover(self, records):
        self._node._status_stale = True
        return self._core.recover(records)

    def tick(self):
        self._node._status_stale = True
        return self._core.tick()

    def receive(self, message):
        self._node._status_stale = True
        return self._core.receive(message)

    def propose(self, value):
        self._node._status_stale = True
        return self._core.propose(value)

    def confirm_read(self):
        self._node._status_stale = True
        return self._core.confirm_read()

    def truncate(self, upto_slot):
        self._node._status_stale = True
        return self._core.truncate(upto_slot)

    def install_snapshot(self, upto_slot):
        self._node._status_stale = True
        return self._core.install_snapshot(upto_slot)

    def read_index_attested(self, src, promised):
        return self._core.read_index_attested(src, promised)

    def checkpoint_records(self):
        return self._core.checkpoint_records()

    def status(self):
        return self._core.status()


def _outcome(result):
    if isinstance(result, EtcdError):
        raise result
    return result


@dataclass
class _Pending:
    kind: Kind
    body: bytes
    future: asyncio.Future
    deadline: float
    last_sent: float


@dataclass
class NodeConfig:
    node_id: int
    peer_addresses: list[tuple[str, int]]  # index = node id
    data_dir: Path
    tick_ms: int = 10
    runtime_checks: bool = True
    request_timeout_s: float = 5.0
    retry_after_s: float = 1.0
    snapshot_every_slots: int = 1024
    max_batch_bytes: int = 4 * 1024 * 1024
    max_pending_requests: int = 20_000
    max_inbox_messages: int = 50_000
    max_catch_up_ticks: int = 10


class Node:
    def __init__(self, config: NodeConfig, core: CoreLike, disk=None, *,
                 transport_factory=Transport, clock=time.monotonic, tick_timer: bool = True):
        # transport_factory(node_id, peer_addresses, on_frame), clock() and tick_timer=False (no
        # call_later ticks: the caller adds _ticks_due and runs _turn()) let a test simulate the
        # network and time; the defaults are the production ones.
        self.config = config
        self.node_id = config.node_id
        self.cluster_size = len(config.peer_addresses)
        self.core = core
        self.disk = disk
        self.kv = KVStore()
        self.checks = Checks(self.node_id, self.cluster_size, enabled=config.runtime_checks)
        self.client_id = secrets.randbits(63) | 1
        self.wal: Wal | None = None
        self._clock = clock
        self._tick_timer = tick_timer
        self.transport = transport_factory(self.node_id, config.peer_addresses, self._on_frame)
        self.status: dict = {}
        # True once the core took a step since self.status was read (and checked): only then can
        # its status differ, so only then is it read again (_current_status; set by _SteppingCore)
        self._status_stale = True
        self._next_seq = 1
        self._waiting: dict[int, _Pending] = {}
        self._local_out: list[bytes] = []  # this node's encoded commands, to propose or forward
        self._forwarded_in: list[bytes] = []  # followers' commands, proposed if this node leads
        self._inbox: collections.deque[bytes] = collections.deque(maxlen=config.max_inbox_messages)
        # Linearizable reads. At the leader, entries are (request, done) for its own clients and
        # (None, (asker, request id)) for followers' ReadIndex requests; one confirm_read() at a
        # time covers every read waiting when it starts. At a follower, a read waits for the leader's read slot
        # (_remote_reads), then for its own applied slots to reach it (_follower_reads).
        self._reads_waiting: list[tuple[object, object]] = []
        self._reads_arrived: list[tuple[object, Done]] = []  # since the last turn
        self._remote_reads: dict[int, tuple[list[tuple[object, Done]], float]] = {}
        self._follower_reads: list[tuple[int, object, Done]] = []
        self._read_asks: list[tuple[int, int, tuple[int, int]]] = []  # (asker, request id, its promised ballot)
        self._next_read_id = 1
        self._peer_digests: list[tuple[int, int, bytes]] = []  # checked at the next turn
        # Snapshot transfer: a peer's KV snapshot waiting to be installed (the newest one), and
        # when this node last sent its own to each peer (sending is rate-limited).
        self._snapshot_in: KVStore | None = None
        self._snapshot_sent_at: dict[int, float] = {}
        self.peer_snapshots_installed = 0
        self._read_batches: collections.deque = collections.deque()
        self._ticks_due = 0
        self._wake = asyncio.Event()
        self._durable_needed = 0  # WAL records that must be durable before a message leaves
        self._last_scan = 0.0
        self._snapshot_slot = 0
        self._stopping = False
        self._tick_handle: asyncio.TimerHandle | None = None
        self._role_logged_at = float("-inf")
        self._promises_unlogged = 0
        self.turns = 0

    @property
    def core(self) -> _SteppingCore:
        return self._core

    @core.setter
    def core(self, core: CoreLike) -> None:
        self._core = _SteppingCore(core, self)

    # ---- lifecycle ----

    async def start(self) -> None:
        self.wal, rec = Wal.open(self.config.data_dir / "wal", self.disk)
        if rec.cut_tail:
            log.warning("WAL recovery: %s", rec.cut_tail)
        records = rec.records
        if rec.snapshot is not None:
            self.kv = KVStore.restore(rec.snapshot.kv_state)
            self._snapshot_slot = rec.snapshot.slot
            records = rec.snapshot.core_records + records
        log.info("recovering: snapshot at slot %s, %d WAL records",
                 rec.snapshot.slot if rec.snapshot else None, len(records))
        ready = self.core.recover(records)
        self.status = self.core.status()
        self.checks.on_status(self.status)
        self._status_stale = False
        await self._handle([ready])
        await self.transport.start()
        if self._tick_timer:
            self._schedule_tick()

    def _schedule_tick(self) -> None:
        loop = asyncio.get_running_loop()
        self._tick_handle = loop.call_later(self.config.tick_ms / 1000.0, self._on_tick)

    def _on_tick(self) -> None:
        self._ticks_due += 1
        self._wake.set()
        if not self._stopping:
            self._schedule_tick()

    async def run(self) -> None:
        """Turn until stopped. Fatal errors (runtime checks, WAL, core) propagate."""
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            await self._turn()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._tick_handle:
            self._tick_handle.cancel()
        await self.transport.close()
        if self.wal:
            self.wal.drain()
            self.wal.close()
        for p in self._waiting.values():
            if not p.future.done():
                p.future.set_exception(errors.NO_LEADER)

    # ---- inputs ----

    def _on_frame(self, kind: int, payload: bytes) -> None:
        if kind == KIND_CORE:
            self._inbox.append(payload)
        elif kind == KIND_FORWARD:
            if len(self._forwarded_in) < self.config.max_pending_requests:
                self._forwarded_in.extend(c.encode() for c in decode_batch(payload))
        elif kind == KIND_DIGEST and len(payload) == DIGEST.size:
            last, sender, digest = DIGEST.unpack(payload)
            if sender < self.cluster_size and len(self._peer_digests) < 1024:
                self._peer_digests.append((sender, last, digest))
        elif kind == KIND_SNAPSHOT:
            try:
                store = KVStore.restore(payload)
            except Exception as err:  # noqa: BLE001 - a malformed snapshot is dropped, loudly
                log.warning("dropped a malformed snapshot from a peer (%d bytes): %s", len(payload), err)
            else:
                if self._snapshot_in is None or store.next_slot > self._snapshot_in.next_slot:
                    self._snapshot_in = store
        elif kind == KIND_READ_INDEX and len(payload) == READ_ASK.size:
            req_id, asker, rnd, node = READ_ASK.unpack(payload)
            if asker < self.cluster_size and len(self._read_asks) < self.config.max_pending_requests:
                self._read_asks.append((asker, req_id, (rnd, node)))
        elif kind == KIND_READ_INDEX_REPLY and len(payload) == READ_REPLY.size:
            req_id, read_slot = READ_REPLY.unpack(payload)
            entry = self._remote_reads.pop(req_id, None)
            if entry is not None:
                reads, _ = entry
                if read_slot:
                    self._follower_reads.extend((read_slot, request, done) for request, done in reads)
                else:
                    self._reads_through_log(reads)
        self._wake.set()

    def _acked_below(self) -> int:
        return min(self._waiting) if self._waiting else self._next_seq

    async def submit(self, kind: Kind, request) -> object:
        """Order a request through the log; return its response (or raise its EtcdError)."""
        return _outcome(await self.submit_future(kind, request))

    def submit_future(self, kind: Kind, request) -> asyncio.Future:
        """`submit` without the coroutine: a future of the response or its EtcdError (invalid
        requests and a full queue raise at once)."""
        validate(kind, request)
        if len(self._waiting) >= self.config.max_pending_requests:
            raise TOO_MANY_REQUESTS
        seq = self._next_seq
        self._next_seq += 1
        now = self._clock()
        fut = asyncio.get_running_loop().create_future()
        p = _Pending(kind, request.SerializeToString(), fut, now + self.config.request_timeout_s, now)
        self._waiting[seq] = p
        self._local_out.append(Command(kind, self.client_id, seq, self._acked_below(), p.body).encode())
        self._wake.set()
        return fut

    async def read(self, request, serializable: bool) -> object:
        """A Range: local if serializable, else linearizable."""
        return _outcome(await self.read_future(request, serializable))

    def read_future(self, request, serializable: bool) -> asyncio.Future:
        """`read` without the coroutine: a future of the response or its EtcdError."""
        fut = asyncio.get_running_loop().create_future()

        def done(result):
            if not fut.done():
                fut.set_result(result.to_response() if isinstance(result, EncodedRange) else result)

        self.read_then(request, serializable, done)
        return fut

    def read_then(self, request, serializable: bool, done) -> None:
        """`read` for a caller without a coroutine: `done(response or EtcdError)` is called once,
        from the loop (at once for a serializable read); the response of a read served here
        may be a KVStore.read EncodedRange. `request` may also be a key (bytes), for
        RangeRequest(key=request) (the servicer passes plain requests so, unparsed). Invalid
        requests raise at once."""
        if type(request) is bytes:
            if not request:
                raise errors.EMPTY_KEY
            check_size(len(request))
        else:
            validate(Kind.RANGE, request)
        if serializable:
            done(self.kv.read(request))
            return
        self._reads_arrived.append((request, done))  # routed at the next turn, together
        self._wake.set()

    # ---- the turn ----

    async def _turn(self) -> None:
        self.turns += 1
        if self._peer_digests:
            claims, self._peer_digests = self._peer_digests, []
            for sender, last, digest in claims:
                self.checks.on_peer_digest(sender, last, digest)
        core = self.core
        readies = []
        if self._snapshot_in is not None:
            await self._install_peer_snapshot(readies)
        ticks = min(self._ticks_due, self.config.max_catch_up_ticks)
        self._ticks_due = 0
        for _ in range(ticks):
            readies.append(core.tick())
        inbox = self._inbox
        while inbox:
            msg = inbox.popleft()
            try:
                readies.append(core.receive(msg))
            except ValueError as err:
                log.warning("dropped a malformed peer message (%d bytes): %s", len(msg), err)
        self._current_status()
        self._propose(readies)
        if self._reads_arrived:
            self._route_reads()
        if self._read_asks:
            self._answer_read_asks()
        self._start_reads(readies)
        await self._handle(readies)
        self._serve_reads()
        now = self._clock()
        if now - self._last_scan >= 0.05:
            self._last_scan = now
            self._scan_pending(now)
        if self.kv.next_slot - self._snapshot_slot >= self.config.snapshot_every_slots:
            await self._snapshot()

    def _current_status(self) -> dict:
        """The core's status, read again and checked if the core took a step since the last
        read (a status is a function of the core's state, which only its steps change)."""
        if self._status_stale:
            status = self.core.status()
            self.checks.on_status(status)
            if status["role"] != self.status.get("role") or status["promised"] != self.status.get("promised"):
                self._log_role(status, status["role"] != self.status.get("role"))
            self.status = status
            self._status_stale = False
        return self.status

    def _log_role(self, s: dict, role_changed: bool) -> None:
        """A line per change of role; a new promise in the same role (elections that keep failing,
        in a partition) at most once a second, with how many were not logged."""
        now = self._clock()
        if not role_changed and now - self._role_logged_at < 1.0:
            self._promises_unlogged += 1
            return
        more = f" ({self._promises_unlogged} more promises since the last line)" if self._promises_unlogged else ""
        self._role_logged_at, self._promises_unlogged = now, 0
        log.info("%s at ballot %s, promised %s, leader %s; log [%d, %d), committed below %d%s",
                 s["role"], tuple(s["ballot"]), tuple(s["promised"]), s["leader"],
                 s["log_start"], s["next_slot"], s["commit_upto"], more)

    async def _handle(self, readies: list) -> None:
        """Honour each Ready in turn order: early messages at once; records written in order;
        a `sync` Ready's records durable (one group commit for the turn) before its messages
        and commits and before anything of the Readies after it."""
        records = [r for rd in readies for r in rd.records]
        barrier = next((i for i, rd in enumerate(readies) if rd.sync), len(readies))
        for rd in readies:
            if rd.need_snapshot:
                self._send_snapshot(rd.need_snapshot)
        for rd in readies[:barrier]:  # nothing of theirs waits for a sync
            self._send(rd.early)
            self._send(rd.messages)
            self._apply(rd.commits)
        if barrier == len(readies):
            self.wal.append_lazy(records)
        else:
            # independent of the barrier's own records; the transport's flush is scheduled
            # before the WAL's sync, which starts one loop iteration later (uvloop writes to
            # sockets between iterations), so they leave while this node syncs
            self._send(readies[barrier].early)
            await self.wal.append_many(records)
            self._durable_needed = self.wal.written_records
            for i, rd in enumerate(readies[barrier:]):
                if i:
                    self._send(rd.early)
                self._send(rd.messages)
                self._apply(rd.commits)
        self.checks.on_log_start(self._current_status()["log_start"], self.kv.next_slot)

    def _send(self, messages: list) -> None:
        if not messages:
            return
        # PersistBeforeSend, observed on the WAL: every record written up to the last sync
        # barrier is durable before a message leaves.
        self.checks.before_send(max(0, self._durable_needed - self.wal.synced_records))
        self.checks.on_messages(messages)
        send = self.transport.send
        for dst, msg in messages:
            send(dst, KIND_CORE, msg)

    def _apply(self, commits: list) -> None:
        if not commits:
            return
        self.checks.on_commits(commits, self.kv.next_slot)
        for slot, value in commits:
            if slot < self.kv.next_slot:
                continue  # already in the KV state (e.g. redelivered after recovery)
            self._answer(self.kv.apply(slot, value, reads_for=self.client_id))
        if self.checks.announcements:
            for last, digest in self.checks.announcements:
                payload = DIGEST.pack(last, self.node_id, digest)
                for peer in range(self.cluster_size):
                    if peer != self.node_id:
                        self.transport.send(peer, KIND_DIGEST, payload)
            self.checks.announcements = []

    def _answer(self, outcomes) -> None:
        my_id = self.client_id
        for out in outcomes:
            if out.command.client_id != my_id:
                continue
            p = self._waiting.pop(out.command.request_seq, None)
            if p is not None and not p.future.done():
                p.future.set_result(out.result)

    def _batches(self, commands: list[bytes]) -> list[list[bytes]]:
        out, cur, size = [], [], 0
        for c in commands:
            if cur and size + len(c) > self.config.max_batch_bytes:
                out.append(cur)
                cur, size = [], 0
            cur.append(c)
            size += len(c) + 4
        if cur:
            out.append(cur)
        return out

    def _propose(self, readies: list) -> None:
        if not self._local_out and not self._forwarded_in:
            return
        role, leader = self.status.get("role"), self.status.get("leader")
        if role == "leader":
            commands = self._local_out + self._forwarded_in
            self._local_out, self._forwarded_in = [], []
            for i, batch in enumerate(self._batches(commands)):
                rd = self.core.propose(encode_batch(batch))
                readies.append(rd)
                self.checks.on_propose(rd.accepted, self._current_status())
                if not rd.accepted:  # not leading any more, or the window is full: retry later
                    break
            return
        self._forwarded_in = []  # the originator retries them
        if leader is not None and leader != self.node_id and self._local_out:
            for batch in self._batches(self._local_out):
                self.transport.send(leader, KIND_FORWARD, encode_batch(batch))
        self._local_out = []  # with no leader known, _scan_pending resends them later

    def _start_reads(self, readies: list) -> None:
        if not self._reads_waiting:
            return
        leading = self.status.get("role") == "leader"
        batches = self._read_batches
        if leading and batches and batches[-1][0] > self.status.get("read_confirmed", 0):
            return  # a confirmation is in flight: these reads wait for the next one
        reads, self._reads_waiting = self._reads_waiting, []
        if leading:
            rd, read_seq, read_slot = self.core.confirm_read()
            readies.append(rd)
            if read_seq:
                self._read_batches.append((read_seq, read_slot, reads))
                return
        self._reads_through_log(reads)

    def _route_reads(self) -> None:
        """The linearizable reads that arrived since the last turn: the leader confirms them
        itself; a follower asks the leader with one ReadIndex request for all, once the one in
        flight (if any) is answered."""
        leader = self.status.get("leader")
        following = self.status.get("role") != "leader" and leader is not None and leader != self.node_id
        if following and self._remote_reads:
            return  # wait for the answer to the request in flight (or its retry timeout)
        reads, self._reads_arrived = self._reads_arrived, []
        if self.status.get("role") == "leader":
            self._reads_waiting.extend(reads)
        elif following:
            req_id = self._next_read_id
            self._next_read_id += 1
            self._remote_reads[req_id] = (reads, self._clock())
            rnd, node = self._current_status()["promised"]  # now, after these reads arrived
            self.transport.send(leader, KIND_READ_INDEX, READ_ASK.pack(req_id, self.node_id, rnd, node))
        else:
            self._reads_through_log(reads)

    def _answer_read_asks(self) -> None:
        """Followers' ReadIndex requests. The core answers one at once when the asker's promise
        at the time it asked and this leader make a quorum (see `Core.read_index_attested`);
        the others wait for a leadership confirmation, like this node's own reads."""
        asks, self._read_asks = self._read_asks, []
        leading = self.status.get("role") == "leader"
        for asker, req_id, promised in asks:
            slot = self.core.read_index_attested(asker, promised) if leading else 0
            if slot:
                self.transport.send(asker, KIND_READ_INDEX_REPLY, READ_REPLY.pack(req_id, slot))
            else:
                self._reads_waiting.append((None, (asker, req_id)))

    def _reads_through_log(self, reads) -> None:
        """Order reads through the log instead; a follower's ReadIndex request is told to do so."""
        for request, done in reads:
            if request is None:
                asker, req_id = done
                self.transport.send(asker, KIND_READ_INDEX_REPLY, READ_REPLY.pack(req_id, 0))
                continue
            if type(request) is bytes:  # a key (see read_then)
                request = rpc_pb2.RangeRequest(key=request)
            try:
                ordered = self.submit_future(Kind.RANGE, request)
            except EtcdError as err:  # the queue is full
                done(err)
                continue
            ordered.add_done_callback(
                lambda o, done=done: done(errors.NO_LEADER if o.cancelled() else o.exception() or o.result()))

    def _serve_reads(self) -> None:
        if self._follower_reads:  # the leader's read slot is known: serve once applied that far
            ready = [r for r in self._follower_reads if self.kv.next_slot >= r[0]]
            if ready:
                self._follower_reads = [r for r in self._follower_reads if self.kv.next_slot < r[0]]
                for _, request, done in ready:
                    done(self.kv.read(request))
        batches = self._read_batches
        confirmed = self.status.get("read_confirmed", 0)
        while batches:
            read_seq, read_slot, reads = batches[0]
            if confirmed >= read_seq:
                # leadership confirmed after these reads arrived: followers get the read slot now
                # (they wait for their own applied slots), this node's clients once applied
                if any(request is None for request, _ in reads):
                    for request, asker_and_id in reads:
                        if request is None:
                            asker, req_id = asker_and_id
                            self.transport.send(asker, KIND_READ_INDEX_REPLY, READ_REPLY.pack(req_id, read_slot))
                    reads = [r for r in reads if r[0] is not None]
                    batches[0] = (read_seq, read_slot, reads)
                if self.kv.next_slot < read_slot:
                    break
                batches.popleft()
                for request, done in reads:
                    done(self.kv.read(request))
            elif self.status.get("role") != "leader":
                batches.popleft()  # lost leadership before confirming: order them through the log
                self._reads_through_log(reads)
            else:
                break

    def _scan_pending(self, now: float) -> None:
        retry_before = now - self.config.retry_after_s
        acked = self._acked_below()
        expired = []
        for seq, p in self._waiting.items():
            if p.deadline <= now:
                expired.append(seq)
            elif p.last_sent <= retry_before:
                p.last_sent = now
                self._local_out.append(Command(p.kind, self.client_id, seq, acked, p.body).encode())
        for req_id, (reads, asked_at) in list(self._remote_reads.items()):
            if asked_at <= retry_before:  # no answer from the leader: order them through the log
                del self._remote_reads[req_id]
                self._reads_through_log(reads)
        for seq in expired:
            p = self._waiting.pop(seq)
            if not p.future.done():
                p.future.set_result(errors.TIMEOUT)
        if self._local_out:
            self._wake.set()

    def _send_snapshot(self, peers: list[int]) -> None:
        """Peers asked for slots this node truncated: send them its KV snapshot (rate-limited)."""
        now = self._clock()
        due = [p for p in set(peers) if now - self._snapshot_sent_at.get(p, -1e9) >= self.config.retry_after_s]
        if not due:
            return
        state = self.kv.snapshot()
        if len(state) + 64 > MAX_FRAME_BYTES:
            log.error("cannot send a snapshot of %d bytes to nodes %s: over the frame limit", len(state), due)
            return
        for peer in due:
            self._snapshot_sent_at[peer] = now
            self.transport.send(peer, KIND_SNAPSHOT, state)
        log.info("sent a snapshot at slot %d to nodes %s", self.kv.next_slot, due)

    async def _install_peer_snapshot(self, readies: list) -> None:
        """This node lags behind a peer's truncation point: install the peer's snapshot."""
        store, self._snapshot_in = self._snapshot_in, None
        slot = store.next_slot
        if slot <= self.kv.next_slot:
            return  # caught up meanwhile
        self.wal.drain()
        rd = self.core.install_snapshot(slot)
        if self._current_status()["log_start"] != slot:
            return  # the core refused (it is not behind): keep the own state
        self.kv = store
        self.wal.install_snapshot(slot, store.snapshot(), self.core.checkpoint_records())
        self._snapshot_slot = slot
        self.peer_snapshots_installed += 1
        readies.append(rd)  # commits of slots above the snapshot that this node already had
        log.info("installed a peer's snapshot at slot %d (revision %d)", slot, store.revision)

    async def _snapshot(self) -> None:
        slot = self.kv.next_slot
        rd = self.core.truncate(slot)
        self.wal.drain()  # pending appends are durable before the segment is closed
        # The snapshot is durable before any record says the log starts at `slot`: a crash or a
        # failed write in between recovers from the previous snapshot and the whole log.
        self.wal.install_snapshot(slot, self.kv.snapshot(), self.core.checkpoint_records())
        await self._handle([rd])
        self._snapshot_slot = slot
        log.info("snapshot at slot %d (revision %d)", slot, self.kv.revision)

    # ---- for the servicer ----

    def header_fields(self) -> dict:
        ballot = self.status.get("ballot") or (0, 0)
        promised = self.status.get("promised") or (0, 0)
        return {"cluster_id": CLUSTER_ID, "member_id": self.node_id + 1,
                "raft_term": max(ballot[0], promised[0])}
