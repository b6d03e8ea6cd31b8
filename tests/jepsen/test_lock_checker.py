"""The lock checker on hand-made histories: two holders one after the other pass; a fenced write
by a non-holder, interleaved fenced writes, a lost or a refused-but-applied fenced write and an
unknown value are caught and named; unfenced writes by a non-holder are counted, not judged."""

from verikv.jepsen.history import Op
from verikv.jepsen.lock_checker import KINDS, check_locks, hold_of

LA, LB = "lk/lock/000000000000000a", "lk/lock/000000000000000b"
F, U = "lk/fenced", "lk/unfenced"


def val(lease, rev, n):
    return f"{lease:x}:{rev}:{n}"


def op(f, key, value, t0, t1, typ="ok", result=None):
    return Op(process=0, f=f, key=key, value=value, invoke_ms=t0, complete_ms=t1, type=typ, result=result)


def ops():
    """A locks at r2 and writes; B queues at r3; A releases at r6; B writes and releases."""
    return [op("acquire", LA, None, 0, 10, result=2), op("fenced-write", F, val(0xA, 2, 1), 11, 12, result=[True, 4]),
            op("unfenced-write", U, val(0xA, 2, 2), 13, 14, result=5), op("release", LA, 2, 15, 16, result=6),
            op("acquire", LB, None, 5, 20, result=3), op("fenced-write", F, val(0xB, 3, 1), 21, 22, result=[True, 7]),
            op("unfenced-write", U, val(0xB, 3, 2), 23, 24, result=8), op("release", LB, 3, 25, 26, result=9)]


def events():
    return [[2, LA, "PUT", ""], [3, LB, "PUT", ""], [4, F, "PUT", val(0xA, 2, 1)], [5, U, "PUT", val(0xA, 2, 2)],
            [6, LA, "DELETE", None], [7, F, "PUT", val(0xB, 3, 1)], [8, U, "PUT", val(0xB, 3, 2)],
            [9, LB, "DELETE", None]]


def final(evs=None, complete=True, from_revision=2):
    return {"revision": 9, "start_revision": 2, "from_revision": from_revision, "complete": complete,
            "events": events() if evs is None else evs, "state": {}, "error": None}


def test_holders_one_after_the_other_are_valid():
    v = check_locks(ops(), final())
    assert v["valid"] is True and v["violation_counts"] == {}
    assert v["holds"] == 2 and v["holders_in_store"] == 2 and v["fenced_applied"] == 2
    assert v["fenced_succeeded"] == 2 and v["fenced_interleavings"] == 0
    assert v["unfenced_writes"] == 2 and v["unfenced_overlaps"] == 0 and v["client_hold_overlaps"] == 0


def test_hold_of_a_value():
    assert hold_of(val(0xA, 2, 7)) == (LA, 2) and hold_of("junk") is None


def test_fenced_write_by_a_non_holder_is_caught():
    evs = events()
    evs[2] = [4, F, "PUT", val(0xB, 3, 9)]       # B's fenced write applied while A held the lock
    o = ops() + [op("fenced-write", F, val(0xB, 3, 9), 1, 2, typ="info")]
    v = check_locks(o, final(evs))
    assert v["valid"] is False and "fenced-not-holder" in v["violation_counts"]


def test_interleaved_fenced_writes_are_caught():
    """A, then B, then A again (A's key recreated with the same create revision is impossible, so
    the second is also a non-holder write: both are named)."""
    evs = events()[:7] + [[8, F, "PUT", val(0xA, 2, 3)], [9, LB, "DELETE", None]]
    o = ops() + [op("fenced-write", F, val(0xA, 2, 3), 1, 2, typ="info")]
    v = check_locks(o, final(evs))
    assert v["valid"] is False
    assert v["violation_counts"]["fenced-interleaved"] == 1 and v["fenced_interleavings"] == 1
    assert v["violation_counts"]["fenced-not-holder"] == 1


def test_lost_and_refused_but_applied_fenced_writes_are_caught():
    o = ops()
    o[1] = op("fenced-write", F, val(0xA, 2, 1), 11, 12, result=[True, 5])    # the answer names the wrong revision
    assert check_locks(o, final())["violation_counts"] == {"fenced-lost": 1}
    o = ops()
    o[1] = op("fenced-write", F, val(0xA, 2, 1), 11, 12, result=[False, 4])
    assert check_locks(o, final())["violation_counts"] == {"fenced-refused-applied": 1}


def test_unknown_value_is_caught():
    evs = events()
    evs[6] = [7, F, "PUT", val(0xB, 3, 77)]
    v = check_locks(ops(), final(evs))
    assert v["valid"] is False and "unknown-value" in v["violation_counts"]


def test_unfenced_write_by_a_non_holder_is_counted_not_judged():
    """A paused holder's unfenced write lands after its key is gone and B holds: reported."""
    evs = events()[:5] + [[6, LA, "DELETE", None], [7, U, "PUT", val(0xA, 2, 5)], [8, F, "PUT", val(0xB, 3, 1)],
                          [9, LB, "DELETE", None]]
    o = ops()[:5] + [op("unfenced-write", U, val(0xA, 2, 5), 14, 30, typ="info"),
                     op("fenced-write", F, val(0xB, 3, 1), 21, 22, result=[True, 8]), ops()[7]]
    o[3] = op("release", LA, 2, 40, 41, typ="info")   # A still believed it held the lock until 40
    v = check_locks(o, final(evs))
    assert v["valid"] is True and v["unfenced_overlaps"] == 1 and "r7" in v["unfenced_overlap_examples"][0]
    assert v["client_hold_overlaps"] == 1


def test_an_unread_or_compacted_final_history_gives_unknown():
    assert check_locks(ops(), final(complete=False))["valid"] == "unknown"
    assert check_locks(ops(), final(from_revision=5))["valid"] == "unknown"
    assert check_locks(ops(), final(evs=[]))["valid"] == "unknown"


def test_every_kind_is_named():
    assert set(KINDS) == {"fenced-not-holder", "fenced-interleaved", "fenced-lost", "fenced-refused-applied",
                          "unknown-value"}
