"""The watch checker on hand-made records: a correct run passes, and each kind of violation
(a gap, a duplicate, an event out of order, two watchers disagreeing, an event the final
history lacks, a lost acknowledged write, ...) is caught and named."""

import copy

from verikv.jepsen.history import Op
from verikv.jepsen.watch_checker import KINDS, check_watch

P, D = "PUT", "DELETE"
# The final history of a small run that started at revision 2: a put, a txn of two keys in one
# revision, a delete, a put, and an indeterminate put that was applied.
FINAL_EVENTS = [[2, "w/a", P, "1"], [3, "w/b", P, "2"], [3, "w/c", P, "3"], [4, "w/a", D, None],
                [5, "w/b", P, "4"], [6, "w/c", P, "5"]]


def writes() -> list[Op]:
    rows = [("put", "w/a", 1, "ok", 2), ("txn", None, [["put", "w/b", 2], ["put", "w/c", 3]], "ok", 3),
            ("delete", "w/a", None, "ok", [4, 1]), ("put", "w/b", 4, "ok", 5), ("put", "w/c", 5, "info", None),
            ("put", "w/a", 6, "fail", None), ("delete", "w/z", None, "ok", [6, 0])]
    return [Op(process=i, f=f, key=k, value=val, invoke_ms=10.0 * i, complete_ms=10.0 * i + 5, type=t, result=r,
               id=i) for i, (f, k, val, t, r) in enumerate(rows)]


def final(**changes) -> dict:
    f = {"revision": 6, "start_revision": 2, "from_revision": 2, "compact_revision": None, "node": 0,
         "state": {"w/b": ["4", 5], "w/c": ["5", 6]}, "events": copy.deepcopy(FINAL_EVENTS), "complete": True,
         "error": None}
    f.update(changes)
    return f


def segment(start, events, end="stopped", created=True, progress=(), compact_revision=None):
    return {"start_revision": start, "opened_ms": 0.0, "created_ms": 1.0 if created else None,
            "created_revision": 6, "ended_ms": 100.0, "end": end, "error": None,
            "compact_revision": compact_revision,
            "events": [list(e) + [100.0 + 10 * i] for i, e in enumerate(events)], "progress": list(progress)}


def watcher(wid, segments, node=None, skipped=()):
    return {"watcher": wid, "node": wid % 3 if node is None else node, "endpoint": "x", "start_revision": 2,
            "skipped": [list(s) for s in skipped], "segments": segments}


def whole(wid):
    return watcher(wid, [segment(2, FINAL_EVENTS)])


def check(watchers, fin=None, ops=None):
    return check_watch(writes() if ops is None else ops, watchers, final() if fin is None else fin)


def kinds(verdict) -> set:
    return set(verdict["violation_counts"])


def test_correct_run_with_rewatches_is_valid_and_counted():
    split = watcher(1, [
        segment(2, FINAL_EVENTS[:3], end="error"),
        segment(4, [], end="error", created=False),              # node down: refused
        segment(4, [], end="no-leader"),                         # created, then "no leader"
        segment(4, [], end="no-leader", created=False),          # refused: no leader
        segment(4, [], end="stall"),
        segment(4, FINAL_EVENTS[3:]),
    ])
    verdict = check([whole(0), split, whole(2)])
    assert verdict["valid"] is True, verdict["violations"]
    assert verdict["events_checked"] == 18 and verdict["final_events"] == 6
    w = verdict["watchers"][1]
    assert (w["events"], w["attempts"], w["rewatches"], w["resumed"]) == (6, 6, 5, 3)
    assert (w["no_leader_endings"], w["no_leader_refusals"], w["stalls"], w["errors"]) == (1, 1, 1, 2)
    assert w["span"] == [2, 6] and w["compaction_cancels"] == 0
    # lag: the put acknowledged at 5 ms (revision 2) was received at 100 ms
    assert verdict["watchers"][0]["lag_p50_ms"] is not None
    assert verdict["op_counts"] == {"ok": 5, "info": 1, "fail": 1}


def test_gap_inside_a_stream_is_caught():
    events = FINAL_EVENTS[:1] + FINAL_EVENTS[3:]          # r3 (both events of the txn) never arrived
    verdict = check([whole(0), watcher(1, [segment(2, events)])])
    assert verdict["valid"] is False and kinds(verdict) == {"gap"}
    [gap] = verdict["violations"]
    assert gap["watcher"] == 1 and gap["missing"] == 2
    assert "r2 PUT w/a=1 then r4 DELETE w/a" in gap["text"] and "in segment 0" in gap["text"]


def test_gap_at_a_rewatch_is_caught_and_located():
    # the watcher saw r2..r3, then re-watched from r5 instead of r4: r4 is lost between segments
    w = watcher(0, [segment(2, FINAL_EVENTS[:3], end="stall"), segment(5, FINAL_EVENTS[4:])])
    verdict = check([w])
    assert kinds(verdict) == {"gap"}
    text = verdict["violations"][0]["text"]
    assert "between segment 0 (ended: stall) and segment 1 (asked for r5 on)" in text and "r4 DELETE w/a" in text


def test_duplicate_after_a_rewatch_is_caught():
    # re-watched from the last revision seen (r3) instead of the one after it
    w = watcher(0, [segment(2, FINAL_EVENTS[:3], end="error"), segment(3, FINAL_EVENTS[1:])])
    verdict = check([w])
    assert kinds(verdict) == {"duplicate"} and verdict["violation_counts"]["duplicate"] == 2
    assert "r3 PUT w/b=2 twice" in verdict["violations"][0]["text"]


def test_out_of_order_events_are_caught():
    swapped = [FINAL_EVENTS[0], FINAL_EVENTS[3], FINAL_EVENTS[1], FINAL_EVENTS[2]] + FINAL_EVENTS[4:]
    verdict = check([watcher(0, [segment(2, swapped)])])
    assert kinds(verdict) == {"out-of-order"}
    assert "r3 PUT w/b=2 after r4 DELETE w/a" in verdict["violations"][0]["text"]
    # the same revision's events in another order than the transaction wrote them
    within = [FINAL_EVENTS[0], FINAL_EVENTS[2], FINAL_EVENTS[1]] + FINAL_EVENTS[3:]
    verdict = check([watcher(0, [segment(2, within)])])
    assert kinds(verdict) == {"out-of-order"}
    assert "r3 PUT w/b=2 after r3 PUT w/c=3" in verdict["violations"][0]["text"]


def test_event_below_the_requested_start_is_caught():
    # the second segment asked for r5 on, and the server sent r4 (which this watcher had not seen)
    w = watcher(0, [segment(2, FINAL_EVENTS[:3], end="error"), segment(5, FINAL_EVENTS[3:])])
    assert kinds(check([w])) == {"before-start"}


def test_watchers_disagreeing_at_a_revision_are_caught():
    other = copy.deepcopy(FINAL_EVENTS)
    other[4] = [5, "w/b", P, "999"]
    verdict = check([whole(0), watcher(1, [segment(2, other)])])
    assert kinds(verdict) == {"divergent", "differs-from-final"}
    div = next(v for v in verdict["violations"] if v["kind"] == "divergent")
    assert div["watchers"] == [0, 1] and "r5 PUT w/b=4" in div["text"] and "r5 PUT w/b=999" in div["text"]


def test_event_not_in_the_final_history_is_caught():
    extra = FINAL_EVENTS[:2] + [[3, "w/x", P, "77"]] + FINAL_EVENTS[2:]
    verdict = check([watcher(0, [segment(2, extra)])])
    assert kinds(verdict) == {"not-in-final"}
    assert "r3 PUT w/x=77" in verdict["violations"][0]["text"]


def test_watcher_that_never_catches_up_is_caught():
    verdict = check([whole(0), watcher(1, [segment(2, FINAL_EVENTS[:4])])])
    assert kinds(verdict) == {"incomplete"}
    assert "up to r4 only" in verdict["violations"][0]["text"]


def test_acknowledged_write_missing_from_the_final_history_is_caught():
    events = [e for e in FINAL_EVENTS if e[0] != 5]
    fin = final(events=events, revision=6, state={"w/b": ["2", 3], "w/c": ["5", 6]})
    w = watcher(0, [segment(2, events)])
    verdict = check([w], fin)
    assert "lost-write" in kinds(verdict)
    lost = next(v for v in verdict["violations"] if v["kind"] == "lost-write")
    assert "put(w/b, 4)" in lost["text"] and "returned revision 5" in lost["text"] and lost["op"] == 3
    assert "final-revision-gap" in kinds(verdict)   # nothing at r5 at all


def test_acknowledged_write_at_another_revision_is_caught():
    ops = writes()
    ops[3].result = 6          # the put says revision 6, the history has it at 5
    verdict = check([whole(0)], ops=ops)
    assert {"lost-write", "ack-mismatch"} <= kinds(verdict)
    lost = next(v for v in verdict["violations"] if v["kind"] == "lost-write")
    assert "the value is at r5 PUT w/b=4" in lost["text"]


def test_final_history_checked_against_the_writes():
    events = copy.deepcopy(FINAL_EVENTS) + [[7, "w/a", P, "6"], [8, "w/b", P, "1234"], [9, "w/c", P, "3"],
                                             [10, "w/z", D, None]]
    fin = final(events=events, revision=10, state={"w/a": ["6", 7], "w/b": ["1234", 8], "w/c": ["3", 9]})
    verdict = check([watcher(0, [segment(2, events)])], fin)
    assert kinds(verdict) == {"failed-write-applied", "unknown-value", "applied-twice", "delete-of-absent-key"}


def test_final_history_out_of_order_or_with_a_missing_revision_is_caught():
    disordered = [FINAL_EVENTS[1], FINAL_EVENTS[0]] + FINAL_EVENTS[2:]
    verdict = check([watcher(0, [segment(2, disordered)])], final(events=disordered))
    assert "final-disorder" in kinds(verdict)
    # one revision more in the store than in the history: r7 has no event
    verdict = check([whole(0)], final(revision=7))
    assert kinds(verdict) == {"final-revision-gap"} and "r7" in verdict["violations"][0]["text"]


def test_final_state_must_equal_the_history_replayed():
    fin = final(state={"w/b": ["4", 5], "w/c": ["3", 3]})
    verdict = check([whole(0)], fin)
    assert kinds(verdict) == {"final-state-mismatch"}
    assert "w/c 3 (r3)" in verdict["violations"][0]["text"] and "gives 5 (r6)" in verdict["violations"][0]["text"]


def test_revisions_compacted_away_are_excused_and_reported():
    # this watcher was canceled at r3 with compact_revision 5 and went on from r5: r3..r4 excused
    w = watcher(1, [segment(2, FINAL_EVENTS[:1], end="error"),
                    segment(3, [], end="compacted", compact_revision=5),
                    segment(5, FINAL_EVENTS[4:])], skipped=[(3, 4)])
    verdict = check([whole(0), w])
    assert verdict["valid"] is True, verdict["violations"]
    stats = verdict["watchers"][1]
    assert stats["compaction_cancels"] == 1 and stats["compacted_revisions"] == 2
    # without the excuse the same events are a gap
    w["skipped"] = []
    assert kinds(check([whole(0), w])) == {"gap"}


def test_no_final_history_or_nothing_checked_is_unknown_not_valid():
    verdict = check([whole(0)], {"complete": False, "error": "no node answered", "start_revision": 2})
    assert verdict["valid"] == "unknown" and "no node answered" in verdict["reason"]
    verdict = check([watcher(0, [segment(2, [], end="error", created=False)])],
                    final(events=[], revision=1, state={}), ops=[])
    assert verdict["valid"] == "unknown" and verdict["reason"] == "no watcher event could be checked"
    # an F-independent violation still makes it invalid without a final history
    w = watcher(0, [segment(2, FINAL_EVENTS[:3], end="error"), segment(3, FINAL_EVENTS[1:])])
    assert check([w], {"complete": False, "start_revision": 2})["valid"] is False


def test_progress_response_before_its_events_is_an_observation_not_a_violation():
    # a progress response said r5 after only r2..r3 had arrived; r4 and r5 came after it
    w = watcher(0, [segment(2, FINAL_EVENTS, progress=[[5, 105.0, 3], [6, 200.0, 6]])])
    verdict = check([w])
    assert verdict["valid"] is True
    obs = verdict["observations"]
    assert obs["progress_ahead_of_events"] == 1 and obs["progress_below_sent_events"] == 0
    assert "progress response at r5" in obs["progress_ahead_examples"][0]


def test_every_kind_is_described():
    assert all(KINDS[k] for k in KINDS) and len(KINDS) == 17
