"""Linearizable reads: each is served from the local KV state once it is known to be recent enough.

At the leader, a read waits for `core.confirm_read()` (a heartbeat round that confirms this node
still leads) and for the applied slots to reach the read slot it returns. A follower asks the
leader for a read slot (ReadIndex) and serves once it has applied that far. One confirmation (one
ReadIndex request at a follower) is in flight at a time: reads that arrive meanwhile wait for the
next one, which covers them all, so under load the heartbeats per read shrink instead of growing.
A ReadIndex request carries the ballot the follower had promised when it asked; in a cluster of
three, the core answers it at once when that ballot is the leader's own (the follower and the
leader are a quorum that a newer leader would have needed), without a heartbeat round. Without a
leader, or when a confirmation fails, reads are ordered through the log as read-only commands.

The stages of a read, in the order a read passes them:
  arrived     since the last turn; routed together at the next one
  waiting     at the leader, for the next confirmation (own reads and followers' PeerReads)
  confirming  at the leader, confirmations in flight: (read_seq, read_slot, reads)
  asked       at a follower, its ReadIndex request in flight: request id -> (reads, asked at)
  at_slot     at a follower, the leader's read slot known: (read slot, request, done)
and `asks`: followers' ReadIndex requests that arrived since the last turn.

This module must never change the KV state or decide anything the core decides.
"""

from __future__ import annotations

import collections
from typing import NamedTuple

from verikv.etcdpb import rpc_pb2
from verikv.shim.kv.commands import Kind
from verikv.shim.node.peer_wire import KIND_READ_INDEX, KIND_READ_INDEX_REPLY, READ_ASK, READ_REPLY


class PeerRead(NamedTuple):
    """A follower's ReadIndex request, waiting at the leader for a leadership confirmation."""

    asker: int
    req_id: int


class Reads:
    """The linearizable reads of one node, in their stages (see the module's text)."""

    def __init__(self, machine) -> None:
        self.m = machine  # the NodeMachine: its status, core, kv, send() and order()
        self.arrived: list[tuple[object, object]] = []
        self.waiting: list[object] = []  # (request, done) or PeerRead
        self.confirming: collections.deque = collections.deque()
        self.asked: dict[int, tuple[list, float]] = {}
        self.at_slot: list[tuple[int, object, object]] = []
        self.asks: list[tuple[int, int, tuple[int, int]]] = []  # (asker, request id, its promised ballot)
        self._next_id = 1

    # ---- frames from peers ----

    def on_ask(self, payload: bytes, cluster_size: int, max_pending: int) -> None:
        req_id, asker, rnd, node = READ_ASK.unpack(payload)
        if asker < cluster_size and len(self.asks) < max_pending:
            self.asks.append((asker, req_id, (rnd, node)))

    def on_reply(self, payload: bytes) -> None:
        req_id, read_slot = READ_REPLY.unpack(payload)
        entry = self.asked.pop(req_id, None)
        if entry is None:
            return
        reads, _ = entry
        if read_slot:
            self.at_slot.extend((read_slot, request, done) for request, done in reads)
        else:
            self.through_log(reads)

    # ---- the turn's stages ----

    def route(self) -> None:
        """The reads that arrived since the last turn: the leader confirms them itself; a
        follower asks the leader with one ReadIndex request for all, once the one in flight (if
        any) is answered; without a leader they go through the log."""
        m = self.m
        role, leader = m.status.get("role"), m.status.get("leader")
        following = role != "leader" and leader is not None and leader != m.node_id
        if following and self.asked:
            return  # wait for the answer to the request in flight (or its retry timeout)
        reads, self.arrived = self.arrived, []
        if role == "leader":
            self.waiting.extend(reads)
        elif following:
            req_id = self._next_id
            self._next_id += 1
            self.asked[req_id] = (reads, m.clock())
            rnd, node = m.current_status()["promised"]  # now, after these reads arrived
            m.send(leader, KIND_READ_INDEX, READ_ASK.pack(req_id, m.node_id, rnd, node))
        else:
            self.through_log(reads)

    def answer_asks(self) -> None:
        """Followers' ReadIndex requests. The core answers one at once when the asker's promise
        at the time it asked and this leader make a quorum (see `Core.read_index_attested`);
        the others wait for a leadership confirmation, like this node's own reads."""
        m = self.m
        asks, self.asks = self.asks, []
        leading = m.status.get("role") == "leader"
        for asker, req_id, promised in asks:
            slot = m.core.read_index_attested(asker, promised) if leading else 0
            if slot:
                m.send(asker, KIND_READ_INDEX_REPLY, READ_REPLY.pack(req_id, slot))
            else:
                self.waiting.append(PeerRead(asker, req_id))

    def confirm(self, readies: list) -> None:
        """Start a leadership confirmation for every read waiting, unless one is in flight (the
        reads' or check_quorum.py's probe's: one that started before these reads arrived cannot
        confirm them)."""
        if not self.waiting:
            return
        m = self.m
        leading = m.status.get("role") == "leader"
        if leading and m.check_quorum.in_flight():
            return  # these reads wait for the next one
        reads, self.waiting = self.waiting, []
        if leading:
            read_seq, read_slot = m.check_quorum.confirm(readies)
            if read_seq:
                self.confirming.append((read_seq, read_slot, reads))
                return
        self.through_log(reads)

    def serve(self) -> None:
        """Serve every read whose confirmation and read slot are reached."""
        m = self.m
        kv = m.kv
        if self.at_slot:  # the leader's read slot is known: serve once applied that far
            ready = [r for r in self.at_slot if kv.next_slot >= r[0]]
            if ready:
                self.at_slot = [r for r in self.at_slot if kv.next_slot < r[0]]
                for _, request, done in ready:
                    done(kv.read(request))
        confirming = self.confirming
        confirmed = m.status.get("read_confirmed", 0)
        while confirming:
            read_seq, read_slot, reads = confirming[0]
            if confirmed >= read_seq:
                # leadership confirmed after these reads arrived: followers get the read slot now
                # (they wait for their own applied slots), this node's clients once applied
                peers = [r for r in reads if type(r) is PeerRead]
                if peers:
                    for asker, req_id in peers:
                        m.send(asker, KIND_READ_INDEX_REPLY, READ_REPLY.pack(req_id, read_slot))
                    reads = [r for r in reads if type(r) is not PeerRead]
                    confirming[0] = (read_seq, read_slot, reads)
                if kv.next_slot < read_slot:
                    break
                confirming.popleft()
                for request, done in reads:
                    done(kv.read(request))
            elif m.status.get("role") != "leader":
                confirming.popleft()  # lost leadership before confirming: order them through the log
                self.through_log(reads)
            else:
                break

    def retry(self, retry_before: float) -> None:
        """ReadIndex requests the leader has not answered since retry_before go through the log."""
        for req_id, (reads, asked_at) in list(self.asked.items()):
            if asked_at <= retry_before:
                del self.asked[req_id]
                self.through_log(reads)

    def through_log(self, reads) -> None:
        """Order reads through the log instead; a follower's ReadIndex request is told to do so."""
        m = self.m
        for entry in reads:
            if type(entry) is PeerRead:
                m.send(entry.asker, KIND_READ_INDEX_REPLY, READ_REPLY.pack(entry.req_id, 0))
                continue
            request, done = entry
            if type(request) is bytes:  # a key: RangeRequest(key=request)
                request = rpc_pb2.RangeRequest(key=request)
            m.order(Kind.RANGE, request.SerializeToString(), done)
