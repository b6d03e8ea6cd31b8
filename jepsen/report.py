"""Statistics and the on-disk report of one run: history.jsonl, verdict.json, latency.png,
report.html (plot embedded, fault windows shaded, throughput and errors per phase).

Pure functions of the history, the schedule and the verdict; it must never talk to the
cluster or change a verdict.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from statistics import median

from verikv.jepsen.history import FAIL, INFO, OK, Op


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def phase_stats(ops: list[Op], start_s: float, end_s: float, name: str) -> dict:
    inside = [o for o in ops if start_s * 1000 <= o.invoke_ms < end_s * 1000]
    ok_latencies = [o.latency_ms for o in inside if o.type == OK]
    duration_s = max(end_s - start_s, 1e-9)
    return {"phase": name, "start_s": round(start_s, 2), "end_s": round(end_s, 2), "ops": len(inside),
            "ok": len(ok_latencies), "fail": sum(o.type == FAIL for o in inside),
            "info": sum(o.type == INFO for o in inside),
            "ok_per_s": round(len(ok_latencies) / duration_s, 1),
            "latency_p50_ms": round(median(ok_latencies), 2) if ok_latencies else None,
            "latency_p99_ms": round(_percentile(ok_latencies, 0.99), 2) if ok_latencies else None}


def unavailability_s(ops: list[Op], start_s: float, end_s: float) -> float:
    """Longest stretch inside [start_s, end_s] with no successful operation completing."""
    done = sorted(o.complete_ms / 1000 for o in ops if o.type == OK and start_s <= o.complete_ms / 1000 <= end_s)
    marks = [start_s] + done + [end_s]
    return round(max(b - a for a, b in zip(marks, marks[1:])), 3)


def compute_stats(ops: list[Op], faults: list[dict], run_end_s: float, heal_s: float) -> dict:
    ops = [o for o in ops if o.f != "final-read"]
    phases, t = [], 0.0
    for i, w in enumerate(faults):
        start = w.get("injected_s") or w["start_s"]
        end = w.get("healed_s") or w["end_s"]
        if start > t:
            phases.append(phase_stats(ops, t, start, "healthy"))
        phases.append(phase_stats(ops, start, end, f"fault {i + 1}: {w['detail'] or w['kind']}"))
        t = end
    if heal_s > t:
        phases.append(phase_stats(ops, t, heal_s, "healthy"))
        t = heal_s
    phases.append(phase_stats(ops, t, run_end_s, "recovery (all healed)"))
    per_fault = []
    for w in faults:
        start = w.get("injected_s") or w["start_s"]
        end = (w.get("healed_s") or w["end_s"]) + 3.0
        per_fault.append({"detail": w["detail"] or w["kind"], "unavailable_s": unavailability_s(ops, start, end),
                          "error": w.get("error")})
    overall = phase_stats(ops, 0.0, run_end_s, "whole run")
    return {"overall": overall, "phases": phases, "faults": per_fault,
            "unavailable_total_s": round(sum(f["unavailable_s"] for f in per_fault), 3)}


def plot(ops: list[Op], faults: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ops = [o for o in ops if o.f != "final-read"]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.4]})
    colours = {OK: "#2b8a3e", INFO: "#e67700", FAIL: "#c92a2a"}
    for typ in (OK, FAIL, INFO):
        sel = [o for o in ops if o.type == typ]
        if sel:
            ax1.scatter([o.invoke_ms / 1000 for o in sel], [max(o.latency_ms, 0.05) for o in sel], s=3,
                        c=colours[typ], label=f"{typ} ({len(sel)})", alpha=0.6, linewidths=0)
    ax1.set_yscale("log")
    ax1.set_ylabel("latency (ms)")
    ax1.set_title(title)
    ax1.legend(loc="upper right", markerscale=4, fontsize=8)
    end_s = max((o.complete_ms for o in ops), default=1000) / 1000
    buckets_ok = [0] * (int(end_s) + 1)
    buckets_err = [0] * (int(end_s) + 1)
    for o in ops:
        b = int(o.complete_ms / 1000)
        if 0 <= b < len(buckets_ok):
            if o.type == OK:
                buckets_ok[b] += 1
            else:
                buckets_err[b] += 1
    xs = [i + 0.5 for i in range(len(buckets_ok))]
    ax2.plot(xs, buckets_ok, color=colours[OK], label="ok ops/s")
    ax2.plot(xs, buckets_err, color=colours[FAIL], label="fail+info ops/s")
    ax2.set_ylabel("ops/s")
    ax2.set_xlabel("time since start (s)")
    ax2.legend(loc="upper right", fontsize=8)
    for w in faults:
        start = w.get("injected_s") or w["start_s"]
        end = w.get("healed_s") or w["end_s"]
        for ax in (ax1, ax2):
            ax.axvspan(start, end, color="#ff6b6b", alpha=0.15)
        ax1.text(start, ax1.get_ylim()[1], (w["detail"] or w["kind"])[:28], fontsize=7, va="top", rotation=0)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in columns) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


WATCHER_COLUMNS = ["watcher", "node", "events", "events_checked", "attempts", "rewatches", "resumed",
                   "no_leader_endings", "no_leader_refusals", "stalls", "errors", "compaction_cancels",
                   "compacted_revisions", "span", "lag_p50_ms", "lag_p99_ms"]


def watch_section(check: dict) -> str:
    """The watch checker's results: the final history, each watcher's figures, the violations
    (counted by kind, with examples), and the observations."""
    rows = [dict(w, node=f"n{w['node'] + 1}", span=f"r{w['span'][0]}..r{w['span'][1]}") for w in check["watchers"]]
    final = (f"Final history: revision {check['final_revision']}, {check['final_events']} events from revision "
             f"{check['final_from_revision']} (run started at {check['start_revision']}"
             + (f"; compacted at {check['final_compact_revision']}" if check.get("final_compact_revision") else "")
             + f"), read from n{check['final_node'] + 1}." if check.get("final_node") is not None
             else f"Final history not read: {check.get('final_error')}.")
    out = f"<h2>Watchers</h2><p>{html.escape(final)} {check['events_checked']} watcher events checked.</p>"
    out += _table(rows, WATCHER_COLUMNS)
    counts = check["violation_counts"]
    out += "<h3>Violations</h3>" + ("<p>none</p>" if not counts else _table(
        [{"kind": k, "count": n} for k, n in sorted(counts.items())], ["kind", "count"]))
    if check["violations"]:
        out += "<pre>" + html.escape("\n".join(f"[{v['kind']}] {v['text']}" for v in check["violations"])) + "</pre>"
    obs = check.get("observations", {})
    out += (f"<h3>Observations (not violations)</h3><p>progress responses at a revision whose events came after "
            f"them: {obs.get('progress_ahead_of_events', 0)}; below an event already sent: "
            f"{obs.get('progress_below_sent_events', 0)}</p>")
    if obs.get("progress_ahead_examples"):
        out += "<pre>" + html.escape("\n".join(obs["progress_ahead_examples"])) + "</pre>"
    return out


LEASE_ROW_COLUMNS = ["lease", "ttl", "keepalives", "unknown_keepalives", "acked_ms", "done_ms", "put_revision",
                     "delete_revision", "seen_ms", "seen_by", "lateness_ms", "bound_ms"]


def lease_section(check: dict) -> str:
    """The lease checker's results: counts, the lateness distribution, violations, every lease."""
    lat, cert = check["lateness"], check["lateness_certain"]
    out = (f"<h2>Leases</h2><p>{check['leases']} leases granted ({check['leases_with_key']} with a key in the store, "
           f"{check['leases_without_key']} without), {check['expired']} expired, {check['never_expired']} never "
           f"expired, {check['lost_while_kept']} gone while still kept alive; {check['keepalives']} keep-alives, "
           f"{check['keepalives_acked']} answered TTL &gt; 0. Early deletes: <b>{check['early_violations']}</b>. "
           f"{check['uncertain']} leases had an unanswered keep-alive (not held to the late bound; "
           f"{check['late_beyond_bound_uncertain']} of them beyond it). Keep-alives answered TTL &gt; 0 with a "
           f"header revision at or after the delete: {check['keepalive_header_at_or_after_delete']}. Election "
           f"timeout used in the bound: {check['election_timeout_s']} s.</p>")
    out += _table([dict(lat, leases="all"), dict(cert, leases="certain")],
                  ["leases", "n", "min_ms", "p50_ms", "p99_ms", "max_ms"])
    counts = check["violation_counts"]
    out += "<h3>Violations</h3>" + ("<p>none</p>" if not counts else _table(
        [{"kind": k, "count": n} for k, n in sorted(counts.items())], ["kind", "count"]))
    if check["violations"]:
        out += "<pre>" + html.escape("\n".join(f"[{v['kind']}] {v['text']}" for v in check["violations"])) + "</pre>"
    out += "<h3>Every lease</h3>" + _table(check["lease_rows"], LEASE_ROW_COLUMNS)
    return out


def lock_section(check: dict) -> str:
    out = (f"<h2>Locks</h2><p>{check['holds']} holds ({check['holders_in_store']} holders in the store's order); "
           f"{check['fenced_writes']} fenced writes: {check['fenced_succeeded']} succeeded, {check['fenced_refused']} "
           f"refused by their fence, {check['fenced_unknown']} unknown; {check['fenced_applied']} in the store. "
           f"Fenced interleavings: <b>{check['fenced_interleavings']}</b>. Unfenced writes in the store: "
           f"{check['unfenced_writes']}, made by a non-holder: <b>{check['unfenced_overlaps']}</b> (not a violation: "
           f"what fencing prevents). Holds that overlapped in the clients' view: {check['client_hold_overlaps']}.</p>")
    counts = check["violation_counts"]
    out += "<h3>Violations</h3>" + ("<p>none</p>" if not counts else _table(
        [{"kind": k, "count": n} for k, n in sorted(counts.items())], ["kind", "count"]))
    if check["violations"]:
        out += "<pre>" + html.escape("\n".join(f"[{v['kind']}] {v['text']}" for v in check["violations"])) + "</pre>"
    if check["unfenced_overlap_examples"]:
        out += "<h3>Unfenced writes by a non-holder</h3><pre>" + html.escape(
            "\n".join(check["unfenced_overlap_examples"])) + "</pre>"
    return out


def write_report(out_dir: Path, verdict: dict, ops: list[Op]) -> Path:
    """verdict.json + latency.png + report.html in out_dir (history.jsonl is written by the runner)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "verdict.json").write_text(json.dumps(verdict, indent=2, default=str))
    png = out_dir / "latency.png"
    title = f"{verdict['system']} / {verdict['workload']} / nemesis {verdict['nemesis']} / seed {verdict['seed']}"
    plot(ops, verdict["faults"], png, title)
    img = base64.b64encode(png.read_bytes()).decode()
    check = verdict["checker"]
    colour = {True: "#2b8a3e", False: "#c92a2a"}.get(verdict["valid"], "#e67700")
    cex = ""
    for v in check.get("violations", [])[:3]:
        if v.get("counterexample"):
            cex += f"<h3>Counterexample on key {html.escape(str(v['key']))}</h3><pre>" \
                   f"{html.escape(v['counterexample']['text'])}</pre>"
    if check.get("lost"):
        cex += f"<h3>Lost acknowledged adds ({len(check['lost'])})</h3><pre>{check['lost'][:200]}</pre>"
    if check["checker"] == "watch":
        cex += watch_section(check)
    if check["checker"] == "lease":
        cex += lease_section(check)
    if check["checker"] == "lock":
        cex += lock_section(check)
    stats = verdict["stats"]
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:right}} pre{{background:#f6f6f6;padding:1em;
overflow-x:auto}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p style="font-size:1.4em;color:{colour}"><b>valid: {html.escape(str(verdict['valid']))}</b>
 &mdash; checker {html.escape(check['checker'])}</p>
<p>{verdict['time_s']} s of faults + {verdict['recovery_s']} s recovery, {verdict['concurrency']} clients,
{stats['overall']['ops']} operations ({stats['overall']['ok']} ok, {stats['overall']['fail']} fail,
{stats['overall']['info']} indeterminate), {stats['overall']['ok_per_s']} ok ops/s.
Files: <a href="history.jsonl">history.jsonl</a>, <a href="verdict.json">verdict.json</a>,
<a href="latency.png">latency.png</a>.</p>
<img src="data:image/png;base64,{img}" style="width:100%">
<h2>Phases</h2>{_table(stats['phases'], ['phase', 'start_s', 'end_s', 'ops', 'ok', 'fail', 'info', 'ok_per_s',
                                          'latency_p50_ms', 'latency_p99_ms'])}
<h2>Faults</h2>{_table(stats['faults'], ['detail', 'unavailable_s', 'error'])}
{cex}
<h2>Checker output</h2><pre>{html.escape(json.dumps(check, indent=1, default=str)[:20000])}</pre>
</body></html>"""
    path = out_dir / "report.html"
    path.write_text(page)
    return path
