"""Checkers: linearizability of per-key registers, and lost writes in a grow-only set.

Linearizability uses the Wing-Gong search with Lowe's memoisation: a depth-first search
over partial linearizations, pruned by remembering every (set of linearized ops, register
state) already explored. Histories are split by key first (a register per key is
independent: P-compositionality). Ops of type `info` may take effect at any time after
their invocation, or never; `fail` ops are dropped. The search is bounded by a step
budget and answers "undecided" instead of running forever.

This module must never report a history as valid without having found a linearization
for every key (an exhausted budget is "undecided", not "valid").
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable

from verikv.jepsen.history import FAIL, INFO, OK, Op

LINEARIZABLE, VIOLATION, UNDECIDED = "linearizable", "violation", "undecided"
REGISTER_FS = ("read", "write", "cas")


# ---------------------------------------------------------------------------------------
# The register model
# ---------------------------------------------------------------------------------------
def register_step(op: Op, state: Any) -> tuple[bool, Any]:
    """Apply `op` to a register holding `state`: (is this consistent?, new state)."""
    if op.f == "read":
        return state == op.result, state
    if op.f == "write":
        return True, op.value
    if op.f == "cas":
        old, new = op.value
        if op.type == OK and op.result is False:      # observed: the compare did not match
            return state != old, state
        return state == old, new                        # swapped (ok) or might have (info)
    raise ValueError(f"not a register op: {op.f}")


def register_relevant(ops: Iterable[Op]) -> list[Op]:
    """Ops the search must consider: ok ops, and info ops that may have changed the state."""
    keep = []
    for op in ops:
        if op.f not in REGISTER_FS or op.type == FAIL:
            continue
        if op.type == INFO and op.f == "read":
            continue                                    # an unknown read constrains nothing
        keep.append(op)
    return keep


@dataclass
class KeyResult:
    key: Any
    status: str
    steps: int
    n_ops: int
    best_path: list[int] = field(default_factory=list)   # op ids of the deepest partial linearization
    best_state: Any = None
    blocked: list[int] = field(default_factory=list)     # ops that could not come next at that point


def search_linearization(ops: list[Op], initial: Any = None, max_steps: int = 500_000) -> KeyResult:
    """Is this single-key history linearizable? Ops: ok (must be placed) and info (may be)."""
    ops = register_relevant(ops)
    must = sorted((o for o in ops if o.type == OK), key=lambda o: o.invoke_ms)
    opt = sorted((o for o in ops if o.type == INFO), key=lambda o: o.invoke_ms)
    n_must, n_opt = len(must), len(opt)
    every = must + opt
    must_invoke = [o.invoke_ms for o in must]
    must_complete = [o.complete_ms for o in must]
    opt_invoke = [o.invoke_ms for o in opt]
    must_full = (1 << n_must) - 1
    key = ops[0].key if ops else None
    if n_must == 0:
        return KeyResult(key, LINEARIZABLE, 0, len(ops))

    def candidates(mask: int) -> list[int]:
        m = mask & must_full
        lo = ((~m) & (m + 1)).bit_length() - 1
        frontier = math.inf
        eligible = []
        i = lo
        while i < n_must and must_invoke[i] <= frontier:
            if not (m >> i) & 1:
                eligible.append(i)
                if must_complete[i] < frontier:
                    frontier = must_complete[i]
            i += 1
        out = [i for i in eligible if must_invoke[i] <= frontier]
        out.sort(key=lambda i: must_complete[i])
        for j in range(n_opt):
            if opt_invoke[j] > frontier:
                break
            if not (mask >> (n_must + j)) & 1:
                out.append(n_must + j)
        return out

    seen: set[tuple[int, Any]] = set()
    steps = 0
    best_depth, best_path, best_state, best_blocked = -1, [], initial, []
    stack = [[0, initial, candidates(0), 0]]
    path: list[int] = []
    while stack:
        frame = stack[-1]
        mask, state, cands, idx = frame
        if idx >= len(cands):
            stack.pop()
            if path:
                path.pop()
            continue
        frame[3] = idx + 1
        steps += 1
        if steps > max_steps:
            return KeyResult(key, UNDECIDED, steps, len(ops), [every[i].id for i in best_path], best_state,
                             [every[i].id for i in best_blocked])
        c = cands[idx]
        ok, new_state = register_step(every[c], state)
        if not ok:
            continue
        new_mask = mask | (1 << c)
        memo = (new_mask, new_state)
        if memo in seen:
            continue
        seen.add(memo)
        path.append(c)
        if new_mask & must_full == must_full:
            return KeyResult(key, LINEARIZABLE, steps, len(ops))
        next_cands = candidates(new_mask)
        depth = bin(new_mask & must_full).count("1")
        if depth > best_depth:
            best_depth, best_path, best_state = depth, list(path), new_state
            best_blocked = [i for i in next_cands if i < n_must and not register_step(every[i], new_state)[0]]
        stack.append([new_mask, new_state, next_cands, 0])
    if best_depth < 0:   # not even one op could go first
        best_blocked = [i for i in candidates(0) if i < n_must]
    return KeyResult(key, VIOLATION, steps, len(ops), [every[i].id for i in best_path], best_state,
                     [every[i].id for i in best_blocked])


# ---------------------------------------------------------------------------------------
# Minimal counterexamples
# ---------------------------------------------------------------------------------------
def _is_observer(op: Op) -> bool:
    """Reads and failed compares: they change nothing."""
    return op.f == "read" or (op.f == "cas" and op.type == OK and op.result is False)


def _closed(ops: list[Op], initial: Any) -> bool:
    """Every value a remaining op observed was written by a remaining op (or is the initial value)."""
    written = {initial}
    for o in ops:
        if o.f == "write":
            written.add(o.value)
        elif o.f == "cas":
            written.add(o.value[1])
    for o in ops:
        if o.type != OK:
            continue
        if o.f == "read" and o.result not in written:
            return False
        if o.f == "cas" and o.result is True and o.value[0] not in written:
            return False
    return True


def minimize_counterexample(ops: list[Op], initial: Any = None, max_steps: int = 200_000) -> list[Op]:
    """A 1-minimal subset of a non-linearizable single-key history that is still not
    linearizable (delta-debugging removal), chosen so that it proves the whole history
    wrong: restricting any linearization of the history to the subset stays valid as long
    as (a) every value the subset observes is written inside it (values are unique) and
    (b) no dropped write can be the one a kept "compare failed" observation saw (those see
    inequalities, which dropping that write could break). Observers can always be dropped."""
    current = sorted(register_relevant(ops), key=lambda o: o.invoke_ms)
    writers = [o for o in current if not _is_observer(o)]

    def compare_failures_safe(trial: list[Op]) -> bool:
        """For every failed compare C kept, every dropped write W provably is not the
        write C saw: W starts after C ends, or some kept ok write W' lies between them in
        real time (W ends before W' starts, W' ends before C starts)."""
        kept = {o.id for o in trial}
        dropped = [w for w in writers if w.id not in kept]
        if not dropped:
            return True
        for c in trial:
            if not (c.f == "cas" and c.type == OK and c.result is False):
                continue
            latest_start = max((w.invoke_ms for w in trial if not _is_observer(w) and w.type == OK
                                and w.complete_ms < c.invoke_ms), default=-math.inf)
            for w in dropped:
                if not (w.invoke_ms > c.complete_ms or w.complete_ms < latest_start):
                    return False
        return True

    def still_bad(trial: list[Op]) -> bool:
        if not trial or not _closed(trial, initial) or not compare_failures_safe(trial):
            return False
        return search_linearization(trial, initial, max_steps).status == VIOLATION

    chunk = max(1, len(current) // 2)
    while True:
        i, removed = 0, False
        while i < len(current):
            trial = current[:i] + current[i + chunk:]
            if still_bad(trial):
                current, removed = trial, True
            else:
                i += chunk
        if chunk == 1 and not removed:
            break          # a full single-op pass removed nothing: 1-minimal
        chunk = max(1, chunk // 2)
    return current


def explain(ops: list[Op], initial: Any = None) -> dict:
    """A counterexample as data + text: the ops, and the furthest any order got."""
    by_id = {o.id: o for o in ops}
    result = search_linearization(ops, initial)
    ordered = sorted(ops, key=lambda o: o.invoke_ms)
    lines = [f"No order of these {len(ops)} operations on key {ops[0].key!r} respects both real time "
             f"and register semantics (initial value {initial!r}):"]
    lines += ["  " + o.short() for o in ordered]
    if result.best_path:
        lines.append("The longest valid order found: " + ", then ".join(by_id[i].short().split(" [")[0]
                                                                      for i in result.best_path)
                     + f"; register then holds {result.best_state!r}")
    else:
        lines.append("No operation can even go first.")
    if result.blocked:
        lines.append("and none of these can come next: " + "; ".join(by_id[i].short() for i in result.blocked))
    return {"key": ops[0].key, "ops": [o.id for o in ordered], "op_text": [o.short() for o in ordered],
            "longest_order": result.best_path, "state_after_longest_order": result.best_state,
            "blocked": result.blocked, "text": "\n".join(lines)}


# ---------------------------------------------------------------------------------------
# Whole-history checkers
# ---------------------------------------------------------------------------------------
def check_register(ops: Iterable[Op], initial: Any = None, max_steps_per_key: int = 500_000,
                   max_counterexamples: int = 3) -> dict:
    """Linearizability of every key's register. valid: True, False, or "unknown" (undecided)."""
    by_key: dict[Any, list[Op]] = defaultdict(list)
    for op in ops:
        if op.f in REGISTER_FS:
            by_key[op.key].append(op)
    violations, undecided, steps = [], [], 0
    for key in sorted(by_key, key=str):
        res = search_linearization(by_key[key], initial, max_steps_per_key)
        steps += res.steps
        if res.status == VIOLATION:
            entry = {"key": key, "n_ops": res.n_ops}
            if len(violations) < max_counterexamples:
                minimal = minimize_counterexample(by_key[key], initial)
                entry["counterexample"] = explain(minimal, initial) if minimal else None
            violations.append(entry)
        elif res.status == UNDECIDED:
            undecided.append({"key": key, "n_ops": res.n_ops, "steps": res.steps})
    counts = _type_counts(op for key_ops in by_key.values() for op in key_ops)
    valid: Any = False if violations else ("unknown" if undecided else True)
    return {"checker": "linearizable-register", "valid": valid, "keys": len(by_key),
            "violations": violations, "undecided": undecided, "search_steps": steps, "op_counts": counts}


def check_set(ops: Iterable[Op]) -> dict:
    """Every acknowledged add must be in the final read; nothing may appear from nowhere,
    and nothing whose add certainly failed may appear."""
    ops = list(ops)
    adds = [o for o in ops if o.f == "add"]
    finals = [o for o in ops if o.f == "final-read" and o.type == OK]
    counts = _type_counts(adds)
    if not finals:
        return {"checker": "set", "valid": "unknown", "reason": "no final read succeeded", "op_counts": counts}
    final = set(finals[-1].result)
    by_type: dict[str, set] = {OK: set(), FAIL: set(), INFO: set()}
    for o in adds:
        by_type[o.type].add(o.value)
    attempted = by_type[OK] | by_type[FAIL] | by_type[INFO]
    lost = sorted(by_type[OK] - final)
    unexpected = sorted(final - attempted)
    failed_but_present = sorted(by_type[FAIL] & final)
    recovered = sorted(by_type[INFO] & final)
    return {"checker": "set", "valid": not (lost or unexpected or failed_but_present),
            "acknowledged": len(by_type[OK]), "final_size": len(final), "lost": lost,
            "unexpected": unexpected, "failed_but_present": failed_but_present,
            "indeterminate_recovered": len(recovered),
            "indeterminate_absent": len(by_type[INFO] - final), "op_counts": counts}


def _type_counts(ops: Iterable[Op]) -> dict:
    counts = {OK: 0, FAIL: 0, INFO: 0}
    for o in ops:
        counts[o.type] = counts.get(o.type, 0) + 1
    return counts
