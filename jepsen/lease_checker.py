"""The lease checker: did each lease's key go neither early nor much late? A pure function of the
keepers' history (leases.py), the watchers' records on `l/` (watchers.py) and the final history.

All times are on the run's one monotonic clock (clients, watchers and keepers are threads of the
same process). Nothing deletes a key under `l/` but its lease's expiry (no client deletes one,
no lease is revoked), so every DELETE of `l/<id>` in the final history is that lease's expiry.

For each lease that was granted (the grant was answered) and whose key is in the final history:
  * `ttl`: the TTL the grant answered (a server may raise the one asked for to its minimum);
  * `acked`: the send time of the last keep-alive answered with TTL > 0, or the grant's send
    time if none was. A keep-alive is stamped when it is handed to gRPC, which is before the
    server can see it, so `acked + ttl` is never later than the earliest moment the guarantee
    allows the key to go;
  * `seen`: the first moment anything showed the delete had happened: the earliest time any
    watcher received the key's DELETE event, or any keep-alive was answered TTL 0 (the lease is
    gone). Each is an upper bound of when the delete happened (an observer can only be late);
    `seen` is None if nothing saw it (it is then bounded by the final read);
  * lateness = seen - (acked + ttl). The lease was deleted EARLY only if lateness < 0: the
    delete was observed before the earliest moment it was allowed to happen, whatever the
    observers' delays. That cannot be a false alarm; an early delete that observers saw late
    enough is missed (the lateness figures show how close each lease came to 0);
  * a keep-alive answered TTL > 0 that was sent after the delete had been seen was answered for
    a lease already gone: `keepalive-after-delete` (reported instead of `early` for that lease);
  * much late: the delete must come within `late_bound_ms(ttl)` after `done + ttl`, where `done`
    is the latest moment a keep-alive or the grant certainly took effect (its answer's arrival:
    later than it was applied). An unanswered keep-alive may have been applied at any moment
    after it was sent (even after a later one was answered: a paused node holds requests), so a
    lease with one is `uncertain`: its lateness is measured and reported, but only a certain
    lease can be `late` (or `never-expired`: its key still in the store when the final read
    began, that long after `done + ttl`). So "late" cannot be a false alarm either.
Also reported, not violations: keep-alives answered TTL > 0 whose header revision is at or after
the delete's revision (the answering node had applied the delete when it answered; on etcd the
header is the answering member's, so this does not order the renewal itself), leases whose key
never reached the store, leases gone while their keeper still kept them alive ("lost").

This module must never call a run valid when the final history could not be read, or when no
lease's expiry was checked.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from verikv.jepsen.history import INFO, OK, Op

PREFIX = "l/"
OBSERVE_ALLOWANCE_MS = 250.0   # watchers' and keepers' delay in seeing what happened
KINDS = {
    "early": "a lease's key was seen deleted before TTL had passed since the last acknowledged keep-alive was sent",
    "keepalive-after-delete": "a keep-alive sent after the lease's key was seen deleted was answered with TTL > 0",
    "late": "a lease's key was deleted later than the bound after its last effective keep-alive + TTL",
    "never-expired": "a lease's key was still in the store after its TTL and the bound had long passed",
}


def late_bound_ms(ttl_s: int, election_timeout_s: float) -> float:
    """verikv's stated bound beyond TTL (README, "Leases keep time outside the state machine"):
    one election timeout (the longest the randomized timeout can draw), + 1 s (the checkpoints'
    period) + max(1 s, TTL / 10) (their slack) + 50 ms (the leader's scan), + what observing the
    delete may add (OBSERVE_ALLOWANCE_MS)."""
    return election_timeout_s * 1000 + 1000 + max(1000.0, ttl_s * 100.0) + 50 + OBSERVE_ALLOWANCE_MS


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 1)


def distribution(values: list[float]) -> dict:
    return {"n": len(values), "p50_ms": _percentile(values, 0.5), "p99_ms": _percentile(values, 0.99),
            "max_ms": round(max(values), 1) if values else None, "min_ms": round(min(values), 1) if values else None}


def check_leases(ops: Iterable[Op], watchers: list[dict], final: dict | None, election_timeout_s: float,
                 max_examples: int = 10) -> dict:
    """valid: True, False, or "unknown" (see the module's text)."""
    ops = list(ops)
    final = final or {}
    counts: dict[str, int] = defaultdict(int)
    violations: list[dict] = []

    def violate(kind: str, text: str, **details) -> None:
        counts[kind] += 1
        if counts[kind] <= max_examples:
            violations.append({"kind": kind, "text": text, **details})

    # what the final history says about each key: [put revision, delete revision]
    put_rev: dict[str, int] = {}
    del_rev: dict[str, int] = {}
    for rev, key, typ, *_ in final.get("events", []) if final.get("complete") else []:
        if typ == "PUT":
            put_rev.setdefault(key, rev)
        elif key not in del_rev:
            del_rev[key] = rev
    state = final.get("state", {}) if final.get("complete") else {}
    # when each key's DELETE was first received by a watcher
    first_seen: dict[str, float] = {}
    for w in watchers:
        for seg in w["segments"]:
            for rev, key, typ, _value, t_ms in seg["events"]:
                if typ == "DELETE" and (key not in first_seen or t_ms < first_seen[key]):
                    first_seen[key] = t_ms

    grants = [o for o in ops if o.f == "grant" and o.type == OK]
    by_lease: dict[int, list[Op]] = defaultdict(list)
    for o in ops:
        if o.f in ("put", "keepalive", "release"):
            by_lease[o.value].append(o)

    leases, lateness_all, lateness_certain = [], [], []
    n_keepalives = sum(o.f == "keepalive" for o in ops)
    acked_keepalives = sum(o.f == "keepalive" and o.type == OK and o.result[0] > 0 for o in ops)
    no_key = lost = uncertain = header_after = 0
    late_uncertain = 0
    for g in grants:
        lease_id, ttl = g.result
        key = f"{PREFIX}{lease_id:016x}"
        mine = by_lease.get(lease_id, [])
        kas = [o for o in mine if o.f == "keepalive"]
        alive = [o for o in kas if o.type == OK and o.result[0] > 0]
        gone = [o for o in kas if o.type == OK and o.result[0] == 0]
        unknown = [o for o in kas if o.type == INFO]
        released = [o.invoke_ms for o in mine if o.f == "release"]
        acked = max([g.invoke_ms] + [o.invoke_ms for o in alive])
        done = max([g.complete_ms] + [o.complete_ms for o in alive])
        row = {"lease": f"{lease_id:016x}", "ttl": ttl, "keepalives": len(kas), "acked_ms": round(acked, 1),
               "done_ms": round(done, 1), "unknown_keepalives": len(unknown), "put_revision": put_rev.get(key),
               "delete_revision": del_rev.get(key), "seen_ms": None, "seen_by": None, "lateness_ms": None,
               "released_ms": round(released[0], 1) if released else None}
        if key not in put_rev:
            no_key += 1
            continue
        if gone:
            lost += 1
        certain = not unknown
        uncertain += not certain
        seen, seen_by = first_seen.get(key), "watch"
        if gone and (seen is None or gone[0].complete_ms < seen):
            seen, seen_by = gone[0].complete_ms, "keepalive TTL 0"
        bound = late_bound_ms(ttl, election_timeout_s)
        row["bound_ms"] = round(bound, 1)
        if key in del_rev:
            if seen is not None:
                lateness = seen - (acked + ttl * 1000)
                row.update(seen_ms=round(seen, 1), seen_by=seen_by, lateness_ms=round(lateness, 1))
                lateness_all.append(lateness)
                after = [o for o in alive if o.invoke_ms > seen]
                if after:
                    violate("keepalive-after-delete",
                            f"lease {lease_id:016x} (TTL {ttl} s): its key was seen deleted (r{del_rev[key]}) at "
                            f"{seen:.1f} ms ({seen_by}), and a keep-alive sent at {after[0].invoke_ms:.1f} ms was "
                            f"answered TTL {after[0].result[0]} at {after[0].complete_ms:.1f} ms", lease=row)
                elif lateness < 0:
                    violate("early", f"lease {lease_id:016x} (TTL {ttl} s): its key was seen deleted (r{del_rev[key]}) "
                                     f"at {seen:.1f} ms ({seen_by}), {-lateness:.1f} ms before TTL had passed since "
                                     f"the last acknowledged keep-alive was sent at {acked:.1f} ms", lease=row)
                late_by = seen - (done + ttl * 1000)
                if certain:
                    lateness_certain.append(lateness)
                    if late_by > bound:
                        violate("late", f"lease {lease_id:016x} (TTL {ttl} s): its key was seen deleted "
                                        f"(r{del_rev[key]}) at {seen:.1f} ms, {late_by:.1f} ms after TTL had passed "
                                        f"since its last keep-alive took effect ({done:.1f} ms); bound {bound:.0f} ms",
                                lease=row)
                elif late_by > bound:
                    late_uncertain += 1
            for o in alive:
                if o.result[1] >= del_rev[key]:
                    header_after += 1
        else:
            asked = final.get("asked_ms")
            row["never_expired"] = True
            if certain and asked is not None and asked - (done + ttl * 1000) > bound:
                violate("never-expired", f"lease {lease_id:016x} (TTL {ttl} s): its key {key} was still in the store "
                                         f"when the final read began at {asked:.1f} ms, "
                                         f"{asked - (done + ttl * 1000):.1f} ms after TTL had passed since its last "
                                         f"keep-alive took effect ({done:.1f} ms); bound {bound:.0f} ms", lease=row)
        leases.append(row)

    expired = [r for r in leases if r["delete_revision"] is not None]
    never = [r for r in leases if r.get("never_expired")]
    if not final.get("complete"):
        valid = "unknown"
    elif counts:
        valid = False
    elif not lateness_all:
        valid = "unknown"
    else:
        valid = True
    return {"checker": "lease", "valid": valid, "violation_counts": dict(counts), "violations": violations,
            "election_timeout_s": election_timeout_s,
            "leases": len(grants), "leases_with_key": len(leases), "leases_without_key": no_key,
            "expired": len(expired), "never_expired": len(never), "lost_while_kept": lost,
            "uncertain": uncertain, "late_beyond_bound_uncertain": late_uncertain,
            "keepalives": n_keepalives, "keepalives_acked": acked_keepalives,
            "keepalive_header_at_or_after_delete": header_after,
            "early_violations": counts.get("early", 0) + counts.get("keepalive-after-delete", 0),
            "lateness": distribution(lateness_all), "lateness_certain": distribution(lateness_certain),
            "min_lateness_ms": round(min(lateness_all), 1) if lateness_all else None,
            "final_error": final.get("error"), "lease_rows": leases}
