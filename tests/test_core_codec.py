"""The core's wire and record encoding: round trips, and malformed bytes are refused cleanly."""

import struct

import pytest
from hypothesis import given, settings, strategies as st

from core_sim import Faults, Simulation
from verikv.verified_core.core import RECORD_COMMIT_TAG, RECORD_LEARN_TAG, Core, reencode_message


def _traffic():
    sim = Simulation(3, seed=11, faults=Faults(0, 0, 0, 0, 0))
    captured = []
    original = sim._apply

    def capture(i, ready, **kw):
        captured.extend(m for _, m in ready.early + ready.messages)
        return original(i, ready, **kw)

    sim._apply = capture
    sim.commit_some(5, rounds=3)
    return captured


def test_every_message_kind_the_core_sends_round_trips_byte_for_byte():
    messages = _traffic()
    kinds = {m[5] for m in messages}  # the tag byte after the 5-byte header
    assert {1, 2, 3, 4, 5, 8, 9} <= kinds, kinds  # Prepare, Promise, Accept, Accepted, Learn, Heartbeat(+Ack)
    for m in messages:
        assert reencode_message(m) == m


def test_a_truncated_message_is_refused_with_a_clear_error():
    m = next(m for m in _traffic() if m[5] == 3)  # an Accept, carrying a value
    for cut in (1, 5, 6, len(m) - 1):
        with pytest.raises(ValueError, match="malformed message: truncated"):
            Core(0, 3).receive(m[:cut])


def test_trailing_bytes_unknown_tags_and_versions_are_refused():
    m = next(m for m in _traffic() if m[5] == 1)
    with pytest.raises(ValueError, match="trailing bytes"):
        Core(0, 3).receive(m + b"\0")
    with pytest.raises(ValueError, match="unknown message tag 99"):
        Core(0, 3).receive(m[:5] + b"\x63" + m[6:])
    with pytest.raises(ValueError, match="wire version 7"):
        Core(0, 3).receive(b"\x07" + m[1:])


def test_an_oversized_value_length_is_refused_before_allocating():
    header = bytes([1]) + struct.pack("<HH", 1, 0) + bytes([3])
    body = struct.pack("<QQQ", 1, 1, 0) + struct.pack("<I", 0xFFFFFFFF)
    with pytest.raises(ValueError, match="over the limit"):
        Core(0, 3).receive(header + body)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_arbitrary_bytes_never_crash_the_core(data):
    core = Core(0, 3)
    try:
        core.receive(data)
    except ValueError as err:
        assert str(err).startswith("malformed message")
    assert core.status()["role"] in {"follower", "candidate", "leader"}


def test_recovery_refuses_a_malformed_record():
    with pytest.raises(ValueError, match="malformed durable record"):
        Core(0, 3).recover([b"\x09"])


def test_checkpoint_records_rebuild_the_same_durable_state():
    sim = Simulation(3, seed=5, faults=Faults(0, 0, 0, 0, 0))
    sim.commit_some(8, rounds=3)
    original = sim.cores[1]
    rebuilt = Core(1, 3)
    ready = rebuilt.recover(original.checkpoint_records())
    assert [v for _, v in ready.commits] == [sim.observed[1][s] for s in sorted(sim.observed[1])]
    for key in ("promised", "commit_upto", "log_start"):
        assert rebuilt.status()[key] == original.status()[key]


def test_a_checkpoint_truncated_at_a_committed_slot_rebuilds_the_state_from_that_slot():
    # what a snapshot's writer does in its copy of the node: truncate the core at the
    # snapshot's slot, then take its records; they leave out the slots below it
    sim = Simulation(3, seed=5, faults=Faults(0, 0, 0, 0, 0))
    sim.commit_some(12, rounds=3)
    original = sim.cores[1]
    whole = list(original.checkpoint_records())
    copy = Core(1, 3)
    copy.recover(whole)
    t = original.status()["commit_upto"] - 3
    assert t > original.status()["log_start"]
    copy.truncate(t)
    truncated = list(copy.checkpoint_records())
    assert len(truncated) < len(whole)
    rebuilt = Core(1, 3)
    ready = rebuilt.recover(truncated)
    assert [s for s, _ in ready.commits] == list(range(t, original.status()["commit_upto"]))
    assert [v for _, v in ready.commits] == [sim.observed[1][s] for s in range(t, original.status()["commit_upto"])]
    assert rebuilt.status()["log_start"] == t
    for key in ("promised", "commit_upto"):
        assert rebuilt.status()[key] == original.status()[key]


def test_checkpoint_records_are_those_of_the_moment_they_were_taken():
    # encoded as they are read (a snapshot's writer streams them), from the value of that moment
    sim = Simulation(3, seed=5, faults=Faults(0, 0, 0, 0, 0))
    sim.commit_some(8, rounds=3)
    core = sim.cores[1]
    taken = core.checkpoint_records()
    then = list(taken)
    sim.commit_some(8, rounds=3)
    assert list(core.checkpoint_records()) != then  # the core went on
    assert list(taken) == then and len(taken) == len(then) and taken[len(then) - 1] == then[-1]
    with pytest.raises(IndexError):
        taken[len(then)]


def test_a_value_a_replica_voted_for_is_on_its_disk_once():
    # the commit of a slot names the replica's vote there (a learn record) instead of holding
    # the value again: in its log and in its checkpoint; both rebuild the values
    sim = Simulation(3, seed=5, faults=Faults(0, 0, 0, 0, 0))
    sim.commit_some(8, rounds=3)
    for i, core in enumerate(sim.cores):
        values = set(sim.observed[i].values()) - {b""}
        assert len(values) >= 8
        written = sim.disks[i] + sim.unsynced[i]  # commit records wait for the next sync
        for records in (written, list(core.checkpoint_records())):
            tags = [rec[0] for rec in records]
            assert RECORD_LEARN_TAG in tags and RECORD_COMMIT_TAG not in tags
            assert all(sum(rec.count(v) for rec in records) == 1 for v in values)
            ready = Core(i, 3).recover(list(records))
            assert set(ready.commits) <= set(sim.observed[i].items())
            assert values <= {v for _, v in ready.commits}


def test_the_core_microbenchmark_runs_and_commits_every_slot():
    from verikv.verified_core import bench

    result = bench.steady_state(slots=300, value_bytes=256, batch=32, runtime_checks=True)
    assert result["slots"] >= 300
    assert result["messages"] >= 300 * 4  # 2 Accepts + 2 Accepted + 2 Learns per slot, at least
