"""The store's dedup table: each client command is applied once, however often it is committed.

A client (a node's proposer, `client_id`) numbers its commands (`request_seq`) and tells, with each,
the seq below which it has every answer (`acked_below`). A command committed again (a retry after
a leader change) is answered from its session's remembered result; one below `acked_below` whose
result was forgotten is answered OUTCOME_UNKNOWN (its client no longer waits for it). Like the
store, a pure function of the applied commands: every replica forgets the same results.

Bounded: at most MAX_SESSIONS sessions (the least recently used evicted) of at most
MAX_RESULTS_PER_SESSION results (the lowest seq forgotten first, as if acknowledged).
"""

from __future__ import annotations

import heapq
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from verikv.etcdpb import rpc_pb2
from verikv.shim.kv import errors
from verikv.shim.kv.commands import Command, KeptAlives
from verikv.shim.kv.errors import EtcdError

MAX_SESSIONS = 4096  # client sessions remembered in the dedup table (least recently used evicted)
MAX_RESULTS_PER_SESSION = 4096  # remembered results per session (lowest seq evicted first)
_GONE = object()

_SESSION = struct.Struct("<QQQI")  # client id, acked_below, last slot, result count
_RESULT = struct.Struct("<QBI")  # seq, tag (0: an EtcdError), length


@dataclass(slots=True)
class Session:
    acked_below: int = 0
    results: dict[int, object] = field(default_factory=dict)  # request_seq -> response or EtcdError
    last_slot: int = 0
    # the seqs of `results`, a min-heap (seqs removed from `results` may stay until they surface):
    # forgetting the results below acked_below, or the lowest ones, costs no scan of them all
    # (a client with thousands of requests in flight moves acked_below with nearly every one)
    seqs: list[int] = field(default_factory=list, compare=False)

    def remember(self, seq: int, result) -> None:
        self.results[seq] = result
        heapq.heappush(self.seqs, seq)

    def forget_below(self, seq: int) -> None:
        """Forget every result of a seq below `seq`."""
        seqs, results = self.seqs, self.results
        while seqs and seqs[0] < seq:
            results.pop(heapq.heappop(seqs), None)

    def forget_lowest(self) -> int:
        """Forget the result of the lowest seq held; returns that seq."""
        while True:
            seq = heapq.heappop(self.seqs)
            if self.results.pop(seq, _GONE) is not _GONE:
                return seq


class Sessions:
    """The sessions by client id."""

    def __init__(self) -> None:
        self._by_client: dict[int, Session] = {}

    def __len__(self) -> int:
        return len(self._by_client)

    def __getitem__(self, client_id: int) -> Session:
        return self._by_client[client_id]

    def session(self, client_id: int, slot: int) -> Session:
        """The client's session (a new one if it has none, evicting the least recently used),
        used at `slot`."""
        by_client = self._by_client
        s = by_client.get(client_id)
        if s is None:
            if len(by_client) >= MAX_SESSIONS:
                oldest = min(by_client.items(), key=lambda item: (item[1].last_slot, item[0]))[0]
                del by_client[oldest]
            s = by_client[client_id] = Session()
        s.last_slot = slot
        return s

    def apply(self, cmd: Command, slot: int, execute: Callable[[int, object], object]) -> tuple[object, bool]:
        """(the command's result, whether it was applied before): `execute(kind, request)`'s
        result, or the one remembered for it."""
        s = self.session(cmd.client_id, slot)
        if cmd.request_seq in s.results:
            result, duplicate = s.results[cmd.request_seq], True
        elif cmd.request_seq < s.acked_below:
            result, duplicate = errors.OUTCOME_UNKNOWN, True
        else:
            result, duplicate = execute(cmd.kind, cmd.request()), False
            s.remember(cmd.request_seq, result)
        if cmd.acked_below > s.acked_below:
            s.acked_below = cmd.acked_below
            s.forget_below(s.acked_below)
        while len(s.results) > MAX_RESULTS_PER_SESSION:
            lowest = s.forget_lowest()
            s.acked_below = max(s.acked_below, lowest + 1)
        return result, duplicate

    # ---- in a snapshot ----

    def encode(self) -> Iterator[bytes]:
        """The sessions in a snapshot's encoding, in parts (their count is in the snapshot's head)."""
        for cid, s in sorted(self._by_client.items()):
            yield _SESSION.pack(cid, s.acked_below, s.last_slot, len(s.results))
            for seq, result in sorted(s.results.items()):
                if isinstance(result, EtcdError):
                    tag, b = 0, errors.encode_error(result)
                else:
                    tag, b = _RESULT_TAGS[type(result)], result.SerializeToString()
                yield _RESULT.pack(seq, tag, len(b))
                yield b

    def decode(self, data: bytes, pos: int, count: int) -> int:
        """Read `count` encoded sessions from `data` at `pos`; the position after them."""
        for _ in range(count):
            cid, acked, last_slot, nres = _SESSION.unpack_from(data, pos)
            pos += _SESSION.size
            s = self._by_client[cid] = Session(acked, {}, last_slot)
            for _ in range(nres):
                seq, tag, n = _RESULT.unpack_from(data, pos)
                pos += _RESULT.size
                b = data[pos:pos + n]
                pos += n
                s.remember(seq, errors.decode_error(b) if tag == 0 else _TAG_TYPES[tag].FromString(b))
        return pos


_RESULT_TAGS = {rpc_pb2.RangeResponse: 1, rpc_pb2.PutResponse: 2, rpc_pb2.DeleteRangeResponse: 3,
                rpc_pb2.TxnResponse: 4, rpc_pb2.CompactionResponse: 5, rpc_pb2.LeaseGrantResponse: 6,
                rpc_pb2.LeaseRevokeResponse: 7, rpc_pb2.LeaseKeepAliveResponse: 8, rpc_pb2.AlarmResponse: 9,
                rpc_pb2.AuthEnableResponse: 10, rpc_pb2.AuthDisableResponse: 11, rpc_pb2.AuthUserAddResponse: 12,
                rpc_pb2.AuthUserDeleteResponse: 13, rpc_pb2.AuthUserChangePasswordResponse: 14,
                rpc_pb2.AuthUserGrantRoleResponse: 15, rpc_pb2.AuthUserRevokeRoleResponse: 16,
                rpc_pb2.AuthUserGetResponse: 17, rpc_pb2.AuthUserListResponse: 18, rpc_pb2.AuthRoleAddResponse: 19,
                rpc_pb2.AuthRoleDeleteResponse: 20, rpc_pb2.AuthRoleGetResponse: 21,
                rpc_pb2.AuthRoleListResponse: 22, rpc_pb2.AuthRoleGrantPermissionResponse: 23,
                rpc_pb2.AuthRoleRevokePermissionResponse: 24, rpc_pb2.AuthenticateResponse: 25, KeptAlives: 26}
_TAG_TYPES = {tag: t for t, tag in _RESULT_TAGS.items()}
