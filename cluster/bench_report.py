"""`verikv bench`'s figures: the medians over the rounds, the ratios, and the tables on stdout
(cluster/bench.py runs the loads)."""

from __future__ import annotations

import statistics

from verikv.cluster.bench import (BIG_LOAD, KEEP_ALIVE_LEASES, KEEP_ALIVE_LOADS, LOADS, UNCHECKED, WATCHERS,
                                  WATCHERS_PER_STREAM, keep_alive_load_name, load_name)

TOTALS = ("ops", "errors", "events", "expected_events", "puts")  # summed over the rounds, not medians


def medians(rounds: list[dict]) -> dict:
    """Per system and load: the median of each figure over the rounds (ops and errors: their
    totals), the median of the per-round verikv/etcd ratios (`ratio_vs_etcd`, of ops/s, or of
    events delivered per second for the watch loads) and their lowest
    and highest (`ratio_range`: how much this machine's speed drifted between rounds); with a
    verikv cluster without runtime checks, the same against it (`ratio_vs_unchecked`,
    `ratio_range_vs_unchecked`)."""
    out: dict = {}
    for name in rounds[0]:
        out[name] = {}
        for load in rounds[0][name]:
            figures = [r[name][load] for r in rounds]
            out[name][load] = {k: (sum(f[k] for f in figures) if k in TOTALS
                                   else statistics.median(f[k] for f in figures)) for k in figures[0]}
            out[name][load]["rounds"] = len(figures)
    for other, key, span in (("etcd", "ratio_vs_etcd", "ratio_range"),
                             (UNCHECKED, "ratio_vs_unchecked", "ratio_range_vs_unchecked")):
        if "verikv" not in out or other not in out:
            continue
        for load in out["verikv"]:
            rate = "events_per_s" if load.startswith("watch") else "ops_per_s"
            ratios = [r["verikv"][load][rate] / r[other][load][rate] for r in rounds if r[other][load][rate]]
            if ratios:
                out["verikv"][load][key] = statistics.median(ratios)
                out["verikv"][load][span] = [min(ratios), max(ratios)]
    return out


def print_tables(results: dict, rounds: int, watch_put_rate: float) -> None:
    """The tables of `results` (medians) on stdout: the client loads, the memory of live leases,
    the watch loads."""
    ran = {load for name in results for load in results[name]}
    lease_loads = ["grant 2x64"] + [keep_alive_load_name(*load) for load in KEEP_ALIVE_LOADS]
    table = [load for load in [load_name(*load) for load in LOADS + [BIG_LOAD]] + lease_loads if load in ran]
    if table:
        _print_table(results, table, rounds, "throughput",
                     f"{'ops/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6}",
                     lambda r: f"{r['ops_per_s']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>6}")
    memory = [(name, results[name][load]["lease_bytes"]) for name in ("verikv", UNCHECKED, "etcd")
              for load in [keep_alive_load_name(*KEEP_ALIVE_LOADS[0])]
              if "lease_bytes" in results.get(name, {}).get(load, {})]
    if memory:
        print(f"\nmemory of live leases: how much a node's RSS grew while {KEEP_ALIVE_LEASES:,} leases were granted "
              f"on the freshly started nodes, before the loads (median over the nodes), per lease: "
              + ", ".join(f"{name} {b:,.0f} bytes" for name, b in memory))
    if any(load.startswith("watch ") for load in ran):
        print(f"\nwatch loads: N watchers on one prefix ({WATCHERS_PER_STREAM} per stream, over every node), "
              f"one client putting {watch_put_rate:.0f}/s into it, one put at a time; latency: from a put's "
              f"answer to its event at a watcher (negative: the event came first); undelivered: not there 10 s after the last put")
        _print_table(results, [f"watch {w}" for w in WATCHERS if f"watch {w}" in ran], rounds,
                     "events delivered per second",
                     f"{'events/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'undelivered':>11} {'errors':>6}",
                     lambda r: f"{r['events_per_s']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
                               f"{r['expected_events'] - r['events']:>11} {r['errors']:>6}")


def _print_table(results: dict, loads: list[str], rounds: int, what: str, heading: str, row) -> None:
    """A line per load and system (its figures as `row` formats them), then the load's ratios."""
    print(f"{'load':<25} {'system':<9} {heading}")
    for load in loads:
        for system in ("verikv", UNCHECKED, "etcd"):
            r = results.get(system, {}).get(load)
            if r:
                print(f"{load:<25} {system:<9} {row(r)}")
        _print_ratio(results, load, "ratio", "ratio_vs_etcd", "ratio_range", f"verikv / etcd {what}", rounds)
        _print_ratio(results, load, "checks", "ratio_vs_unchecked", "ratio_range_vs_unchecked",
                     f"verikv / verikv without runtime checks, {what}", rounds)


def _print_ratio(results: dict, load: str, label: str, key: str, span: str, what: str, rounds: int) -> None:
    figures = results.get("verikv", {}).get(load, {})
    if key in figures:
        lo, hi = figures[span]
        print(f"{load:<25} {label:<9} {figures[key]:>9.2f}  ({what}"
              + (f", median of {rounds} rounds, lowest {lo:.2f}, highest {hi:.2f})" if rounds > 1 else ")"))
