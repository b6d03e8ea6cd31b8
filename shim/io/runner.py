"""One verikv node on an asyncio loop: a NodeMachine (shim/node/machine.py) with a real WAL,
peer transport and tick timer.

The runner turns events into the machine's calls (a tick timer, peer frames, client requests),
wakes up for a turn when there is something to do, and carries out the turn's actions in order:
frames to the transport, records to the WAL (awaiting durability when the machine asks), snapshots
to disk. Before every frame leaves it checks, on the WAL itself, that every record the machine
asked to be durable is synced (PersistBeforeSend).

This module must never decide anything: what to send, store or answer is the machine's. A runtime
check, a WAL failure or a core FatalCheck propagates out of `run()`, and the process exits.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import random
import signal
import socket
import struct
import time

from verikv.shim.io.heap import release_free_memory
from verikv.shim.io.transport import Transport
from verikv.shim.io.wal import Wal, WalFatalError
from verikv.shim.kv import errors
from verikv.shim.kv.gc_pause import collector_paused
from verikv.shim.node.machine import Append, NodeConfig, NodeMachine, Send, WriteSnapshot, WriteState

log = logging.getLogger("verikv.node")

__all__ = ["Node", "NodeConfig"]

# etcd_network_peer_round_trip_time_seconds: etcd's buckets, and how often the runner samples
RTT_BUCKETS_S = tuple(0.0001 * 2 ** i for i in range(16))
RTT_SAMPLE_EVERY_S = 1.0
# A turn longer than this is counted and logged (at most a line a second), with where its time
# went: heartbeats and answers wait for it (etcd warns of an apply longer than 100 ms, too)
SLOW_TURN_S = 0.1
# what each kind of action is called in that line
_ACTION_NAMES = {Send: "sending", Append: "appending to the WAL", WriteState: "starting a snapshot",
                 WriteSnapshot: "installing a snapshot"}
_TCP_INFO_RTT_US = struct.Struct("<I")  # struct tcp_info's tcpi_rtt (Linux), at offset 68
_TCP_INFO_BYTES = 104


def tcp_rtt_s(writer) -> float | None:
    """The kernel's smoothed round-trip time of a connection (TCP_INFO), or None."""
    try:
        sock = writer.get_extra_info("socket")
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
    except (AttributeError, OSError):
        return None
    if len(info) < 72:
        return None
    return _TCP_INFO_RTT_US.unpack_from(info, 68)[0] / 1e6


def _die_with_parent() -> None:
    """In a child process: the kernel kills it if its parent dies (prctl PR_SET_PDEATHSIG), so a
    snapshot writer never outlives its node."""
    PR_SET_PDEATHSIG = 1
    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the writer finishes on its own (its file is a .tmp until renamed)
    if os.getppid() != parent:  # the parent died before the prctl took effect
        os._exit(1)


class RttHistogram:
    """Samples of one peer's round-trip time: counts per bucket of RTT_BUCKETS_S (then above), sum."""

    BUCKETS_S = RTT_BUCKETS_S

    def __init__(self) -> None:
        self.counts = [0] * (len(RTT_BUCKETS_S) + 1)
        self.sum_s = 0.0

    def observe(self, rtt_s: float) -> None:
        self.sum_s += rtt_s
        self.counts[next((i for i, b in enumerate(RTT_BUCKETS_S) if rtt_s <= b), len(RTT_BUCKETS_S))] += 1


class Node:
    def __init__(self, config: NodeConfig, core, disk=None, *, transport_factory=Transport,
                 clock=time.monotonic, rng: random.Random | None = None, peer_tls=None,
                 snapshots_in_child: bool = True):
        self.config = config
        self.machine = NodeMachine(config, core, clock=clock, rng=rng or random.SystemRandom())
        self.disk = disk
        self.wal: Wal | None = None
        self.transport = transport_factory(config.node_id, config.peer_addresses, self._on_frame,
                                           **({"tls": peer_tls} if peer_tls is not None else {}))
        self._wake = asyncio.Event()
        self._stopping = False
        self._tick_handle: asyncio.TimerHandle | None = None
        self._rtt_handle: asyncio.TimerHandle | None = None
        # snapshots are written by a child process (see _fork_state_writer), or in the loop
        self.snapshots_in_child = snapshots_in_child
        self._state_job: asyncio.Future | None = None
        self._state_writer: int | None = None  # the pid of the child writing it
        self.state_write_seconds = 0.0  # how long the last one written by a child took
        # turns longer than SLOW_TURN_S; the seconds this turn's actions took, by kind
        self.slow_turns = 0
        self._action_seconds: dict[type, float] = {}
        self._slow_logged_at = float("-inf")
        self._slow_unlogged = 0
        # the seconds Python's cycle collector ran during this turn (part of the node's own work)
        self._gc_seconds = 0.0
        self._gc_started: float | None = None
        # each peer's round-trip time: the kernel's smoothed RTT of the connection to it (TCP
        # sees every frame's acknowledgement), sampled every RTT_SAMPLE_EVERY_S
        self.peer_rtt: dict[int, RttHistogram] = {}
        # called with the KV store and the writes applied since the last call (in order), after
        # each batch of commits is applied, before its clients are answered, and after each
        # turn: how watchers learn of them
        self.on_applied: list = []
        self.machine.applied_hook = self._applied

    # what the servicer reads
    @property
    def node_id(self) -> int:
        return self.machine.node_id

    @property
    def cluster_size(self) -> int:
        return self.machine.cluster_size

    @property
    def status(self) -> dict:
        return self.machine.status

    @property
    def kv(self):
        return self.machine.kv

    # ---- lifecycle ----

    async def start(self) -> None:
        with collector_paused():  # the recovered state is made at once (gc_pause.py)
            self.wal, rec = Wal.open(self.config.data_dir / "wal", self.disk)
            if rec.cut_tail:
                log.warning("WAL recovery: %s", rec.cut_tail)
            if rec.snapshot is not None:
                self.machine.restore(rec.snapshot)
            await self._carry_out(self.machine.recover(rec.records))
            self._applied()
            del rec  # the replayed records: their memory goes back to the system
        self._release_memory("recovered")
        await self.transport.start()
        gc.callbacks.append(self._on_gc)
        self._tick_handle = asyncio.get_running_loop().call_later(self.config.tick_ms / 1000.0, self._on_tick)
        self._rtt_handle = asyncio.get_running_loop().call_later(RTT_SAMPLE_EVERY_S, self._sample_rtt)

    @staticmethod
    def _release_memory(after: str) -> None:
        """Hand the C heap's free pages back to the system after a burst of objects was freed
        (shim/io/heap.py)."""
        freed = release_free_memory()
        if freed is not None and freed >= 1 << 20:  # (None: a C library without malloc_trim)
            log.info("%s: %d MiB of freed memory returned to the system", after, freed >> 20)

    def _sample_rtt(self) -> None:
        for peer_id, peer in getattr(self.transport, "peers", {}).items():
            writer = getattr(peer, "writer", None)
            rtt = tcp_rtt_s(writer) if writer is not None else None
            if rtt is not None:
                self.peer_rtt.setdefault(peer_id, RttHistogram()).observe(rtt)
        if not self._stopping:
            self._rtt_handle = asyncio.get_running_loop().call_later(RTT_SAMPLE_EVERY_S, self._sample_rtt)

    def _on_gc(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._gc_started = time.monotonic()
        elif self._gc_started is not None:
            self._gc_seconds += time.monotonic() - self._gc_started
            self._gc_started = None

    def _on_tick(self) -> None:
        self.machine.tick()
        self._wake.set()
        if not self._stopping:
            self._tick_handle = asyncio.get_running_loop().call_later(self.config.tick_ms / 1000.0,
                                                                       self._on_tick)

    async def run(self) -> None:
        """Turn until stopped. Fatal errors (runtime checks, WAL, core) propagate."""
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            await self.turn()

    async def turn(self) -> None:
        started = time.monotonic()
        self._action_seconds = {}
        self._gc_seconds = 0.0
        if self._state_job is not None and self._state_job.done():
            await self._state_finished()  # raises if it failed
        await self._carry_out(self.machine.turn())
        self._applied()
        if self.machine.wants_turn:
            self._wake.set()
        took = time.monotonic() - started
        if took > SLOW_TURN_S:
            self._slow_turn(took)

    def _slow_turn(self, took: float) -> None:
        self.slow_turns += 1
        now = time.monotonic()
        if now - self._slow_logged_at < 1.0:
            self._slow_unlogged += 1
            return
        more = f" ({self._slow_unlogged} more since the last line)" if self._slow_unlogged else ""
        self._slow_logged_at, self._slow_unlogged = now, 0
        spent = sorted(self._action_seconds.items(), key=lambda kv: -kv[1])
        own = took - sum(s for _, s in spent)
        parts = [f"{_ACTION_NAMES.get(kind, kind.__name__)} {s * 1000:.0f} ms" for kind, s in spent if s >= 0.001]
        collector = (f", of which Python's cycle collector {self._gc_seconds * 1000:.0f} ms"
                     if self._gc_seconds >= 0.001 else "")
        parts.append(f"the node's own work (the core's steps, applying, answering) {own * 1000:.0f} ms{collector}")
        log.warning("a turn took %.0f ms (longer than %.0f ms: heartbeats and answers wait for it): %s%s",
                    took * 1000, SLOW_TURN_S * 1000, ", ".join(parts), more)

    def _applied(self) -> None:
        kv = self.machine.kv
        writes = kv.take_recent()
        for listener in self.on_applied:
            listener(kv, writes)

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if self._tick_handle:
            self._tick_handle.cancel()
        if self._rtt_handle:
            self._rtt_handle.cancel()
        await self.transport.close()
        if self._state_writer is not None:
            # a snapshot's writer is not waited for (seconds with a large state): the node's WAL
            # and previous snapshot hold everything, and the file begun is removed
            try:
                os.kill(self._state_writer, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self._state_job is not None:
            try:
                await self._state_finished()
            except WalFatalError as err:
                log.error("%s", err)
        if self.wal:
            self.wal.drain()
            self.wal.close()
        self.machine.fail_pending(errors.NO_LEADER)

    # ---- events ----

    def _on_frame(self, sender: int, kind: int, payload: bytes) -> None:
        self.machine.frame(kind, payload, sender)
        self._wake.set()

    def command(self, kind, request, body: bytes, done, who=None) -> None:
        """A client's write (see NodeMachine.command); `done` gets the answer."""
        self.machine.command(kind, request, body, done, who)
        self._wake.set()

    def lease_grant(self, request, done, who=None) -> None:
        """A client's LeaseGrant (see NodeMachine.lease_grant)."""
        self.machine.lease_grant(request, done, who)
        self._wake.set()

    def defragment(self, done) -> None:
        """etcd's Defragment (see NodeMachine.defragment)."""
        self.machine.defragment(done)
        self._wake.set()

    def move_leader(self, target: int, done) -> None:
        """etcd's MoveLeader (see NodeMachine.move_leader)."""
        self.machine.move_leader(target, done)
        self._wake.set()

    def read(self, request, serializable: bool, done) -> None:
        """A client's Range (see NodeMachine.read); `done` gets the answer."""
        self.machine.read(request, serializable, done)
        if not serializable:
            self._wake.set()

    # ---- snapshots ----

    def _fork_state_writer(self, state, kv_state, core_records) -> int:
        """Fork a child process that writes the snapshot `state` (the KV state and the core's, as
        they are now: its copy-on-write pages, about 20 ms for a GB), while this process goes on
        serving; its pid. A state of 156 MiB takes about 1.2 s to encode, write and sync: in the
        loop, that would stop heartbeats for six election timeouts. The fork happens here, not in
        a task of its own: the core's state it copies must be the one the WAL's new segment
        follows (`start_segment`), with no record of a later step in between."""
        wal = self.wal
        pid = os.fork()
        if pid == 0:  # the child: nothing of the parent's loop, sockets or threads is used here
            code = 1
            try:
                gc.disable()  # a collection would touch (and so copy) every page of the state
                os.nice(19)  # the node's own work (heartbeats, answers) comes first on a busy host
                # its copies of the node's sockets and files: a connection the node closes
                # meanwhile must close, and a port it frees be free (stderr stays, for errors)
                os.closerange(3, os.sysconf("SC_OPEN_MAX"))
                _die_with_parent()
                wal.write_state(state, kv_state(), core_records(state.slot))  # (truncates this copy's core)
                code = 0
            except BaseException as err:  # noqa: BLE001 - reported on stderr, then the exit code
                try:
                    os.write(2, f"verikv: writing the snapshot at slot {state.slot} failed: {err!r}\n".encode())
                except OSError:
                    pass
            finally:
                os._exit(code)
        self._state_writer = pid
        return pid

    async def _state_writer_done(self, state, pid: int, started: float, forked_s: float) -> None:
        """Wait for the child writing `state`, then tell the machine (its failure is fatal)."""
        wal = self.wal
        try:
            _, status = await asyncio.get_running_loop().run_in_executor(None, os.waitpid, pid, 0)
        finally:
            self._state_writer = None
        code = os.waitstatus_to_exitcode(status)
        if code != 0 and self._stopping:
            wal.abandon_state()  # stopped by stop(): the previous snapshot stays the WAL's start
            return
        if code != 0:
            wal.abandon_state()
            raise WalFatalError(f"writing the snapshot at slot {state.slot} failed (its writer exited with {code})")
        wal.state_written(state)
        self.state_write_seconds = time.monotonic() - started
        log.info("the state at slot %d written by a child process: %d bytes in %.2f s (its fork took %.1f ms here)",
                 state.slot, state.kv_state_bytes, self.state_write_seconds, forked_s * 1000)
        self.machine.state_written(state.slot, state.kv_state_bytes)

    async def _state_finished(self) -> None:
        """Wait for the snapshot state being written, if one is; its failure is fatal."""
        job, self._state_job = self._state_job, None
        if job is not None:
            await job

    # ---- actions ----

    async def _carry_out(self, actions) -> None:
        wal, send, spent = self.wal, self.transport.send, self._action_seconds
        flush_now = getattr(self.transport, "flush_now", lambda: True)
        for action in actions:
            kind = type(action)
            began = time.monotonic()
            if kind is Send:
                # PersistBeforeSend, observed on the WAL: every record that a core message queued
                # so far depends on (the checks count them from the core's Readies) is durable
                # before a frame leaves.
                self.machine.checks.before_send(wal.synced_records)
                for dst, frame_kind, payload in action.frames:
                    send(dst, frame_kind, payload)
                # to the sockets now, not when the transport's own callback runs (after the rest
                # of this turn, or at the start of the next loop iteration)
                if not flush_now() and action.now:
                    # some wait in a loop transport, written after this iteration's callbacks:
                    # end the iteration, so that they leave before the turn goes on
                    await asyncio.sleep(0)
            elif kind is Append:
                if action.durable:
                    # the transport's flush is scheduled before the WAL's sync, which starts one
                    # loop iteration later (uvloop writes to sockets between iterations), so the
                    # frames of the Send before this leave while this node syncs
                    await wal.append_many(action.records)
                else:
                    wal.append_lazy(action.records)
            elif kind is WriteState:
                await self._state_finished()  # one at a time
                state = wal.begin_state(action.slot)
                wal.start_segment(state)  # the records after this action follow the core's state
                if self.snapshots_in_child:
                    started = time.monotonic()
                    pid = self._fork_state_writer(state, action.kv_state, action.core_records)
                    self._state_job = asyncio.ensure_future(
                        self._state_writer_done(state, pid, started, time.monotonic() - started))
                    self._state_job.add_done_callback(lambda _: self._wake.set())
                else:
                    # (blocks the loop for as long as the state takes to encode, write and sync)
                    try:
                        wal.write_state(state, action.kv_state(), action.core_records(None))
                    except OSError as err:
                        wal.abandon_state()
                        raise WalFatalError(f"writing the snapshot at slot {action.slot} failed: {err}") from err
                    wal.state_written(state)
                    self.machine.state_written(action.slot, state.kv_state_bytes)
            elif kind is WriteSnapshot:
                # the frames handed over before it leave now: the peers should not wait for them
                flush_now()
                await self._state_finished()  # a peer's snapshot replaces the one being written
                wal.drain()  # pending appends are durable before the segment is closed
                # (what it covers is deleted by another thread: unlinking 64 MiB segments takes
                # tens of ms, and nothing waits for it)
                wal.install_snapshot(action.slot, action.kv_state, action.core_records,
                                     remove=lambda paths: asyncio.get_running_loop().run_in_executor(
                                         None, wal.remove_files, paths))
                if action.kv_state is not None:  # a peer's: the state it replaced is freed
                    self._release_memory("installed a peer's snapshot")
            else:
                raise TypeError(f"unknown action {action!r}")
            spent[kind] = spent.get(kind, 0.0) + time.monotonic() - began
