"""What one node says to another: the kinds of peer frames and the layout of their payloads.

A peer frame is a kind byte and a payload (the transport adds the length). The transport tells
the node which member sent a frame (the member its connection authenticated); the payloads that
also name their sender (a core message, READ_ASK, DIGEST, CAMPAIGN, SNAPSHOT_CHUNK, SNAPSHOT_ACK)
must name that member (`claimed_sender`). The core's messages travel opaque (KIND_CORE); the
others are the node's own: forwarded client commands, ReadIndex requests and answers, digests of
committed slots (CommittedValuesMatch), KV snapshots (in chunks, SNAPSHOT_CHUNK and SNAPSHOT_ACK:
see snapshot_transfer.py; whole in one frame from older nodes) and a leader's hand-over.

This module must never do anything but name and lay out bytes.
"""

from __future__ import annotations

import struct

MAX_FRAME_BYTES = 32 * 1024 * 1024  # the transport closes a connection that sends a longer frame

KIND_CORE = 0  # an encoded core message
KIND_FORWARD = 1  # a batch of client commands a follower forwards to the leader (a proposal value)
KIND_READ_INDEX = 3  # a follower asks the leader for a read slot: READ_ASK
KIND_READ_INDEX_REPLY = 4  # the leader's answer: READ_REPLY
KIND_DIGEST = 5  # CommittedValuesMatch: DIGEST
KIND_SNAPSHOT = 6  # a whole KV snapshot in one frame (sent by older nodes; received still)
KIND_CAMPAIGN = 7  # a leader hands over (MoveLeader): the receiver starts an election now. CAMPAIGN
KIND_SNAPSHOT_CHUNK = 8  # a piece of a KV snapshot streamed to a lagging member: SNAPSHOT_CHUNK, then the bytes
KIND_SNAPSHOT_ACK = 9  # the receiver's answer to chunks: SNAPSHOT_ACK
NODE_KINDS = (KIND_CORE, KIND_FORWARD, KIND_READ_INDEX, KIND_READ_INDEX_REPLY, KIND_DIGEST, KIND_SNAPSHOT,
              KIND_CAMPAIGN, KIND_SNAPSHOT_CHUNK, KIND_SNAPSHOT_ACK)

CORE_HEAD = struct.Struct("<BH")  # the start of an encoded core message: wire version, sender
READ_ASK = struct.Struct("<QIQQ")  # request id, asking node, its promised ballot (round, node) when it asked
READ_REPLY = struct.Struct("<QQ")  # request id, read slot (0: ask again through the log)
CAMPAIGN = struct.Struct("<I")  # the sender (the leader handing over)
DIGEST = struct.Struct("<QI8s")  # last slot of the range, sender, digest of the range's values
# sender, transfer id, the snapshot's slot (every slot below it applied), its total length, this
# chunk's offset, CRC-32 of this chunk's bytes, sha256 of the whole snapshot (in the last chunk;
# zeros in the others); the chunk's bytes follow
SNAPSHOT_CHUNK = struct.Struct("<IQQQQI32s")
SNAPSHOT_ACK = struct.Struct("<IQQB")  # sender (the receiver of the chunks), transfer id, next offset wanted, ACK_*
ACK_MORE = 0  # every byte below the offset arrived intact: go on from there
ACK_DONE = 1  # finished: installed, or not needed (the receiver has every slot below the snapshot's)
ACK_REFUSED = 2  # the transfer is unknown (superseded, or the receiver restarted) or failed its checks: drop it
ACK_RESEND = 3  # the chunk at the offset was damaged or one before it is missing: send again from the offset


def claimed_sender(kind: int, payload: bytes) -> int | None:
    """The sender a frame's payload names, None if its kind names none (or it is too short to)."""
    if kind == KIND_CORE and len(payload) >= CORE_HEAD.size:
        return CORE_HEAD.unpack_from(payload)[1]
    if kind == KIND_READ_INDEX and len(payload) == READ_ASK.size:
        return READ_ASK.unpack(payload)[1]
    if kind == KIND_DIGEST and len(payload) == DIGEST.size:
        return DIGEST.unpack(payload)[1]
    if kind == KIND_CAMPAIGN and len(payload) == CAMPAIGN.size:
        return CAMPAIGN.unpack(payload)[0]
    if kind == KIND_SNAPSHOT_CHUNK and len(payload) >= SNAPSHOT_CHUNK.size:
        return SNAPSHOT_CHUNK.unpack_from(payload)[0]
    if kind == KIND_SNAPSHOT_ACK and len(payload) == SNAPSHOT_ACK.size:
        return SNAPSHOT_ACK.unpack(payload)[0]
    return None
