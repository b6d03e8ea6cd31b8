"""One test run: fresh cluster, concurrent clients (and the watch workload's watchers; the lease
workload's keepers and their watchers; the lock workload's lockers), nemesis schedule, heal,
recover, final reads, check, report, tear down.

It must never leave a process, namespace or firewall rule behind: everything after the
cluster starts is inside try/finally, and SIGTERM is turned into KeyboardInterrupt so the
same `finally` runs for Ctrl-C and `kill`.
"""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

from verikv.jepsen.checker import check_register, check_set
from verikv.jepsen.drivers import make_driver
from verikv.jepsen.drivers.base import DriverUnavailable, SystemDriver
from verikv.jepsen.history import History, Op
from verikv.jepsen.lease_checker import check_leases, late_bound_ms
from verikv.jepsen.leases import PREFIX as LEASE_PREFIX, KeeperGroup
from verikv.jepsen.lock_checker import check_locks
from verikv.jepsen.locks import PREFIX as LOCK_PREFIX, LockerGroup
from verikv.jepsen.nemesis import NemesisRunner, check_available, make_schedule
from verikv.jepsen.report import compute_stats, write_report
from verikv.jepsen.watch_checker import check_watch
from verikv.jepsen.watchers import WatcherGroup, read_final_history, store_revision
from verikv.jepsen.workloads import WORKLOADS, Clock, WatchWorkload, record, worker_loop

ACTOR_WORKLOADS = ("lease", "lock")   # their clients are threads of their own, not worker_loop's
LEASE_TTLS = (3, 4, 5)                  # etcd's minimum is 2 s (1.5 election timeouts), verikv's 1 s
LOCK_TTL_S = 3
REPO = Path(__file__).resolve().parent.parent
DEFAULT_REPORTS = REPO / "reports"


@dataclass
class RunConfig:
    system: str
    nemesis: str
    time_s: float
    workload: str = "register"
    seed: int = 0
    out_dir: Path | None = None
    concurrency: int = 6
    recovery_s: float = 6.0
    op_timeout_s: float = 1.0
    progress_every_s: float = 3.0
    serializable_reads: bool = False     # deliberately unsafe reads: proves the checker bites
    watchers_per_node: int = 2           # the watch workload's watchers on each node
    watch_stall_s: float = 3.0           # a watcher that hears nothing this long watches again
    lease_ttls: tuple = LEASE_TTLS        # the lease workload's TTLs
    tls: bool = False                    # verikv only: client and peer TLS (`cluster up --tls`)


class Interrupted(KeyboardInterrupt):
    pass


def _on_sigterm(signum, frame):
    raise Interrupted(f"signal {signum}")


def default_out_dir(cfg: RunConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return DEFAULT_REPORTS / f"{stamp}-{cfg.system}-{cfg.workload}-{cfg.nemesis}-s{cfg.seed}"


def run(cfg: RunConfig, log: Callable[[str], None] = print,
        driver_factory: Callable[[str], SystemDriver] = make_driver) -> dict:
    """Run one test; returns the verdict dict (also written to the report folder)."""
    if cfg.workload not in WORKLOADS and cfg.workload not in ACTOR_WORKLOADS:
        raise ValueError(f"unknown workload {cfg.workload!r}")
    out_dir = Path(cfg.out_dir) if cfg.out_dir else default_out_dir(cfg)
    driver = driver_factory(cfg.system)
    data_dir = Path(tempfile.mkdtemp(prefix=f"verikv-jepsen-{cfg.system}-", dir="/tmp"))
    schedule = make_schedule(cfg.nemesis, cfg.time_s, cfg.seed)
    workload = WORKLOADS[cfg.workload](cfg.seed) if cfg.workload in WORKLOADS else None
    history, stop = History(), threading.Event()
    workers: list[threading.Thread] = []
    clients = []
    nemesis: NemesisRunner | None = None
    clock = Clock()
    heal_s = run_end_s = 0.0
    notes: list[str] = []
    watchers: WatcherGroup | None = None
    final: dict | None = None
    watch_records: list[dict] = []
    actors: KeeperGroup | LockerGroup | None = None
    start_revision = None
    old_handler = None
    if threading.current_thread() is threading.main_thread():
        old_handler = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        log(f"starting a 3-node {cfg.system} cluster in {data_dir}")
        if cfg.nemesis == "disk":  # the nodes must start on the fault-injecting disk
            driver.use_faulty_disk()
        if cfg.tls:
            if not hasattr(driver, "use_tls"):
                raise DriverUnavailable(f"--tls: {cfg.system}'s driver does not run TLS clusters (verikv's does)")
            driver.use_tls()
        driver.start(data_dir)
        check_available(cfg.nemesis, driver)
        leader = driver.leader()
        log(f"cluster up: {', '.join(driver.endpoints())}; pids {sorted(driver.pids().values())}; "
            f"network {driver.network_name}; leader {'n%d' % (leader + 1) if leader is not None else '?'}")
        log(f"schedule: " + ("; ".join(f"{w.kind} {w.start_s:.1f}-{w.end_s:.1f}s" for w in schedule) or "no faults"))
        clock = Clock()
        if cfg.workload == "watch":
            watchers = _start_watchers(driver, clock, cfg, log)
        elif cfg.workload == "lease":
            watchers = _start_watchers(driver, clock, cfg, log, prefix=LEASE_PREFIX, per_node=1)
            actors = KeeperGroup(driver.endpoints(), history, clock, cfg.seed, cfg.concurrency, cfg.lease_ttls,
                                 cfg.op_timeout_s)
        elif cfg.workload == "lock":
            start_revision = store_revision(driver.endpoints(), LOCK_PREFIX.encode())[0] + 1
            actors = LockerGroup(driver.endpoints(), history, clock, cfg.seed, cfg.concurrency, LOCK_TTL_S,
                                 cfg.op_timeout_s)
        if actors is not None:
            actors.start()
        pause_s = getattr(workload, "pause_s", None)
        for w in range(cfg.concurrency if workload is not None else 0):
            node = w % driver.n_nodes
            client = driver.client(node, cfg.op_timeout_s)
            client.serializable_reads = cfg.serializable_reads
            clients.append(client)
            t = threading.Thread(target=worker_loop, name=f"client-{w}", daemon=True,
                                 args=(w, cfg.concurrency, client, node, workload, history, clock, stop,
                                       (lambda: pause_s) if pause_s else None))
            workers.append(t)
        for t in workers:
            t.start()
        nemesis = NemesisRunner(driver, schedule, lambda: clock.now_ms() / 1000, log)
        nemesis.start()
        last_progress = 0.0
        end_s = cfg.time_s + cfg.recovery_s
        healed = False
        while (now_s := clock.now_ms() / 1000) < end_s:
            if not healed and now_s >= cfg.time_s:
                nemesis.heal_all()
                healed, heal_s = True, clock.now_ms() / 1000
                log(f"{heal_s:6.1f}s all faults healed; recovering for {cfg.recovery_s:.0f} s")
            if now_s - last_progress >= cfg.progress_every_s:
                last_progress = now_s
                log(_progress_line(history.snapshot(), now_s, nemesis, watchers))
            time.sleep(0.1)
        if not healed:
            nemesis.heal_all()
            heal_s = clock.now_ms() / 1000
        stop.set()
        for t in workers:
            t.join(timeout=cfg.op_timeout_s + 5)
        if actors is not None:
            actors.stop()
        run_end_s = clock.now_ms() / 1000
        if cfg.workload == "set":
            _final_read(driver, history, clock, cfg, log)
        if cfg.workload == "lease":
            wait_s = max(cfg.lease_ttls) + late_bound_ms(max(cfg.lease_ttls), driver.election_timeout_s) / 1000 + 2
            log(f"keepers stopped; waiting {wait_s:.1f} s (longest TTL + the lateness bound + 2 s) for every "
                f"lease to expire")
            time.sleep(wait_s)
        if watchers is not None:
            final = _final_history(driver, watchers, clock, log, prefix=watchers.watchers[0].prefix.decode())
        if cfg.workload == "lock":
            time.sleep(1.0)
            final = read_final_history(driver.endpoints(), LOCK_PREFIX.encode(), start_revision, clock)
            log(f"final history of {LOCK_PREFIX}: " + (f"{len(final['events'])} events up to revision "
                                                        f"{final['revision']}" if final["complete"]
                                                        else f"not read: {final['error']}"))
    finally:
        stop.set()
        if actors is not None:
            actors.stop()
        if watchers is not None:
            watchers.stop()
            watch_records = watchers.records()
        if nemesis is not None:
            nemesis.heal_all()
        for t in workers:
            t.join(timeout=cfg.op_timeout_s + 5)
        for c in clients:
            try:
                c.close()
            except Exception:
                pass
        try:
            notes = driver.notes()
        except Exception as err:
            notes = [f"driver notes failed: {err}"]
        driver.stop()
        if history.ops:
            out_dir.mkdir(parents=True, exist_ok=True)
            history.write_jsonl(out_dir / "history.jsonl")
            if final is not None and watchers is None:
                (out_dir / "final-history.json").write_text(json.dumps(final, separators=(",", ":")))
            if watchers is not None:
                (out_dir / "watchers.json").write_text(json.dumps(watch_records, separators=(",", ":")))
                (out_dir / "final-history.json").write_text(json.dumps(final, separators=(",", ":")))
            for log_file in driver.logs():
                shutil.copy(log_file, out_dir / log_file.name)
        shutil.rmtree(data_dir, ignore_errors=True)
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)
        log("cluster torn down")
    ops = history.snapshot()
    log(f"checking {len(ops)} operations ...")
    t0 = time.monotonic()
    if cfg.workload == "watch":
        verdict_check = check_watch(ops, watch_records, final)
    elif cfg.workload == "lease":
        verdict_check = check_leases(ops, watch_records, final, driver.election_timeout_s)
    elif cfg.workload == "lock":
        verdict_check = check_locks(ops, final)
    else:
        verdict_check = check_register(ops) if cfg.workload == "register" else check_set(ops)
    check_s = time.monotonic() - t0
    faults = [w.to_dict() for w in schedule if w.injected_s is not None]
    stats = compute_stats(ops, faults, run_end_s, heal_s)
    verdict = {"system": cfg.system, "nemesis": cfg.nemesis, "workload": cfg.workload, "seed": cfg.seed,
               "serializable_reads": cfg.serializable_reads,
               "time_s": cfg.time_s, "recovery_s": cfg.recovery_s, "concurrency": cfg.concurrency,
               "valid": verdict_check["valid"], "checker": verdict_check, "check_time_s": round(check_s, 2),
               "faults": faults, "stats": stats, "notes": notes, "out_dir": str(out_dir)}
    report = write_report(out_dir, verdict, ops)
    log(f"verdict: valid={verdict['valid']} ({stats['overall']['ops']} ops, {stats['overall']['ok_per_s']} ok/s, "
        f"{stats['overall']['info']} indeterminate); report: {report}")
    for note in notes:
        log(f"NOTE: {note}")
    for v in verdict_check.get("violations", [])[:1]:
        if v.get("counterexample"):
            log(v["counterexample"]["text"])
    if cfg.workload == "watch":
        _log_watch(verdict_check, log)
    if cfg.workload == "lease":
        _log_lease(verdict_check, log)
    if cfg.workload == "lock":
        _log_lock(verdict_check, log)
    return verdict


def _progress_line(ops: list[Op], now_s: float, nemesis: NemesisRunner | None,
                   watchers: WatcherGroup | None = None) -> str:
    ok = sum(o.type == "ok" for o in ops)
    fail = sum(o.type == "fail" for o in ops)
    info = sum(o.type == "info" for o in ops)
    current = nemesis.current if nemesis else None
    fault = f"{current.kind}: {current.detail}" if current else "none"
    watch = ""
    if watchers is not None:
        c = watchers.counts()
        watch = f" watch-events={c['events']} rewatches={c['rewatches']} no-leader={c['no_leader']}"
    return f"{now_s:6.1f}s ops={len(ops)} ok={ok} fail={fail} info={info}{watch} fault={fault}"


def _start_watchers(driver: SystemDriver, clock: Clock, cfg: RunConfig, log, prefix: str = WatchWorkload.PREFIX,
                    per_node: int | None = None) -> WatcherGroup:
    """The run's start revision (the store's, plus one), and the watchers from it on every node."""
    per_node = per_node or cfg.watchers_per_node
    start = store_revision(driver.endpoints(), prefix.encode())[0] + 1
    watchers = WatcherGroup(driver.endpoints(), prefix.encode(), start, clock, per_node=per_node,
                            stall_s=cfg.watch_stall_s)
    watchers.start()
    log(f"{len(watchers.watchers)} watchers ({per_node} per node) on {prefix} from revision {start}")
    return watchers


def _final_history(driver: SystemDriver, watchers: WatcherGroup, clock: Clock, log,
                   prefix: str = WatchWorkload.PREFIX) -> dict:
    """After healing and recovery: the store's history of the prefix, then the watchers are given
    up to 20 s to reach its last revision. `asked_ms`: when the final read began."""
    time.sleep(1.0)   # writes whose answers timed out may still be applied: let them land first
    asked_ms = round(clock.now_ms(), 2)
    final = read_final_history(driver.endpoints(), prefix.encode(), watchers.watchers[0].start_revision, clock)
    final["asked_ms"] = asked_ms
    if not final["complete"]:
        log(f"final history not read: {final['error']}")
        return final
    log(f"final history from n{final['node'] + 1}: revision {final['revision']}, {len(final['events'])} events "
        f"from revision {final['from_revision']}"
        + (f" (compacted at {final['compact_revision']})" if final["compact_revision"] else ""))
    if final["events"]:
        last = final["events"][-1][0]
        t0 = time.monotonic()
        caught_up = watchers.wait_caught_up(last, timeout_s=20.0)
        log(f"watchers {'all reached' if caught_up else 'did NOT all reach'} revision {last} "
            f"({time.monotonic() - t0:.1f} s)")
    return final


def _log_watch(check: dict, log) -> None:
    log(f"watch: {check['events_checked']} events checked against {check['final_events']} in the final history; "
        f"violations {check['violation_counts'] or 'none'}")
    for w in check["watchers"]:
        log(f"  watcher {w['watcher']} n{w['node'] + 1}: {w['events']} events ({w['events_checked']} checked), "
            f"{w['rewatches']} re-watches ({w['resumed']} resumed), no-leader {w['no_leader_endings']} endings "
            f"+ {w['no_leader_refusals']} refusals, {w['stalls']} stalls, {w['compaction_cancels']} compaction "
            f"cancels, span r{w['span'][0]}..r{w['span'][1]}, lag p50 {w['lag_p50_ms']} p99 {w['lag_p99_ms']} ms")
    for v in check["violations"][:5]:
        log(f"  VIOLATION {v['kind']}: {v['text']}")


def _log_lease(check: dict, log) -> None:
    lat, cert = check["lateness"], check["lateness_certain"]
    log(f"lease: {check['leases']} leases ({check['leases_with_key']} with a key; {check['expired']} expired, "
        f"{check['never_expired']} never), {check['keepalives']} keep-alives ({check['keepalives_acked']} acknowledged "
        f"TTL > 0); early {check['early_violations']}; lateness p50 {lat['p50_ms']} p99 {lat['p99_ms']} max "
        f"{lat['max_ms']} min {lat['min_ms']} ms ({cert['n']} certain: max {cert['max_ms']} ms; "
        f"{check['uncertain']} uncertain, {check['late_beyond_bound_uncertain']} of them beyond the bound); "
        f"violations {check['violation_counts'] or 'none'}")
    for v in check["violations"][:5]:
        log(f"  VIOLATION {v['kind']}: {v['text']}")


def _log_lock(check: dict, log) -> None:
    log(f"lock: {check['holds']} holds; fenced writes {check['fenced_writes']} ({check['fenced_succeeded']} "
        f"succeeded, {check['fenced_refused']} refused, {check['fenced_unknown']} unknown; {check['fenced_applied']} "
        f"in the store), interleavings {check['fenced_interleavings']}; unfenced writes {check['unfenced_writes']} "
        f"in the store, {check['unfenced_overlaps']} by a non-holder; client-view hold overlaps "
        f"{check['client_hold_overlaps']}; violations {check['violation_counts'] or 'none'}")
    for v in check["violations"][:5]:
        log(f"  VIOLATION {v['kind']}: {v['text']}")
    for text in check["unfenced_overlap_examples"][:3]:
        log(f"  unfenced overlap: {text}")


def _final_read(driver: SystemDriver, history: History, clock: Clock, cfg: RunConfig, log) -> None:
    """Read the whole set after healing, retrying on every node for up to 20 s."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for node in range(driver.n_nodes):
            client = driver.client(node, timeout_s=5.0)
            try:
                op = record(history, clock, 10_000 + node, node, "final-read", None, None, client.read_set)
            finally:
                client.close()
            if op.type == "ok":
                log(f"final read from n{node + 1}: {len(op.result)} elements")
                return
        time.sleep(1.0)
    log("final read failed on every node")
