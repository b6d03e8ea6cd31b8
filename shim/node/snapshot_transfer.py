"""Streaming a KV snapshot to a member behind this node's truncation point: chunks, flow control,
and the checks before anything is installed. Deterministic (the clock is passed in), no I/O: the
frames go out through the `send(dst, kind, payload)` the node gives.

Sender (`SnapshotSender`). A transfer to a peer is a point-in-time copy of this node's KV state:
the bytes of `KVStore.snapshot()` taken when it starts (immutable, so the store goes on changing
while they stream; peers that start a transfer at the same slot share one copy) and a random
transfer id. Their sha256 is computed as the chunks first leave (so starting a transfer costs only
the copy) and travels in the last chunk. Chunks of CHUNK_BYTES leave at most WINDOW_CHUNKS ahead of what the receiver
has acknowledged, so at most WINDOW_CHUNKS x CHUNK_BYTES per peer wait in the transport however
large the state, and each turn of the node sends at most that much: the node goes on serving
clients and heartbeats between chunks. With no acknowledgement for `stall_s` the sender goes back
to the acknowledged offset (a chunk was lost; once every byte is acknowledged, it sends the last
chunk again, which the receiver answers with whether it installed the state); with no answer at
all for `abandon_s` it drops the transfer (the peer is gone), and the core asks again once the
peer is back.

Receiver (`SnapshotReceiver`). At most one transfer is assembled at a time, in memory, and only if
its declared size is at most `max_bytes`; so a node holds at most `max_bytes` of incoming snapshot
while it arrives (once complete: the bytes, copied once out of the assembly buffer, and the store
parsed from them, until it is installed). Chunks are taken only in order, each checked
against its CRC-32 (a damaged one is refused, logged and asked for again); every chunk of a
transfer must repeat the slot and size of its first. A complete transfer whose sha256 is not the
one its last chunk carries is refused, logged and dropped: nothing of it is installed. A chunk
of a transfer the receiver does not know, other than its first (this node restarted, or dropped
the transfer), is answered ACK_REFUSED, and the sender drops it. A new transfer replaces the one
being assembled if it is of a later slot, or the old one has had no chunk for `stall_s` (its
sender gave it up); otherwise it is refused (a late first chunk of an older transfer is too).

What the receiver hands back (`Complete`) is verified bytes; the node parses them, installs them
through the core's `install_snapshot` and then answers ACK_DONE.
"""

from __future__ import annotations

import hashlib
import logging
import zlib
from dataclasses import dataclass, field

from verikv.shim.node.peer_wire import (ACK_DONE, ACK_MORE, ACK_REFUSED, ACK_RESEND, KIND_SNAPSHOT_ACK,
                                        KIND_SNAPSHOT_CHUNK, SNAPSHOT_ACK, SNAPSHOT_CHUNK)

log = logging.getLogger("verikv.node")

CHUNK_BYTES = 1024 * 1024
WINDOW_CHUNKS = 4
MAX_BYTES = 4 * 1024 * 1024 * 1024  # the default bound on one incoming snapshot (NodeConfig.max_snapshot_bytes)
NO_DIGEST = bytes(32)  # the digest field of every chunk but the last
_MIB = 1024 * 1024


@dataclass
class _Outgoing:
    peer: int
    tid: int
    slot: int
    data: bytes
    started: float
    waiting_since: float  # the last acknowledgement progress, or go-back
    heard_at: float  # the last answer that moved the transfer on
    acked: int = 0  # the receiver has every byte below this
    sent: int = 0  # bytes below this were sent (since the last go-back)
    resent_from: int = -1
    resends: int = 0
    hasher: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    hashed: int = 0  # bytes below this are in `hasher`


class SnapshotSender:
    def __init__(self, node_id: int, *, stall_s: float, abandon_s: float, retry_s: float):
        self.node_id = node_id
        self.stall_s = stall_s
        self.abandon_s = abandon_s
        self.retry_s = retry_s
        self.transfers: dict[int, _Outgoing] = {}  # by peer
        self._ended_at: dict[int, float] = {}  # when the last transfer to a peer ended (rate limit)
        self.sent_bytes = 0
        self.completed = 0
        self.failed = 0

    def start(self, peers, now: float, kv, rng) -> None:
        """Peers asked for slots this node truncated: start a transfer to each that has none
        running (and did not end one within retry_s)."""
        due = sorted(p for p in set(peers) if p not in self.transfers
                     and now - self._ended_at.get(p, float("-inf")) >= self.retry_s)
        if not due:
            return
        slot = kv.next_slot
        shared = next((t for t in self.transfers.values() if t.slot == slot), None)
        data = shared.data if shared is not None else kv.snapshot()
        for peer in due:
            tid = rng.getrandbits(64)
            self.transfers[peer] = _Outgoing(peer, tid, slot, data, now, now, now)
        log.info("streaming a snapshot at slot %d (%d bytes, revision %d) to nodes %s", slot, len(data),
                 kv.revision, due)

    def pump(self, now: float, send) -> None:
        """Send what the window allows; go back after a stall; drop a transfer with no progress."""
        for peer, t in list(self.transfers.items()):
            if now - t.heard_at >= self.abandon_s:
                self._end(peer, now, failed=True)
                log.warning("gave up the snapshot transfer %016x to node %d: no answer for %.0f s (%d of %d "
                            "bytes acknowledged)", t.tid, peer, now - t.heard_at, t.acked, len(t.data))
                continue
            total = len(t.data)
            if t.sent > t.acked and now - t.waiting_since >= self.stall_s:
                log.info("snapshot transfer %016x to node %d: no answer for %.1f s, sending again from byte %d "
                         "(sent up to %d)", t.tid, peer, now - t.waiting_since, t.acked, t.sent)
                t.sent, t.waiting_since = t.acked, now  # a chunk or its answer was lost: go back
                t.resends += 1
            elif t.acked == total and now - t.waiting_since >= self.stall_s:
                # every byte arrived; the answer saying it is installed is late or lost: the last
                # chunk again, which the receiver answers with where it is
                t.sent, t.waiting_since = (total - 1) // CHUNK_BYTES * CHUNK_BYTES, now
            while t.sent < total and t.sent - t.acked < WINDOW_CHUNKS * CHUNK_BYTES:
                piece = t.data[t.sent:t.sent + CHUNK_BYTES]
                if t.sent == t.hashed:
                    t.hasher.update(piece)
                    t.hashed += len(piece)
                # chunks go in order from where the hash stopped, so the last one has it whole
                digest = t.hasher.digest() if t.sent + len(piece) == total else NO_DIGEST
                head = SNAPSHOT_CHUNK.pack(self.node_id, t.tid, t.slot, total, t.sent, zlib.crc32(piece), digest)
                send(peer, KIND_SNAPSHOT_CHUNK, head + piece)
                t.sent += len(piece)
                self.sent_bytes += len(piece)

    def on_ack(self, sender: int, payload: bytes, now: float) -> None:
        _, tid, offset, status = SNAPSHOT_ACK.unpack(payload)
        t = self.transfers.get(sender)
        if t is None or t.tid != tid:
            return  # an answer to a transfer that ended
        t.heard_at = now  # the receiver is there
        if status == ACK_DONE:
            self._end(sender, now, failed=False)
            took = now - t.started
            log.info("snapshot at slot %d (%d bytes) streamed to node %d in %.2f s (%.1f MiB/s, %d go-backs)",
                     t.slot, len(t.data), sender, took, len(t.data) / _MIB / max(took, 1e-9), t.resends)
        elif status == ACK_REFUSED:
            self._end(sender, now, failed=True)
            log.warning("node %d refused the snapshot transfer %016x at byte %d of %d", sender, tid, offset,
                        len(t.data))
        elif status == ACK_RESEND:
            if t.acked <= offset < t.sent and (offset != t.resent_from or now - t.waiting_since >= self.stall_s):
                t.acked = offset
                t.sent, t.resent_from, t.waiting_since = offset, offset, now
                t.resends += 1
        elif offset > t.acked:
            t.acked = min(offset, len(t.data))
            t.sent = max(t.sent, t.acked)
            t.waiting_since = now

    def _end(self, peer: int, now: float, failed: bool) -> None:
        del self.transfers[peer]
        self._ended_at[peer] = now
        if failed:
            self.failed += 1
        else:
            self.completed += 1


@dataclass
class Complete:
    """A verified snapshot: every byte in order, the sha256 its sender gave."""
    sender: int
    tid: int
    slot: int
    data: bytes


@dataclass
class _Incoming:
    sender: int
    tid: int
    slot: int
    total: int
    started: float
    touched: float
    buf: bytearray = field(default_factory=bytearray)
    hasher: "hashlib._Hash" = field(default_factory=hashlib.sha256)


class SnapshotReceiver:
    def __init__(self, node_id: int, *, max_bytes: int, stall_s: float):
        self.node_id = node_id
        self.max_bytes = max_bytes
        self.stall_s = stall_s
        self.current: _Incoming | None = None
        self._finished: dict[tuple[int, int], int] = {}  # (sender, tid) -> ACK_MORE (verified) or ACK_DONE
        self._unknown_logged: set[tuple[int, int]] = set()
        self.refused_chunks = 0  # damaged chunks (CRC-32)
        self.refused_transfers = 0  # digest mismatches, malformed or oversized transfers

    def _ack(self, send, dst: int, tid: int, offset: int, status: int) -> None:
        send(dst, KIND_SNAPSHOT_ACK, SNAPSHOT_ACK.pack(self.node_id, tid, offset, status))

    def on_chunk(self, sender: int, payload: bytes, applied_slot: int, now: float, send) -> Complete | None:
        """A chunk from peer `sender`; the verified snapshot if it was the last one."""
        _, tid, slot, total, offset, crc, digest = SNAPSHOT_CHUNK.unpack_from(payload)
        data = memoryview(payload)[SNAPSHOT_CHUNK.size:]
        key = (sender, tid)
        if key in self._finished:
            status = self._finished[key]
            self._ack(send, sender, tid, total, status)
            return None
        cur = self.current
        if cur is None or (cur.sender, cur.tid) != key:
            if offset != 0:
                if key not in self._unknown_logged:
                    self._unknown_logged.add(key)
                    log.info("refused a chunk of the unknown snapshot transfer %016x from node %d (offset %d): "
                             "this node restarted or dropped it", tid, sender, offset)
                self._ack(send, sender, tid, 0, ACK_REFUSED)
                return None
            if slot <= applied_slot:
                log.info("snapshot transfer %016x from node %d at slot %d not needed: slots below %d are applied "
                         "here", tid, sender, slot, applied_slot)
                self._ack(send, sender, tid, 0, ACK_DONE)
                return None
            if total > self.max_bytes:
                self.refused_transfers += 1
                log.error("refused the snapshot transfer %016x from node %d: %d bytes, over this node's bound of "
                          "%d bytes for an incoming snapshot", tid, sender, total, self.max_bytes)
                self._ack(send, sender, tid, 0, ACK_REFUSED)
                return None
            if cur is not None:
                if slot <= cur.slot and now - cur.touched < self.stall_s:
                    self._ack(send, sender, tid, 0, ACK_REFUSED)  # one at a time; the sender retries later
                    return None
                log.info("dropped the snapshot transfer %016x from node %d at byte %d of %d: superseded by "
                         "transfer %016x from node %d at slot %d", cur.tid, cur.sender, len(cur.buf), cur.total,
                         tid, sender, slot)
                self._ack(send, cur.sender, cur.tid, len(cur.buf), ACK_REFUSED)
            cur = self.current = _Incoming(sender, tid, slot, total, now, now)
            log.info("receiving a snapshot at slot %d (%d bytes) from node %d, transfer %016x", slot, total,
                     sender, tid)
        if (slot, total) != (cur.slot, cur.total) or offset + len(data) > total \
                or (not data and total):
            self._refuse(send, cur, f"a malformed chunk at offset {offset} ({len(data)} bytes; slot {slot}, "
                                    f"size {total})")
            return None
        have = len(cur.buf)
        if offset != have:
            # a duplicate (say how far it got) or one after a lost chunk (ask for the missing one)
            self._ack(send, sender, tid, have, ACK_MORE if offset < have else ACK_RESEND)
            return None
        if zlib.crc32(data) != crc:
            self.refused_chunks += 1
            log.warning("refused a damaged chunk of the snapshot transfer %016x from node %d at offset %d "
                        "(%d bytes; CRC-32 mismatch): asked for it again", tid, sender, offset, len(data))
            self._ack(send, sender, tid, have, ACK_RESEND)
            return None
        cur.buf += data
        cur.hasher.update(data)
        cur.touched = now
        if len(cur.buf) < total:
            self._ack(send, sender, tid, len(cur.buf), ACK_MORE)
            return None
        self.current = None
        got = cur.hasher.digest()
        if got != digest:
            self._refuse(send, cur, f"the sha256 of its {total} bytes is {got.hex()}, the sender's "
                                    f"{digest.hex()}")
            return None
        self._remember(key, ACK_MORE)
        self._ack(send, sender, tid, total, ACK_MORE)
        took = now - cur.started
        log.info("received a snapshot at slot %d (%d bytes) from node %d in %.2f s, sha256 verified", slot, total,
                 sender, took)
        data = bytes(cur.buf)
        cur.buf = bytearray()
        return Complete(sender, tid, slot, data)

    def _refuse(self, send, cur: _Incoming, why: str) -> None:
        self.refused_transfers += 1
        if self.current is cur:
            self.current = None
        self._remember((cur.sender, cur.tid), ACK_REFUSED)
        log.error("refused the snapshot transfer %016x from node %d (slot %d, %d bytes): %s; nothing of it is "
                  "installed", cur.tid, cur.sender, cur.slot, cur.total, why)
        self._ack(send, cur.sender, cur.tid, 0, ACK_REFUSED)

    def refuse(self, send, done: Complete, why: str) -> None:
        """The node could not use a verified snapshot (it does not parse): refuse it."""
        self.refused_transfers += 1
        self._remember((done.sender, done.tid), ACK_REFUSED)
        log.error("refused the snapshot transfer %016x from node %d (slot %d, %d bytes): %s; nothing of it is "
                  "installed", done.tid, done.sender, done.slot, len(done.data), why)
        self._ack(send, done.sender, done.tid, 0, ACK_REFUSED)

    def finished(self, send, sender: int, tid: int, total: int) -> None:
        """The node installed (or no longer needs) the snapshot of transfer `tid`."""
        self._remember((sender, tid), ACK_DONE)
        self._ack(send, sender, tid, total, ACK_DONE)

    def _remember(self, key: tuple[int, int], status: int) -> None:
        self._finished[key] = status
        while len(self._finished) > 16:
            del self._finished[next(iter(self._finished))]
