"""The bench's load generator against a gRPC server that counts what reaches it: the mixed load
alternates puts and linearizable gets, half of the calls each, the large-value load sends
16 KiB values, and what it wrote is deleted and compacted away after it (a refusal of that ends
the bench with its message, not a traceback) (port 26790)."""

from concurrent import futures

import grpc
import pytest

from verikv.cluster import bench
from verikv.etcdpb import rpc_pb2

PORT = 26790


def _server(seen: list, refuse: str = ""):
    def handler(kind, parse, answer):
        def call(body, context):
            seen.append((kind, parse(body)))
            if kind == refuse:
                context.abort(grpc.StatusCode.UNAVAILABLE, "etcdserver: request timed out")
            return answer
        return grpc.unary_unary_rpc_method_handler(call, request_deserializer=lambda b: b,
                                                   response_serializer=lambda r: r)

    put = handler("put", rpc_pb2.PutRequest.FromString, rpc_pb2.PutResponse().SerializeToString())
    get = handler("get", rpc_pb2.RangeRequest.FromString, rpc_pb2.RangeResponse().SerializeToString())
    deleted = rpc_pb2.DeleteRangeResponse(deleted=3)
    deleted.header.revision = 77
    delete = handler("delete", rpc_pb2.DeleteRangeRequest.FromString, deleted.SerializeToString())
    compact = handler("compact", rpc_pb2.CompactionRequest.FromString, rpc_pb2.CompactionResponse().SerializeToString())
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "etcdserverpb.KV", {"Put": put, "Range": get, "DeleteRange": delete, "Compact": compact})])
    server.add_insecure_port(f"127.0.0.1:{PORT}")
    server.start()
    return server


def test_mixed_load_alternates_puts_and_gets_of_the_same_keys():
    seen: list = []
    server = _server(seen)
    try:
        r = bench.run_load([f"127.0.0.1:{PORT}"], "mixed", 1, 8, 0.5)
    finally:
        server.stop(None)
    assert r["errors"] == 0 and r["ops"] == len(seen) > 20
    puts = [m for kind, m in seen if kind == "put"]
    gets = [m for kind, m in seen if kind == "get"]
    assert abs(len(puts) - len(gets)) <= 8  # each of the 8 lanes alternates
    assert all(len(m.value) == bench.VALUE_BYTES for m in puts)
    assert {m.key for m in gets} <= {b"bench/%d" % k for k in range(1000)}
    assert {m.key for m in gets} & {m.key for m in puts}  # the same keys
    assert all(not m.serializable for m in gets)  # linearizable


def test_big_put_load_sends_16_kib_values_under_keys_of_their_own():
    seen: list = []
    server = _server(seen)
    try:
        r = bench.run_load([f"127.0.0.1:{PORT}"], bench.BIG_PUT, 1, 4, 0.3)
    finally:
        server.stop(None)
    assert r["errors"] == 0 and r["ops"] == len(seen) > 0
    assert all(kind == "put" and len(m.value) == 16 * 1024 and m.key.startswith(b"bench-big/") for kind, m in seen)


def test_after_the_big_put_load_its_keys_are_deleted_and_the_store_compacted():
    seen: list = []
    server = _server(seen)
    try:
        bench.forget_big_values(f"127.0.0.1:{PORT}")
    finally:
        server.stop(None)
    (k1, delete), (k2, compact) = seen
    assert (k1, delete.key, delete.range_end) == ("delete", b"bench-big/", b"bench-big0")
    assert k2 == "compact" and compact.revision == 77 and compact.physical  # the revision of the delete


def test_a_refused_clean_up_is_the_benchs_error_not_a_traceback():
    seen: list = []
    server = _server(seen, refuse="compact")
    try:
        with pytest.raises(bench.BenchError) as err:
            bench.forget_big_values(f"127.0.0.1:{PORT}")
    finally:
        server.stop(None)
    assert str(err.value) == (f"compacting at revision 77 at 127.0.0.1:{PORT}: "
                              "UNAVAILABLE: etcdserver: request timed out")


def test_the_bench_waits_for_a_quiet_disk_and_no_longer(monkeypatch, tmp_path):
    # after the 16 KiB load: busy half seconds (2 MiB each), then quiet ones (4 KiB)
    counts = iter([0] + [2 << 20] * 4 + [4096] * 10)
    total = [0]

    def device_bytes(path):
        total[0] += next(counts)
        return total[0]
    monkeypatch.setattr(bench, "_device_bytes", device_bytes)
    now = [0.0]  # a clock that only sleeping moves

    def sleep(s):
        now[0] += s
    monkeypatch.setattr(bench.time, "sleep", sleep)
    monkeypatch.setattr(bench.time, "monotonic", lambda: now[0])
    assert bench.wait_for_quiet_disk(tmp_path) == 3.0  # four busy samples, then two quiet ones
    # a disk that never quiets: at most `most_s`
    monkeypatch.setattr(bench, "_device_bytes", lambda path, n=iter(range(0, 10**12, 2 << 20)): next(n))
    now[0] = 100.0
    assert bench.wait_for_quiet_disk(tmp_path, most_s=5.0) == 5.0
    # no counters to read: no wait
    monkeypatch.setattr(bench, "_device_bytes", lambda path: None)
    assert bench.wait_for_quiet_disk(tmp_path) is None


def test_every_system_takes_every_place_in_a_loads_turns():
    """The order the systems run a load in rotates from turn to turn: with two, one first then
    the other, as before; with three (`--no-runtime-checks`), no system is always in the middle."""
    assert [bench.turn_order(["verikv", "etcd"], k) for k in range(3)] == [
        ["verikv", "etcd"], ["etcd", "verikv"], ["verikv", "etcd"]]
    three = [bench.turn_order({"verikv": [], "unchecked": [], "etcd": []}, k) for k in range(3)]
    assert three == [["verikv", "unchecked", "etcd"], ["unchecked", "etcd", "verikv"], ["etcd", "verikv", "unchecked"]]
    assert all(sorted(column) == ["etcd", "unchecked", "verikv"] for column in zip(*three))
