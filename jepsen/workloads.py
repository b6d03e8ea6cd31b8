"""Workloads: which operation each client performs next, and how it is recorded.

A workload only chooses operations and drives a client (anything with read/write/cas/add/
read_set, raising `Failed` or `Indeterminate`); it never talks to a network itself, so the
same code drives etcd, verikv and the in-memory registers used to test the checker.
It must never record an operation whose outcome is uncertain as `fail`.
"""

from __future__ import annotations

import random
import threading
import time
from typing import Any, Callable, Protocol

from verikv.jepsen.history import FAIL, INFO, OK, History, Op


class Failed(Exception):
    """The operation certainly did not take effect (e.g. connection refused before sending)."""


class Indeterminate(Exception):
    """The operation may or may not have taken effect (timeout, connection lost mid-flight)."""


class Client(Protocol):
    def read(self, key: str) -> int | None: ...
    def write(self, key: str, value: int) -> None: ...
    def cas(self, key: str, old: int, new: int) -> bool: ...
    def add(self, element: int) -> None: ...
    def read_set(self) -> list[int]: ...
    def put(self, key: str, value: int) -> int: ...                 # -> the put's revision
    def delete(self, key: str) -> list[int]: ...                    # -> [revision, deleted]
    def txn(self, ops: list) -> int: ...                            # -> the txn's revision
    def close(self) -> None: ...


class RegisterWorkload:
    """Reads, writes and compare-and-sets over a few keys at a time. Each key is retired
    after `ops_per_key` operations (Jepsen's `independent`), which keeps every per-key
    history small enough for an exhaustive linearizability search. Written values are
    unique per key, so every read names the write it saw."""

    name = "register"

    def __init__(self, seed: int, active_keys: int = 4, ops_per_key: int = 200):
        self.rng = random.Random(seed)
        self.ops_per_key = ops_per_key
        self.lock = threading.Lock()
        self.next_key = 0
        self.next_value = 1
        self.active: list[list] = []   # [key, ops issued, recently written values]
        for _ in range(active_keys):
            self._new_key()

    def _new_key(self) -> list:
        entry = [f"r/{self.next_key}", 0, []]
        self.next_key += 1
        self.active.append(entry)
        return entry

    def next_op(self) -> tuple[str, str, Any]:
        with self.lock:
            slot = self.rng.randrange(len(self.active))
            entry = self.active[slot]
            entry[1] += 1
            if entry[1] >= self.ops_per_key:
                self.active[slot] = self.active[-1]
                self.active.pop()
                self._new_key()
            key, recent = entry[0], entry[2]
            roll = self.rng.random()
            if roll < 0.4:
                return "read", key, None
            value = self.next_value
            self.next_value += 1
            if roll < 0.7 or not recent:
                recent.append(value)
                del recent[:-3]
                return "write", key, value
            old = self.rng.choice(recent)
            recent.append(value)
            del recent[:-3]
            return "cas", key, [old, value]

    @staticmethod
    def perform(client: Client, f: str, key: str, value: Any) -> Any:
        if f == "read":
            return client.read(key)
        if f == "write":
            client.write(key, value)
            return None
        if f == "cas":
            return client.cas(key, value[0], value[1])
        raise ValueError(f)


class SetWorkload:
    """Adds unique integers to a grow-only set; a final read (after healing) must contain
    every acknowledged add."""

    name = "set"

    def __init__(self, seed: int):
        self.lock = threading.Lock()
        self.next_element = 0

    def next_op(self) -> tuple[str, str | None, Any]:
        with self.lock:
            self.next_element += 1
            return "add", None, self.next_element

    @staticmethod
    def perform(client: Client, f: str, key: Any, value: Any) -> Any:
        if f == "add":
            client.add(value)
            return None
        raise ValueError(f)


class WatchWorkload:
    """The writers of the watch workload: puts (unique values), deletes, and transactions that
    write 2-3 keys in one revision, over a few keys under `w/`, each recording the revision its
    response names. The watchers (watchers.py) and the final history are the other half; this
    class only chooses writes. Every txn writes at least one key, so every acknowledged write but
    a delete of an absent key makes a revision of its own."""

    name = "watch"
    PREFIX = "w/"

    def __init__(self, seed: int, keys: int = 8, pause_s: float = 0.04):
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.keys = [f"{self.PREFIX}{i}" for i in range(keys)]
        self.next_value = 1
        # each writer rests this long between writes: a few hundred revisions a second at most,
        # so a minute's run stays under verikv's default auto-compaction retention (10,000
        # revisions) and the watchers' Python threads keep up on a small machine
        self.pause_s = pause_s

    def _value(self) -> int:
        value = self.next_value
        self.next_value += 1
        return value

    def next_op(self) -> tuple[str, str | None, Any]:
        with self.lock:
            roll = self.rng.random()
            if roll < 0.65:
                return "put", self.rng.choice(self.keys), self._value()
            if roll < 0.8:
                return "delete", self.rng.choice(self.keys), None
            keys = self.rng.sample(self.keys, self.rng.choice((2, 3)))
            ops = [["put", k, self._value()] if i == 0 or self.rng.random() < 0.75 else ["delete", k, None]
                   for i, k in enumerate(keys)]
            self.rng.shuffle(ops)
            return "txn", None, ops

    @staticmethod
    def perform(client: Client, f: str, key: Any, value: Any) -> Any:
        if f == "put":
            return client.put(key, value)
        if f == "delete":
            return client.delete(key)
        if f == "txn":
            return client.txn(value)
        raise ValueError(f)


WORKLOADS = {"register": RegisterWorkload, "set": SetWorkload, "watch": WatchWorkload}


class Clock:
    """Milliseconds since the start of the run (monotonic)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def now_ms(self) -> float:
        return (time.monotonic() - self.t0) * 1000.0


def record(history: History, clock: Clock, process: int, node: int | None, f: str, key: Any, value: Any,
           action: Callable[[], Any]) -> Op:
    """Run one operation and append its outcome to the history."""
    t0 = clock.now_ms()
    try:
        result = action()
        typ, error = OK, None
    except Failed as err:
        result, typ, error = None, FAIL, str(err)[:200]
    except Indeterminate as err:
        result, typ, error = None, INFO, str(err)[:200]
    except Exception as err:   # an unexpected client error: we cannot know what happened
        result, typ, error = None, INFO, f"{type(err).__name__}: {err}"[:200]
    t1 = clock.now_ms()
    if f == "read" and typ == INFO:
        typ = FAIL    # a read has no effect: an unknown read is as good as a failed one
    return history.append(Op(process=process, f=f, key=key, value=value, invoke_ms=t0, complete_ms=t1,
                             type=typ, result=result, node=node, error=error))


def worker_loop(worker: int, n_workers: int, client: Client, node: int | None, workload, history: History,
                clock: Clock, stop: threading.Event, pause_s: Callable[[], float] | None = None) -> None:
    """One client thread: perform operations until `stop` is set. After an indeterminate
    op the client continues as a new logical process, as in Jepsen."""
    process = worker
    while not stop.is_set():
        f, key, value = workload.next_op()
        op = record(history, clock, process, node, f, key, value,
                    lambda: workload.perform(client, f, key, value))
        if op.type == INFO:
            process += n_workers
        if op.type != OK:
            stop.wait(0.05)   # do not spin on a dead node
        if pause_s:
            time.sleep(pause_s())


class ThreadGroup:
    """Client threads that run until `stop_event` is set: started together, stopped together
    (each given `stop_timeout_s` to finish what it is doing)."""

    stop_timeout_s = 5.0

    def __init__(self) -> None:
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            if t.is_alive():
                t.join(timeout=self.stop_timeout_s)
