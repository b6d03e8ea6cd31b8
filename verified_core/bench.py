"""Microbenchmarks of the compiled core, printed as figures (never asserted as timings).

Usage: python -m verikv.verified_core.bench [--slots N] [--value-bytes B]

- the cost of one call into the extension (quorum_size);
- a 3-replica steady state in one process: the leader proposes, every message is delivered
  to its replica, and the time spent inside the core is divided by the messages handled and
  by the slots committed. Encoding and decoding are included (they happen in the extension).
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
import timeit

from verikv.verified_core.core import Core


def call_cost_ns(number: int = 1_000_000) -> float:
    from verikv.verified_core import core

    seconds = timeit.timeit("q(3)", globals={"q": core.quorum_size}, number=number)
    return seconds / number * 1e9


def steady_state(slots: int, value_bytes: int, batch: int, runtime_checks: bool) -> dict[str, float]:
    n = 3
    cores = [Core(i, n, runtime_checks=runtime_checks) for i in range(n)]
    queue: collections.deque[tuple[int, bytes]] = collections.deque()
    committed = [0] * n

    def absorb(i: int, ready) -> None:
        queue.extend(ready.early)
        queue.extend(ready.messages)
        committed[i] += len(ready.commits)

    # elect node 0 (the shortest election timeout)
    for _ in range(200):
        for i in range(n):
            absorb(i, cores[i].tick())
        while queue:
            dst, m = queue.popleft()
            absorb(dst, cores[dst].receive(m))
        if cores[0].status()["role"] == "leader":
            break
    else:
        raise RuntimeError("no leader elected")
    start_commits = committed[:]
    value = b"x" * value_bytes
    messages = 0
    core_seconds = 0.0
    proposed = 0
    clock = time.perf_counter
    while proposed < slots:
        t0 = clock()
        for _ in range(min(batch, slots - proposed)):
            ready = cores[0].propose(value)
            if not ready.accepted:
                raise RuntimeError("the leader refused a proposal")
            absorb(0, ready)
            proposed += 1
        while queue:
            dst, m = queue.popleft()
            absorb(dst, cores[dst].receive(m))
            messages += 1
        # truncate as a node would after a snapshot, so the window never fills
        for c in cores:
            upto = c.status()["commit_upto"]
            if upto - c.status()["log_start"] > 1024:
                c.truncate(upto - 512)
        core_seconds += clock() - t0
    done = min(c - s for c, s in zip(committed, start_commits))
    return {
        "slots": done,
        "messages": messages,
        "us_per_message": core_seconds / messages * 1e6,
        "us_per_slot": core_seconds / done * 1e6,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m verikv.verified_core.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=20000)
    parser.add_argument("--value-bytes", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64, help="proposals per delivery round (pipelining)")
    args = parser.parse_args(argv)
    print(f"call into the extension (quorum_size): {call_cost_ns():.0f} ns")
    for checks in (True, False):
        r = steady_state(args.slots, args.value_bytes, args.batch, checks)
        label = "with runtime checks" if checks else "without runtime checks"
        print(f"3 replicas, {args.value_bytes}-byte values, {args.batch} in flight, {label}: "
              f"{r['us_per_message']:.2f} us per handled message, {r['us_per_slot']:.2f} us per committed slot "
              f"({r['messages']} messages, {r['slots']} slots)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
