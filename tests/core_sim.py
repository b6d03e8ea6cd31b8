"""A deterministic simulation of several replicas of the compiled core.

Real encoded messages travel over a simulated network that loses, duplicates, reorders and
partitions them; replicas crash and restart from their durable records only. Each Ready is
honoured as a node would: early messages leave at once, records are written, and only a
`sync` Ready makes them durable before its messages and commits; a crash loses what was
written but not synced, or keeps a prefix of it (a torn write). With `Faults.truncate`, replicas
also truncate their logs below committed slots (as a node does once a snapshot covers them), and a
replica asked for slots truncated there (`need_snapshot`) sends the peer its snapshot, which the
peer installs (`install_snapshot`; the snapshot's contents are the values chosen below it). One
seed fixes every choice, so a failing run replays exactly: `Simulation(seed=...)`.

After every step the simulation checks the safety properties the proof promises:
- Agreement: no two replicas ever commit different values for a slot;
- a replica's committed prefix never changes (not even across its own crash and recovery);
- every committed value was proposed (or is the empty no-op a new leader fills holes with).
Every message put on the wire is also checked against the protocol invariants the Agreement
proof rests on (dafny/ProtocolInvariant.i.dfy), as evidence that the compiled core refines the
protocol: an Accept comes from its ballot's leader and is unique per (ballot, slot); an
Accepted answers an Accept; a Learn follows Accepteds from a quorum; a Promise reports only
votes that were proposed. It never imports anything but the core's public API.
"""

from __future__ import annotations

import dataclasses
import random
import struct

from verikv.verified_core.core import Core, Ready

NOOP = b""


class SafetyViolation(AssertionError):
    pass


T_PROMISE, T_ACCEPT, T_ACCEPTED, T_LEARN = 2, 3, 4, 5
_HEADER = struct.Struct("<BHHB")  # version, src, dst, tag
_BALLOT_SLOT = struct.Struct("<QQQ")  # round, node, slot


def _value(m: bytes, at: int) -> tuple[bytes, int]:
    (n,) = struct.unpack_from("<I", m, at)
    return m[at + 4:at + 4 + n], at + 4 + n


class ProtocolObserver:
    """Checks the protocol's message invariants on the real wire traffic of every replica."""

    def __init__(self, n: int, fail) -> None:
        self.quorum = n // 2 + 1
        self.fail = fail
        self.accepts: dict[tuple, bytes] = {}  # (ballot, slot) -> value
        self.accepted_from: dict[tuple, set[int]] = {}  # (ballot, slot) -> acceptors

    def sent(self, m: bytes) -> None:
        _, src, dst, tag = _HEADER.unpack_from(m)
        if tag == T_ACCEPT:
            rnd, node, slot = _BALLOT_SLOT.unpack_from(m, 6)
            val, _ = _value(m, 30)
            if node != src:
                self.fail(f"AcceptFromLeader: node {src} sent Accept at ballot ({rnd}, {node})")
            known = self.accepts.setdefault(((rnd, node), slot), val)
            if known != val:
                self.fail(f"AcceptUnique: two values proposed in slot {slot} at ballot ({rnd}, {node})")
        elif tag == T_ACCEPTED:
            rnd, node, slot = _BALLOT_SLOT.unpack_from(m, 6)
            key = ((rnd, node), slot)
            if key not in self.accepts and self.quorum > 1:
                self.fail(f"AcceptedHasAccept: node {src} voted in slot {slot} at ({rnd}, {node}) "
                          "without an Accept")
            self.accepted_from.setdefault(key, set()).add(src)
        elif tag == T_LEARN:
            rnd, node, slot = _BALLOT_SLOT.unpack_from(m, 6)
            voters = self.accepted_from.get(((rnd, node), slot), set()) | {src}  # the leader's own vote
            if len(voters) < self.quorum:
                self.fail(f"LearnChosen: node {src} announced slot {slot} chosen at ({rnd}, {node}) "
                          f"with votes from {sorted(voters)} only")
        elif tag == T_PROMISE:
            at = 6 + 16 + 8
            (count,) = struct.unpack_from("<I", m, at)
            at += 4
            for _ in range(count):
                slot, rnd, node = struct.unpack_from("<QQQ", m, at)
                val, at = _value(m, at + 24)
                if self.accepts.get(((rnd, node), slot), val) != val:
                    self.fail(f"PromiseReportsVotes: node {src} reported a vote in slot {slot} at "
                              f"({rnd}, {node}) for a value never proposed there")


@dataclasses.dataclass
class Faults:
    drop: float = 0.05       # a delivery attempt loses the message
    duplicate: float = 0.05  # a delivered message stays in flight for another delivery
    crash: float = 0.003     # per step: a random replica crashes and restarts
    torn: float = 0.3        # of crashes: the last step's records are cut to a prefix
    partition: float = 0.01  # per step: the network splits in two groups, or heals
    truncate: float = 0.0    # per step: a random replica truncates its log below a committed slot


class Simulation:
    def __init__(self, n: int, seed: int, faults: Faults | None = None,
                 election_ticks: int = 10, heartbeat_ticks: int = 2) -> None:
        self.n = n
        self.seed = seed
        self.rng = random.Random(seed)
        self.faults = faults or Faults()
        self.election_ticks = election_ticks
        self.heartbeat_ticks = heartbeat_ticks
        self.disks: list[list[bytes]] = [[] for _ in range(n)]
        self.unsynced: list[list[bytes]] = [[] for _ in range(n)]  # written, not yet durable
        self.cores = [self._fresh(i) for i in range(n)]
        self.in_flight: list[tuple[int, bytes]] = []
        self.blocked: set[tuple[int, int]] = set()  # (src, dst) pairs the partition cuts
        self.observed: list[dict[int, bytes]] = [{} for _ in range(n)]  # commits seen, per replica
        self.chosen: dict[int, bytes] = {}  # slot -> value, over all replicas
        self.proposed: set[bytes] = {NOOP}
        self.steps = 0
        self.next_value = 0
        self.trace: list[str] = []
        self.observer = ProtocolObserver(n, self._fail)
        self.mid_sync_crashes = 0
        self.truncations = 0  # Truncates that moved a log's start
        self.truncation_crashes = 0  # crashes part-way through a Truncate or an InstallSnapshot
        self.snapshots_installed = 0

    # ---- plumbing -------------------------------------------------------------------------

    def _fresh(self, i: int) -> Core:
        return Core(i, self.n, election_ticks=self.election_ticks, heartbeat_ticks=self.heartbeat_ticks)

    def _fail(self, what: str) -> None:
        tail = "\n".join(self.trace[-30:])
        raise SafetyViolation(f"{what}\n(n={self.n}, seed={self.seed}, step={self.steps}; "
                              f"replay with Simulation(n={self.n}, seed={self.seed}))\nlast events:\n{tail}")

    def _apply(self, i: int, ready: Ready, *, may_tear: bool = True) -> None:
        for _, message in ready.early:
            self.observer.sent(message)
        self.in_flight.extend(ready.early)         # 1. sent before anything is durable
        self.unsynced[i].extend(ready.records)     # 2. written, in order
        if may_tear and ready.sync and self.rng.random() < self.faults.crash * self.faults.torn * 10:
            # crash during the sync: a prefix of the unsynced records reached the disk
            pending = self.unsynced[i]
            keep = self.rng.randrange(len(pending))
            self.trace.append(f"{self.steps}: node {i} crashed mid-sync ({keep}/{len(pending)} records)")
            self.mid_sync_crashes += 1
            self._restart(i, keep_unsynced=keep)
            return
        if ready.sync:                             # ... and durable before what follows
            self.disks[i].extend(self.unsynced[i])
            self.unsynced[i] = []
        for dst, message in ready.messages:        # 3. sent
            self.observer.sent(message)
            self.in_flight.append((dst, message))
        self._observe(i, ready.commits)            # 4. applied
        for peer in ready.need_snapshot:           # 5. peers behind its log's start: a snapshot
            self._send_snapshot(i, peer)

    def _send_snapshot(self, i: int, j: int) -> None:
        """Replica i's snapshot (the state after every slot below its log's start) reaches j,
        unless the network loses it; j installs it if it is ahead of j's commits."""
        if (i, j) in self.blocked or self.rng.random() < self.faults.drop:
            return
        upto = self.cores[i].status()["log_start"]
        if self.cores[j].status()["commit_upto"] >= upto:
            return  # j has every slot it covers: install_snapshot would not jump
        # its contents: the values chosen below upto (i committed each before truncating it)
        seen = self.observed[j]
        for slot in range(max(seen, default=-1) + 1, upto):
            if slot not in self.chosen:
                self._fail(f"node {i}'s snapshot covers slot {slot}, which no replica committed")
            seen[slot] = self.chosen[slot]
        self.snapshots_installed += 1
        self.trace.append(f"{self.steps}: node {j} installed node {i}'s snapshot below slot {upto}")
        self._quiet_step(j, self.cores[j].install_snapshot(upto))

    def _quiet_step(self, i: int, ready: Ready) -> None:
        """Honour a Truncate's or InstallSnapshot's Ready, counting a crash part-way through it."""
        crashes = self.mid_sync_crashes
        self._apply(i, ready)
        self.truncation_crashes += self.mid_sync_crashes - crashes

    def _observe(self, i: int, commits: list[tuple[int, bytes]]) -> None:
        seen = self.observed[i]
        expected_next = max(seen) + 1 if seen else None
        for slot, value in commits:
            if slot in seen and seen[slot] != value:
                self._fail(f"node {i}: committed slot {slot} changed from {seen[slot]!r} to {value!r}")
            if expected_next is not None and slot not in seen and slot != expected_next:
                self._fail(f"node {i}: commits not contiguous: got slot {slot}, expected {expected_next}")
            seen[slot] = value
            expected_next = slot + 1
            if value not in self.proposed:
                self._fail(f"node {i}: slot {slot} committed {value!r}, which nobody proposed")
            if self.chosen.setdefault(slot, value) != value:
                self._fail(f"Agreement violated in slot {slot}: {self.chosen[slot]!r} vs {value!r} (node {i})")

    def _restart(self, i: int, keep_unsynced: int | None = None) -> None:
        # what was written but not synced is lost, or (a torn write) partly kept
        if keep_unsynced is None:
            keep_unsynced = self.rng.randrange(len(self.unsynced[i]) + 1)
        self.disks[i].extend(self.unsynced[i][:keep_unsynced])
        self.unsynced[i] = []
        self.cores[i] = self._fresh(i)
        ready = self.cores[i].recover(list(self.disks[i]))
        self.in_flight = [(d, m) for d, m in self.in_flight if d != i] if self.rng.random() < 0.5 else self.in_flight
        self._apply(i, ready, may_tear=False)

    def _src_of(self, message: bytes) -> int:
        return int.from_bytes(message[1:3], "little")  # wire header: version u8, src u16, dst u16

    # ---- steps ----------------------------------------------------------------------------

    def leader(self) -> int | None:
        leaders = [i for i, c in enumerate(self.cores) if c.status()["role"] == "leader"]
        if not leaders:
            return None
        return max(leaders, key=lambda i: tuple(self.cores[i].status()["ballot"]))

    def propose(self, i: int) -> tuple[bytes, bool]:
        value = f"v{self.next_value}@{i}".encode()
        self.next_value += 1
        self.proposed.add(value)
        ready = self.cores[i].propose(value)
        self._apply(i, ready)
        return value, ready.accepted

    def deliver_one(self, index: int) -> None:
        dst, message = self.in_flight[index]
        src = self._src_of(message)
        if (src, dst) in self.blocked or self.rng.random() < self.faults.drop:
            self.in_flight.pop(index)
            return
        if self.rng.random() >= self.faults.duplicate:
            self.in_flight.pop(index)
        self._apply(dst, self.cores[dst].receive(message))

    def random_step(self, propose_rate: float = 0.05) -> None:
        self.steps += 1
        r = self.rng.random()
        f = self.faults
        if r < f.crash:
            i = self.rng.randrange(self.n)
            self.trace.append(f"{self.steps}: node {i} crashed")
            self._restart(i)
        elif r < f.crash + f.partition:
            if self.blocked:
                self.blocked = set()
                self.trace.append(f"{self.steps}: network healed")
            else:
                group = set(self.rng.sample(range(self.n), self.rng.randrange(1, self.n)))
                self.blocked = {(a, b) for a in range(self.n) for b in range(self.n)
                                if (a in group) != (b in group)}
                self.trace.append(f"{self.steps}: partition {sorted(group)} | rest")
        elif r < f.crash + f.partition + f.truncate:
            i = self.rng.randrange(self.n)
            status = self.cores[i].status()
            if status["commit_upto"] > status["log_start"]:
                upto = self.rng.randrange(status["log_start"] + 1, status["commit_upto"] + 1)
                self.truncations += 1
                self.trace.append(f"{self.steps}: node {i} truncated below slot {upto}")
                self._quiet_step(i, self.cores[i].truncate(upto))
        elif r < f.crash + f.partition + f.truncate + propose_rate:
            i = self.rng.randrange(self.n)
            if self.cores[i].status()["role"] == "leader":
                value, ok = self.propose(i)
                self.trace.append(f"{self.steps}: node {i} proposed {value!r} accepted={ok}")
        elif self.in_flight and self.rng.random() < 0.8:
            self.deliver_one(self.rng.randrange(len(self.in_flight)))
        else:
            i = self.rng.randrange(self.n)
            self._apply(i, self.cores[i].tick())

    def run(self, steps: int, propose_rate: float = 0.05) -> None:
        for _ in range(steps):
            self.random_step(propose_rate)

    # ---- after the faults ---------------------------------------------------------------------

    def heal(self) -> None:
        self.faults = Faults(drop=0.0, duplicate=0.0, crash=0.0, torn=0.0, partition=0.0)
        self.blocked = set()

    def run_round(self) -> None:
        """Every replica ticks, then every message in flight is delivered (FIFO)."""
        for i in range(self.n):
            self._apply(i, self.cores[i].tick())
        while self.in_flight:
            self.steps += 1
            self.deliver_one(0)

    def commit_some(self, proposals: int, rounds: int = 5) -> int:
        """Elect a stable leader, propose `proposals` values there, run `rounds` rounds; return
        the leader."""
        leader = self.stable_leader(rounds=50)
        assert leader is not None, f"no stable leader (seed={self.seed})"
        for _ in range(proposals):
            self.propose(leader)
        for _ in range(rounds):
            self.run_round()
        return leader

    def stable_leader(self, rounds: int) -> int | None:
        """Run up to `rounds` rounds; return a leader that every replica follows, if any."""
        for _ in range(rounds):
            self.run_round()
            leader = self.leader()
            if leader is not None and all(c.status()["leader"] == leader for c in self.cores):
                return leader
        return None
