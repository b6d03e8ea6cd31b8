"""Hostile input on every port of a real 3-node cluster: property-based fuzzing (hypothesis) of
the client API and of the peer wire. Whatever arrives, no node stops, every client call gets a
gRPC status with a message (never a hang, never UNKNOWN), a refused request changes nothing, a
peer's bad frame is logged and dropped, and afterwards the cluster serves with every
acknowledged write in place and the three nodes' stores identical.

Each test prints how many cases it ran (`pytest -s` shows them)."""

from __future__ import annotations

import random
import socket
import struct
import time

import grpc
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from google.protobuf import descriptor, symbol_database

from verikv.etcdpb import rpc_pb2
from verikv.shim.io.transport import KIND_HELLO, encode_frame
from verikv.shim.node.peer_wire import MAX_FRAME_BYTES, NODE_KINDS
from verikv.shim.kv.commands import MAX_REQUEST_BYTES

from integration_helpers import Cluster, ports_free

pytestmark = pytest.mark.slow

BASE_PORT = 27800  # make_cluster's slot 40: clients 27800-27802, peers 27810-27812

# The unary methods of etcd's API, with their request types; and names no server serves.
UNARY = {
    "/etcdserverpb.KV/Range": rpc_pb2.RangeRequest,
    "/etcdserverpb.KV/Put": rpc_pb2.PutRequest,
    "/etcdserverpb.KV/DeleteRange": rpc_pb2.DeleteRangeRequest,
    "/etcdserverpb.KV/Txn": rpc_pb2.TxnRequest,
    "/etcdserverpb.KV/Compact": rpc_pb2.CompactionRequest,
    "/etcdserverpb.Lease/LeaseGrant": rpc_pb2.LeaseGrantRequest,
    "/etcdserverpb.Lease/LeaseRevoke": rpc_pb2.LeaseRevokeRequest,
    "/etcdserverpb.Lease/LeaseTimeToLive": rpc_pb2.LeaseTimeToLiveRequest,
    "/etcdserverpb.Lease/LeaseLeases": rpc_pb2.LeaseLeasesRequest,
    "/etcdserverpb.Maintenance/Status": rpc_pb2.StatusRequest,
    "/etcdserverpb.Maintenance/Alarm": rpc_pb2.AlarmRequest,
    "/etcdserverpb.Maintenance/Hash": rpc_pb2.HashRequest,
    "/etcdserverpb.Maintenance/HashKV": rpc_pb2.HashKVRequest,
    "/etcdserverpb.Maintenance/Defragment": rpc_pb2.DefragmentRequest,
    "/etcdserverpb.Cluster/MemberList": rpc_pb2.MemberListRequest,
    **{f"/etcdserverpb.Auth/{name}": getattr(rpc_pb2, request) for name, request in [
        ("AuthEnable", "AuthEnableRequest"), ("AuthDisable", "AuthDisableRequest"),
        ("Authenticate", "AuthenticateRequest"), ("UserAdd", "AuthUserAddRequest"),
        ("UserGet", "AuthUserGetRequest"), ("UserList", "AuthUserListRequest"),
        ("UserDelete", "AuthUserDeleteRequest"), ("UserChangePassword", "AuthUserChangePasswordRequest"),
        ("UserGrantRole", "AuthUserGrantRoleRequest"), ("UserRevokeRole", "AuthUserRevokeRoleRequest"),
        ("RoleAdd", "AuthRoleAddRequest"), ("RoleGet", "AuthRoleGetRequest"), ("RoleList", "AuthRoleListRequest"),
        ("RoleDelete", "AuthRoleDeleteRequest"), ("RoleGrantPermission", "AuthRoleGrantPermissionRequest"),
        ("RoleRevokePermission", "AuthRoleRevokePermissionRequest")]},
}
UNKNOWN_METHODS = ["/etcdserverpb.KV/Nope", "/nothing/at/all", "/etcdserverpb.Cluster/MemberAdd"]
# Statuses that mean the server failed rather than answered: never acceptable.
NOT_AN_ANSWER = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED}

counts: dict[str, int] = {}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not ports_free(BASE_PORT):
        pytest.fail(f"ports {BASE_PORT}..{BASE_PORT + 12} are in use")
    c = Cluster(tmp_path_factory.mktemp("hostile") / "cluster", BASE_PORT)
    try:
        c.up()
        c.wait_leader()
        yield c
    finally:
        c.down()


# ---- requests: valid messages with extreme fields, truncated, random and oversized bytes ----

_INTS = {
    descriptor.FieldDescriptor.TYPE_INT64: (-2**63, 2**63 - 1),
    descriptor.FieldDescriptor.TYPE_SINT64: (-2**63, 2**63 - 1),
    descriptor.FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    descriptor.FieldDescriptor.TYPE_INT32: (-2**31, 2**31 - 1),
    descriptor.FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
}


def _scalar(field: descriptor.FieldDescriptor):
    if field.type in _INTS:
        lo, hi = _INTS[field.type]
        return st.sampled_from([0, 1, -1 if lo < 0 else 2, lo, hi]) | st.integers(lo, hi)
    if field.type == descriptor.FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type == descriptor.FieldDescriptor.TYPE_ENUM:
        return st.integers(-3, 12)  # proto3 keeps unknown enum values
    if field.type == descriptor.FieldDescriptor.TYPE_BYTES:
        return st.sampled_from([b"", b"\0", b"\xff" * 3, b"k"]) | st.binary(max_size=24)
    if field.type == descriptor.FieldDescriptor.TYPE_STRING:
        return st.text(max_size=8)
    raise AssertionError(f"no strategy for field {field.full_name}")


def _class(desc):
    return symbol_database.Default().GetSymbol(desc.full_name)


def messages(cls, depth: int = 0):
    """Messages of type cls with every field drawn from extreme and random values (nested
    messages, such as a txn's operations and their nested txns, down to depth 3)."""
    fields = {}
    for f in cls.DESCRIPTOR.fields:
        if f.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
            if depth >= 3:
                continue
            inner = st.deferred(lambda f=f: messages(_class(f.message_type), depth + 1))
            fields[f.name] = st.lists(inner, max_size=3) if f.label == f.LABEL_REPEATED else inner
        else:
            fields[f.name] = st.lists(_scalar(f), max_size=3) if f.label == f.LABEL_REPEATED else _scalar(f)

    @st.composite
    def build(draw):
        msg = cls()
        for name in draw(st.lists(st.sampled_from(sorted(fields)), unique=True)) if fields else []:
            value = draw(fields[name])
            field = cls.DESCRIPTOR.fields_by_name[name]
            try:
                if field.label == field.LABEL_REPEATED:
                    getattr(msg, name).extend(value)
                elif field.type == descriptor.FieldDescriptor.TYPE_MESSAGE:
                    getattr(msg, name).CopyFrom(value)
                else:
                    setattr(msg, name, value)
            except ValueError:  # a oneof member set twice, or an enum value the runtime refuses
                pass
        return msg

    return build()


def bodies(cls):
    valid = messages(cls).map(lambda m: m.SerializeToString())
    return st.one_of(
        valid,
        valid.flatmap(lambda b: st.integers(0, max(0, len(b) - 1)).map(lambda n: b[:n])),  # truncated
        st.binary(max_size=64),  # random bytes
        st.sampled_from([MAX_REQUEST_BYTES + 1, 2 * 1024 * 1024 + 64]).map(  # oversized
            lambda n: b"\x0a" + _varint(n) + b"x" * n),
    )


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def call(channel: grpc.Channel, method: str, body: bytes):
    """(status code, details, response bytes)."""
    rpc = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
    try:
        return grpc.StatusCode.OK, "", rpc(body, timeout=15)
    except grpc.RpcError as err:
        return err.code(), err.details() or "", b""


def revision(channel: grpc.Channel) -> int:
    code, details, out = call(channel, "/etcdserverpb.KV/Range",
                              rpc_pb2.RangeRequest(key=b"\0", serializable=True, count_only=True).SerializeToString())
    assert code == grpc.StatusCode.OK, (code, details)
    return rpc_pb2.RangeResponse.FromString(out).header.revision


def hashes_agree(cluster: Cluster) -> None:
    """Every node has applied the same writes: the same revision and the same HashKV at it."""
    cluster.put_retrying(b"hostile/barrier", b"x")
    deadline = time.monotonic() + 30
    while True:
        seen = []
        for ep in cluster.endpoints:
            with grpc.insecure_channel(ep) as ch:
                rev = revision(ch)
                code, details, out = call(ch, "/etcdserverpb.Maintenance/HashKV",
                                          rpc_pb2.HashKVRequest(revision=rev).SerializeToString())
                assert code == grpc.StatusCode.OK, (code, details)
                seen.append((rev, rpc_pb2.HashKVResponse.FromString(out).hash))
        if len(set(seen)) == 1:
            return
        assert time.monotonic() < deadline, f"the nodes' stores differ: {seen}"
        time.sleep(0.3)


def all_running(cluster: Cluster) -> None:
    nodes = cluster.status()
    assert all(n["role"] != "stopped" for n in nodes), nodes


def disarm_all(cluster: Cluster) -> None:
    with grpc.insecure_channel(cluster.endpoints[0]) as ch:
        code, details, out = call(ch, "/etcdserverpb.Maintenance/Alarm",
                                  rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET).SerializeToString())
        assert code == grpc.StatusCode.OK, (code, details)
        for a in rpc_pb2.AlarmResponse.FromString(out).alarms:
            code, details, _ = call(ch, "/etcdserverpb.Maintenance/Alarm", rpc_pb2.AlarmRequest(
                action=rpc_pb2.AlarmRequest.DEACTIVATE, memberID=a.memberID, alarm=a.alarm).SerializeToString())
            assert code == grpc.StatusCode.OK, (code, details)


# ---- the client API ----

def test_hostile_client_requests_get_a_status_and_refused_ones_change_nothing(cluster):
    channels = [grpc.insecure_channel(ep, options=[("grpc.max_send_message_length", 8 << 20)])
                for ep in cluster.endpoints]
    outcomes: dict[str, int] = {}

    @settings(max_examples=2000, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(node=st.integers(0, 2), data=st.data())
    def one(node, data):
        method = data.draw(st.sampled_from(sorted(UNARY) + UNKNOWN_METHODS))
        body = data.draw(bodies(UNARY.get(method, rpc_pb2.RangeRequest)))
        ch = channels[node]
        before = revision(ch)
        code, details, _ = call(ch, method, body)
        outcomes[code.name] = outcomes.get(code.name, 0) + 1
        assert code not in NOT_AN_ANSWER, (method, body[:80], code, details)
        if code != grpc.StatusCode.OK:
            assert details, (method, body[:80], code)
            if method != "/etcdserverpb.Maintenance/Alarm" or code != grpc.StatusCode.RESOURCE_EXHAUSTED:
                assert revision(ch) == before, (method, body[:80], code, details)

    try:
        one()
        counts["client requests"] = sum(outcomes.values())
        print(f"\nhostile client requests: {sum(outcomes.values())} cases, outcomes {sorted(outcomes.items())}")
        assert sum(outcomes.values()) >= 2000
        assert outcomes.get("INVALID_ARGUMENT", 0) > 0 and outcomes.get("OK", 0) > 0
    finally:
        for ch in channels:
            ch.close()
    disarm_all(cluster)  # the fuzz may have raised NOSPACE: an alarm is a request like the others
    all_running(cluster)
    hashes_agree(cluster)  # (its requests may delete any key: the peer test checks acknowledged writes)
    for i in range(3):
        key = b"hostile/after/%d" % i
        cluster.put_retrying(key, b"v")
        assert [kv.value for kv in cluster.range_all(i, serializable=False, key=key, range_end=b"").kvs] == [b"v"]


# ---- the peer wire ----

def _frames():
    """Byte strings a hostile process sends to a peer port: garbage, frames with bad lengths, frames
    before a HELLO, HELLOs for no member, and a HELLO for a member followed by malformed payloads
    of every kind (random bytes, so that no core message, snapshot or batch decodes)."""
    garbage = st.binary(min_size=1, max_size=200)
    bad_length = st.sampled_from([0, MAX_FRAME_BYTES + 1, 2**32 - 1]).map(
        lambda n: struct.pack("<IB", n, 0) + b"\0" * 8)
    before_hello = st.tuples(st.sampled_from(NODE_KINDS), st.binary(max_size=64)).map(lambda kp: encode_frame(*kp))
    no_member = st.sampled_from([3, 7, 2**32 - 1]).map(lambda n: encode_frame(KIND_HELLO, struct.pack("<I", n)))
    short_hello = st.binary(max_size=3).map(lambda p: encode_frame(KIND_HELLO, p))
    # not the lengths of the fixed-size payloads (CAMPAIGN, READ_REPLY, DIGEST, SNAPSHOT_ACK, READ_ASK): those
    # decode whatever their bytes, and would be a member's word, not malformed input
    payload = st.binary(min_size=0, max_size=300).filter(lambda p: len(p) not in (4, 16, 20, 21, 28))
    as_member = st.tuples(st.integers(0, 2), st.lists(st.tuples(st.sampled_from(NODE_KINDS + (9, 200)), payload),
                                                       min_size=1, max_size=6)).map(
        lambda t: encode_frame(KIND_HELLO, struct.pack("<I", t[0])) + b"".join(encode_frame(k, p) for k, p in t[1]))
    return st.one_of(garbage, bad_length, before_hello, no_member, short_hello, as_member)


def test_hostile_peer_frames_are_dropped_and_logged_and_the_cluster_keeps_serving(cluster):
    peers = [BASE_PORT + 10 + i for i in range(3)]
    cases = []
    acked = {}

    @settings(max_examples=1000, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(target=st.integers(0, 2), data=_frames())
    def one(target, data):
        with socket.create_connection(("127.0.0.1", peers[target]), timeout=5) as s:
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                s.settimeout(2)
                while s.recv(65536):
                    pass
            except (ConnectionError, socket.timeout):
                pass  # the node closed it, or kept it open: both fine
        cases.append(len(data))
        if len(cases) % 50 == 0:  # writes keep being acknowledged meanwhile
            key = b"hostile/peer/%d" % len(cases)
            cluster.put_retrying(key, b"x")
            acked[key] = b"x"

    one()
    print(f"\nhostile peer connections: {len(cases)} cases, {sum(cases)} bytes")
    counts["peer connections"] = len(cases)
    assert len(cases) >= 1000
    all_running(cluster)
    for key, value in acked.items():
        got = cluster.range_all(random.randrange(3), serializable=False, key=key, range_end=b"")
        assert [kv.value for kv in got.kvs] == [value], key
    hashes_agree(cluster)
    logs = "".join(cluster.log(i) for i in range(3))
    for line in ("closing connection from", "refused peer connection from", "dropped a malformed peer message"):
        assert line in logs, f"no node logged {line!r}"
