"""`verikv jepsen ...`: run fault-injection tests against etcd or verikv and compare them.

Exit codes: 0 valid, 1 invalid (a consistency violation), 2 bad usage or the system could
not run, 3 skipped (the fault cannot be injected here) or undecided, 130 interrupted.
Bad input must never end in a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from verikv.jepsen.drivers.base import DriverUnavailable, NemesisUnavailable
from verikv.jepsen.nemesis import NEMESES

SYSTEMS = ("etcd", "verikv")


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):   # no usage dump + SystemExit(2) traceback paths: raise ours
        raise UsageError(f"{self.prog}: {message}")


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="verikv jepsen", description="Jepsen-style fault-injection tests (etcd v3 API)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    nemesis_help = "; ".join(f"{k}: {v}" for k, v in NEMESES.items())

    def common(p):
        p.add_argument("--nemesis", required=True, choices=list(NEMESES), metavar="NAME", help=nemesis_help)
        p.add_argument("--time", dest="time_s", type=_positive(float), default=30.0,
                       help="seconds of workload under faults (plus recovery)")
        p.add_argument("--workload", choices=("register", "set", "watch", "lease", "lock"), default="register",
                       help="register: linearizable reads/writes/CAS; set: no lost adds; watch: watchers on "
                            "every node must see one gap-free, duplicate-free, in-order history; lease: keys "
                            "under leases expire never early, never much late; lock: etcd's lock recipe, "
                            "fenced writes of different holders never interleave")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--concurrency", type=_positive(int), default=6, help="client threads")
        p.add_argument("--recovery", dest="recovery_s", type=_positive(float), default=6.0,
                       help="seconds of workload after healing")
        p.add_argument("--serializable-reads", action="store_true",
                       help="read without a quorum (NOT linearizable): shows the checker catching stale reads")
        p.add_argument("--tls", action="store_true",
                       help="verikv only: run the cluster with client and peer TLS (`verikv cluster up --tls`); "
                            "every client uses the cluster's client certificate")

    run = sub.add_parser("run", help="one test run against one system")
    run.add_argument("--system", required=True, choices=SYSTEMS)
    run.add_argument("--out", type=Path, default=None, help="report folder (default reports/<stamp>-...)")
    common(run)
    cmp_ = sub.add_parser("compare", help="the same schedule against etcd and verikv, one table")
    cmp_.add_argument("--out", type=Path, default=None, help="parent folder for both reports")
    common(cmp_)
    sub.add_parser("nemeses", help="list the fault types")
    return parser


def _config(args, system: str, out: Path | None):
    from verikv.jepsen.runner import RunConfig
    return RunConfig(system=system, nemesis=args.nemesis, time_s=args.time_s, workload=args.workload,
                     seed=args.seed, out_dir=out, concurrency=args.concurrency, recovery_s=args.recovery_s,
                     serializable_reads=args.serializable_reads, tls=args.tls)


def _exit_code(valid) -> int:
    return 0 if valid is True else 1 if valid is False else 3


def cmd_run(args) -> int:
    from verikv.jepsen.runner import run
    verdict = run(_config(args, args.system, args.out), log=lambda s: print(s, flush=True))
    return _exit_code(verdict["valid"])


def cmd_compare(args) -> int:
    from verikv.jepsen.runner import run
    rows = []
    for system in SYSTEMS:
        out = args.out / system if args.out else None
        print(f"=== {system} ===", flush=True)
        try:
            verdict = run(_config(args, system, out), log=lambda s: print(f"[{system}] {s}", flush=True))
        except (DriverUnavailable, NemesisUnavailable) as err:
            print(f"[{system}] not run: {err}", file=sys.stderr, flush=True)
            rows.append({"system": system, "valid": "not run", "note": str(err)})
            continue
        except RuntimeError as err:
            print(f"[{system}] failed: {err}", file=sys.stderr, flush=True)
            rows.append({"system": system, "valid": "error", "note": str(err)})
            continue
        st = verdict["stats"]
        rows.append({"system": system, "valid": verdict["valid"], "ops": st["overall"]["ops"],
                     "ok/s": st["overall"]["ok_per_s"], "info": st["overall"]["info"], "fail": st["overall"]["fail"],
                     "unavail_s": " ".join(f"{f['unavailable_s']:.1f}" for f in st["faults"]) or "-",
                     "unavail_total_s": st["unavailable_total_s"], **watch_columns(verdict["checker"]),
                     **lease_columns(verdict["checker"]), **lock_columns(verdict["checker"]),
                     "note": verdict["out_dir"]})
    print(format_table(rows, {"watch": WATCH_COLUMNS, "lease": LEASE_COLUMNS, "lock": LOCK_COLUMNS}.get(
        args.workload, ())))
    codes = [_exit_code(r["valid"]) for r in rows if r["valid"] not in ("not run", "error")]
    if len(codes) < len(rows):
        return max(codes + [2]) if 1 not in codes else 1
    return max(codes) if codes else 2


WATCH_COLUMNS = ("events_checked", "rewatches", "no_leader", "compacted", "violations", "progress_ahead")


def watch_columns(check: dict) -> dict:
    """The watch checker's figures for the compare table (all watchers together): events
    checked, re-watches, 'no leader' endings+refusals, compaction cancels, violations, and progress
    responses that came before events at or below their revision (an observation, not a violation)."""
    if check.get("checker") != "watch":
        return {}
    ws = check["watchers"]
    return {"events_checked": check["events_checked"], "rewatches": sum(w["rewatches"] for w in ws),
            "no_leader": f"{sum(w['no_leader_endings'] for w in ws)}+{sum(w['no_leader_refusals'] for w in ws)}",
            "compacted": sum(w["compaction_cancels"] for w in ws),
            "violations": sum(check["violation_counts"].values()),
            "progress_ahead": check.get("observations", {}).get("progress_ahead_of_events", 0)}


LEASE_COLUMNS = ("leases", "expired", "keepalives_acked", "early", "late_p50_ms", "late_p99_ms", "late_max_ms",
                 "never_expired", "uncertain", "violations")


def lease_columns(check: dict) -> dict:
    """The lease checker's figures: leases granted, expired, keep-alives acknowledged with TTL > 0,
    early deletes (should be 0), lateness after TTL (p50/p99/max), leases never expired, leases
    with an unanswered keep-alive (not held to the late bound), violations."""
    if check.get("checker") != "lease":
        return {}
    lat = check["lateness"]
    return {"leases": check["leases"], "expired": check["expired"], "keepalives_acked": check["keepalives_acked"],
            "early": check["early_violations"], "late_p50_ms": lat["p50_ms"], "late_p99_ms": lat["p99_ms"],
            "late_max_ms": lat["max_ms"], "never_expired": check["never_expired"], "uncertain": check["uncertain"],
            "violations": sum(check["violation_counts"].values())}


LOCK_COLUMNS = ("holds", "fenced_applied", "fenced_refused", "interleavings", "unfenced_overlaps",
                "client_overlaps", "violations")


def lock_columns(check: dict) -> dict:
    """The lock checker's figures: holds, fenced writes in the store and refused, interleavings
    (should be 0), unfenced writes made by a non-holder, holds that overlapped in the clients'
    view, violations."""
    if check.get("checker") != "lock":
        return {}
    return {"holds": check["holds"], "fenced_applied": check["fenced_applied"],
            "fenced_refused": check["fenced_refused"], "interleavings": check["fenced_interleavings"],
            "unfenced_overlaps": check["unfenced_overlaps"], "client_overlaps": check["client_hold_overlaps"],
            "violations": sum(check["violation_counts"].values())}


def format_table(rows: list[dict], extra: tuple = ()) -> str:
    cols = ["system", "valid", "ops", "ok/s", "info", "fail", "unavail_s", "unavail_total_s", *extra, "note"]
    cells = [[str(r.get(c, "-")) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths))
    return "\n".join([line(cols), line(["-" * w for w in widths])] + [line(r) for r in cells])


def main(argv: list[str]) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as err:
        print(f"{err}\n(try `verikv jepsen --help`)", file=sys.stderr)
        return 2
    except SystemExit as exit_:      # --help
        return int(exit_.code or 0)
    try:
        if args.command == "nemeses":
            for name, text in NEMESES.items():
                print(f"{name:18} {text}")
            return 0
        return cmd_run(args) if args.command == "run" else cmd_compare(args)
    except DriverUnavailable as err:
        print(f"verikv jepsen: {err}", file=sys.stderr)
        return 2
    except NemesisUnavailable as err:
        print(f"verikv jepsen: SKIPPED: nemesis unavailable: {err}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("verikv jepsen: interrupted; cluster torn down", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, ValueError) as err:
        print(f"verikv jepsen: error: {err}", file=sys.stderr)
        return 2
