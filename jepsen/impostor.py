"""A corrupted member (the `impostor` nemesis; verikv only): while a node is down, a thread
speaks for it on the peer wire. It connects to the other nodes' peer ports again and again, says
HELLO as that member, and sends frames that are damaged by construction:
- core messages that name another sender (a node must drop them: `FrameSenderIsConnectionMember`);
- forwarded command batches of random bytes (no batch's magic);
- the fixed-size messages (ReadIndex ask and reply, digest, hand-over, snapshot ack) one byte
  short or long;
- a whole snapshot of random bytes, and snapshot chunks naming another sender;
- kinds that no version of the wire has (a node skips them).
The other nodes must drop every one (and log it), keep serving, and lose nothing acknowledged.
When each node has its own network namespace (jepsen/net.py), one impostor speaks from inside
the member's namespace (its address: the HELLO passes and the frames must be dropped one by
one) and one from the harness's address (a HELLO from an address that is not the member's must
be refused at once).

The harness imports nothing of the node, so the wire is spelled out here as shim/io/transport.py
and shim/node/peer_wire.py lay it out: a frame is a u32 length (of the kind byte and the
payload), a u8 kind and the payload; the first frame of a connection is a HELLO (kind 2) with the
member's id (u32).

It must never send a well-formed message in the member's name: a member that lies in
well-formed messages is outside the crash-fault model in which the protocol is proven.
"""

from __future__ import annotations

import ctypes
import os
import random
import socket
import struct
import threading

HELLO = 2
CORE, FORWARD, READ_ASK, READ_REPLY, DIGEST, SNAPSHOT, CAMPAIGN, CHUNK, ACK = 0, 1, 3, 4, 5, 6, 7, 8, 9
FIXED = {READ_ASK: 28, READ_REPLY: 16, DIGEST: 20, CAMPAIGN: 4, ACK: 21}  # their payloads' sizes
CHUNK_HEAD = struct.Struct("<IQQQQI32s")  # sender first
CORE_HEAD = struct.Struct("<BH")  # wire version, sender


def frame(kind: int, payload: bytes) -> bytes:
    return struct.pack("<IB", len(payload) + 1, kind) + payload


def damaged_frame(rng: random.Random, member: int) -> bytes:
    """One frame in `member`'s name that no node may act on."""
    other = rng.choice([m for m in range(8) if m != member] + [0xFFFF])
    what = rng.randrange(6)
    if what == 0:
        return frame(CORE, CORE_HEAD.pack(1, other) + rng.randbytes(rng.randrange(0, 200)))
    if what == 1:
        return frame(FORWARD, rng.randbytes(rng.randrange(0, 300)))
    if what == 2:
        kind, size = rng.choice(sorted(FIXED.items()))
        return frame(kind, rng.randbytes(size + rng.choice((-1, 1))))
    if what == 3:
        return frame(SNAPSHOT, rng.randbytes(rng.randrange(0, 300)))
    if what == 4:
        head = CHUNK_HEAD.pack(other, rng.randrange(1 << 63), rng.randrange(1 << 20), rng.randrange(1 << 30),
                               0, rng.randrange(1 << 32), bytes(32))
        return frame(CHUNK, head + rng.randbytes(rng.randrange(0, 200)))
    return frame(rng.randrange(10, 256), rng.randbytes(rng.randrange(0, 100)))


class Impostor(threading.Thread):
    """Speaks for `member` to the peer addresses `targets` ((host, port) of the other nodes),
    a burst of damaged frames per connection, until stop()."""

    def __init__(self, member: int, targets: list[tuple[str, int]], seed: int, netns: str | None = None,
                 where: str = "its address", burst: int = 20, pause_s: float = 0.05):
        super().__init__(name=f"impostor-n{member + 1}", daemon=True)
        self.member, self.targets, self.netns, self.where = member, targets, netns, where
        self.rng = random.Random(seed)
        self.burst, self.pause_s = burst, pause_s
        self._halt = threading.Event()
        self.frames = self.connections = self.refused = 0

    def run(self) -> None:
        if self.netns is not None:
            _enter_netns(self.netns)  # this thread only: its sockets leave from the member's address
        while not self._halt.is_set():
            for host, port in self.targets:
                data = frame(HELLO, struct.pack("<I", self.member)) + b"".join(
                    damaged_frame(self.rng, self.member) for _ in range(self.burst))
                try:
                    with socket.create_connection((host, port), timeout=1.0) as s:
                        s.sendall(data)
                        self.connections += 1
                        self.frames += self.burst
                except OSError:  # refused, reset or closed by the node: counted, and on again
                    self.refused += 1
            self._halt.wait(self.pause_s)

    def stop(self) -> str:
        """Stop and say what was sent."""
        self._halt.set()
        self.join(timeout=5)
        return (f"{self.frames} damaged frames in n{self.member + 1}'s name from {self.where} on {self.connections} "
                f"connections ({self.refused} refused or cut)")


def _enter_netns(name: str) -> None:
    """Move the calling thread into the network namespace `ip netns` names `name`."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
            raise OSError(ctypes.get_errno(), f"setns into {name}")
    finally:
        os.close(fd)
