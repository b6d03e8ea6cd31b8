"""The operators' endpoint on a real node of a 3-node cluster: /metrics parses as Prometheus'
text format (with the client library's own parser) and says what the node knows, in etcd's
names; /health answers as etcd's does, 503 once the node has no leader."""

import asyncio
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from verikv.etcdpb import rpc_pb2 as r
from verikv.shim.api.metrics import MetricsServer, parse_metrics_url
from verikv.shim.api.servicer import build_server
from verikv.shim.kv.commands import Kind
from verikv.shim.node.peer_wire import DIGEST, KIND_DIGEST
from verikv.shim.kv.store import VERSION_OVERHEAD

import pytest
from test_node import leader_of, start_cluster, stop_node, submit, wait_for

CLIENT_PORT = 25420


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def samples(text):
    return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples
            if not s.labels or s.labels.get("le") == "+Inf"}


async def test_metrics_and_health_of_a_node(tmp_path):
    nodes = await start_cluster(tmp_path, 240)
    leader = leader_of(nodes)
    server = build_server(leader, f"127.0.0.1:{CLIENT_PORT}", [""] * 3, [""] * 3)
    await server.start()
    metrics = MetricsServer(server, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{metrics.port}"
    try:
        for i in range(3):
            await submit(leader, Kind.PUT, r.PutRequest(key=b"k%d" % i, value=b"v"))
        code, text = await asyncio.to_thread(get, base + "/metrics")
        assert code == 200
        m = samples(text)
        assert m["etcd_server_has_leader"] == 1 and m["etcd_server_is_leader"] == 1
        assert m["etcd_server_leader_changes_seen_total"] == 1
        assert m["etcd_server_proposals_applied_total"] >= 3 and m["etcd_server_proposals_committed_total"] >= 3
        assert m["etcd_server_proposals_pending"] == 0 and m["etcd_server_proposals_failed_total"] == 0
        assert m["etcd_disk_wal_fsync_duration_seconds_count"] == leader.wal.syncs > 0
        assert m["etcd_debugging_mvcc_current_revision"] == 4 and m["etcd_debugging_mvcc_keys_total"] == 3
        assert m["etcd_mvcc_db_total_size_in_bytes"] == leader.kv.db_size == 3 * (2 + 1 + VERSION_OVERHEAD)
        assert m["etcd_server_quota_backend_bytes"] == 2 * 1024 ** 3  # etcd's default
        leader.slow_turns += 1000  # the metric is the node's own count (a turn may be slow meanwhile)
        slow = samples((await asyncio.to_thread(get, base + "/metrics"))[1])["verikv_slow_turns_total"]
        assert 1000 <= slow <= leader.slow_turns
        assert m["verikv_snapshot_sent_bytes_total"] == 0 and m["verikv_snapshot_chunks_refused_total"] == 0
        transfers = {(s.labels["direction"], s.labels["outcome"]): s.value
                     for f in text_string_to_metric_families(text) for s in f.samples
                     if s.name == "verikv_snapshot_transfers_total"}
        assert transfers == {("sent", "completed"): 0, ("sent", "failed"): 0, ("received", "installed"): 0,
                             ("received", "refused"): 0}
        assert await asyncio.to_thread(get, base + "/health") == (200, '{"health":"true"}')  # etcd's bytes
        forged = DIGEST.pack(63, 2, b"d" * 8)  # a digest naming node 2, on node 1's connection
        leader.machine.frame(KIND_DIGEST, forged, 1 if leader.node_id != 1 else 0)
        refused = [s for f in text_string_to_metric_families((await asyncio.to_thread(get, base + "/metrics"))[1])
                   for s in f.samples if s.name == "verikv_peer_refused_total"]
        assert {s.labels["reason"]: s.value for s in refused}["FrameSenderIsConnectionMember"] == 1
        for n in nodes:
            if n is not leader:
                await stop_node(n)
        await asyncio.sleep(1.3)  # a leader no quorum heard from for a second has none
        assert await asyncio.to_thread(get, base + "/health") == (503, '{"health":"false"}')
        assert samples((await asyncio.to_thread(get, base + "/metrics"))[1])["etcd_server_has_leader"] == 0
        assert (await asyncio.to_thread(get, base + "/nothing"))[0] == 404
    finally:
        metrics.stop()
        await server.stop(None)
        for n in nodes:
            if not n._stopping:
                await stop_node(n)


def test_metrics_urls_are_checked():
    assert parse_metrics_url("http://127.0.0.1:2381") == ("127.0.0.1", 2381)
    for bad in ("127.0.0.1:2381", "https://127.0.0.1:2381", "http://127.0.0.1", "http://h:1/x"):
        with pytest.raises(ValueError, match="expected http://HOST:PORT"):
            parse_metrics_url(bad)


async def test_grpc_server_handled_counts_calls_by_method_and_code(tmp_path):
    import grpc
    from verikv.etcdpb import rpc_pb2_grpc as g

    nodes = await start_cluster(tmp_path, 3250)  # peers on 28550-28552
    leader = leader_of(nodes)
    server = build_server(leader, "127.0.0.1:28553", [""] * 3, [""] * 3)
    await server.start()
    metrics = MetricsServer(server, "127.0.0.1", 0)
    try:
        async with grpc.aio.insecure_channel("127.0.0.1:28553") as channel:
            kv = g.KVStub(channel)
            for i in range(3):
                await kv.Put(r.PutRequest(key=b"k%d" % i, value=b"v"))
            await kv.Range(r.RangeRequest(key=b"k0"))  # the plain-key path
            await kv.Range(r.RangeRequest(key=b"k", range_end=b"l"))
            with pytest.raises(grpc.aio.AioRpcError):
                await kv.Put(r.PutRequest(key=b"", value=b"v"))
            with pytest.raises(grpc.aio.AioRpcError):
                await kv.Range(r.RangeRequest(key=b"k", revision=99))
            with pytest.raises(grpc.aio.AioRpcError):
                await channel.unary_unary("/etcdserverpb.Nothing/Here")(b"")
            async for _ in g.MaintenanceStub(channel).Snapshot(r.SnapshotRequest()):
                pass
        await wait_for(lambda: len(leader.peer_rtt) == 2, timeout_s=5)  # sampled every second
        text = (await asyncio.to_thread(get, f"http://127.0.0.1:{metrics.port}/metrics"))[1]
        rtt = {(s.name, s.labels["To"]): s.value for f in text_string_to_metric_families(text)
               if f.name == "etcd_network_peer_round_trip_time_seconds" for s in f.samples
               if s.name != "etcd_network_peer_round_trip_time_seconds_bucket" or s.labels["le"] == "+Inf"}
        peers = sorted("%x" % (n.node_id + 1) for n in nodes if n is not leader)
        assert sorted({to for _, to in rtt}) == peers
        for to in peers:
            count = rtt[("etcd_network_peer_round_trip_time_seconds_count", to)]
            assert count >= 1 and rtt[("etcd_network_peer_round_trip_time_seconds_bucket", to)] == count
            assert 0 < rtt[("etcd_network_peer_round_trip_time_seconds_sum", to)] < 0.02 * count  # loopback: µs
        handled = {(s.labels["grpc_type"], s.labels["grpc_service"], s.labels["grpc_method"], s.labels["grpc_code"]):
                   s.value for f in text_string_to_metric_families(text) if f.name == "grpc_server_handled"
                   for s in f.samples}
        assert handled == {
            ("unary", "etcdserverpb.KV", "Put", "OK"): 3,
            ("unary", "etcdserverpb.KV", "Put", "InvalidArgument"): 1,
            ("unary", "etcdserverpb.KV", "Range", "OK"): 2,
            ("unary", "etcdserverpb.KV", "Range", "OutOfRange"): 1,
            ("server_stream", "etcdserverpb.Maintenance", "Snapshot", "OK"): 1,
        }
    finally:
        metrics.stop()
        await server.stop(None)
        for n in nodes:
            await stop_node(n)
