"""The watch workload's watchers, and the final history they are checked against.

A watcher is one Watch stream on one node (that node's endpoint, never a balancer) on the
workload's prefix, opened with etcd's WithRequireLeader metadata (`hasleader: true`) and without
prev_kv. It records every response as it arrives: each event as (revision, key, type, value,
time), each event-less response as progress. After any error (the stream ended, UNAVAILABLE,
"no leader", nothing heard for `stall_s`: the node is paused or gone) it watches again, on the
same node, from the revision after the last event it saw (the run's start revision if it saw
none). A re-watch canceled because that revision was compacted (`compact_revision` set) is
recorded as such, and the watcher goes on from the compaction point, recording the revisions
it could no longer see. Each attempt is a segment of the watcher's record.

The final history is read after healing from one healthy node: the store's revision and
contents (a linearizable Range of the prefix), then every event of the prefix from the run's
start revision up to that revision (one more watch).

A watcher must never drop, reorder, merge or invent what the server sent, nor ask for any
revision but the one after the last it saw: the checker (watch_checker.py) judges the server by
these records.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import asdict, dataclass, field

import grpc

from verikv.etcdpb import kv_pb2, rpc_pb2, rpc_pb2_grpc
from verikv.jepsen.clients import _prefix_end, open_channel
from verikv.jepsen.workloads import Clock

REQUIRE_LEADER = (("hasleader", "true"),)  # etcd's clientv3.WithRequireLeader
PUT, DELETE = "PUT", "DELETE"
# how a segment ended
STOPPED, STALL, NO_LEADER, COMPACTED, CANCELED, ERROR, ENDED = \
    "stopped", "stall", "no-leader", "compacted", "canceled", "error", "ended"


@dataclass
class Segment:
    """One Watch attempt of a watcher."""
    start_revision: int
    opened_ms: float
    created_ms: float | None = None       # when the `created` response arrived (None: never)
    created_revision: int | None = None   # its header revision
    ended_ms: float | None = None
    end: str | None = None                # stopped | stall | no-leader | compacted | canceled | error | ended
    error: str | None = None
    compact_revision: int | None = None
    events: list = field(default_factory=list)     # [revision, key, PUT|DELETE, value|None, t_ms]
    # event-less responses (answers to progress requests): [header revision, t_ms, events before it]
    progress: list = field(default_factory=list)


def _event(ev, t_ms: float) -> list:
    typ = DELETE if ev.type == kv_pb2.Event.DELETE else PUT
    return [ev.kv.mod_revision, ev.kv.key.decode(errors="replace"), typ,
            ev.kv.value.decode(errors="replace") if typ == PUT else None, round(t_ms, 2)]


def _status_text(err: grpc.RpcError) -> str:
    code = err.code() if hasattr(err, "code") else None
    details = (err.details() if hasattr(err, "details") else str(err)) or ""
    return f"{code.name if code else 'ERROR'}: {details}"[:200]


class NodeWatcher(threading.Thread):
    """One watcher (see the module's text). `next_revision` is the revision it asks for next."""

    def __init__(self, index: int, node: int, endpoint: str, prefix: bytes, start_revision: int,
                 clock: Clock, stop: threading.Event, stall_s: float = 3.0, progress_every_s: float = 1.0,
                 retry_s: float = 0.2):
        super().__init__(name=f"watcher-{index}", daemon=True)
        self.index, self.node, self.endpoint, self.prefix = index, node, endpoint, prefix
        self.start_revision = self.next_revision = start_revision
        self.clock, self.stop_event = clock, stop
        self.stall_s, self.progress_every_s, self.retry_s = stall_s, progress_every_s, retry_s
        self.segments: list[Segment] = []
        self.skipped: list[list[int]] = []   # [first, last] revisions compacted before it saw them
        self.lock = threading.Lock()
        self._call = None
        self._requests: queue.SimpleQueue | None = None
        self._heard = 0.0
        self._created = False
        self._asked_progress = 0.0
        self._stalled = False

    # -- the watchdog (WatcherGroup's thread) -------------------------------------------------
    def tend(self, now: float) -> None:
        """Cancel the stream if nothing was heard for stall_s; otherwise ask for progress now
        and then, so that a live stream always answers something."""
        with self.lock:
            call = self._call
            if call is None:
                return
            if now - self._heard > self.stall_s:
                self._stalled = True
                call.cancel()
            elif self._created and now - self._asked_progress >= self.progress_every_s:
                self._asked_progress = now
                self._requests.put(rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()))

    def cancel(self) -> None:
        with self.lock:
            if self._call is not None:
                self._call.cancel()

    # -- the watcher's own thread ---------------------------------------------------------------
    def run(self) -> None:
        channel = open_channel(self.endpoint)
        stub = rpc_pb2_grpc.WatchStub(channel)
        try:
            while not self.stop_event.is_set():
                segment = Segment(self.next_revision, round(self.clock.now_ms(), 2))
                self.segments.append(segment)
                self._watch(stub, segment)
                if segment.end not in (STALL, COMPACTED, STOPPED):
                    self.stop_event.wait(self.retry_s)   # do not spin on a dead node
        finally:
            channel.close()

    def _watch(self, stub, segment: Segment) -> None:
        requests: queue.SimpleQueue = queue.SimpleQueue()
        requests.put(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
            key=self.prefix, range_end=_prefix_end(self.prefix), start_revision=segment.start_revision)))

        def request_stream():
            while True:
                req = requests.get()
                if req is None:
                    return
                yield req

        call = stub.Watch(request_stream(), metadata=REQUIRE_LEADER)
        with self.lock:
            self._call, self._requests = call, requests
            self._heard, self._created, self._stalled = time.monotonic(), False, False
        try:
            for resp in call:
                t_ms = self.clock.now_ms()
                with self.lock:
                    self._heard = time.monotonic()
                if resp.created:
                    segment.created_ms, segment.created_revision = round(t_ms, 2), resp.header.revision
                    with self.lock:
                        self._created, self._asked_progress = True, time.monotonic()
                if resp.canceled:
                    segment.error = resp.cancel_reason or None
                    if resp.compact_revision:
                        segment.end, segment.compact_revision = COMPACTED, resp.compact_revision
                        if resp.compact_revision > self.next_revision:
                            self.skipped.append([self.next_revision, resp.compact_revision - 1])
                            self.next_revision = resp.compact_revision
                    else:
                        segment.end = CANCELED
                    break
                if resp.events:
                    events = [_event(ev, t_ms) for ev in resp.events]
                    segment.events.extend(events)
                    self.next_revision = max(self.next_revision, max(e[0] for e in events) + 1)
                elif not resp.created:
                    segment.progress.append([resp.header.revision, round(t_ms, 2), len(segment.events)])
            else:
                segment.end = ENDED
        except grpc.RpcError as err:
            segment.error = _status_text(err)
            if self.stop_event.is_set():
                segment.end = STOPPED
            elif self._stalled:
                segment.end = STALL
            elif "no leader" in segment.error:
                segment.end = NO_LEADER
            else:
                segment.end = ERROR
        finally:
            with self.lock:
                self._call = None
            requests.put(None)
            call.cancel()
            segment.ended_ms = round(self.clock.now_ms(), 2)

    def record(self) -> dict:
        """What this watcher saw, as data (the checker's input)."""
        return {"watcher": self.index, "node": self.node, "endpoint": self.endpoint,
                "start_revision": self.start_revision, "skipped": [list(s) for s in self.skipped],
                "segments": [asdict(s) for s in list(self.segments)]}


class WatcherGroup:
    """`per_node` watchers on every node, and one watchdog thread that tends them."""

    def __init__(self, endpoints: list[str], prefix: bytes, start_revision: int, clock: Clock,
                 per_node: int = 2, stall_s: float = 3.0, progress_every_s: float = 1.0):
        self.stop_event = threading.Event()
        self.watchers = [NodeWatcher(i, i % len(endpoints), endpoints[i % len(endpoints)], prefix,
                                     start_revision, clock, self.stop_event, stall_s, progress_every_s)
                         for i in range(per_node * len(endpoints))]
        self._watchdog = threading.Thread(target=self._tend, name="watchdog", daemon=True)

    def start(self) -> None:
        for w in self.watchers:
            w.start()
        self._watchdog.start()

    def _tend(self) -> None:
        while not self.stop_event.wait(0.2):
            now = time.monotonic()
            for w in self.watchers:
                w.tend(now)

    def wait_caught_up(self, revision: int, timeout_s: float) -> bool:
        """Wait until every watcher has seen an event at `revision` or later."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(w.next_revision > revision for w in self.watchers):
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        """Idempotent; called from `finally`."""
        self.stop_event.set()
        for w in self.watchers:
            w.cancel()
        for w in self.watchers:
            if w.is_alive():
                w.join(timeout=5)
        if self._watchdog.is_alive():
            self._watchdog.join(timeout=2)

    def counts(self) -> dict:
        """For the progress lines: events received, re-watches, 'no leader' endings."""
        segments = [s for w in self.watchers for s in list(w.segments)]
        return {"events": sum(len(s.events) for s in segments),
                "rewatches": max(0, len(segments) - len(self.watchers)),
                "no_leader": sum(s.end == NO_LEADER for s in segments)}

    def records(self) -> list[dict]:
        return [w.record() for w in self.watchers]


# ---------------------------------------------------------------------------------------
# The run's start revision and the final history
# ---------------------------------------------------------------------------------------
def store_revision(endpoints: list[str], prefix: bytes, timeout_s: float = 20.0) -> tuple[int, dict]:
    """(the store's revision, the prefix's contents {key: [value, mod_revision]}) by a
    linearizable Range on the first node that answers."""
    deadline = time.monotonic() + timeout_s
    last_error = "no node answered"
    while time.monotonic() < deadline:
        for endpoint in endpoints:
            channel = open_channel(endpoint)
            try:
                resp = rpc_pb2_grpc.KVStub(channel).Range(
                    rpc_pb2.RangeRequest(key=prefix, range_end=_prefix_end(prefix)), timeout=5.0)
                return resp.header.revision, {kv.key.decode(errors="replace"):
                                              [kv.value.decode(errors="replace"), kv.mod_revision]
                                              for kv in resp.kvs}
            except grpc.RpcError as err:
                last_error = f"{endpoint}: {_status_text(err)}"
            finally:
                channel.close()
        time.sleep(0.5)
    raise RuntimeError(f"could not read the store's revision: {last_error}")


def read_final_history(endpoints: list[str], prefix: bytes, start_revision: int, clock: Clock,
                       timeout_s: float = 30.0) -> dict:
    """The final store: its revision and contents, and every event of the prefix from
    `start_revision` to that revision (from the compaction point if that history is gone:
    `from_revision` says where it starts). `complete` is False if it could not all be read."""
    out = {"revision": None, "start_revision": start_revision, "from_revision": start_revision,
           "compact_revision": None, "node": None, "state": {}, "events": [], "complete": False, "error": None}
    deadline = time.monotonic() + timeout_s
    try:
        revision, state = store_revision(endpoints, prefix, timeout_s=timeout_s / 2)
    except RuntimeError as err:
        out["error"] = str(err)
        return out
    out["revision"], out["state"] = revision, state
    while time.monotonic() < deadline:
        for node, endpoint in enumerate(endpoints):
            got = _history(endpoint, prefix, start_revision, revision, deadline)
            out.update(got, node=node)
            if got["complete"]:
                out["read_ms"] = round(clock.now_ms(), 2)
                return out
        time.sleep(0.5)
    return out


def _history(endpoint: str, prefix: bytes, start: int, upto: int, deadline: float) -> dict:
    """Every event of the prefix in [start, upto] from one node's watch."""
    events: list = []
    got = {"from_revision": start, "compact_revision": None, "events": events, "complete": False, "error": None}
    if upto < start:
        got["complete"] = True
        return got
    channel = open_channel(endpoint)
    stub = rpc_pb2_grpc.WatchStub(channel)
    try:
        while time.monotonic() < deadline:
            begin = got["from_revision"]
            request = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
                key=prefix, range_end=_prefix_end(prefix), start_revision=begin))
            done = threading.Event()

            def request_stream():
                yield request
                done.wait()   # no half-close: a server may take it for the end of the stream

            call = stub.Watch(request_stream(), timeout=max(0.5, deadline - time.monotonic()))
            compacted = False
            try:
                for resp in call:
                    if resp.canceled:
                        if resp.compact_revision:   # the history below it is gone: read from there
                            got["from_revision"] = got["compact_revision"] = resp.compact_revision
                            events.clear()
                            compacted = True
                            break
                        got["error"] = f"{endpoint}: watch canceled: {resp.cancel_reason}"
                        return got
                    events.extend(_event(ev, 0)[:4] for ev in resp.events)
                    if events and events[-1][0] >= upto:
                        got["complete"] = True
                        return got
            finally:
                done.set()
                call.cancel()
            if not compacted:
                got["error"] = f"{endpoint}: the watch ended at revision " \
                               f"{events[-1][0] if events else begin - 1} before the store's {upto}"
                return got
    except grpc.RpcError as err:
        got["error"] = f"{endpoint}: {_status_text(err)}"
    finally:
        channel.close()
    return got
