"""Client commands from the moment they are submitted until they are answered.

Each command gets (client_id, request_seq) and waits in the pending table. At the next turn the
node proposes the commands (leader) or forwards them to the leader (follower); a command not
answered after `retry_after_s` is queued again (the KV dedup table makes the retry harmless), and
one not answered by its deadline is answered with etcd's timeout. Forwarded commands are moved as
the bytes they arrived as: nothing here decodes a request.

This module must never talk to the core or do I/O: it keeps tables and makes byte strings.
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass

from verikv.shim.kv import errors
from verikv.shim.kv.commands import BatchFormatError, Command, Kind, split_batch
from verikv.shim.kv.errors import EtcdError

log = logging.getLogger("verikv.node")

TOO_MANY_REQUESTS = EtcdError(errors.Code.RESOURCE_EXHAUSTED, "etcdserver: too many requests")


@dataclass(slots=True)
class _Pending:
    kind: Kind
    body: bytes  # the request as the client sent it
    done: object  # done(response or EtcdError), called once
    deadline: float
    last_sent: float


class Proposals:
    """The pending table of this node's client commands and the commands to propose next."""

    def __init__(self, client_id: int, *, request_timeout_s: float, retry_after_s: float,
                 max_pending: int, max_batch_bytes: int):
        self.client_id = client_id
        self.request_timeout_s = request_timeout_s
        self.retry_after_s = retry_after_s
        self.max_pending = max_pending
        self.max_batch_bytes = max_batch_bytes
        self.next_seq = 1
        self.waiting: dict[int, _Pending] = {}
        self._seqs: list[int] = []  # the seqs of `waiting`, a min-heap (answered ones leave it lazily)
        self.local: list[bytes] = []  # this node's encoded commands, to propose or forward
        self.forwarded: list[bytes] = []  # followers' encoded commands, proposed if this node leads
        self.failed = 0  # commands answered with an error before they were applied (timeouts, ...)

    def add(self, kind: Kind, body: bytes, done, now: float) -> None:
        """Queue a command for the log; `done` gets its response or EtcdError."""
        if len(self.waiting) >= self.max_pending:
            self.failed += 1
            done(TOO_MANY_REQUESTS)
            return
        seq = self.next_seq
        self.next_seq += 1
        self.waiting[seq] = _Pending(kind, body, done, now + self.request_timeout_s, now)
        heapq.heappush(self._seqs, seq)
        self.local.append(Command(kind, self.client_id, seq, self.acked_below(), body).encode())

    def acked_below(self) -> int:
        """Every request of this session below this seq is answered (never retried again): the
        lowest seq still waiting (without a scan of them all: thousands may wait)."""
        seqs, waiting = self._seqs, self.waiting
        while seqs and seqs[0] not in waiting:
            heapq.heappop(seqs)
        return seqs[0] if seqs else self.next_seq

    def add_forwarded(self, batch: bytes) -> None:
        """A follower's forwarded batch: its commands, as they are."""
        if len(self.forwarded) >= self.max_pending:
            return  # the followers retry them
        try:
            self.forwarded.extend(split_batch(batch))
        except BatchFormatError as err:
            log.warning("dropped a malformed forwarded batch (%d bytes): %s", len(batch), err)

    def batches(self, commands: list[bytes]) -> list[list[bytes]]:
        """`commands` in order, cut into batches of at most max_batch_bytes."""
        out, cur, size = [], [], 0
        for c in commands:
            if cur and size + len(c) > self.max_batch_bytes:
                out.append(cur)
                cur, size = [], 0
            cur.append(c)
            size += len(c) + 4
        if cur:
            out.append(cur)
        return out

    def answer(self, outcomes) -> None:
        """Applied commands: answer the ones of this session that are still waiting."""
        my_id = self.client_id
        for out in outcomes:
            if out.command.client_id != my_id:
                continue
            p = self.waiting.pop(out.command.request_seq, None)
            if p is not None:
                p.done(out.result)

    def scan(self, now: float) -> None:
        """Queue again what waited `retry_after_s` without an answer; time out what is past its
        deadline."""
        retry_before = now - self.retry_after_s
        acked = self.acked_below()
        expired = []
        for seq, p in self.waiting.items():
            if p.deadline <= now:
                expired.append(seq)
            elif p.last_sent <= retry_before:
                p.last_sent = now
                self.local.append(Command(p.kind, self.client_id, seq, acked, p.body).encode())
        self.failed += len(expired)
        for seq in expired:
            self.waiting.pop(seq).done(errors.TIMEOUT)

    def fail_all(self, err: EtcdError) -> None:
        waiting, self.waiting = self.waiting, {}
        self._seqs = []
        self.failed += len(waiting)
        for p in waiting.values():
            p.done(err)
