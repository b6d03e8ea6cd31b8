"""A limit on failed `Authenticate` calls (etcd has none): each password check costs a worker
thread ~60 ms of bcrypt, and nothing else slows down whoever guesses passwords.

The rule, per node and per user name (a name no user has counts the same way, so the answer
tells nothing about which names exist): at most `max_failures` password checks that failed, or
are still running, within the last `window_s` seconds. Beyond that, an `Authenticate` for the
name is answered `RESOURCE_EXHAUSTED` at once, without checking the password (a right one
too: knowing it would take the check the limit saves), until the oldest failure leaves the
window. A check that succeeds forgets the name's failures. Each node counts its own: a client
that tries every node gets `max_failures` checks on each. `max_failures` 0: no limit.

The cost of the rule: whoever keeps failing for a name also keeps its rightful user out, one
window at a time; the window is short for that reason.
"""

from __future__ import annotations

import collections
import math
import time

import grpc

from verikv.shim.kv.errors import EtcdError

MAX_FAILURES = 5
WINDOW_S = 60.0
_SWEEP_FROM = 1024  # names tracked before the first sweep of names with nothing in the window


class FailureLimit:
    def __init__(self, max_failures: int = MAX_FAILURES, window_s: float = WINDOW_S, clock=time.monotonic):
        self.max_failures, self.window_s, self.clock = max_failures, window_s, clock
        self._failures: dict[str, collections.deque] = {}  # name -> times of its failures in the window
        self._running: collections.Counter = collections.Counter()  # name -> its checks running
        self._sweep_at = _SWEEP_FROM
        self.refused = 0  # calls answered without a check

    def _recent(self, name: str, now: float) -> int:
        times = self._failures.get(name)
        if times is None:
            return 0
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[name]
            return 0
        return len(times)

    def admit(self, name: str) -> EtcdError | None:
        """None: a password check for `name` may run (it counts as a failure until `done`);
        else the error to answer with, without checking."""
        if self.max_failures <= 0:
            return None
        now = self.clock()
        if self._recent(name, now) + self._running[name] >= self.max_failures:
            self.refused += 1
            times = self._failures.get(name)
            wait_s = math.ceil(times[0] + self.window_s - now) if times else math.ceil(self.window_s)
            return EtcdError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                             f"verikv: too many failed authentications for user {name!r} on this node "
                             f"({self.max_failures} in {self.window_s:g} s): try again in {max(1, wait_s)} s")
        self._running[name] += 1
        return None

    def done(self, name: str, ok: bool | None) -> None:
        """An admitted check ended: `ok` True, the password matched; False, it did not (or no user
        has the name); None, neither (a user without a password: nothing was guessed)."""
        if self.max_failures <= 0:
            return
        self._running[name] -= 1
        if self._running[name] <= 0:
            del self._running[name]
        if ok is None:
            return
        if ok:
            self._failures.pop(name, None)
            return
        self._failures.setdefault(name, collections.deque()).append(self.clock())
        if len(self._failures) >= self._sweep_at:  # names guessed at random must not pile up
            now = self.clock()
            for n in list(self._failures):
                self._recent(n, now)
            self._sweep_at = max(_SWEEP_FROM, 2 * len(self._failures))
