"""The hand-written varint against protobuf's own encoder, at every width and at the edges."""

from __future__ import annotations

from hypothesis import given, strategies as st

from verikv.etcdpb import rpc_pb2
from verikv.shim.kv.commands import KeptAlives
from verikv.shim.kv.protowire import varint, varint_field

EDGES = [1, 0x7F, 0x80, 0x3FFF, 0x4000, 0x1FFFFF, 0x200000, 2**31 - 1, 2**32, 2**56, 2**63 - 1,
         -1, -2, -0x80, -2**63]
INT64 = st.integers(min_value=-2**63, max_value=2**63 - 1)


def protobuf_int64(field: int, n: int) -> bytes:
    """What protobuf writes for int64 field 1 (TTL) or 2 (ID) of LeaseGrantRequest."""
    return rpc_pb2.LeaseGrantRequest(**{"TTL" if field == 1 else "ID": n}).SerializeToString()


def test_the_edges_of_each_width_as_protobuf_writes_them():
    for n in EDGES:
        assert varint_field(1, n) == protobuf_int64(1, n) == b"\x08" + varint(n), n
        assert varint_field(2, n) == protobuf_int64(2, n), n


@given(INT64)
def test_any_int64_as_protobuf_writes_it(n):
    assert varint_field(1, n) == protobuf_int64(1, n)
    assert rpc_pb2.LeaseGrantRequest.FromString(varint_field(2, n)).ID == n


def test_zero_is_no_field_and_a_lone_zero_byte():
    assert varint_field(1, 0) == b"" == protobuf_int64(1, 0)
    assert varint(0) == b"\x00"


@given(INT64, st.integers(min_value=0, max_value=2**62))
def test_a_keep_alive_answer_parses_as_etcds_message(lease_id, ttl):
    header = rpc_pb2.ResponseHeader(revision=7, raft_term=2).SerializeToString()
    encoded = KeptAlives(7, [ttl]).answer(b"\x0a" + varint(len(header)) + header, lease_id, ttl)
    resp = rpc_pb2.LeaseKeepAliveResponse.FromString(encoded)
    assert (resp.ID, resp.TTL, resp.header.revision, resp.header.raft_term) == (lease_id, ttl, 7, 2)
    assert encoded == rpc_pb2.LeaseKeepAliveResponse(
        header=rpc_pb2.ResponseHeader(revision=7, raft_term=2), ID=lease_id, TTL=ttl).SerializeToString()
