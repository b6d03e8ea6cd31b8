"""Peer transport: length-prefixed frames over TCP between the nodes of one cluster (asyncio/uvloop).

Frames are `[u32 length][u8 kind][payload]` (length counts kind + payload). Everything queued for
one peer during a loop turn goes out in one write at the end of the turn, or when the node calls
`flush_now`. A plain TCP connection's bytes are then written to its socket at once, when nothing of
it waits in the loop's transport (uvloop writes only after the loop iteration's callbacks, so a
frame handed to it would wait for the rest of the node's turn). Each peer has a bounded
queue (in frames and in bytes); when it is full the oldest frame is dropped — the core tolerates lost messages and the node
retries forwarded commands — so a slow or dead peer never makes memory grow or blocks the node.
Outbound connections reconnect with capped exponential backoff and jitter, and at once when the
peer connects to this node (it restarted: its HELLO ends the wait, so a restarted node hears its
peers within a round trip instead of after the backoff, which reaches seconds).

Who sends: a connection's first frame is a HELLO naming the member that opened it, and every frame
after it is handed to the node with that member as its sender, never anything the payload says.
With peer TLS and `--peer-client-cert-auth`, the HELLO must name a member that the connecting
node's certificate names (shim/io/tls.py), and the certificate must pass --peer-cert-allowed-cn or
--peer-cert-allowed-hostname if given (so must the certificate of a member connected to). Otherwise (no peer TLS, or no client certificates
asked for), a HELLO naming a member whose `--peers` host is an IP address must come from that
address (each node connects from its own `--peers` address); beyond that it is taken at its
word (whoever can send from a member's address can claim to be it: peer TLS is what closes
that). A connection whose HELLO names no other member, or a member its certificate or address
does not match, is closed; so is one whose first frame is not a HELLO. A later HELLO naming
another member is dropped. Each refusal is logged and counted (`refused`). A node whose
connections are refused retries after its backoff (up to 2 s), not in a tight loop.

This module must never interpret a payload, never block the loop, and never raise into the node
because of a peer's behaviour: a bad frame closes that connection and is logged. A frame of a kind
this version does not know (a newer peer's) is skipped, and the connection goes on.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import os
import random
import struct
import ssl
from typing import Callable

from verikv.shim.io import tls as peer_tls
from verikv.shim.node.peer_wire import MAX_FRAME_BYTES, NODE_KINDS

log = logging.getLogger("verikv.transport")

FRAME_HEAD = struct.Struct("<IB")  # length of kind + payload, kind
KIND_HELLO = 2  # first frame of a connection: the sender's node id (u32); the node never sees it
HELLO_MAX_BYTES = 1 + 4  # a HELLO frame's length field: its kind and a u32
# an outbound connection closed sooner than this is retried after the backoff, like a failed
# attempt (a peer that refuses this node does not get a new handshake in a tight loop)
CONNECTION_LASTED_S = 1.0


def encode_frame(kind: int, payload: bytes) -> bytes:
    return FRAME_HEAD.pack(len(payload) + 1, kind) + payload


class _Peer:
    def __init__(self, node_id: int, host: str, port: int, max_queue_frames: int):
        self.node_id = node_id
        self.host = host
        self.port = port
        self.queue: collections.deque[bytes] = collections.deque(maxlen=max_queue_frames)
        self.queued_bytes = 0
        self.writer: asyncio.StreamWriter | None = None
        self.fd: int | None = None  # the writer's socket, when written to directly (plain TCP)
        self.task: asyncio.Task | None = None
        self.dropped_frames = 0
        self.connects = 0
        self.hello = asyncio.Event()  # the peer connected to us: retry the outbound now
        self.last_error = ""  # why the last attempt to connect failed (logged once per reason)


class Transport:
    """Sends frames to peers by node id and hands received frames to `on_frame(sender, kind,
    payload)`, `sender` the member the connection authenticated (see the module's text)."""

    def __init__(self, node_id: int, addresses: list[tuple[str, int]],
                 on_frame: Callable[[int, int, bytes], None], *, tls: "peer_tls.PeerTLS | None" = None,
                 max_queue_frames: int = 4096, max_queue_bytes: int = 64 * 1024 * 1024,
                 max_write_buffer_bytes: int = 16 * 1024 * 1024,
                 backoff_initial_s: float = 0.05, backoff_max_s: float = 2.0):
        self.node_id = node_id
        self.tls = tls
        self.addresses = addresses
        self.on_frame = on_frame
        self.max_write_buffer_bytes = max_write_buffer_bytes
        self.max_queue_bytes = max_queue_bytes
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.peers = {i: _Peer(i, h, p, max_queue_frames) for i, (h, p) in enumerate(addresses) if i != node_id}
        self._server: asyncio.AbstractServer | None = None
        self._flush_scheduled = False
        self._inbound: set[asyncio.Task] = set()
        self._closed = False
        self.frames_received = 0
        self.writes = 0
        self.unknown_frames = 0  # frames of a kind this version does not know, skipped
        # connections and frames refused for who they came from, by reason (see the module's text)
        self.refused = collections.Counter()

    async def start(self) -> None:
        host, port = self.addresses[self.node_id]
        self._server = await asyncio.start_server(self._serve_conn, host, port, reuse_address=True,
                                                  ssl=self.tls.server if self.tls else None)
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
        frame = encode_frame(kind, payload)
        queue = peer.queue
        peer.queued_bytes += len(frame)
        # bounded in frames and in bytes (a peer that is down must not make this node hold
        # thousands of batches of large values): the oldest go, the newest always stays
        while queue and (len(queue) == queue.maxlen or peer.queued_bytes > self.max_queue_bytes):
            peer.queued_bytes -= len(queue.popleft())
            peer.dropped_frames += 1
        queue.append(frame)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def flush_now(self) -> bool:
        """Hand what is queued to the sockets now, rather than at the end of the loop turn (before
        the node goes on with its turn, or blocks its loop to sync or to write a snapshot). True
        if every byte handed over is in the kernel's socket buffers; False if some wait in a
        loop transport (TLS, or a peer behind on reading), which writes them once this loop
        iteration's callbacks have run."""
        if self._flush_scheduled:
            return self._flush()
        return True

    def _flush(self) -> bool:
        self._flush_scheduled = False
        written = True
        for peer in self.peers.values():
            w = peer.writer
            if w is None or not peer.queue:
                continue
            if w.transport.is_closing():
                continue
            buffered = w.transport.get_write_buffer_size()
            if buffered > self.max_write_buffer_bytes:
                peer.dropped_frames += len(peer.queue)  # the peer is not reading: shed load
                peer.queue.clear()
                peer.queued_bytes = 0
                continue
            data = b"".join(peer.queue)
            peer.queue.clear()
            peer.queued_bytes = 0
            self.writes += 1
            if peer.fd is not None and buffered == 0:
                # nothing of this connection waits in the loop's transport: the socket's own
                # order is the frames' order
                try:
                    sent = os.write(peer.fd, data)
                except OSError:  # it would block, or the connection broke: the loop's transport
                    sent = 0     # takes the frames, and finds out and reports a broken one
                if sent == len(data):
                    continue
                data = data[sent:]
            w.write(data)
            written = False
        return written

    async def _connect_loop(self, peer: _Peer) -> None:
        backoff_s = self.backoff_initial_s
        loop = asyncio.get_running_loop()
        while not self._closed:
            try:
                reader, writer = await self._open(peer)
            except (OSError, asyncio.TimeoutError) as err:
                if isinstance(err, (ssl.SSLError, _NotTheMember)):
                    self.refused["member's certificate"] += 1
                    if str(err) != peer.last_error:
                        log.warning("cannot connect to node %d at %s:%d over TLS: %s", peer.node_id, peer.host,
                                    peer.port, err)
                peer.last_error = str(err)
            else:
                peer.connects += 1
                writer.write(encode_frame(KIND_HELLO, struct.pack("<I", self.node_id)))
                peer.writer = writer
                peer.fd = _socket_fd(writer) if self.tls is None else None
                if peer.queue:
                    self._flush()
                opened_at = loop.time()
                try:
                    await reader.read()  # the peer never writes back: returns at EOF or reset
                except OSError:
                    pass
                finally:
                    peer.writer = peer.fd = None
                    writer.close()
                if loop.time() - opened_at >= CONNECTION_LASTED_S:
                    backoff_s = self.backoff_initial_s
                    peer.last_error = ""
                    continue  # the peer went away after a while: try again at once
                # closed at once (the peer refused this node?): wait, as after a failed attempt
            peer.hello.clear()
            try:
                await asyncio.wait_for(peer.hello.wait(), backoff_s * (0.5 + random.random()))
                backoff_s = self.backoff_initial_s
            except asyncio.TimeoutError:
                backoff_s = min(self.backoff_max_s, backoff_s * 2)

    async def _open(self, peer: _Peer):
        # leave from this member's own address, which the peer checks a HELLO against when it
        # has no certificate to check it against
        local = (self.addresses[self.node_id][0], 0) if _specific_ip(self.addresses[self.node_id][0]) else None
        if self.tls is None:
            return await asyncio.open_connection(peer.host, peer.port, local_addr=local)
        try:
            context = self.tls.client_context()  # with --peer-crl-file: the CRL now in the file
        except peer_tls.TLSConfigError as err:
            raise _NotTheMember(str(err)) from None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(peer.host, peer.port, ssl=context, server_hostname=peer.host,
                                    local_addr=local), 10.0)
        if self.tls.verify_server:
            cert = writer.get_extra_info("peercert") or {}
            if not peer_tls.names_member(cert, peer.host, peer.port):
                writer.close()
                raise _NotTheMember(f"its certificate does not name member {peer.node_id} "
                                    f"(https://{peer.host}:{peer.port})")
            why = peer_tls.identity_refusal(cert, self.tls)
            if why:
                writer.close()
                raise _NotTheMember(why)
        return reader, writer

    # ---- receiving ----

    async def _serve_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._inbound.add(task)
        peer_name = writer.get_extra_info("peername")
        member = None  # the member this connection speaks for, once its HELLO is accepted
        try:
            while True:
                head = await reader.readexactly(FRAME_HEAD.size)
                length, kind = FRAME_HEAD.unpack(head)
                if length < 1 or length > MAX_FRAME_BYTES:
                    log.warning("closing connection from %s: bad frame (length %d, kind %d)",
                                peer_name, length, kind)
                    return
                if member is None and (kind != KIND_HELLO or length > HELLO_MAX_BYTES):
                    # nothing but a HELLO is read from a connection that has not named its member:
                    # a stranger cannot make the node buffer a frame of up to MAX_FRAME_BYTES
                    self.refused["frame before HELLO"] += 1
                    log.warning("closing connection from %s: a frame (kind %d, %d bytes) before its HELLO",
                                peer_name, kind, length)
                    return
                payload = await reader.readexactly(length - 1)
                self.frames_received += 1
                if kind == KIND_HELLO:
                    claimed = struct.unpack("<I", payload)[0] if len(payload) == 4 else None
                    if member is None:
                        reason = self._refuse_hello(claimed, writer)
                        if reason:
                            self.refused[reason] += 1
                            log.warning("refused peer connection from %s claiming node %s: %s", peer_name,
                                        claimed, reason)
                            return
                        member = claimed
                        peer = self.peers[member]
                        if peer.writer is None:
                            peer.hello.set()
                    elif claimed != member:
                        self.refused["HELLO for another member"] += 1
                        log.warning("dropped a HELLO claiming node %s on the connection of node %d from %s",
                                    claimed, member, peer_name)
                elif kind in NODE_KINDS:
                    self.on_frame(member, kind, payload)
                else:
                    self.unknown_frames += 1
                    if self.unknown_frames == 1 or self.unknown_frames % 1000 == 0:
                        log.warning("skipped %d frame(s) of kinds this version does not know (last: %d from "
                                    "node %d)", self.unknown_frames, kind, member)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            return
        finally:
            self._inbound.discard(task)
            writer.close()

    def _refuse_hello(self, claimed: int | None, writer: asyncio.StreamWriter) -> str:
        """Why a connection's HELLO claiming `claimed` is refused ("" if it is accepted)."""
        if claimed is None or claimed not in self.peers:
            return "HELLO names no other member"
        if self.tls is not None and self.tls.client_cert_auth:
            peer = self.peers[claimed]
            cert = writer.get_extra_info("peercert") or {}
            if not peer_tls.names_member(cert, peer.host, peer.port):
                return "certificate does not name the member"
            why = peer_tls.identity_refusal(cert, self.tls)
            if why:
                return why
        else:  # no certificate to bind the HELLO to: the member's address
            host = self.peers[claimed].host
            remote = (writer.get_extra_info("peername") or ("",))[0]
            if _specific_ip(host) and not _same_ip(remote, host):
                return "address is not the member's"
        return ""


def _socket_fd(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    try:
        return sock.fileno() if sock is not None else None
    except (AttributeError, OSError):
        return None


def _specific_ip(host: str) -> bool:
    """Whether host is an IP address other than the unspecified one (0.0.0.0, ::)."""
    try:
        return not ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def _same_ip(a: str, b: str) -> bool:
    try:
        a_ip, b_ip = ipaddress.ip_address(a), ipaddress.ip_address(b)
    except ValueError:
        return False
    a_ip = getattr(a_ip, "ipv4_mapped", None) or a_ip
    return a_ip == b_ip


class _NotTheMember(ConnectionError):
    pass
