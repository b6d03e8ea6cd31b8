"""The checker against real concurrent executions: a correct in-memory register always
passes, broken ones (stale reads, lost writes) are caught on every seed."""

import pytest

from verikv.jepsen.checker import VIOLATION, check_register, check_set, search_linearization
from inmem import InMemoryStore, drive

SEEDS = range(6)


def _assert_small_proof(ops, verdict):
    """The counterexample is itself non-linearizable, and much smaller than its key's history."""
    violation = verdict["violations"][0]
    cex = violation["counterexample"]
    by_id = {o.id: o for o in ops}
    subset = [by_id[i] for i in cex["ops"]]
    assert search_linearization(subset).status == VIOLATION
    assert 2 <= len(subset) <= 12 and len(subset) < violation["n_ops"] / 3
    assert "No order of these" in cex["text"]


@pytest.mark.parametrize("seed", SEEDS)
def test_correct_register_passes(seed):
    ops = drive(InMemoryStore(seed=seed), seed=seed, duration_s=0.4)
    assert len(ops) > 200
    verdict = check_register(ops)
    assert verdict["valid"] is True, verdict


@pytest.mark.parametrize("seed", SEEDS)
def test_stale_reads_are_caught(seed):
    ops = drive(InMemoryStore(seed=seed, stale_read_p=0.1), seed=seed, duration_s=0.4)
    verdict = check_register(ops)
    assert verdict["valid"] is False
    _assert_small_proof(ops, verdict)
    cex = verdict["violations"][0]["counterexample"]
    assert any("read(" in line or "-> false" in line for line in cex["op_text"])   # an observer is involved


@pytest.mark.parametrize("seed", SEEDS)
def test_lost_writes_are_caught(seed):
    ops = drive(InMemoryStore(seed=seed, lost_write_p=0.1), seed=seed, duration_s=0.4)
    verdict = check_register(ops)
    assert verdict["valid"] is False
    _assert_small_proof(ops, verdict)


@pytest.mark.parametrize("seed", SEEDS[:3])
def test_set_workload_lost_adds(seed):
    good = drive(InMemoryStore(seed=seed), "set", seed=seed, duration_s=0.2)
    assert check_set(good)["valid"] is True
    bad = drive(InMemoryStore(seed=seed, lost_write_p=0.05), "set", seed=seed, duration_s=0.2)
    verdict = check_set(bad)
    assert verdict["valid"] is False and verdict["lost"]
