"""The watch checker: what every watcher saw, judged against the final store's history and the
acknowledged writes. A pure function of the records (watchers.py) and the writers' history.

An event is identified by (revision, key): etcd refuses a transaction that writes a key twice,
so a revision holds at most one event per key, and its events have an order (the order of the
request's writes) which the final history gives. For each watcher, its events across all its
segments (re-watches), in the order they arrived, must be:
  * duplicate-free: no (revision, key) twice;
  * in order: strictly increasing in (revision, place within the revision), none below the
    start revision its segment asked for;
  * gap-free: every event of the final history from the watcher's start revision up to the last
    revision it saw is among them (revisions a compaction took from it are excused, reported);
  * equal to the final history there: no event it lacks, none that differs from it;
  * complete: after healing it reaches the final history's last revision;
and all watchers agree with each other at every (revision, key) they share. The final history
must itself be a history of the writes: in order, one revision after the other with no revision
missing (every revision of a run is a write of the workload), every value in it written by a
write that did not certainly fail, each value once, no delete of an absent key, its replay equal
to the store's contents, and every acknowledged write in it at the revision its response returned
(with its events and nothing else there, in its order).

This module must never call a run valid when some watcher's events could not be compared with
the final history (an incomplete final history gives "unknown"), nor when nothing was checked.
"""

from __future__ import annotations

from collections import defaultdict
from statistics import median
from typing import Any, Iterable

from verikv.jepsen.history import FAIL, INFO, OK, Op

WRITE_FS = ("put", "delete", "txn")
PUT, DELETE = "PUT", "DELETE"
KINDS = {
    "gap": "a watcher skipped events of the final history inside the span it covered",
    "duplicate": "a watcher received the same event (revision, key) twice",
    "out-of-order": "a watcher received an event after one that comes later in the history",
    "before-start": "a watcher received an event below the start revision it asked for",
    "divergent": "two watchers received different events at the same revision and key",
    "not-in-final": "a watcher received an event the final history does not have",
    "differs-from-final": "a watcher's event differs from the final history's at the same revision and key",
    "incomplete": "after healing, a watcher never reached the final history's last revision",
    "lost-write": "an acknowledged write is missing from the final history at the revision its response returned",
    "ack-mismatch": "an acknowledged write's revision in the final history holds other events, or its events "
                    "in another order",
    "failed-write-applied": "a write that certainly failed is in the final history",
    "unknown-value": "the final history holds a value no client wrote to that key",
    "applied-twice": "a written value appears at two places in the final history",
    "final-disorder": "the final history repeats or reorders events",
    "final-revision-gap": "a revision between the start and the store's revision has no event in the final history",
    "delete-of-absent-key": "the final history deletes a key that does not exist",
    "final-state-mismatch": "the store's final contents differ from the final history replayed",
}


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 2)


def _show(e) -> str:
    """An event as text: r105 PUT w/3=881."""
    if e is None:
        return "nothing"
    rev, key, typ, value = e[:4]
    return f"r{rev} {typ} {key}" + (f"={value}" if typ == PUT else "")


class _Violations:
    def __init__(self, max_examples: int):
        self.max_examples = max_examples
        self.counts: dict[str, int] = defaultdict(int)
        self.examples: list[dict] = []

    def add(self, kind: str, text: str, **details) -> None:
        self.counts[kind] += 1
        if self.counts[kind] <= self.max_examples:
            self.examples.append({"kind": kind, "text": text, **details})


def _sub_writes(op: Op) -> list[list]:
    """A write op as [[put|delete, key, value|None], ...] in its request's order."""
    if op.f == "put":
        return [["put", op.key, op.value]]
    if op.f == "delete":
        return [["delete", op.key, None]]
    return [list(w) for w in op.value]


def _ack_revision(op: Op) -> int | None:
    """The revision an acknowledged write made (None: a delete that deleted nothing)."""
    if op.f == "delete":
        revision, deleted = op.result
        return revision if deleted else None
    return op.result


def _segment_events(watcher: dict) -> list[tuple[int, list]]:
    return [(i, e) for i, seg in enumerate(watcher["segments"]) for e in seg["events"]]


def check_watch(ops: Iterable[Op], watchers: list[dict], final: dict | None, max_examples: int = 5) -> dict:
    """valid: True, False, or "unknown" (the final history could not be read, or nothing was
    checked). See the module's text for what is checked."""
    writes = [o for o in ops if o.f in WRITE_FS]
    v = _Violations(max_examples)
    final = final or {}
    have_final = bool(final.get("complete"))
    start = final.get("start_revision")
    if start is None:
        start = min((w["start_revision"] for w in watchers), default=1)
    store_rev = final.get("revision") if have_final else None
    from_rev = final.get("from_revision", start) if have_final else None

    # ---- the final history itself --------------------------------------------------------
    fpos: dict[tuple[int, str], tuple[int, int]] = {}     # (rev, key) -> (rev, place in its revision)
    fevent: dict[tuple[int, str], list] = {}
    by_rev: dict[int, list] = defaultdict(list)
    final_order: list[tuple[int, str]] = []
    if have_final:
        last = None
        for e in final["events"]:
            rev, key = e[0], e[1]
            if (rev, key) in fpos or (last is not None and rev < last):
                v.add("final-disorder", f"the final history has {_show(e)} after r{last}"
                                        + (" (again)" if (rev, key) in fpos else ""))
                continue
            fpos[(rev, key)] = (rev, len(by_rev[rev]))
            fevent[(rev, key)] = e
            by_rev[rev].append(e)
            final_order.append((rev, key))
            last = rev
        missing = [r for r in range(from_rev, store_rev + 1) if r not in by_rev]
        for lo, hi in _runs(missing):
            v.add("final-revision-gap", f"no event at revision{'s' if hi > lo else ''} r{lo}"
                                        + (f"..r{hi}" if hi > lo else "") + f" (final history r{from_rev}..r{store_rev})")
        _check_final_against_writes(v, writes, final, by_rev, fevent, start, from_rev, store_rev)
    last_final_rev = final_order[-1][0] if final_order else None
    findex = {ident: i for i, ident in enumerate(final_order)}

    # ---- the watchers ----------------------------------------------------------------------
    ack_ms: dict[int, float] = {}
    for o in writes:
        if o.type == OK and _ack_revision(o) is not None:
            ack_ms[_ack_revision(o)] = o.complete_ms
    shared: dict[tuple[int, str], tuple[tuple, int, list]] = {}   # (rev, key) -> (content, watcher, event)
    per_watcher = []
    total_checked = 0
    for w in watchers:
        wid, node = w["watcher"], w["node"]
        name = f"watcher {wid} (n{node + 1})"
        skipped = [tuple(s) for s in w.get("skipped", [])]
        events = _segment_events(w)
        seen: set[tuple[int, str]] = set()
        last_order = None
        last_rev = w["start_revision"] - 1
        prev = None
        checked = beyond = 0
        lags = []
        for seg_i, e in events:
            rev, key, typ, value = e[:4]
            ident = (rev, key)
            seg = w["segments"][seg_i]
            if store_rev is not None and rev > store_rev:
                beyond += 1
                continue
            if ident in seen:
                v.add("duplicate", f"{name} received {_show(e)} twice (again in segment {seg_i}, which asked "
                                   f"for r{seg['start_revision']} on)", watcher=wid, event=e[:4])
                continue
            seen.add(ident)
            if rev < seg["start_revision"]:
                v.add("before-start", f"{name} received {_show(e)} in segment {seg_i}, which asked for "
                                      f"r{seg['start_revision']} on", watcher=wid, event=e[:4])
            content = (typ, value)
            other = shared.get(ident)
            if other is None:
                shared[ident] = (content, wid, e)
            elif other[0] != content:
                v.add("divergent", f"at r{rev} {key}: watcher {other[1]} received {_show(other[2])}, "
                                   f"{name} received {_show(e)}", watchers=[other[1], wid], event=e[:4])
            # the place within its revision: the final history's, else the order of arrival; an
            # event the final history lacks has no place, only its revision
            order = (rev, last_order[1] + 1) if last_order is not None and last_order[0] == rev else (rev, 0)
            if have_final and rev >= from_rev:
                checked += 1
                fe = fevent.get(ident)
                if fe is None:
                    v.add("not-in-final", f"{name} received {_show(e)}; the final history has "
                                          f"{', '.join(_show(x) for x in by_rev.get(rev, [])) or 'nothing'} "
                                          f"at r{rev}", watcher=wid, event=e[:4])
                    order = (rev, -1)
                else:
                    if (fe[2], fe[3]) != content:
                        v.add("differs-from-final", f"{name} received {_show(e)}; the final history has "
                                                    f"{_show(fe)}", watcher=wid, event=e[:4])
                    order = fpos[ident]
            if last_order is not None and rev >= seg["start_revision"] and \
                    (order <= last_order if order[1] >= 0 else rev < last_order[0]):
                v.add("out-of-order", f"{name} received {_show(e)} after {_show(prev)}", watcher=wid,
                      event=e[:4], after=prev[:4])
            if last_order is None or order > last_order:
                last_order = order
            last_rev = max(last_rev, rev)
            prev = e
            if rev in ack_ms and len(e) > 4:
                lags.append(e[4] - ack_ms[rev])
        total_checked += checked
        if have_final:
            _gaps(v, name, wid, w, events, seen, skipped, final_order, fevent, findex,
                  max(w["start_revision"], from_rev), last_rev)
            if last_final_rev is not None and last_rev < last_final_rev:
                v.add("incomplete", f"{name} saw events up to r{last_rev} only; the final history goes on to "
                                    f"r{last_final_rev}", watcher=wid)
        per_watcher.append(_watcher_stats(w, len(events), checked, beyond, last_rev, skipped, lags))

    write_counts = {t: sum(o.type == t for o in writes) for t in (OK, INFO, FAIL)}
    nothing_checked = total_checked == 0
    if v.counts:
        valid: Any = False
    elif not have_final or nothing_checked:
        valid = "unknown"
    else:
        valid = True
    out = {"checker": "watch", "valid": valid,
           "start_revision": start, "final_revision": store_rev, "final_from_revision": from_rev,
           "final_compact_revision": final.get("compact_revision"), "final_node": final.get("node"),
           "final_events": len(final_order), "final_error": final.get("error"),
           "events_checked": total_checked, "watchers": per_watcher,
           "violation_counts": dict(v.counts), "violations": v.examples,
           "observations": _observations(watchers), "op_counts": write_counts}
    if not have_final:
        out["reason"] = f"no final history: {final.get('error') or 'not read'}"
    elif nothing_checked:
        out["reason"] = "no watcher event could be checked"
    return out


def _runs(numbers: list[int]) -> list[tuple[int, int]]:
    runs = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs


def _gaps(v: _Violations, name: str, wid: int, w: dict, events: list, seen: set, skipped: list,
          final_order: list, fevent: dict, findex: dict, lo: int, hi: int) -> None:
    """Final-history events in [lo, hi] the watcher did not receive, one violation per run of
    consecutive missing events, with what it received around them and the segments involved."""
    excused = lambda rev: any(a <= rev <= b for a, b in skipped)
    missing_run: list = []

    def report():
        if v.counts["gap"] >= v.max_examples:   # counted, not described
            v.counts["gap"] += 1
            return
        first, last = fevent[missing_run[0]], fevent[missing_run[-1]]
        lo_i, hi_i = findex[missing_run[0]], findex[missing_run[-1]]
        before = after = None
        seg_before = seg_after = None
        for seg_i, e in events:   # the watcher's events just before and after the gap
            i = findex.get((e[0], e[1]))
            if i is None:
                continue
            if i < lo_i:
                before, seg_before = e, seg_i
            elif i > hi_i and after is None:
                after, seg_after = e, seg_i
        where = f"in segment {seg_after}" if seg_before == seg_after else \
            f"between segment {seg_before} (ended: {w['segments'][seg_before]['end'] if seg_before is not None else '-'})" \
            f" and segment {seg_after} (asked for r{w['segments'][seg_after]['start_revision'] if seg_after is not None else '-'} on)"
        n = len(missing_run)
        v.add("gap", f"{name} received {_show(before)} then {_show(after)} ({where}); it never received "
                     f"{n} event{'s' if n > 1 else ''} of the final history in between: {_show(first)}"
                     + (f" .. {_show(last)}" if n > 1 else ""), watcher=wid, missing=n,
              first=first[:4], last=last[:4])

    for ident in final_order:
        if not (lo <= ident[0] <= hi):
            if ident[0] > hi:
                break
            continue
        if ident in seen or excused(ident[0]):
            if missing_run:
                report()
                missing_run = []
            continue
        missing_run.append(ident)
    if missing_run:
        report()


def _check_final_against_writes(v: _Violations, writes: list[Op], final: dict, by_rev: dict, fevent: dict,
                                start: int, from_rev: int, store_rev: int) -> None:
    # every PUT of the final history names the write that wrote it
    writer_of: dict[str, tuple[Op, str]] = {}
    for o in writes:
        for f, key, value in _sub_writes(o):
            if f == "put":
                writer_of[str(value)] = (o, key)
    places: dict[str, int] = defaultdict(int)
    state: dict[str, Any] = {}      # key -> [value, mod_rev] or None (absent); keys unseen: unknown
    known_from_start = from_rev <= start
    for rev in sorted(by_rev):
        for e in by_rev[rev]:
            _, key, typ, value = e[:4]
            if typ == PUT:
                places[value] += 1
                if places[value] == 2:
                    v.add("applied-twice", f"value {value} is in the final history more than once ({_show(e)})")
                w = writer_of.get(value)
                if w is None or w[1] != key:
                    v.add("unknown-value", f"the final history has {_show(e)}, which no client wrote"
                                           + (f" (it wrote {value} to {w[1]})" if w else ""))
                elif w[0].type == FAIL:
                    v.add("failed-write-applied", f"the final history has {_show(e)}, from a write that "
                                                  f"certainly failed: {w[0].short()} ({w[0].error})")
                state[key] = [value, rev]
            else:
                if state.get(key, None if known_from_start else "?") is None:
                    v.add("delete-of-absent-key", f"the final history has {_show(e)}, but {key} does not exist then")
                state[key] = None
    # the store's contents are the history replayed
    store = {k: list(val) for k, val in final.get("state", {}).items()}
    for key in sorted(set(store) | set(state)):
        want = state.get(key) if (key in state or known_from_start) else "?"
        got = store.get(key)
        if want == "?":     # the history from before the compaction point is gone
            if got is not None and got[1] >= from_rev:
                v.add("final-state-mismatch", f"the store has {key}={got[0]} (r{got[1]}), which the final "
                                              f"history from r{from_rev} never wrote")
            continue
        if want != got:
            show = lambda s: "absent" if s is None else f"{s[0]} (r{s[1]})"
            v.add("final-state-mismatch", f"the store has {key} {show(got)}; the final history replayed "
                                          f"gives {show(want)}")
    # every acknowledged write is at its revision, with its events only, in its order
    for o in writes:
        if o.type != OK:
            continue
        rev = _ack_revision(o)
        if rev is None or rev < from_rev:
            continue   # a delete of an absent key makes no event; below from_rev: compacted away
        subs = _sub_writes(o)
        at_rev = by_rev.get(rev, [])
        keys_in_op = [k for _, k, _ in subs]
        for f, key, value in subs:
            e = fevent.get((rev, key))
            if f == "put" and (e is None or e[2] != PUT or e[3] != str(value)):
                elsewhere = [x for x in fevent.values() if x[2] == PUT and x[3] == str(value)]
                v.add("lost-write", f"{o.short()} returned revision {rev}, but the final history has "
                                    f"{_show(e)} for {key} there"
                                    + (f" (the value is at {_show(elsewhere[0])})" if elsewhere else
                                       " and nowhere else"), op=o.id)
            elif f == "delete" and o.f == "delete" and (e is None or e[2] != DELETE):
                v.add("lost-write", f"{o.short()} deleted {o.result[1]} key at revision {rev}, but the final "
                                    f"history has {_show(e)} for {key} there", op=o.id)
            elif f == "delete" and e is not None and e[2] != DELETE:
                v.add("ack-mismatch", f"{o.short()} deletes {key} at revision {rev}; the final history has "
                                      f"{_show(e)}", op=o.id)
        foreign = [e for e in at_rev if e[1] not in keys_in_op]
        ordered = [keys_in_op.index(e[1]) for e in at_rev if e[1] in keys_in_op]
        if foreign or ordered != sorted(ordered):
            v.add("ack-mismatch", f"{o.short()} returned revision {rev}; the final history there is "
                                  f"{', '.join(_show(e) for e in at_rev)}", op=o.id)


def _watcher_stats(w: dict, received: int, checked: int, beyond: int, last_rev: int, skipped: list,
                   lags: list[float]) -> dict:
    segs = w["segments"]
    created = [s for s in segs if s.get("created_ms") is not None]
    ends = defaultdict(int)
    for s in segs:
        ends[s.get("end") or "open"] += 1
    return {"watcher": w["watcher"], "node": w["node"], "events": received, "events_checked": checked,
            "events_after_final_revision": beyond, "attempts": len(segs),
            "rewatches": max(0, len(segs) - 1), "resumed": max(0, len(created) - 1),
            "no_leader_endings": sum(s.get("end") == "no-leader" and s.get("created_ms") is not None for s in segs),
            "no_leader_refusals": sum(s.get("end") == "no-leader" and s.get("created_ms") is None for s in segs),
            "stalls": ends.get("stall", 0), "errors": ends.get("error", 0),
            "compaction_cancels": ends.get("compacted", 0),
            "compacted_revisions": sum(b - a + 1 for a, b in skipped),
            "span": [w["start_revision"], last_rev], "ends": dict(ends),
            "lag_p50_ms": _percentile(lags, 0.5), "lag_p99_ms": _percentile(lags, 0.99)}


def _observations(watchers: list[dict]) -> dict:
    """Not violations of the watch history, but worth knowing: progress responses (to the
    watchers' progress requests) at a revision whose events had not all been sent yet (an
    event at or below it came after it on the same stream), or below an event already sent."""
    ahead = behind = 0
    examples = []
    for w in watchers:
        for i, seg in enumerate(w["segments"]):
            events = seg["events"]
            prefix_max, high = [0], 0           # prefix_max[n]: the highest revision of the first n events
            for e in events:
                high = max(high, e[0])
                prefix_max.append(high)
            suffix_min, low = [None] * (len(events) + 1), None   # suffix_min[n]: the lowest from event n on
            for n in range(len(events) - 1, -1, -1):
                low = events[n][0] if low is None else min(low, events[n][0])
                suffix_min[n] = low
            for rev, t, n_before in seg["progress"]:
                if prefix_max[n_before] > rev:
                    behind += 1
                if suffix_min[n_before] is not None and suffix_min[n_before] <= rev:
                    ahead += 1
                    if len(examples) < 3:
                        late = next(e for e in events[n_before:] if e[0] <= rev)
                        examples.append(f"watcher {w['watcher']} (n{w['node'] + 1}) segment {i}: a progress "
                                        f"response at r{rev} ({t:.0f} ms), then {_show(late)} "
                                        f"({late[4] if len(late) > 4 else 0:.0f} ms)")
    return {"progress_ahead_of_events": ahead, "progress_below_sent_events": behind,
            "progress_ahead_examples": examples}
