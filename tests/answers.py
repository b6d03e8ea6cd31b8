"""The node's answers as a client decodes them, and requests of any kind run on a store."""

from __future__ import annotations

from verikv.etcdpb import rpc_pb2
from verikv.shim.kv.commands import REQUEST_TYPES
from verikv.shim.kv.store import EncodedRange

KIND_OF = {request_type: kind for kind, request_type in REQUEST_TYPES.items()}


def decoded(answer):
    """An EncodedRange (a Range answered from cached bytes) as the RangeResponse a client
    decodes, header revision included; any other answer as it is."""
    if type(answer) is not EncodedRange:
        return answer
    resp = rpc_pb2.RangeResponse.FromString(answer.body)
    resp.header.revision = answer.header_revision
    return resp


def execute(store, request):
    """`request` (a RangeRequest, PutRequest, ... CompactionRequest) run on the store as the log
    runs it: its response, or the EtcdError it fails with."""
    return store.execute(KIND_OF[type(request)], request)
