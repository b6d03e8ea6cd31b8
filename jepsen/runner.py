"""One test run: fresh cluster, concurrent clients (and the watch workload's watchers), nemesis
schedule, heal, recover, final reads, check, report, tear down.

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
from verikv.jepsen.drivers.base import SystemDriver
from verikv.jepsen.history import History, Op
from verikv.jepsen.nemesis import NemesisRunner, check_available, make_schedule
from verikv.jepsen.report import compute_stats, write_report
from verikv.jepsen.watch_checker import check_watch
from verikv.jepsen.watchers import WatcherGroup, read_final_history, store_revision
from verikv.jepsen.workloads import WORKLOADS, Clock, WatchWorkload, record, worker_loop

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
    if cfg.workload not in WORKLOADS:
        raise ValueError(f"unknown workload {cfg.workload!r}")
    out_dir = Path(cfg.out_dir) if cfg.out_dir else default_out_dir(cfg)
    driver = driver_factory(cfg.system)
    data_dir = Path(tempfile.mkdtemp(prefix=f"verikv-jepsen-{cfg.system}-", dir="/tmp"))
    schedule = make_schedule(cfg.nemesis, cfg.time_s, cfg.seed)
    workload = WORKLOADS[cfg.workload](cfg.seed)
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
    old_handler = None
    if threading.current_thread() is threading.main_thread():
        old_handler = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        log(f"starting a 3-node {cfg.system} cluster in {data_dir}")
        if cfg.nemesis == "disk":  # the nodes must start on the fault-injecting disk
            driver.use_faulty_disk()
        driver.start(data_dir)
        check_available(cfg.nemesis, driver)
        leader = driver.leader()
        log(f"cluster up: {', '.join(driver.endpoints())}; pids {sorted(driver.pids().values())}; "
            f"network {driver.network_name}; leader {'n%d' % (leader + 1) if leader is not None else '?'}")
        log(f"schedule: " + ("; ".join(f"{w.kind} {w.start_s:.1f}-{w.end_s:.1f}s" for w in schedule) or "no faults"))
        clock = Clock()
        if cfg.workload == "watch":
            watchers = _start_watchers(driver, clock, cfg, log)
        pause_s = getattr(workload, "pause_s", None)
        for w in range(cfg.concurrency):
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
        run_end_s = clock.now_ms() / 1000
        if cfg.workload == "set":
            _final_read(driver, history, clock, cfg, log)
        if watchers is not None:
            final = _final_history(driver, watchers, clock, log)
    finally:
        stop.set()
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


def _start_watchers(driver: SystemDriver, clock: Clock, cfg: RunConfig, log) -> WatcherGroup:
    """The run's start revision (the store's, plus one), and the watchers from it on every node."""
    prefix = WatchWorkload.PREFIX.encode()
    start = store_revision(driver.endpoints(), prefix)[0] + 1
    watchers = WatcherGroup(driver.endpoints(), prefix, start, clock, per_node=cfg.watchers_per_node,
                            stall_s=cfg.watch_stall_s)
    watchers.start()
    log(f"{len(watchers.watchers)} watchers ({cfg.watchers_per_node} per node) on {WatchWorkload.PREFIX} "
        f"from revision {start}")
    return watchers


def _final_history(driver: SystemDriver, watchers: WatcherGroup, clock: Clock, log) -> dict:
    """After healing and recovery: the store's history of the prefix, then the watchers are given
    up to 20 s to reach its last revision."""
    time.sleep(1.0)   # writes whose answers timed out may still be applied: let them land first
    final = read_final_history(driver.endpoints(), WatchWorkload.PREFIX.encode(),
                               watchers.watchers[0].start_revision, clock)
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
