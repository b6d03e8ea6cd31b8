"""Nemeses: the faults, and the schedule on which they are injected and healed.

A schedule is a list of fault windows computed from the seed alone (so `compare` gives
both systems the same one); concrete targets such as "the leader" are resolved when the
window opens and recorded. A nemesis must never leave a fault in place: `heal_all` undoes
everything (resume paused nodes, restart killed ones, drop all cuts) and is called from
`finally`. An unavailable mechanism raises NemesisUnavailable before the run starts; it is
never silently skipped.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from verikv.jepsen.drivers.base import NemesisUnavailable, SystemDriver
from verikv.jepsen.impostor import Impostor


@dataclass
class FaultWindow:
    kind: str
    start_s: float              # planned, seconds since the start of the run
    end_s: float
    choice: int                 # seeded random choice (which node / which variant)
    injected_s: float | None = None   # actual times
    healed_s: float | None = None
    detail: str = ""
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


NEMESES = {
    "none": "no faults (baseline)",
    "kill": "kill -9 a random node, restart it when the window closes",
    "kill-leader": "kill -9 the current leader, restart it when the window closes",
    "pause": "SIGSTOP a random node, SIGCONT when the window closes",
    "pause-leader": "SIGSTOP the current leader, SIGCONT when the window closes",
    "partition": "each window one of: isolate the leader, minority/majority halves, bridge",
    "partition-leader": "cut every link of the current leader",
    "partition-halves": "cut a random node (minority) from the other two (majority)",
    "partition-bridge": "cut A-C while B still talks to both (a bridge)",
    "partition-flap": "a random partition switched on and off every second",
    "disk": "verikv only: fsync starts failing on a node (it must stop), or a crash loses unsynced writes",
    "impostor": "verikv only: kill -9 a random node, and speak for it on the peer wire with damaged frames "
                "(a corrupted member) until the window closes; then restart it",
}
PARTITION_KINDS = ("partition", "partition-leader", "partition-halves", "partition-bridge", "partition-flap")


def check_available(kind: str, driver: SystemDriver) -> None:
    """Raise NemesisUnavailable (with the reason) if `kind` cannot run against this driver."""
    if kind not in NEMESES:
        raise NemesisUnavailable(f"unknown nemesis {kind!r}")
    if kind in PARTITION_KINDS and driver.partition_unavailable_reason:
        raise NemesisUnavailable(f"{kind}: {driver.partition_unavailable_reason}")
    if kind == "disk":
        driver.use_faulty_disk()  # raises if the system has no disk fault points
    if kind == "impostor":
        driver.peer_addresses()  # raises if the system has no peer wire of verikv's


def make_schedule(kind: str, time_s: float, seed: int, first_s: float = 4.0,
                  fault_s: tuple[float, float] = (5.0, 8.0), quiet_s: tuple[float, float] = (4.0, 6.0)) -> list[FaultWindow]:
    """Alternate quiet and fault windows inside [0, time_s], all faults healed by time_s."""
    if kind == "none":
        return []
    rng = random.Random(seed * 7919 + 17)
    windows, t = [], min(first_s, time_s / 4)
    while True:
        length = rng.uniform(*fault_s)
        if t + length > time_s - 1.0:
            length = time_s - 1.0 - t
            if length < 2.0:
                break
        windows.append(FaultWindow(kind, round(t, 3), round(t + length, 3), rng.randrange(1 << 30)))
        t += length + rng.uniform(*quiet_s)
    return windows


def _partition_links(variant: str, n: int, choice: int, leader: int | None) -> tuple[set[frozenset[int]], str]:
    nodes = list(range(n))
    if variant == "partition-leader":
        target = leader if leader is not None else choice % n
        return {frozenset({target, o}) for o in nodes if o != target}, f"isolate leader n{target + 1}"
    if variant == "partition-halves":
        target = choice % n
        return {frozenset({target, o}) for o in nodes if o != target}, \
            f"minority [n{target + 1}] | majority {[f'n{o + 1}' for o in nodes if o != target]}"
    if variant == "partition-bridge":
        bridge = choice % n
        a, c = [o for o in nodes if o != bridge][:2]
        return {frozenset({a, c})}, f"bridge n{bridge + 1}: n{a + 1} x n{c + 1} cut"
    raise ValueError(variant)


DISK_FAULTS = ("fsync-fails", "crash-unsynced")  # the disk nemesis alternates them


def inject_disk_fault(driver: SystemDriver, node: int, kind: str) -> str:
    """`fsync-fails`: fdatasync starts failing on the node, which must stop by itself
    (fail-stop); `crash-unsynced`: kill -9, losing every write not yet fsynced (the node's disk
    holds unsynced writes in memory). Returns what happened."""
    if kind == "crash-unsynced":
        driver.kill(node)
        return f"n{node + 1} crashed, losing its unsynced writes"
    if kind != "fsync-fails":
        raise NemesisUnavailable(f"unknown disk fault {kind!r} (one of {', '.join(DISK_FAULTS)})")
    driver.fsync_fault_file(node).write_text("set by the disk nemesis\n")
    deadline = time.monotonic() + 15
    while node in driver.pids() and time.monotonic() < deadline:
        time.sleep(0.1)
    if node in driver.pids():
        raise RuntimeError(f"n{node + 1} kept running for 15 s after its fsync started failing "
                           "(it must stop: fail-stop)")
    driver.killed.add(node)
    return f"fsync fails on n{node + 1}: it stopped by itself"


def heal_disk_fault(driver: SystemDriver, node: int) -> None:
    """The node's disk works again, and the node runs again."""
    driver.fsync_fault_file(node).unlink(missing_ok=True)
    if node not in driver.pids():
        driver.restart(node)


class NemesisRunner(threading.Thread):
    """Executes a schedule against a driver in a background thread."""

    def __init__(self, driver: SystemDriver, schedule: list[FaultWindow], now_s: Callable[[], float],
                 log: Callable[[str], None] = print):
        super().__init__(name="nemesis", daemon=True)
        self.driver = driver
        self.schedule = schedule
        self.now_s = now_s
        self.log = log
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.current: FaultWindow | None = None
        self.killed: set[int] = set()
        self.paused: set[int] = set()
        self.disk_faults = 0
        self.impostors: list[Impostor] = []

    def _sleep_until(self, t_s: float) -> bool:
        """False if asked to stop first."""
        while not self.stop_event.is_set():
            left = t_s - self.now_s()
            if left <= 0:
                return True
            self.stop_event.wait(min(left, 0.1))
        return False

    def run(self) -> None:
        for window in self.schedule:
            if not self._sleep_until(window.start_s):
                break
            with self.lock:
                self.current = window
                window.injected_s = self.now_s()
                try:
                    self._inject(window)
                except Exception as err:          # recorded; the run goes on
                    window.error = f"{type(err).__name__}: {err}"
                self.log(f"nemesis: {window.kind} started at {window.injected_s:.1f}s: {window.detail}"
                         + (f" (error: {window.error})" if window.error else ""))
            if window.kind == "partition-flap":
                self._flap(window)
            else:
                self._sleep_until(window.end_s)
            with self.lock:
                self._heal(window)
                window.healed_s = self.now_s()
                self.current = None
                self.log(f"nemesis: {window.kind} healed at {window.healed_s:.1f}s")
            if self.stop_event.is_set():
                break

    def _leader(self) -> int | None:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and not self.stop_event.is_set():
            leader = self.driver.leader()
            if leader is not None:
                return leader
            time.sleep(0.2)
        return None

    def _inject(self, w: FaultWindow) -> None:
        d, n = self.driver, self.driver.n_nodes
        if w.kind in ("kill", "kill-leader"):
            node = self._leader() if w.kind == "kill-leader" else w.choice % n
            node = w.choice % n if node is None else node
            d.kill(node)
            self.killed.add(node)
            w.detail = f"kill -9 n{node + 1}"
        elif w.kind in ("pause", "pause-leader"):
            node = self._leader() if w.kind == "pause-leader" else w.choice % n
            node = w.choice % n if node is None else node
            d.pause(node)
            self.paused.add(node)
            w.detail = f"SIGSTOP n{node + 1}"
        elif w.kind in PARTITION_KINDS and w.kind != "partition-flap":
            variant = w.kind
            if variant == "partition":
                variant = ("partition-leader", "partition-halves", "partition-bridge")[w.choice % 3]
            leader = self._leader() if variant == "partition-leader" else None
            links, w.detail = _partition_links(variant, n, w.choice // 3, leader)
            d.cut(links)
        elif w.kind == "partition-flap":
            w.detail = "flapping partitions"
        elif w.kind == "impostor":
            node = w.choice % n
            d.kill(node)
            self.killed.add(node)
            targets = [addr for i, addr in enumerate(d.peer_addresses()) if i != node]
            # from the member's address (every node's, 127.0.0.1, without namespaces), and from another
            places = ([(None, "its address")] if d.net is None else
                      [(d.net.namespace(node), "its address"), (None, "the harness's address")])
            for k, (netns, where) in enumerate(places):
                impostor = Impostor(node, targets, seed=w.choice + k, netns=netns, where=where)
                impostor.start()
                self.impostors.append(impostor)
            w.detail = f"kill -9 n{node + 1}; impostors speak for it"
        elif w.kind == "disk":
            kind = DISK_FAULTS[self.disk_faults % len(DISK_FAULTS)]
            self.disk_faults += 1
            w.detail = inject_disk_fault(d, w.choice % n, kind)
        else:
            raise NemesisUnavailable(w.kind)

    def _flap(self, w: FaultWindow) -> None:
        rng = random.Random(w.choice)
        on = False
        variants = ("partition-leader", "partition-halves", "partition-bridge")
        shapes = []
        while not self.stop_event.is_set() and self.now_s() < w.end_s:
            with self.lock:
                if on:
                    self.driver.heal_network()
                else:
                    variant = variants[rng.randrange(3)]
                    links, text = _partition_links(variant, self.driver.n_nodes, rng.randrange(1 << 20),
                                                   None if variant != "partition-leader" else self.driver.leader())
                    self.driver.cut(links)
                    shapes.append(text)
                on = not on
            self._sleep_until(min(w.end_s, self.now_s() + 1.0))
        w.detail = f"flapping every 1 s: {len(shapes)} cuts ({'; '.join(shapes[:4])}{'...' if len(shapes) > 4 else ''})"

    def _heal(self, w: FaultWindow) -> None:
        d = self.driver
        errors = []
        for impostor in self.impostors:  # stopped before their node is back
            try:
                w.detail += ("; " if w.detail.endswith(")") else ": ") + impostor.stop()
            except Exception as err:
                errors.append(f"stopping an impostor: {err}")
        self.impostors.clear()
        for node in sorted(self.paused):
            try:
                d.resume(node)
            except Exception as err:
                errors.append(str(err))
        self.paused.clear()
        for node in sorted(self.killed):
            try:
                d.restart(node)
            except Exception as err:
                errors.append(str(err))
        self.killed.clear()
        if w.kind in PARTITION_KINDS:
            d.heal_network()
        if w.kind == "disk":
            try:
                heal_disk_fault(d, w.choice % d.n_nodes)
            except Exception as err:
                errors.append(str(err))
        if errors:
            w.error = (w.error + "; " if w.error else "") + "heal: " + "; ".join(errors)

    def heal_all(self) -> None:
        """Stop the schedule and undo any fault in place (called from `finally`)."""
        self.stop_event.set()
        if self.is_alive():
            self.join(timeout=15)
        with self.lock:
            for impostor in self.impostors:
                try:
                    impostor.stop()
                except Exception:
                    pass
            self.impostors.clear()
            for node in sorted(self.paused):
                try:
                    self.driver.resume(node)
                except Exception:
                    pass
            self.paused.clear()
            for node in sorted(self.killed):
                try:
                    self.driver.restart(node)
                except Exception:
                    pass
            self.killed.clear()
            try:
                self.driver.heal_network()
            except Exception:
                pass
            if self.current is not None and self.current.kind == "disk" and self.current.healed_s is None:
                try:
                    heal_disk_fault(self.driver, self.current.choice % self.driver.n_nodes)
                except Exception:
                    pass
            if self.current is not None and self.current.healed_s is None:
                self.current.healed_s = self.now_s()
                self.current = None
