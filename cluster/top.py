"""`verikv cluster status --watch`: a live view of the local cluster, refreshed in the terminal.

Per node: its role, the committed and applied slots and the gap between them (apply lag), the
revision, proposals committed per second and the p99 of its WAL fsyncs over the last interval.
The slots and revision come from each node's Maintenance.Status; the rates from its /metrics
(etcd's `etcd_server_proposals_committed_total` and `etcd_disk_wal_fsync_duration_seconds`),
which `cluster up` serves on BASE+5+N (clusters set up before that have no rates: "-").

This module only reads: Status calls and HTTP GETs of /metrics.
"""

from __future__ import annotations

import json
import math
import sys
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

COMMITTED = "etcd_server_proposals_committed_total"
FSYNC = "etcd_disk_wal_fsync_duration_seconds"


def scrape(url: str, timeout_s: float = 1.0) -> dict | None:
    """{"committed": total, "fsync": [(le, cumulative count), ...]} from a node's /metrics, or None."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            text = resp.read().decode()
    except (OSError, ValueError):
        return None
    out = {"committed": None, "fsync": []}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == COMMITTED:
                out["committed"] = s.value
            elif s.name == FSYNC + "_bucket":
                out["fsync"].append((float(s.labels["le"]), s.value))
    out["fsync"].sort()
    return out


def p99_seconds(before: list[tuple[float, float]], after: list[tuple[float, float]]) -> float | None:
    """The upper bound of the histogram bucket holding the 99th percentile of the observations
    made between two scrapes (None if there were none): what Prometheus' histogram_quantile
    reports without its interpolation."""
    was = dict(before)
    delta = [(le, count - was.get(le, 0.0)) for le, count in after]
    total = delta[-1][1] if delta else 0.0
    if total <= 0:
        return None
    for le, cumulative in delta:
        if cumulative >= 0.99 * total:
            return le
    return math.inf


def sample(nodes: list[dict], scrapes: list[dict | None], previous: dict | None, now: float) -> dict:
    """One refresh: each node's row, with rates over the interval since `previous`."""
    rows = []
    for i, (node, metrics) in enumerate(zip(nodes, scrapes)):
        row = dict(node)
        committed, applied = node.get("committed_slot"), node.get("applied_slot")
        row["apply_lag"] = committed - applied if committed is not None and applied is not None else None
        row["proposals_per_s"] = row["fsync_p99_ms"] = None
        before = previous["scrapes"][i] if previous else None
        if metrics and before and metrics["committed"] is not None and before["committed"] is not None:
            dt = now - previous["time"]
            if dt > 0:
                row["proposals_per_s"] = round((metrics["committed"] - before["committed"]) / dt, 1)
            p99 = p99_seconds(before["fsync"], metrics["fsync"])
            row["fsync_p99_ms"] = None if p99 is None else (p99 * 1000 if p99 != math.inf else "inf")
        rows.append(row)
    return {"time": now, "scrapes": scrapes, "nodes": rows}


def _cell(v, fmt: str = "") -> str:
    if v is None:
        return "-"
    return format(v, fmt) if fmt and not isinstance(v, str) else str(v)


def render(data_dir, interval_s: float, snap: dict) -> str:
    lines = [f"verikv cluster {data_dir}   {time.strftime('%Y-%m-%d %H:%M:%S')}   "
             f"(every {interval_s:g} s; Ctrl-C to stop)",
             f"{'id':>2}  {'role':<11}  {'committed':>9}  {'applied':>9}  {'lag':>5}  {'revision':>9}  "
             f"{'proposals/s':>11}  {'fsync p99':>10}"]
    for r in snap["nodes"]:
        p99 = r["fsync_p99_ms"]
        p99_text = "-" if p99 is None else ("> top" if p99 == "inf" else f"<= {p99:g} ms")
        lines.append(f"{r['id']:>2}  {r['role']:<11}  {_cell(r['committed_slot']):>9}  {_cell(r['applied_slot']):>9}  "
                     f"{_cell(r['apply_lag']):>5}  {_cell(r['revision']):>9}  {_cell(r['proposals_per_s'], '.1f'):>11}  "
                     f"{p99_text:>10}")
    return "\n".join(lines)


def watch(data_dir, read_nodes, metrics_urls: list[str | None], interval_s: float, count: int | None,
          as_json: bool, out=sys.stdout) -> int:
    """Refresh every interval_s until Ctrl-C (or `count` refreshes): read_nodes() gives each
    node's status row; metrics_urls[i] is node i's /metrics (None: not served)."""
    previous = None
    n = 0
    try:
        while count is None or n < count:
            nodes = read_nodes()
            scrapes = [scrape(u) if u else None for u in metrics_urls]
            snap = sample(nodes, scrapes, previous, time.monotonic())
            if as_json:
                print(json.dumps({"nodes": snap["nodes"]}), file=out, flush=True)
            else:
                clear = "\033[H\033[2J" if out.isatty() else ""
                print(clear + render(data_dir, interval_s, snap), file=out, flush=True)
            previous, n = snap, n + 1
            if count is None or n < count:
                time.sleep(interval_s)
    except KeyboardInterrupt:
        pass
    return 0
