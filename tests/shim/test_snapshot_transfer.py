"""Streaming a snapshot to a lagging peer (shim/node/snapshot_transfer.py), with no sockets: chunks
and their answers go through a list, so a test can lose, damage, reorder or hold them. Reassembly
gives back the sender's bytes exactly; the window bounds what is in flight; a lost or damaged chunk
is sent again; a digest mismatch, a transfer over the bound, and a chunk of a transfer the receiver
does not know (it restarted) are refused and logged, and nothing of them is installed; the copy
sent is the state when the transfer started, whatever is applied meanwhile."""

from __future__ import annotations

import hashlib
import logging
import os
import random
import zlib

import pytest

from verikv.etcdpb import rpc_pb2
from verikv.shim.kv.commands import Command, Kind, encode_batch
from verikv.shim.kv.store import KVStore
from verikv.shim.node.machine import NodeConfig, NodeMachine
from verikv.shim.node.peer_wire import (ACK_DONE, ACK_REFUSED, KIND_SNAPSHOT_ACK, KIND_SNAPSHOT_CHUNK,
                                        SNAPSHOT_ACK, SNAPSHOT_CHUNK)
from verikv.shim.node.snapshot_transfer import CHUNK_BYTES, WINDOW_CHUNKS, SnapshotReceiver, SnapshotSender
from verikv.verified_core.core import Core

LEADER, FOLLOWER = 0, 1


class FakeKV:
    """What the sender reads of a store: its slot, revision and snapshot bytes."""

    def __init__(self, data: bytes, slot: int = 50):
        self.data, self.next_slot, self.revision = data, slot, 7
        self.snapshots = 0

    def snapshot(self) -> bytes:
        self.snapshots += 1
        return self.data


class Link:
    """The sender and the receiver, with the frames each sent not yet delivered."""

    def __init__(self, data: bytes, max_bytes: int = 1 << 40):
        self.now = 100.0
        self.kv = FakeKV(data)
        self.sender = SnapshotSender(LEADER, stall_s=1.0, abandon_s=30.0, retry_s=1.0)
        self.receiver = SnapshotReceiver(FOLLOWER, max_bytes=max_bytes, stall_s=1.0)
        self.chunks: list[bytes] = []  # leader -> follower
        self.acks: list[bytes] = []  # follower -> leader
        self.complete = []
        self.rng = random.Random(1)

    def send(self, dst, kind, payload):
        if kind == KIND_SNAPSHOT_CHUNK:
            assert dst == FOLLOWER
            self.chunks.append(payload)
        else:
            assert dst == LEADER and kind == KIND_SNAPSHOT_ACK
            self.acks.append(payload)

    def start(self):
        self.sender.start([FOLLOWER], self.now, self.kv, self.rng)

    def pump(self):
        self.sender.pump(self.now, self.send)

    def deliver_chunks(self, edit=None, applied_slot: int = 0):
        chunks, self.chunks = self.chunks, []
        for i, c in enumerate(chunks):
            c = edit(i, c) if edit else c
            if c is None:
                continue
            done = self.receiver.on_chunk(LEADER, c, applied_slot, self.now, self.send)
            if done is not None:
                self.complete.append(done)

    def deliver_acks(self):
        acks, self.acks = self.acks, []
        for a in acks:
            self.sender.on_ack(FOLLOWER, a, self.now)

    def run(self, rounds: int = 100, edit=None):
        """Pump, deliver, answer until the transfer ends (the follower "installs" what arrives)."""
        for _ in range(rounds):
            self.pump()
            self.deliver_chunks(edit)
            for done in self.complete:
                self.receiver.finished(self.send, done.sender, done.tid, len(done.data))
            self.deliver_acks()
            if not self.sender.transfers:
                return
            self.now += 0.01
        raise AssertionError("the transfer did not end")


def test_a_snapshot_goes_over_in_chunks_and_comes_back_byte_for_byte():
    data = os.urandom(5 * CHUNK_BYTES + 12345)
    link = Link(data)
    link.start()
    link.run()
    assert [d.data for d in link.complete] == [data]
    assert link.complete[0].slot == 50
    assert link.sender.completed == 1 and link.sender.failed == 0
    assert link.sender.sent_bytes == len(data)  # no chunk twice


def test_no_more_than_the_window_is_in_flight_without_answers():
    data = os.urandom(20 * CHUNK_BYTES)
    link = Link(data)
    link.start()
    for _ in range(5):
        link.pump()
        link.now += 0.01  # turns pass; nothing is answered
    assert len(link.chunks) == WINDOW_CHUNKS
    assert sum(len(c) - SNAPSHOT_CHUNK.size for c in link.chunks) == WINDOW_CHUNKS * CHUNK_BYTES
    # each answer opens the window by what it acknowledges
    link.deliver_chunks()
    link.acks = link.acks[:1]
    link.deliver_acks()
    link.pump()
    assert len(link.chunks) == 1


def test_a_lost_chunk_is_asked_for_again_and_the_rest_follows():
    data = os.urandom(6 * CHUNK_BYTES)
    link = Link(data)
    link.start()
    lost = []

    def lose_the_second(i, c):
        offset = SNAPSHOT_CHUNK.unpack_from(c)[4]
        if offset == CHUNK_BYTES and not lost:
            lost.append(offset)
            return None
        return c
    link.run(edit=lose_the_second)
    assert lost and [d.data for d in link.complete] == [data]


def test_a_chunk_lost_with_nothing_after_it_is_sent_again_after_a_stall():
    data = os.urandom(CHUNK_BYTES // 2)
    link = Link(data)
    link.start()
    link.pump()
    link.chunks.clear()  # the only chunk is lost; no answer comes
    link.now += 0.5
    link.pump()
    assert not link.chunks  # not yet: within stall_s
    link.now += 0.6
    link.pump()
    assert len(link.chunks) == 1
    link.run()
    assert [d.data for d in link.complete] == [data]


def test_a_damaged_chunk_is_refused_logged_and_sent_again(caplog):
    data = os.urandom(3 * CHUNK_BYTES)
    link = Link(data)
    link.start()
    damaged = []

    def flip_a_byte(i, c):
        if not damaged and SNAPSHOT_CHUNK.unpack_from(c)[4] == CHUNK_BYTES:
            damaged.append(1)
            c = bytearray(c)
            c[SNAPSHOT_CHUNK.size + 1000] ^= 0x40
            return bytes(c)
        return c
    with caplog.at_level(logging.WARNING, "verikv.node"):
        link.run(edit=flip_a_byte)
    assert damaged and [d.data for d in link.complete] == [data]
    assert link.receiver.refused_chunks == 1
    assert "refused a damaged chunk" in caplog.text and "CRC-32 mismatch" in caplog.text


def test_a_digest_mismatch_is_refused_logged_and_never_handed_over(caplog):
    """Every chunk's CRC-32 matches its bytes, but the whole is not what the sender hashed (say,
    the sender's copy changed under it): refused at the end, nothing comes out."""
    data = os.urandom(2 * CHUNK_BYTES + 10)
    link = Link(data)
    link.start()

    def rewrite_the_last(i, c):
        head = list(SNAPSHOT_CHUNK.unpack_from(c))
        if head[4] + len(c) - SNAPSHOT_CHUNK.size < head[3]:
            return c
        body = bytearray(c[SNAPSHOT_CHUNK.size:])
        body[-1] ^= 1
        head[5] = zlib.crc32(body)  # a consistent chunk: only the whole's sha256 can tell
        return SNAPSHOT_CHUNK.pack(*head) + bytes(body)
    with caplog.at_level(logging.WARNING, "verikv.node"):
        link.run(edit=rewrite_the_last)
    assert link.complete == []
    assert link.sender.failed == 1 and link.sender.completed == 0  # the sender was told: ACK_REFUSED
    assert link.receiver.refused_transfers == 1 and link.receiver.current is None
    assert "the sha256 of its" in caplog.text and "nothing of it is installed" in caplog.text
    assert "refused the snapshot transfer" in caplog.text


def test_a_transfer_over_the_bound_is_refused_before_anything_is_held(caplog):
    link = Link(os.urandom(3 * CHUNK_BYTES), max_bytes=2 * CHUNK_BYTES)
    link.start()
    with caplog.at_level(logging.ERROR, "verikv.node"):
        link.run()
    assert link.complete == [] and link.receiver.current is None and link.sender.failed == 1
    assert "over this node's bound" in caplog.text


def test_a_receiver_restarted_mid_transfer_refuses_the_rest_and_a_new_transfer_completes(caplog):
    data = os.urandom(8 * CHUNK_BYTES)
    link = Link(data)
    link.start()
    link.pump()
    link.deliver_chunks()
    link.deliver_acks()
    first = link.sender.transfers[FOLLOWER].tid
    assert 0 < link.sender.transfers[FOLLOWER].acked < len(data)
    link.receiver = SnapshotReceiver(FOLLOWER, max_bytes=1 << 40, stall_s=1.0)  # it restarted: nothing kept
    with caplog.at_level(logging.INFO, "verikv.node"):
        link.run()
    assert link.complete == [] and link.sender.failed == 1  # the old transfer was refused and dropped
    assert "unknown snapshot transfer" in caplog.text
    link.start()  # the core asks again at once: within retry_s, no new transfer
    assert not link.sender.transfers
    link.now += 1.0
    link.start()
    assert link.sender.transfers[FOLLOWER].tid != first
    link.run()
    assert [d.data for d in link.complete] == [data]


def test_a_new_transfer_from_the_same_sender_supersedes_the_old_one():
    old, new = os.urandom(8 * CHUNK_BYTES), os.urandom(3 * CHUNK_BYTES)
    link = Link(old)
    link.start()
    link.pump()
    stale = list(link.chunks)
    link.deliver_chunks()
    # the sender gave the old transfer up (say, it restarted) and starts another of a later state
    link.sender = SnapshotSender(LEADER, stall_s=1.0, abandon_s=30.0, retry_s=1.0)
    link.kv = FakeKV(new, slot=80)
    link.acks.clear()
    link.start()
    link.pump()
    link.deliver_chunks()
    link.chunks = stale  # the old transfer's chunks arrive late
    link.deliver_chunks()
    link.run()
    assert [(d.slot, d.data) for d in link.complete] == [(80, new)]


def test_peers_starting_at_the_same_slot_share_one_copy():
    link = Link(os.urandom(1000))
    link.sender.start([1, 2], link.now, link.kv, link.rng)
    assert link.kv.snapshots == 1
    t1, t2 = link.sender.transfers[1], link.sender.transfers[2]
    assert t1.data is t2.data and t1.tid != t2.tid


def test_a_lost_final_answer_is_asked_for_again_with_the_last_chunk():
    """Every byte acknowledged, the receiver's ACK_DONE lost: the sender sends the last chunk
    again after stall_s and learns from the answer that the state is installed."""
    data = os.urandom(2 * CHUNK_BYTES + 5)
    link = Link(data)
    link.start()
    link.pump()
    link.deliver_chunks()
    link.deliver_acks()
    (done,) = link.complete
    assert link.sender.transfers[FOLLOWER].acked == len(data)
    link.receiver.finished(link.send, done.sender, done.tid, len(done.data))
    link.acks.clear()  # the ACK_DONE is lost
    link.now += 0.5
    link.pump()
    assert not link.chunks  # within stall_s
    link.now += 0.6
    link.pump()
    (again,) = link.chunks
    assert SNAPSHOT_CHUNK.unpack_from(again)[4] == 2 * CHUNK_BYTES  # the last chunk, nothing before it
    link.deliver_chunks()
    assert len(link.complete) == 1  # not assembled again
    link.deliver_acks()
    assert not link.sender.transfers and link.sender.completed == 1


def test_a_silent_peer_is_given_up_after_abandon_s(caplog):
    link = Link(os.urandom(2 * CHUNK_BYTES))
    link.start()
    with caplog.at_level(logging.WARNING, "verikv.node"):
        for _ in range(40):
            link.pump()
            link.chunks.clear()
            link.now += 1.0
    assert not link.sender.transfers and link.sender.failed == 1
    assert "gave up the snapshot transfer" in caplog.text


def _store_with(n: int, first_slot: int = 0, store: KVStore | None = None) -> KVStore:
    store = store or KVStore()
    for i in range(n):
        cmd = Command(Kind.PUT, 5, store.next_slot + 1, 0,
                      rpc_pb2.PutRequest(key=b"k%04d" % i, value=os.urandom(3000)).SerializeToString())
        store.apply(store.next_slot, encode_batch([cmd.encode()]))
    return store


def test_the_copy_sent_is_the_state_when_the_transfer_started():
    store = _store_with(600)  # about 1.8 MiB: two chunks
    at_start = store.snapshot()
    link = Link(b"")
    link.kv = store
    link.start()
    link.pump()
    _store_with(50, store=store)  # the store goes on while the transfer streams
    store.apply(store.next_slot, encode_batch([Command(Kind.DELETE_RANGE, 5, 10_000, 0, rpc_pb2.DeleteRangeRequest(
        key=b"k0000", range_end=b"k0100").SerializeToString()).encode()]))
    link.run()
    (done,) = link.complete
    assert done.data == at_start and done.slot == 600
    assert KVStore.restore(done.data).revision == 601 and store.revision == 652


# ---- in the node machine ----

def _machine(tmp_path, node_id: int) -> NodeMachine:
    config = NodeConfig(node_id=node_id, peer_addresses=[("127.0.0.1", 1)] * 3, data_dir=tmp_path)
    return NodeMachine(config, Core(node_id, 3), clock=lambda: 100.0, rng=random.Random(node_id))


def _chunks_of(data: bytes, slot: int, tid: int = 99, digest: bytes | None = None, sender: int = LEADER):
    digest = digest or hashlib.sha256(data).digest()
    out = []
    for off in range(0, len(data), CHUNK_BYTES):
        piece = data[off:off + CHUNK_BYTES]
        out.append(SNAPSHOT_CHUNK.pack(sender, tid, slot, len(data), off, zlib.crc32(piece), digest) + piece)
    return out


def _acks(machine: NodeMachine) -> list[tuple]:
    return [SNAPSHOT_ACK.unpack(p) for _, k, p in machine._out if k == KIND_SNAPSHOT_ACK]


def test_the_machine_holds_a_verified_snapshot_for_install_and_refuses_a_mismatch(tmp_path, caplog):
    state = _store_with(700).snapshot()
    bad = _machine(tmp_path / "bad", FOLLOWER)
    with caplog.at_level(logging.ERROR, "verikv.node"):
        for c in _chunks_of(state, 700, digest=hashlib.sha256(b"another state").digest()):
            bad.frame(KIND_SNAPSHOT_CHUNK, c, LEADER)
    assert bad._snapshot_in is None
    assert _acks(bad)[-1][3] == ACK_REFUSED and "sha256" in caplog.text

    good = _machine(tmp_path / "good", FOLLOWER)
    for c in _chunks_of(state, 700):
        good.frame(KIND_SNAPSHOT_CHUNK, c, LEADER)
    store, data, answer = good._snapshot_in
    assert data == state and store.next_slot == 700 and answer == (LEADER, 99, len(state))
    # installing answers ACK_DONE (the core of a fresh node is behind slot 700: it installs)
    good._out.clear()
    actions = list(good.turn())
    assert good.peer_snapshots_installed == 1 and good.kv.revision == 701
    assert [a.slot for a in actions if type(a).__name__ == "WriteSnapshot"] == [700]
    sent = [(dst, SNAPSHOT_ACK.unpack(p)) for a in actions if type(a).__name__ == "Send"
            for dst, k, p in a.frames if k == KIND_SNAPSHOT_ACK]
    assert sent == [(LEADER, (FOLLOWER, 99, len(state), ACK_DONE))]
    # the answer leaves after the snapshot is durable
    kinds = [type(a).__name__ for a in actions]
    with_ack = next(i for i, a in enumerate(actions) if type(a).__name__ == "Send"
                    and any(k == KIND_SNAPSHOT_ACK for _, k, _ in a.frames))
    assert kinds.index("WriteSnapshot") < with_ack


def test_the_machine_refuses_verified_bytes_that_do_not_parse(tmp_path, caplog):
    m = _machine(tmp_path, FOLLOWER)
    junk = os.urandom(5000)
    with caplog.at_level(logging.ERROR, "verikv.node"):
        for c in _chunks_of(junk, 12):
            m.frame(KIND_SNAPSHOT_CHUNK, c, LEADER)
    assert m._snapshot_in is None and "does not parse" in caplog.text
    assert _acks(m)[-1][3] == ACK_REFUSED


def test_a_chunk_naming_another_sender_than_its_connection_is_dropped(tmp_path):
    m = _machine(tmp_path, FOLLOWER)
    state = _store_with(10).snapshot()
    for c in _chunks_of(state, 10, sender=2):  # claims node 2, arrives on node 0's connection
        m.frame(KIND_SNAPSHOT_CHUNK, c, LEADER)
    assert m._snapshot_in is None and m.snapshot_receiver.current is None and not m._out
    assert m.checks.counts["FrameSenderIsConnectionMember"] == 1


@pytest.mark.parametrize("size", [1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 3 * CHUNK_BYTES])
def test_chunk_boundaries(size):
    data = os.urandom(size)
    link = Link(data)
    link.start()
    link.run()
    assert [d.data for d in link.complete] == [data]
