"""The node's answers as a client decodes them."""

from __future__ import annotations

from verikv.etcdpb import rpc_pb2
from verikv.shim.kv.store import EncodedRange


def decoded(answer):
    """An EncodedRange (a Range answered from cached bytes) as the RangeResponse a client
    decodes, header revision included; any other answer as it is."""
    if type(answer) is not EncodedRange:
        return answer
    resp = rpc_pb2.RangeResponse.FromString(answer.body)
    resp.header.revision = answer.header_revision
    return resp
