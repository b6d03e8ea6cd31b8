"""The lease checker on hand-made histories: a correct run passes with its lateness measured, and
each kind of violation (an early delete, a keep-alive answered for a lease already gone, a late
delete, a key never deleted) is caught and named; what cannot be judged is not."""

from verikv.jepsen.history import Op
from verikv.jepsen.lease_checker import KINDS, check_leases, late_bound_ms

A, B = 0xA, 0xB
KA, KB = f"l/{A:016x}", f"l/{B:016x}"
ET = 0.32   # the election timeout the bound uses
BOUND = late_bound_ms(3, ET)


def op(f, key, value, t0, t1, typ="ok", result=None, i=0):
    return Op(process=0, f=f, key=key, value=value, invoke_ms=t0, complete_ms=t1, type=typ, result=result, id=i)


def history(extra=()):
    """Lease A (TTL 3): granted at 0, kept alive at 1000 and 2000 (sent), released at 2010;
    lease B (TTL 3): granted at 100, never kept alive."""
    ops = [op("grant", None, 3, 0, 5, result=[A, 3]), op("put", KA, A, 6, 10, result=2),
           op("grant", None, 3, 100, 105, result=[B, 3]), op("put", KB, B, 106, 110, result=3),
           op("keepalive", KA, A, 1000, 1004, result=[3, 3]), op("keepalive", KA, A, 2000, 2004, result=[3, 3]),
           op("release", KA, A, 2010, 2010)]
    return ops + list(extra)


def final(events=None, state=None, complete=True):
    return {"revision": 5, "start_revision": 2, "from_revision": 2, "compact_revision": None, "node": 0,
            "state": state or {}, "complete": complete, "error": None, "asked_ms": 20000.0,
            "events": [[2, KA, "PUT", str(A)], [3, KB, "PUT", str(B)], [4, KB, "DELETE", None],
                       [5, KA, "DELETE", None]] if events is None else events}


def watcher(events):
    return {"watcher": 0, "node": 0, "endpoint": "x", "start_revision": 2, "skipped": [],
            "segments": [{"start_revision": 2, "events": events}]}


def seen(b_at=3150.0, a_at=5050.0):
    """A watcher that saw both deletes (B: TTL after 100; A: TTL after 2000)."""
    return [watcher([[2, KA, "PUT", str(A), 10.0], [3, KB, "PUT", str(B), 110.0], [4, KB, "DELETE", None, b_at],
                     [5, KA, "DELETE", None, a_at]])]


def test_correct_run_is_valid_with_its_lateness():
    v = check_leases(history(), seen(), final(), ET)
    assert v["valid"] is True and v["violation_counts"] == {}
    assert v["leases"] == 2 and v["expired"] == 2 and v["never_expired"] == 0 and v["uncertain"] == 0
    assert v["keepalives"] == 2 and v["keepalives_acked"] == 2 and v["early_violations"] == 0
    # A: seen 5050, last acknowledged keep-alive sent 2000 + 3000 -> 50 late; B: 3150 - (100 + 3000) = 50
    assert v["lateness"]["max_ms"] == 50.0 and v["lateness"]["min_ms"] == 50.0
    assert {r["lease"]: r["lateness_ms"] for r in v["lease_rows"]} == {f"{A:016x}": 50.0, f"{B:016x}": 50.0}


def test_the_earliest_observer_counts():
    w = seen() + [watcher([[5, KA, "DELETE", None, 5010.0]])]
    v = check_leases(history(), w, final(), ET)
    assert v["valid"] is True and v["lateness"]["min_ms"] == 10.0


def test_early_delete_is_caught():
    v = check_leases(history(), seen(a_at=4990.0), final(), ET)
    assert v["valid"] is False and v["violation_counts"] == {"early": 1}
    assert "10.0 ms before TTL" in v["violations"][0]["text"]
    assert v["early_violations"] == 1 and v["min_lateness_ms"] == -10.0


def test_early_by_a_gone_answer():
    """A keep-alive answered TTL 0 before the TTL passed shows the lease gone early, even if no
    watcher saw the delete then."""
    extra = [op("keepalive", KA, A, 4000, 4010, result=[0, 5])]
    v = check_leases(history(extra), seen(), final(), ET)
    assert v["violation_counts"] == {"early": 1} and v["lost_while_kept"] == 1
    assert v["violations"][0]["lease"]["seen_by"] == "keepalive TTL 0"


def test_a_delete_at_the_boundary_is_not_early():
    v = check_leases(history(), seen(a_at=5000.0), final(), ET)
    assert v["valid"] is True


def test_unanswered_keepalives_do_not_count_for_early_and_make_the_lease_uncertain():
    """A keep-alive sent at 3000 but never answered: the early bound still counts from 2000, and
    the late bound is not applied (it may have been applied at any later moment)."""
    extra = [op("keepalive", KA, A, 3000, 4000, typ="info")]
    v = check_leases(history(extra), seen(a_at=5050.0 + BOUND + 1000), final(), ET)
    assert v["valid"] is True and v["uncertain"] == 1 and v["late_beyond_bound_uncertain"] == 1
    v = check_leases(history(extra), seen(a_at=4990.0), final(), ET)
    assert v["violation_counts"] == {"early": 1}


def test_keepalive_answered_after_the_delete_was_seen():
    extra = [op("keepalive", KA, A, 5100, 5105, result=[3, 6])]
    v = check_leases(history(extra), seen(), final(), ET)
    assert v["valid"] is False and v["violation_counts"] == {"keepalive-after-delete": 1}
    assert v["keepalive_header_at_or_after_delete"] == 1


def test_late_delete_is_caught_against_the_answer_time():
    # A's last keep-alive took effect by 2004 (its answer): late if seen after 2004 + 3000 + BOUND
    v = check_leases(history(), seen(a_at=5004.0 + BOUND - 1), final(), ET)
    assert v["valid"] is True
    v = check_leases(history(), seen(a_at=5004.0 + BOUND + 1), final(), ET)
    assert v["valid"] is False and v["violation_counts"] == {"late": 1}


def test_the_bound_grows_with_the_election_timeout():
    assert late_bound_ms(3, 2.0) - late_bound_ms(3, 0.32) == 1680
    assert late_bound_ms(30, 0.32) - late_bound_ms(3, 0.32) == 2000   # the checkpoints' slack: TTL / 10


def test_never_expired_key_is_caught():
    events = [[2, KA, "PUT", str(A)], [3, KB, "PUT", str(B)], [4, KB, "DELETE", None]]
    v = check_leases(history(), seen(), final(events=events, state={KA: [str(A), 2]}), ET)
    assert v["valid"] is False and v["violation_counts"] == {"never-expired": 1} and v["never_expired"] == 1


def test_a_lease_whose_key_never_reached_the_store_is_not_judged():
    events = [[3, KB, "PUT", str(B)], [4, KB, "DELETE", None]]
    v = check_leases(history(), seen(), final(events=events), ET)
    assert v["valid"] is True and v["leases_without_key"] == 1 and v["expired"] == 1


def test_without_the_final_history_or_any_expiry_the_verdict_is_unknown():
    assert check_leases(history(), seen(), final(complete=False), ET)["valid"] == "unknown"
    assert check_leases([], [], final(events=[]), ET)["valid"] == "unknown"
    # deletes in the final history that nothing saw (no watcher, no TTL 0 answer): not measured
    v = check_leases(history(), [], final(), ET)
    assert v["valid"] == "unknown" and v["expired"] == 2 and v["lateness"]["n"] == 0


def test_every_kind_is_named():
    assert set(KINDS) == {"early", "keepalive-after-delete", "late", "never-expired"}
