"""In-memory registers for testing the checker: one correct, and deliberately broken ones.

They implement the same client interface as the etcd client, so the real workload code
drives them from real threads. Each operation takes effect at one instant inside its
call (under a lock), with random delays before and after, so calls overlap in time.
Never use these for anything but checking the checker.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from verikv.jepsen.history import History
from verikv.jepsen.workloads import Clock, RegisterWorkload, SetWorkload, worker_loop


class InMemoryStore:
    """A linearizable register per key (and a set), unless told to misbehave:
    stale_read_p: a read returns the previous version of the key instead of the current one;
    lost_write_p: a write or swap is acknowledged but never applied."""

    def __init__(self, seed: int = 0, stale_read_p: float = 0.0, lost_write_p: float = 0.0,
                 max_delay_ms: float = 1.0):
        self.lock = threading.Lock()
        self.versions: dict[str, list[int]] = {}
        self.elements: set[int] = set()
        self.rng = random.Random(seed)
        self.stale_read_p = stale_read_p
        self.lost_write_p = lost_write_p
        self.max_delay_ms = max_delay_ms

    def _delay(self) -> None:
        with self.lock:
            delay_ms = self.rng.uniform(0, self.max_delay_ms)
        time.sleep(delay_ms / 1000.0)

    def _roll(self, p: float) -> bool:
        return p > 0 and self.rng.random() < p

    def read(self, key: str) -> int | None:
        self._delay()
        with self.lock:
            versions = self.versions.get(key, [])
            if len(versions) >= 2 and self._roll(self.stale_read_p):
                value = versions[-2]
            else:
                value = versions[-1] if versions else None
        self._delay()
        return value

    def write(self, key: str, value: int) -> None:
        self._delay()
        with self.lock:
            if not self._roll(self.lost_write_p):
                self.versions.setdefault(key, []).append(value)
        self._delay()

    def cas(self, key: str, old: int, new: int) -> bool:
        self._delay()
        with self.lock:
            versions = self.versions.get(key, [])
            swapped = bool(versions) and versions[-1] == old
            if swapped and not self._roll(self.lost_write_p):
                versions.append(new)
        self._delay()
        return swapped

    def add(self, element: int) -> None:
        self._delay()
        with self.lock:
            if not self._roll(self.lost_write_p):
                self.elements.add(element)
        self._delay()

    def read_set(self) -> list[int]:
        with self.lock:
            return sorted(self.elements)

    def close(self) -> None:
        pass


def drive(store: InMemoryStore, workload_name: str = "register", seed: int = 0, n_workers: int = 4,
          duration_s: float = 0.5) -> list:
    """Run the real workload code against `store` from `n_workers` threads; return the history."""
    workload = RegisterWorkload(seed, active_keys=2, ops_per_key=60) if workload_name == "register" \
        else SetWorkload(seed)
    history, clock, stop = History(), Clock(), threading.Event()
    threads = [threading.Thread(target=worker_loop, args=(w, n_workers, store, None, workload, history, clock, stop))
               for w in range(n_workers)]
    for t in threads:
        t.start()
    time.sleep(duration_s)
    stop.set()
    for t in threads:
        t.join()
    if workload_name == "set":
        from verikv.jepsen.workloads import record
        record(history, clock, n_workers, None, "final-read", None, None, store.read_set)
    return history.snapshot()
