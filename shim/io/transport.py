"""Peer transport: length-prefixed frames over TCP between the nodes of one cluster (asyncio/uvloop).

Frames are `[u32 length][u8 kind][payload]` (length counts kind + payload). Everything queued for
one peer during a loop turn goes out in one write at the end of the turn. Each peer has a bounded
queue; when it is full the oldest frame is dropped — the core tolerates lost messages and the node
retries forwarded commands — so a slow or dead peer never makes memory grow or blocks the node.
Outbound connections reconnect with capped exponential backoff and jitter, and at once when the
peer connects to this node (it restarted: its HELLO ends the wait, so a restarted node hears its
peers within a round trip instead of after the backoff, which reaches seconds).

This module must never interpret a payload, never block the loop, and never raise into the node
because of a peer's behaviour: a bad frame closes that connection and is logged.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import struct
from typing import Callable

from verikv.shim.node.peer_wire import MAX_FRAME_BYTES, NODE_KINDS

log = logging.getLogger("verikv.transport")

FRAME_HEAD = struct.Struct("<IB")  # length of kind + payload, kind
KIND_HELLO = 2  # first frame of a connection: the sender's node id (u32); the node never sees it
KINDS = (KIND_HELLO, *NODE_KINDS)


def encode_frame(kind: int, payload: bytes) -> bytes:
    return FRAME_HEAD.pack(len(payload) + 1, kind) + payload


class _Peer:
    def __init__(self, node_id: int, host: str, port: int, max_queue_frames: int):
        self.node_id = node_id
        self.host = host
        self.port = port
        self.queue: collections.deque[bytes] = collections.deque(maxlen=max_queue_frames)
        self.writer: asyncio.StreamWriter | None = None
        self.task: asyncio.Task | None = None
        self.dropped_frames = 0
        self.connects = 0
        self.hello = asyncio.Event()  # the peer connected to us: retry the outbound now


class Transport:
    """Sends frames to peers by node id and hands received frames to `on_frame(kind, payload)`."""

    def __init__(self, node_id: int, addresses: list[tuple[str, int]], on_frame: Callable[[int, bytes], None],
                 *, max_queue_frames: int = 4096, max_write_buffer_bytes: int = 16 * 1024 * 1024,
                 backoff_initial_s: float = 0.05, backoff_max_s: float = 2.0):
        self.node_id = node_id
        self.addresses = addresses
        self.on_frame = on_frame
        self.max_write_buffer_bytes = max_write_buffer_bytes
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.peers = {i: _Peer(i, h, p, max_queue_frames) for i, (h, p) in enumerate(addresses) if i != node_id}
        self._server: asyncio.AbstractServer | None = None
        self._flush_scheduled = False
        self._inbound: set[asyncio.Task] = set()
        self._closed = False
        self.frames_received = 0
        self.writes = 0

    async def start(self) -> None:
        host, port = self.addresses[self.node_id]
        self._server = await asyncio.start_server(self._serve_conn, host, port, reuse_address=True)
        for peer in self.peers.values():
            peer.task = asyncio.get_running_loop().create_task(self._connect_loop(peer))

    async def close(self) -> None:
        self._closed = True
        if self._server is not None:
            self._server.close()
        tasks = [p.task for p in self.peers.values() if p.task] + list(self._inbound)
        for t in tasks:
            t.cancel()
        for p in self.peers.values():
            if p.writer is not None:
                p.writer.close()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- sending ----

    def send(self, dst: int, kind: int, payload: bytes) -> None:
        """Queue a frame for dst; it leaves with the rest of this turn's frames for dst."""
        peer = self.peers.get(dst)
        if peer is None:
            raise ValueError(f"node {self.node_id} has no peer {dst}")
        if len(peer.queue) == peer.queue.maxlen:
            peer.dropped_frames += 1  # the deque drops the oldest
        peer.queue.append(encode_frame(kind, payload))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        for peer in self.peers.values():
            w = peer.writer
            if w is None or not peer.queue:
                continue
            if w.transport.is_closing():
                continue
            if w.transport.get_write_buffer_size() > self.max_write_buffer_bytes:
                peer.dropped_frames += len(peer.queue)  # the peer is not reading: shed load
                peer.queue.clear()
                continue
            data = b"".join(peer.queue)
            peer.queue.clear()
            w.write(data)
            self.writes += 1

    async def _connect_loop(self, peer: _Peer) -> None:
        backoff_s = self.backoff_initial_s
        while not self._closed:
            try:
                reader, writer = await asyncio.open_connection(peer.host, peer.port)
            except OSError:
                peer.hello.clear()
                try:
                    await asyncio.wait_for(peer.hello.wait(), backoff_s * (0.5 + random.random()))
                    backoff_s = self.backoff_initial_s
                except asyncio.TimeoutError:
                    backoff_s = min(self.backoff_max_s, backoff_s * 2)
                continue
            backoff_s = self.backoff_initial_s
            peer.connects += 1
            writer.write(encode_frame(KIND_HELLO, struct.pack("<I", self.node_id)))
            peer.writer = writer
            if peer.queue:
                self._flush()
            try:
                await reader.read()  # the peer never writes back: returns at EOF or reset
            except OSError:
                pass
            finally:
                peer.writer = None
                writer.close()

    # ---- receiving ----

    async def _serve_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._inbound.add(task)
        peer_name = writer.get_extra_info("peername")
        try:
            while True:
                head = await reader.readexactly(FRAME_HEAD.size)
                length, kind = FRAME_HEAD.unpack(head)
                if length < 1 or length > MAX_FRAME_BYTES or kind not in KINDS:
                    log.warning("closing connection from %s: bad frame (length %d, kind %d)",
                                peer_name, length, kind)
                    return
                payload = await reader.readexactly(length - 1)
                self.frames_received += 1
                if kind != KIND_HELLO:
                    self.on_frame(kind, payload)
                elif len(payload) == 4:
                    peer = self.peers.get(struct.unpack("<I", payload)[0])
                    if peer is not None and peer.writer is None:
                        peer.hello.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self._inbound.discard(task)
            writer.close()
