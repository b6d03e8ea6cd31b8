"""The lock checker: a pure function of the lockers' history (locks.py) and the final history of
`lk/` (every event from the run's start revision, read after healing).

The store's own order decides who held the lock: replaying the final history, the holder at
revision R is the lock key (with its create revision: a hold) with the lowest create revision
among the lock keys that exist just before R (etcd's recipe: a waiter holds once every key
created before its own is gone). Every value written to lk/fenced or lk/unfenced names the hold
it was written under (lease, create revision), so each write in the final history is attributed
to a hold. Violations:
  * fenced-not-holder: a fenced write is in the final history at a revision where its writer's
    hold was not the holder (its compare should have refused it);
  * fenced-interleaved: fenced writes of one hold, then another's, then the first's again, in
    revision order (implied by the first; counted on its own because it is the property asked);
  * fenced-lost: a fenced write answered "succeeded" is not in the final history at the
    revision its answer named, with its value;
  * fenced-refused-applied: a fenced write answered "not succeeded" is in the final history;
  * unknown-value: a value in lk/fenced that no fenced write wrote.
Reported, not violations: unfenced writes applied at a revision where their writer was not the
holder (a holder that lost its lock without knowing it, e.g. its requests held in a paused
node while its lease expired: what fencing is for), and holds that overlapped in the clients'
view (a locker believed it held the lock while another one, acquiring later, also did).

This module must never call a run valid when the final history could not be read or no fenced
write was checked.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from verikv.jepsen.history import OK, Op

PREFIX = "lk/"
LOCK_PREFIX = PREFIX + "lock/"
FENCED, UNFENCED = PREFIX + "fenced", PREFIX + "unfenced"
KINDS = {
    "fenced-not-holder": "a fenced write was applied at a revision where its writer did not hold the lock",
    "fenced-interleaved": "fenced writes of two holds interleave in revision order",
    "fenced-lost": "a fenced write answered 'succeeded' is not in the final history at its revision",
    "fenced-refused-applied": "a fenced write answered 'not succeeded' is in the final history",
    "unknown-value": "lk/fenced holds a value no fenced write wrote",
}


def hold_of(value: str) -> tuple[str, int] | None:
    """The hold (lock key, create revision) a written value names: '<lease hex>:<create rev>:<n>'."""
    try:
        lease_hex, rev, _ = value.split(":", 2)
        return f"{LOCK_PREFIX}{int(lease_hex, 16):016x}", int(rev)
    except ValueError:
        return None


def _show(hold) -> str:
    return f"{hold[0]}@r{hold[1]}" if hold else "nobody"


def check_locks(ops: Iterable[Op], final: dict | None, max_examples: int = 10) -> dict:
    ops = list(ops)
    final = final or {}
    counts: dict[str, int] = defaultdict(int)
    violations: list[dict] = []

    def violate(kind: str, text: str) -> None:
        counts[kind] += 1
        if counts[kind] <= max_examples:
            violations.append({"kind": kind, "text": text})

    complete = bool(final.get("complete"))
    events = final.get("events", []) if complete else []
    locks: dict[str, int] = {}           # lock key -> create revision, as of the revision replayed
    if complete and final.get("from_revision") != final.get("start_revision"):
        complete = False   # compacted: a replay from the compaction point would not know older lock keys
        events = []
    by_rev: dict[int, list] = defaultdict(list)
    for e in events:
        by_rev[e[0]].append(e)
    fenced_at: dict[int, str] = {}        # revision -> value written to lk/fenced
    sequence: list[tuple[int, tuple]] = []
    unfenced_overlaps, unfenced_total, overlap_examples = 0, 0, []
    holders_seen: set = set()
    for rev in sorted(by_rev):
        holder = min(locks.items(), key=lambda kv: kv[1]) if locks else None
        if holder:
            holders_seen.add(holder)
        for _rev, key, typ, value in (e[:4] for e in by_rev[rev]):
            if key == FENCED and typ == "PUT":
                fenced_at[rev] = value
                writer = hold_of(value)
                sequence.append((rev, writer))
                if writer != holder:
                    violate("fenced-not-holder", f"r{rev}: fenced write {value!r} by {_show(writer)} while "
                                                 f"{_show(holder)} held the lock")
            elif key == UNFENCED and typ == "PUT":
                unfenced_total += 1
                writer = hold_of(value)
                if writer != holder:
                    unfenced_overlaps += 1
                    if len(overlap_examples) < max_examples:
                        overlap_examples.append(f"r{rev}: unfenced write {value!r} by {_show(writer)} while "
                                                f"{_show(holder)} held the lock")
        for _rev, key, typ, _value in (e[:4] for e in by_rev[rev]):
            if key.startswith(LOCK_PREFIX):
                if typ == "PUT":
                    locks.setdefault(key, rev)
                else:
                    locks.pop(key, None)

    # interleaving, on its own: a hold writes again after another hold wrote
    finished: set = set()
    interleavings = 0
    for (_, prev), (rev, cur) in zip(sequence, sequence[1:]):
        if cur != prev:
            finished.add(prev)
            if cur in finished:
                interleavings += 1
                violate("fenced-interleaved", f"r{rev}: {_show(cur)} wrote lk/fenced again after {_show(prev)} did")

    fenced_ops = [o for o in ops if o.f == "fenced-write"]
    written = {o.value for o in fenced_ops}
    if complete:
        for o in fenced_ops:
            if o.type != OK:
                continue
            succeeded, rev = o.result
            if succeeded and fenced_at.get(rev) != o.value:
                violate("fenced-lost", f"fenced write {o.value!r} answered succeeded at r{rev}, but the final "
                                       f"history has {fenced_at.get(rev)!r} there")
            if not succeeded and o.value in fenced_at.values():
                violate("fenced-refused-applied", f"fenced write {o.value!r} answered not succeeded, but it is in "
                                                  f"the final history")
        for rev, value in fenced_at.items():
            if value not in written:
                violate("unknown-value", f"r{rev}: lk/fenced = {value!r}, which no fenced write wrote")

    # holds as the clients saw them: from the acquire's answer to the release's invocation
    acquires = [o for o in ops if o.f == "acquire" and o.type == OK]
    releases = {(o.key, o.value): o for o in ops if o.f == "release"}
    end_ms = max((o.complete_ms for o in ops), default=0.0)
    intervals = []
    for a in acquires:
        r = releases.get((a.key, a.result))
        intervals.append((a.complete_ms, r.invoke_ms if r else end_ms, (a.key, a.result)))
    intervals.sort()
    client_overlaps = 0
    for i, (s1, e1, h1) in enumerate(intervals):
        for s2, e2, h2 in intervals[i + 1:]:
            if s2 >= e1:
                break
            client_overlaps += h1 != h2
    fenced_ok = [o for o in fenced_ops if o.type == OK]
    valid = "unknown" if not complete or not sequence else (False if counts else True)
    return {"checker": "lock", "valid": valid, "violation_counts": {k: n for k, n in counts.items() if n},
            "violations": violations, "holds": len(acquires), "holders_in_store": len(holders_seen),
            "fenced_writes": len(fenced_ops), "fenced_applied": len(sequence),
            "fenced_succeeded": sum(o.result[0] for o in fenced_ok),
            "fenced_refused": sum(not o.result[0] for o in fenced_ok),
            "fenced_unknown": sum(o.type != OK for o in fenced_ops),
            "fenced_interleavings": interleavings,
            "unfenced_writes": unfenced_total, "unfenced_overlaps": unfenced_overlaps,
            "unfenced_overlap_examples": overlap_examples, "client_hold_overlaps": client_overlaps,
            "final_events": len(events), "final_error": final.get("error")}
