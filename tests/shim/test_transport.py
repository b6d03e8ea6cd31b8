"""Peers exchange frames over real TCP: one write per peer per loop turn, reconnects after a peer
restarts, bounded queues that drop the oldest frame, and bad frames close only that connection."""

import asyncio
import struct

from verikv.shim.io.transport import FRAME_HEAD, Transport
from verikv.shim.node.peer_wire import KIND_CORE, KIND_FORWARD

BASE_PORT = 25100


def addrs(offset):
    return [("127.0.0.1", BASE_PORT + offset + i) for i in range(3)]


async def wait_for(cond, timeout_s=5.0):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def start_all(offset, **kw):
    got = {i: [] for i in range(3)}
    ts = [Transport(i, addrs(offset), lambda s, k, p, i=i: got[i].append((k, p)), **kw) for i in range(3)]
    for t in ts:
        await t.start()
    return ts, got


async def test_frames_arrive_in_order_and_are_coalesced_per_turn():
    ts, got = await start_all(0)
    try:
        await wait_for(lambda: all(p.writer for t in ts for p in t.peers.values()))
        writes_before = ts[0].writes
        for i in range(100):  # all in one loop turn
            ts[0].send(1, KIND_CORE, b"m%d" % i)
        ts[0].send(2, KIND_FORWARD, b"fwd")
        await wait_for(lambda: len(got[1]) == 100 and got[2])
        assert got[1] == [(KIND_CORE, b"m%d" % i) for i in range(100)]
        assert got[2] == [(KIND_FORWARD, b"fwd")]
        assert ts[0].writes - writes_before == 2  # one write per peer
    finally:
        for t in ts:
            await t.close()


async def test_reconnects_after_a_peer_restarts_and_delivers_queued_frames():
    ts, got = await start_all(10, backoff_initial_s=0.01, backoff_max_s=0.05)
    try:
        await wait_for(lambda: ts[0].peers[1].writer is not None)
        await ts[1].close()
        await wait_for(lambda: ts[0].peers[1].writer is None)
        ts[0].send(1, KIND_CORE, b"while down")
        ts[1] = Transport(1, addrs(10), lambda s, k, p: got[1].append((k, p)))
        await ts[1].start()
        await wait_for(lambda: (KIND_CORE, b"while down") in got[1])
        assert ts[0].peers[1].connects == 2
    finally:
        for t in ts:
            await t.close()


async def test_a_restarted_peer_is_reached_at_once_not_after_the_backoff():
    """Node 1 is down long enough for node 0's reconnect backoff to grow; when node 1 comes back
    and connects, node 0's frames reach it within a round trip, not after the backoff."""
    got = []
    t0 = Transport(0, addrs(30)[:2], lambda s, k, p: None, backoff_initial_s=30.0, backoff_max_s=30.0)
    await t0.start()
    t1 = Transport(1, addrs(30)[:2], lambda s, k, p: got.append((k, p)))
    try:
        await asyncio.sleep(0.1)  # node 0's first attempt failed: it now waits up to 45 s
        assert t0.peers[1].writer is None and t0.peers[1].connects == 0
        t0.send(1, KIND_CORE, b"queued while down")
        await t1.start()
        await wait_for(lambda: (KIND_CORE, b"queued while down") in got, timeout_s=3.0)
        assert t0.peers[1].connects == 1
    finally:
        await t0.close()
        await t1.close()


async def test_a_full_queue_drops_the_oldest_frames():
    t = Transport(0, addrs(20), lambda s, k, p: None, max_queue_frames=3)
    # not started: no connection, so frames stay queued (and the flush leaves them there)
    for i in range(5):
        t.send(1, KIND_CORE, b"%d" % i)
    await asyncio.sleep(0)
    assert [f[FRAME_HEAD.size:] for f in t.peers[1].queue] == [b"2", b"3", b"4"]
    assert t.peers[1].dropped_frames == 2


async def test_the_queue_of_a_peer_that_is_down_is_bounded_in_bytes_too():
    t = Transport(0, addrs(20), lambda s, k, p: None, max_queue_bytes=10_000)
    for i in range(10):
        t.send(1, KIND_CORE, bytes([i]) * 3000)  # frames of 3005 bytes: three fit
    assert [f[FRAME_HEAD.size] for f in t.peers[1].queue] == [7, 8, 9]
    assert t.peers[1].dropped_frames == 7 and t.peers[1].queued_bytes == 3 * 3005
    t.send(1, KIND_CORE, b"x" * 50_000)  # larger than the bound: the newest stays, alone
    assert len(t.peers[1].queue) == 1 and t.peers[1].queued_bytes == 50_005


async def test_a_bad_frame_closes_only_that_connection():
    ts, got = await start_all(30)
    try:
        reader, writer = await asyncio.open_connection(*addrs(30)[1])
        writer.write(struct.pack("<IB", 2**31, KIND_CORE))
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the receiver
        await wait_for(lambda: ts[0].peers[1].writer is not None)
        ts[0].send(1, KIND_CORE, b"still fine")
        await wait_for(lambda: (KIND_CORE, b"still fine") in got[1])
    finally:
        for t in ts:
            await t.close()


async def test_flush_now_hands_queued_frames_to_the_socket_before_the_loop_turns():
    """Before a node blocks its loop (writing a large snapshot), what it queued leaves at once.
    Ports 28775-28777."""
    ts, got = await start_all(28775 - BASE_PORT)
    try:
        await wait_for(lambda: all(p.writer for t in ts for p in t.peers.values()))
        writes_before = ts[0].writes
        ts[0].send(1, KIND_CORE, b"answer")
        assert ts[0].writes == writes_before  # queued for the end of the loop turn
        ts[0].flush_now()
        assert ts[0].writes == writes_before + 1 and not ts[0].peers[1].queue  # written, without a turn
        ts[0].flush_now()  # nothing queued: nothing written
        assert ts[0].writes == writes_before + 1
        await wait_for(lambda: got[1] == [(KIND_CORE, b"answer")])
    finally:
        for t in ts:
            await t.close()


def test_on_uvloop_flush_now_puts_a_plain_connections_frames_in_the_kernel_at_once():
    """The node runs on uvloop, which writes what its transports are handed only after the loop
    iteration's callbacks, that is after the rest of the node's turn: flush_now writes a plain
    TCP connection's frames to the socket itself. Bytes already waiting in the loop's transport
    keep their place: what follows them waits behind them. Ports 25140-25142."""
    import pytest
    uvloop = pytest.importorskip("uvloop")
    from verikv.shim.io.transport import encode_frame

    async def body():
        ts, got = await start_all(40)
        try:
            await wait_for(lambda: all(p.writer for t in ts for p in t.peers.values()))
            w = ts[0].peers[1].writer
            await wait_for(lambda: w.transport.get_write_buffer_size() == 0)  # the HELLO is out
            for i in range(50):
                ts[0].send(1, KIND_CORE, b"m%d" % i)
            assert ts[0].flush_now() is True
            assert w.transport.get_write_buffer_size() == 0 and not ts[0].peers[1].queue
            w.write(encode_frame(KIND_CORE, b"first"))  # waits in uvloop's transport
            ts[0].send(1, KIND_CORE, b"second")
            assert ts[0].flush_now() is False  # behind it, in the loop's transport too
            await wait_for(lambda: len(got[1]) == 52)
            assert got[1] == [(KIND_CORE, b"m%d" % i) for i in range(50)] + [(KIND_CORE, b"first"),
                                                                               (KIND_CORE, b"second")]
        finally:
            for t in ts:
                await t.close()

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(body())
    finally:
        loop.close()
