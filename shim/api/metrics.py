"""The operators' HTTP endpoint (etcd's `--listen-metrics-urls`): `/metrics` in Prometheus' text
format, with etcd's metric names where the meaning is the same, and `/health` as etcd 3.4
answers it (`{"health":"true"}`, or HTTP 503 with `{"health":"false"}` when the node has no
leader or a read through the leader does not succeed within a second).

It runs an HTTP server on a thread of its own. A scrape reads the node's counters (plain numbers
that the event loop updates: reading one from another thread is safe, and sees it as of some
moment); it never iterates the node's tables and never waits for the loop. `/health` hands the
loop a linearizable read and waits for its answer, as a client would.

This module must never change the node's state: it reads counters, and /health's read is an
ordinary client read.
"""

from __future__ import annotations

import asyncio
import http.server
import json
import threading
from urllib.parse import urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from verikv.etcdpb import rpc_pb2
from verikv.shim.kv.errors import EtcdError

HEALTH_TIMEOUT_S = 1.0  # etcd's

# gRPC's status codes as Go's codes.Code.String() names them (go-grpc-prometheus' grpc_code)
GRPC_CODE_NAMES = ["OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
                   "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
                   "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated"]
GRPC_TYPES = {"/etcdserverpb.Watch/Watch": "bidi_stream", "/etcdserverpb.Lease/LeaseKeepAlive": "bidi_stream",
              "/etcdserverpb.Maintenance/Snapshot": "server_stream"}  # the others are unary


def parse_metrics_url(url: str) -> tuple[str, int]:
    """HOST, PORT of an http:// URL from --listen-metrics-urls; ValueError with a message."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.port is None or parts.path not in ("", "/"):
        raise ValueError(f"--listen-metrics-urls {url!r}: expected http://HOST:PORT")
    return parts.hostname, parts.port


class NodeCollector:
    """The node's figures at each scrape (see the module's text)."""

    def __init__(self, server):
        self.server = server  # the ClientServer: its node, and whether the node has a leader

    def collect(self):
        server = self.server
        node = server.node
        machine = node.machine
        status = node.status
        yield GaugeMetricFamily("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.",
                                value=1 if server.has_leader() else 0)
        yield GaugeMetricFamily("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.",
                                value=1 if status.get("role") == "leader" else 0)
        yield CounterMetricFamily("etcd_server_leader_changes_seen", "The number of leader changes seen.",
                                  value=machine.leader_changes)
        yield GaugeMetricFamily("etcd_server_proposals_committed_total",
                                "The total number of consensus proposals committed.", value=status.get("commit_upto", 0))
        yield GaugeMetricFamily("etcd_server_proposals_applied_total",
                                "The total number of consensus proposals applied.", value=machine.kv.next_slot)
        yield GaugeMetricFamily("etcd_server_proposals_pending", "The current number of pending proposals to commit.",
                                value=len(machine.proposals.waiting))
        yield CounterMetricFamily("etcd_server_proposals_failed", "The total number of failed proposals seen.",
                                  value=machine.proposals.failed)
        wal = node.wal
        if wal is not None:
            counts, cumulative, buckets = wal.sync_counts, 0, []
            for bound, count in zip(wal.SYNC_BUCKETS_S, counts):
                cumulative += count
                buckets.append((repr(bound), cumulative))
            buckets.append(("+Inf", cumulative + counts[-1]))
            yield HistogramMetricFamily("etcd_disk_wal_fsync_duration_seconds",
                                        "The latency distributions of fsync called by WAL.",
                                        buckets=buckets, sum_value=wal.sync_seconds)
        rtt = HistogramMetricFamily("etcd_network_peer_round_trip_time_seconds",
                                    "Round-Trip-Time histogram between peers (verikv: the kernel's smoothed RTT "
                                    "of the connection to the peer, sampled every second)", labels=["To"])
        for peer, hist in sorted(getattr(node, "peer_rtt", {}).copy().items()):
            counts, cumulative, buckets = list(hist.counts), 0, []
            for bound, count in zip(hist.BUCKETS_S, counts):
                cumulative += count
                buckets.append((repr(bound), cumulative))
            buckets.append(("+Inf", cumulative + counts[-1]))
            rtt.add_metric(["%x" % (peer + 1)], buckets, hist.sum_s)  # etcd labels a peer by its hex ID
        yield rtt
        kv = machine.kv
        yield GaugeMetricFamily("etcd_debugging_mvcc_current_revision", "The current revision of store.",
                                value=kv.revision)
        yield GaugeMetricFamily("etcd_debugging_mvcc_compact_revision",
                                "The revision of the last compaction in store.", value=max(kv.compact_revision, 0))
        yield GaugeMetricFamily("etcd_debugging_mvcc_keys_total", "Total number of keys.", value=kv.key_count)
        yield GaugeMetricFamily("etcd_mvcc_db_total_size_in_bytes",
                                "Total size of the underlying database physically allocated in bytes "
                                "(verikv: its store's size, as Status' dbSize).", value=kv.db_size)
        yield GaugeMetricFamily("etcd_mvcc_db_total_size_in_use_in_bytes",
                                "Total size of the underlying database logically in use in bytes.", value=kv.db_size)
        yield GaugeMetricFamily("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.",
                                value=max(machine.config.quota_backend_bytes, 0))
        handled = CounterMetricFamily("grpc_server_handled", "Total number of RPCs completed on the server, "
                                      "regardless of success or failure.",
                                      labels=["grpc_type", "grpc_service", "grpc_method", "grpc_code"])
        for (method, code), count in sorted(server.handled.copy().items()):
            service, _, name = method.lstrip("/").partition("/")
            handled.add_metric([GRPC_TYPES.get(method, "unary"), service, name,
                                GRPC_CODE_NAMES[code] if code < len(GRPC_CODE_NAMES) else str(code)], count)
        yield handled
        yield GaugeMetricFamily("verikv_leases", "Leases granted and not yet revoked or expired.",
                                value=len(kv.leases.leases))
        yield GaugeMetricFamily("verikv_watch_streams", "Open Watch streams on this node.",
                                value=len(server.watches.streams))
        yield CounterMetricFamily("verikv_slow_turns", "Turns of the node's loop that took longer than 100 ms "
                                  "(heartbeats and answers wait for them; the node's log says where the time went).",
                                  value=getattr(node, "slow_turns", 0))
        yield GaugeMetricFamily("verikv_runtime_checks_enabled",
                                "Whether the node checks the core's assumptions at run time (a failed check stops it).",
                                value=1 if machine.checks.enabled else 0)
        sender, receiver = machine.snapshot_sender, machine.snapshot_receiver
        transfers = CounterMetricFamily("verikv_snapshot_transfers",
                                        "Snapshots streamed to lagging peers (sent: completed or failed, i.e. "
                                        "refused or given up) and from them (received: installed; refused: a "
                                        "digest mismatch, unparsable, or over the bound).", labels=["direction", "outcome"])
        transfers.add_metric(["sent", "completed"], sender.completed)
        transfers.add_metric(["sent", "failed"], sender.failed)
        transfers.add_metric(["received", "installed"], machine.peer_snapshots_installed)
        transfers.add_metric(["received", "refused"], receiver.refused_transfers)
        yield transfers
        yield CounterMetricFamily("verikv_snapshot_sent_bytes", "Bytes of snapshot chunks sent to peers (sent again "
                                  "after a loss included).", value=sender.sent_bytes)
        yield CounterMetricFamily("verikv_snapshot_chunks_refused", "Snapshot chunks from peers refused as damaged "
                                  "(CRC-32 mismatch) and asked for again.", value=receiver.refused_chunks)
        yield CounterMetricFamily("verikv_client_connections_refused",
                                  "Client connections refused because their address had --max-connections-per-client "
                                  "open (each call on one answered RESOURCE_EXHAUSTED, then it was closed).",
                                  value=server.refused_connections)
        refused = CounterMetricFamily("verikv_peer_refused",
                                      "Peer connections and frames refused for who sent them, by reason "
                                      "(FrameSenderIsConnectionMember: a frame naming another sender than the "
                                      "member its connection authenticated).", labels=["reason"])
        reasons = dict(getattr(node.transport, "refused", {}))
        reasons["FrameSenderIsConnectionMember"] = machine.checks.counts["FrameSenderIsConnectionMember"]
        for reason, count in sorted(reasons.items()):
            refused.add_metric([reason], count)
        yield refused


class MetricsServer:
    """/metrics and /health on HOST:PORT, on a thread (see the module's text)."""

    def __init__(self, server, host: str, port: int):
        self.server = server
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(NodeCollector(server))
        self.loop = asyncio.get_running_loop()
        handler = self._handler()
        self.httpd = http.server.ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="verikv-metrics", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def healthy(self) -> bool:
        """etcd's checkHealth: a leader, and a read through it within HEALTH_TIMEOUT_S."""
        if not self.server.has_leader():
            return False
        answered, box = threading.Event(), []

        def done(answer) -> None:
            box.append(answer)
            answered.set()

        try:
            self.loop.call_soon_threadsafe(self.server.node.read, rpc_pb2.RangeRequest(key=b"health"), False, done)
        except RuntimeError:  # the loop is closed: the node is stopping
            return False
        return answered.wait(HEALTH_TIMEOUT_S) and not isinstance(box[0], EtcdError)

    def _handler(self):
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                path = urlsplit(self.path).path
                if path == "/metrics":
                    self._reply(200, CONTENT_TYPE_LATEST, generate_latest(owner.registry))
                elif path == "/health":
                    ok = owner.healthy()
                    self._reply(200 if ok else 503, "application/json",
                                json.dumps({"health": "true" if ok else "false"}, separators=(",", ":")).encode())
                else:
                    self._reply(404, "text/plain", b"verikv: serves /metrics and /health\n")

            def _reply(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # scrapes are not news
                pass

        return Handler
