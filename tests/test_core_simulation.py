"""Safety and liveness of the compiled core under simulated faults (seeded, replayable).

Every run checks Agreement, stable committed prefixes and validity after every step
(tests/core_sim.py). A failing case prints its seed; `Simulation(n, seed)` replays it.
"""

import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from core_sim import Faults, SafetyViolation, Simulation
from verikv.verified_core.core import Core

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
SIM_SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_a_fault_free_cluster_elects_a_leader_and_commits_everywhere():
    sim = Simulation(3, seed=1, faults=Faults(0, 0, 0, 0, 0))
    leader = sim.stable_leader(rounds=50)
    assert leader is not None
    values = [sim.propose(leader)[0] for _ in range(10)]
    for _ in range(5):
        sim.run_round()
    for i in range(3):
        committed = sim.observed[i]
        assert [committed[s] for s in sorted(committed)][-10:] == values


@pytest.mark.parametrize("n", [3, 5])
@SIM_SETTINGS
@given(seed=SEEDS)
def test_safety_under_loss_duplication_reordering_partitions_and_crashes(n, seed):
    sim = Simulation(n, seed=seed)
    sim.run(3000, propose_rate=0.08)
    # and the properties were checked after every one of those steps; the run did something:
    assert sim.steps == 3000


@pytest.mark.parametrize("n", [3, 5])
@SIM_SETTINGS
@given(seed=SEEDS)
def test_after_faults_stop_every_proposal_to_a_stable_leader_commits(n, seed):
    sim = Simulation(n, seed=seed)
    sim.run(1500, propose_rate=0.08)
    sim.heal()
    leader = sim.stable_leader(rounds=200)
    assert leader is not None, f"no stable leader 200 rounds after healing (seed={seed})"
    values = [sim.propose(leader) for _ in range(20)]
    assert all(ok for _, ok in values), "a stable leader refused a proposal"
    bound_rounds = 20
    for _ in range(bound_rounds):
        sim.run_round()
    for i in range(n):
        committed = set(sim.observed[i].values())
        missing = [v for v, _ in values if v not in committed]
        assert not missing, f"node {i} lacks {missing} {bound_rounds} rounds after proposing (seed={seed})"


TRUNCATING = {"runs": 0, "truncations": 0, "snapshots": 0, "crashes": 0}  # over the examples below


@pytest.mark.parametrize("n", [3, 5])
@SIM_SETTINGS
@given(seed=SEEDS)
def test_safety_with_truncations_snapshots_and_crashes_part_way_through_them(n, seed):
    # Replicas truncate their logs below committed slots, peers behind a log's start install the
    # truncating replica's snapshot, and a crash may cut either before its record is durable
    # (dafny/ImplCluster.i.dfy: TruncateThenCrash, InstallSnapshotThenCrash).
    sim = Simulation(n, seed=seed, faults=Faults(truncate=0.01))
    sim.run(6000, propose_rate=0.08)
    assert sim.steps == 6000
    TRUNCATING["runs"] += 1
    TRUNCATING["truncations"] += sim.truncations
    TRUNCATING["snapshots"] += sim.snapshots_installed
    TRUNCATING["crashes"] += sim.truncation_crashes


def test_the_truncating_runs_truncated_installed_snapshots_and_crashed_part_way():
    """Runs after them (pytest keeps the file's order): the paths were taken, not skipped."""
    if TRUNCATING["runs"] == 0:
        pytest.skip("the truncating runs did not run")
    assert TRUNCATING["truncations"] > 10 * TRUNCATING["runs"]
    assert TRUNCATING["snapshots"] > TRUNCATING["runs"] // 2
    assert TRUNCATING["crashes"] > 0


def test_a_replica_behind_the_others_log_start_catches_up_from_a_snapshot():
    sim = Simulation(3, seed=5, faults=Faults(0, 0, 0, 0, 0))
    leader = sim.stable_leader(rounds=50)
    behind = (leader + 1) % 3
    sim.blocked = {(a, b) for a in range(3) for b in range(3) if (a == behind) != (b == behind)}
    values = [sim.propose(leader)[0] for _ in range(10)]
    for _ in range(5):
        sim.run_round()
    for i in range(3):
        if i != behind:
            upto = sim.cores[i].status()["commit_upto"]
            sim._quiet_step(i, sim.cores[i].truncate(upto))
            assert sim.cores[i].status()["log_start"] == upto
    assert sim.cores[behind].status()["commit_upto"] < upto
    sim.blocked = set()
    leader = sim.stable_leader(rounds=100)
    assert leader is not None
    later = [sim.propose(leader)[0] for _ in range(3)]
    for _ in range(10):
        sim.run_round()
    assert sim.snapshots_installed >= 1
    assert sim.cores[behind].status()["log_start"] >= upto  # it jumped to a snapshot
    # the 10 values reached it in the snapshot's contents (the simulation's), the later ones as
    # its core's own commits, past the snapshot
    assert sim.cores[behind].status()["commit_upto"] >= upto + len(later)
    have = set(sim.observed[behind].values())
    assert all(v in have for v in values + later)


def test_the_checker_catches_a_disagreement():
    # The checks themselves must be able to fail: feed a conflicting commit by hand.
    sim = Simulation(3, seed=7, faults=Faults(0, 0, 0, 0, 0))
    sim.proposed.update({b"a", b"b"})
    sim._observe(0, [(0, b"a")])
    with pytest.raises(SafetyViolation, match="Agreement violated in slot 0"):
        sim._observe(1, [(0, b"b")])
    with pytest.raises(SafetyViolation, match="changed"):
        sim._observe(0, [(0, b"b")])
    with pytest.raises(SafetyViolation, match="nobody proposed"):
        sim._observe(2, [(0, b"zzz")])


def test_a_crashed_replica_recovers_its_committed_prefix_from_records_alone():
    sim = Simulation(3, seed=3, faults=Faults(0, 0, 0, 0, 0))
    leader = sim.commit_some(5)
    follower = (leader + 1) % 3
    before = dict(sim.observed[follower])
    assert len(before) >= 5
    # everything written reached the disk: recovery alone restores the committed prefix
    sim._restart(follower, keep_unsynced=len(sim.unsynced[follower]))
    assert sim.cores[follower].status()["commit_upto"] == max(before) + 1


def test_commit_records_lost_in_a_crash_are_learned_again():
    sim = Simulation(3, seed=4, faults=Faults(0, 0, 0, 0, 0))
    leader = sim.commit_some(5)
    follower = (leader + 1) % 3
    upto = sim.cores[follower].status()["commit_upto"]
    assert sim.unsynced[follower], "commit records are written lazily"
    sim._restart(follower, keep_unsynced=0)  # lose every record not yet synced
    assert sim.cores[follower].status()["commit_upto"] < upto
    for _ in range(10):
        sim.run_round()
    assert sim.cores[follower].status()["commit_upto"] >= upto


def test_the_protocol_observer_catches_a_second_value_for_one_ballot_and_slot():
    sim = Simulation(3, seed=2, faults=Faults(0, 0, 0, 0, 0))
    leader = sim.stable_leader(rounds=50)
    captured = []
    original = sim.observer.sent
    sim.observer.sent = lambda m: (captured.append(m), original(m))
    sim.propose(leader)
    accept = next(m for m in captured if m[5] == 3)
    forged = accept[:-1] + bytes([accept[-1] ^ 1])  # same ballot and slot, another value
    with pytest.raises(SafetyViolation, match="AcceptUnique"):
        original(forged)


class SnapshotSimulation(Simulation):
    """A Simulation whose replicas answer `need_snapshot` the way a node does: the asking replica
    installs the sender's state at the sender's commit point (and has then seen every value
    chosen below it)."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.snapshots_sent: list[tuple[int, int, int]] = []  # (from, to, slot)

    def _apply(self, i, ready, *, may_tear=True) -> None:
        super()._apply(i, ready, may_tear=may_tear)
        for peer in ready.need_snapshot:
            slot = self.cores[i].status()["commit_upto"]
            if slot <= self.cores[peer].status()["commit_upto"] or (i, peer) in self.blocked:
                continue
            self.snapshots_sent.append((i, peer, slot))
            self.observed[peer].update({s: v for s, v in self.chosen.items() if s < slot})
            super()._apply(peer, self.cores[peer].install_snapshot(slot))

    def truncate(self, i: int, slot: int) -> None:
        self._apply(i, self.cores[i].truncate(slot))


def test_a_replica_left_a_window_behind_gets_a_snapshot_and_the_cluster_commits_again():
    """Node 0 (the shortest election timeout) is cut off while the others commit a window's worth
    of slots and truncate below it. Healed, its elections are refused (it cannot take over slots
    beyond its window) and each one preempts the others, so unless it asks for what it lacks the
    cluster never commits again. It must ask, get a snapshot, and let a leader commit.
    (Found by the disk nemesis: a node crashed while leading, restarted behind the others.)"""
    from verikv.verified_core.core import WINDOW

    sim = SnapshotSimulation(3, seed=11, faults=Faults(0, 0, 0, 0, 0))
    sim.commit_some(5)
    sim.blocked = {(a, b) for a in range(3) for b in range(3) if (a == 0) != (b == 0)}
    for _ in range(50):
        sim.run_round()
        leader = sim.leader()
        if leader in (1, 2) and sim.cores[3 - leader].status()["leader"] == leader:
            break
    else:
        raise AssertionError("nodes 1 and 2 elected no leader between them")
    # Past the node's window: the others truncate just below WINDOW, then hold votes above it.
    target = WINDOW + 150
    while sim.cores[leader].status()["commit_upto"] < target:
        for _ in range(256):
            sim.propose(leader)
        sim.run_round()
        for i in (1, 2):
            s = sim.cores[i].status()
            upto = min(s["commit_upto"], WINDOW - 50)
            if upto > s["log_start"]:
                sim.truncate(i, upto)
    assert sim.cores[0].status()["commit_upto"] < 10
    assert all(sim.cores[i].status()["log_start"] == WINDOW - 50 for i in (1, 2))

    # Node 0 restarts: its own connections are new, the others' still back off towards it, so
    # its first elections reach them and their answers (and heartbeats) are lost.
    sim._restart(0, keep_unsynced=0)
    sim.blocked = {(1, 0), (2, 0)}
    for _ in range(15):
        sim.run_round()
    assert sim.leader() is None, "node 0's ballot did not preempt the leader"
    sim.blocked = set()
    for _ in range(100):
        sim.run_round()
        if sim.cores[0].status()["commit_upto"] >= WINDOW - 50:
            break
    assert [(src, dst) for src, dst, _ in sim.snapshots_sent] and all(dst == 0 for _, dst, _ in sim.snapshots_sent)
    values = sim.commit_some(0) is not None and [sim.propose(sim.leader())[0] for _ in range(3)]
    for _ in range(10):
        sim.run_round()
    for i in range(3):
        assert set(values) <= set(sim.observed[i].values()), f"node {i} lacks {values}"


def test_a_followers_read_index_request_is_answered_at_once_only_when_its_promise_completes_a_quorum():
    """read_index_attested: with three members, a follower that had promised exactly the
    leader's ballot makes a quorum with it, so the leader gives its read slot (nextSlot, past
    every slot it proposed) without a heartbeat round; any other ballot, asker or cluster size
    gets 0 (confirm the usual way)."""
    sim = Simulation(3, seed=7, faults=Faults(0, 0, 0, 0, 0))
    leader = sim.commit_some(4)
    lc = sim.cores[leader].status()
    follower = (leader + 1) % 3
    promised = tuple(sim.cores[follower].status()["promised"])
    assert promised == tuple(lc["ballot"]) == tuple(lc["promised"])
    slot = sim.cores[leader].read_index_attested(follower, promised)
    assert slot == lc["next_slot"] and slot >= lc["commit_upto"] > 0
    higher = (promised[0] + 1, promised[1])
    lower = (promised[0] - 1, promised[1]) if promised[0] > 0 else (0, 0)
    assert sim.cores[leader].read_index_attested(follower, higher) == 0   # it promised a newer leader
    assert sim.cores[leader].read_index_attested(follower, lower) == 0    # it had not promised this one
    assert sim.cores[leader].read_index_attested(leader, promised) == 0   # no quorum with itself
    assert sim.cores[leader].read_index_attested(3, promised) == 0        # not a member
    assert sim.cores[follower].read_index_attested(leader, promised) == 0  # not the leader
    five = Simulation(5, seed=7, faults=Faults(0, 0, 0, 0, 0))
    leader5 = five.commit_some(2)
    f5 = (leader5 + 1) % 5
    assert five.cores[leader5].read_index_attested(f5, tuple(five.cores[f5].status()["promised"])) == 0


def _promise(src: int, dst: int, ballot, log_start: int, votes) -> bytes:
    """An encoded Promise: votes are (slot, (round, node), value)."""
    body = struct.pack("<QQQI", ballot[0], ballot[1], log_start, len(votes))
    for slot, (rnd, node), val in votes:
        body += struct.pack("<QQQI", slot, rnd, node, len(val)) + val
    return struct.pack("<BHHB", 1, src, dst, 2) + body


def _accepts(ready) -> set[tuple[int, int, bytes]]:
    """(destination, slot, value) of every Accept a step sends."""
    out = set()
    for dst, m in ready.early + ready.messages:
        if m[5] == 3:
            slot, = struct.unpack_from("<Q", m, 6 + 16)
            (n,) = struct.unpack_from("<I", m, 6 + 24)
            out.add((dst, slot, m[6 + 28:6 + 28 + n]))
    return out


def _candidate(n: int) -> tuple[Core, tuple[int, int]]:
    core = Core(0, n, election_ticks=5)
    for _ in range(50):
        if core.status()["role"] == "candidate":
            return core, tuple(core.status()["ballot"])
        core.tick()
    raise AssertionError("no election started")


@pytest.mark.parametrize("order", [(1, 2), (2, 1)])
def test_a_new_leader_proposes_the_value_of_the_highest_vote_its_quorum_reports(order):
    """Phase 1's rule (Protocol.SafeToPropose), on the compiled core: with five members, two
    promises report different votes in slot 0; whichever arrives first, the leader proposes the
    value of the higher-ballot vote there, and each slot's reported value elsewhere."""
    core, bal = _candidate(5)
    reports = {
        1: [(0, (0, 1), b"older"), (1, (0, 1), b"only-one")],
        2: [(0, (0, 3), b"newer")],
    }
    ready = None
    for src in order:
        ready = core.receive(_promise(src, 0, bal, 0, reports[src]))
    assert core.status()["role"] == "leader"
    proposals = {(slot, val) for _, slot, val in _accepts(ready)}
    assert proposals == {(0, b"newer"), (1, b"only-one")}
    assert {dst for dst, _, _ in _accepts(ready)} == {1, 2, 3, 4}


def test_a_promise_whose_report_repeats_a_slot_is_dropped():
    """The core reports each slot once, in increasing order; a report that does not is
    malformed, and the candidate drops the promise like a lost message (it does not count)."""
    core, bal = _candidate(3)
    core.receive(_promise(1, 0, bal, 0, [(4, (0, 1), b"x"), (4, (0, 2), b"y")]))
    assert core.status()["role"] == "candidate"
    core.receive(_promise(1, 0, bal, 0, [(5, (0, 1), b"x"), (4, (0, 2), b"y")]))
    assert core.status()["role"] == "candidate"
    ready = core.receive(_promise(1, 0, bal, 0, [(4, (0, 2), b"y"), (5, (0, 1), b"x")]))
    assert core.status()["role"] == "leader"
    assert {(slot, val) for _, slot, val in _accepts(ready)} == {(4, b"y"), (5, b"x"), (0, b""), (1, b""), (2, b""), (3, b"")}


def test_a_new_leader_takes_over_a_window_of_votes_no_quorum_accepted_and_commits_them_in_order():
    # The leader's Accepts reach one follower only, and nothing comes back: that follower holds
    # 4,000 votes no quorum accepted. Whichever of the two is elected takes them all over in one
    # step (an Accept of each slot to every member, and its own vote), and both commit each
    # value once, at its slot, in order.
    cores = [Core(i, 3) for i in range(3)]
    queue: list[tuple[int, bytes]] = []
    commits: dict[int, list[tuple[int, bytes]]] = {i: [] for i in range(3)}

    def obey(i, ready):
        queue.extend(ready.early)
        queue.extend(ready.messages)
        commits[i].extend(ready.commits)

    def pump(drop=lambda dst: False):
        while queue:
            dst, m = queue.pop(0)
            if not drop(dst):
                obey(dst, cores[dst].receive(m))

    for _ in range(400):
        for i in range(3):
            obey(i, cores[i].tick())
        pump()
        if any(c.status()["role"] == "leader" for c in cores):
            break
    leader = next(i for i in range(3) if cores[i].status()["role"] == "leader")
    voter, other = [i for i in range(3) if i != leader]
    start = cores[leader].status()["next_slot"]
    values = [b"v%06d" % k for k in range(4000)]
    for v in values:
        obey(leader, cores[leader].propose(v))
        pump(drop=lambda dst: dst in (leader, other))
    assert cores[voter].status()["commit_upto"] == start  # voted on every slot, learned none
    for _ in range(2000):  # the leader is gone; the other two elect one of them
        for i in (voter, other):
            obey(i, cores[i].tick())
        pump(drop=lambda dst: dst == leader)
        if min(cores[i].status()["commit_upto"] for i in (voter, other)) >= start + 4000:
            break
    for i in (voter, other):
        got = [c for c in commits[i] if c[0] >= start]
        assert [s for s, _ in got] == list(range(start, start + 4000))
        assert [v for _, v in got] == values
