"""Checker tests on hand-written histories: linearizable ones pass, broken ones fail with
a minimal counterexample that names the right operations."""

from verikv.jepsen.checker import (LINEARIZABLE, UNDECIDED, VIOLATION, check_register, check_set,
                                   minimize_counterexample, search_linearization)
from harness_helpers import make_ops


def test_sequential_history_is_linearizable():
    ops = make_ops([
        (0, "write", "k", 1, 0, 10, "ok", None),
        (0, "read", "k", None, 20, 30, "ok", 1),
        (0, "cas", "k", [1, 2], 40, 50, "ok", True),
        (0, "read", "k", None, 60, 70, "ok", 2),
        (0, "cas", "k", [1, 3], 80, 90, "ok", False),
        (0, "read", "k", None, 100, 110, "ok", 2),
    ])
    verdict = check_register(ops)
    assert verdict["valid"] is True and verdict["violations"] == []


def test_concurrent_reads_may_see_either_value():
    ops = make_ops([
        (0, "write", "k", 1, 0, 10, "ok", None),
        (1, "write", "k", 2, 20, 60, "ok", None),
        (2, "read", "k", None, 25, 30, "ok", 2),      # write 2 already took effect...
        (3, "read", "k", None, 35, 40, "ok", 2),      # ...so this read cannot see 1 any more
    ])
    assert check_register(ops)["valid"] is True
    ops[3].result = 1
    verdict = check_register(ops)
    assert verdict["valid"] is False


def test_stale_read_is_caught_with_minimal_counterexample():
    ops = make_ops([
        (0, "write", "k", 1, 0, 10, "ok", None),
        (1, "read", "other", None, 5, 12, "ok", None),   # another key: independent, must not appear
        (0, "write", "k", 2, 20, 30, "ok", None),
        (2, "read", "k", None, 22, 28, "ok", 1),         # concurrent with write 2: fine
        (1, "read", "k", None, 40, 50, "ok", 2),
        (2, "read", "k", None, 60, 70, "ok", 1),         # stale: 2 was already read
        (1, "read", "k", None, 80, 90, "ok", 2),
    ])
    verdict = check_register(ops)
    assert verdict["valid"] is False
    [violation] = verdict["violations"]
    cex = violation["counterexample"]
    assert violation["key"] == "k"
    # The smallest unexplained set: write 1, write 2, read -> 1 after write 2 finished.
    assert sorted(cex["ops"]) == [0, 2, 5]
    assert "read(k) ok -> 1" in cex["text"] and "write(k, 2)" in cex["text"]


def test_lost_write_is_caught():
    ops = make_ops([
        (0, "write", "k", 1, 0, 10, "ok", None),
        (1, "read", "k", None, 20, 30, "ok", None),    # the acknowledged write vanished
    ])
    verdict = check_register(ops)
    assert verdict["valid"] is False
    assert sorted(verdict["violations"][0]["counterexample"]["ops"]) == [0, 1]


def test_indeterminate_write_may_take_effect_late_or_never():
    ops = make_ops([
        (0, "write", "k", 1, 0, 10, "ok", None),
        (1, "write", "k", 2, 15, 20, "info", None),    # timed out: unknown
        (2, "read", "k", None, 30, 40, "ok", 1),       # not yet applied ...
        (2, "read", "k", None, 500, 510, "ok", 2),     # ... applied long after the timeout: allowed
    ])
    assert check_register(ops)["valid"] is True
    never = make_ops([
        (0, "write", "k", 1, 0, 10, "ok", None),
        (1, "write", "k", 2, 15, 20, "info", None),
        (2, "read", "k", None, 30, 40, "ok", 1),
    ])
    assert check_register(never)["valid"] is True


def test_indeterminate_write_cannot_take_effect_before_invocation():
    ops = make_ops([
        (0, "write", "k", 1, 0, 10, "ok", None),
        (2, "read", "k", None, 20, 30, "ok", 2),       # sees 2 before anyone asked to write 2
        (1, "write", "k", 2, 40, 50, "info", None),
    ])
    assert check_register(ops)["valid"] is False


def test_failed_write_must_not_take_effect():
    ops = make_ops([
        (1, "write", "k", 2, 0, 5, "fail", None),      # certainly not applied
        (2, "read", "k", None, 20, 30, "ok", 2),
    ])
    assert check_register(ops)["valid"] is False


def test_cas_semantics():
    ok = make_ops([
        (0, "write", "k", 1, 0, 10, "ok", None),
        (1, "cas", "k", [1, 5], 20, 40, "ok", True),
        (2, "cas", "k", [1, 6], 25, 45, "ok", False),  # lost the race: compare failed
        (0, "read", "k", None, 50, 60, "ok", 5),
    ])
    assert check_register(ok)["valid"] is True
    both_swapped = make_ops([
        (0, "write", "k", 1, 0, 10, "ok", None),
        (1, "cas", "k", [1, 5], 20, 40, "ok", True),
        (2, "cas", "k", [1, 6], 25, 45, "ok", True),   # two CAS from 1 cannot both succeed
    ])
    verdict = check_register(both_swapped)
    assert verdict["valid"] is False
    assert sorted(verdict["violations"][0]["counterexample"]["ops"]) == [0, 1, 2]
    failed_wrongly = make_ops([
        (0, "write", "k", 1, 0, 10, "ok", None),
        (1, "cas", "k", [1, 5], 20, 30, "ok", False),  # value was certainly 1: must have matched
    ])
    assert check_register(failed_wrongly)["valid"] is False


def test_indeterminate_cas_can_explain_a_read():
    ops = make_ops([
        (0, "write", "k", 1, 0, 10, "ok", None),
        (1, "cas", "k", [1, 7], 20, 30, "info", None),
        (2, "read", "k", None, 100, 110, "ok", 7),
    ])
    assert check_register(ops)["valid"] is True


def test_budget_exhaustion_is_undecided_not_valid():
    rows = []
    # many concurrent writes then a read of an impossible value: needs exhaustive search
    for p in range(14):
        rows.append((p, "write", "k", p, 0, 100, "ok", None))
    rows.append((99, "read", "k", None, 200, 210, "ok", 999))
    res = search_linearization(make_ops(rows), max_steps=50)
    assert res.status == UNDECIDED
    verdict = check_register(make_ops(rows), max_steps_per_key=50)
    assert verdict["valid"] == "unknown" and verdict["undecided"]
    assert search_linearization(make_ops(rows), max_steps=10_000_000).status == VIOLATION


def test_minimizer_keeps_values_explained():
    ops = make_ops([
        (0, "write", "k", 1, 0, 10, "ok", None),
        (0, "write", "k", 2, 20, 30, "ok", None),
        (0, "write", "k", 3, 40, 50, "ok", None),
        (1, "read", "k", None, 60, 70, "ok", 3),
        (1, "read", "k", None, 80, 90, "ok", 1),
    ])
    minimal = minimize_counterexample(ops)
    assert search_linearization(minimal).status == VIOLATION
    ids = sorted(o.id for o in minimal)
    assert 4 in ids and 0 in ids and len(ids) == 3   # read->1, write 1, and one later write


def test_set_checker_detects_lost_and_phantom_elements():
    ops = make_ops([
        (0, "add", None, 1, 0, 10, "ok", None),
        (1, "add", None, 2, 0, 10, "info", None),
        (2, "add", None, 3, 0, 10, "ok", None),
        (3, "add", None, 4, 0, 10, "fail", None),
        (0, "final-read", None, None, 20, 30, "ok", [1, 2, 3]),
    ])
    verdict = check_set(ops)
    assert verdict["valid"] is True and verdict["indeterminate_recovered"] == 1
    ops[-1].result = [2, 3, 4, 77]
    verdict = check_set(ops)
    assert verdict["valid"] is False
    assert verdict["lost"] == [1] and verdict["unexpected"] == [77] and verdict["failed_but_present"] == [4]


def test_set_without_final_read_is_unknown():
    ops = make_ops([(0, "add", None, 1, 0, 10, "ok", None)])
    assert check_set(ops)["valid"] == "unknown"
