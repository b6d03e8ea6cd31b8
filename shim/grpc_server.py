"""etcd v3 gRPC API (KV, Maintenance.Status, Cluster.MemberList) over a node, with grpc.aio.

Writes and linearizable reads go through `node.submit` / `node.read` (see node.py for how a
follower's requests reach the leader); serializable reads are answered from the local state. Every
failure is an etcd-style gRPC status; any method verikv does not serve (Watch, Lease, Auth,
Compact, historical revisions, ...) is UNIMPLEMENTED with a message saying so.

This module must never change the KV state itself nor talk to the core: it only translates.
"""

from __future__ import annotations

import logging

import grpc

from verikv.etcdpb import rpc_pb2, rpc_pb2_grpc
from verikv.shim import errors
from verikv.shim.errors import EtcdError
from verikv.shim.requests import GRPC_OVERHEAD_BYTES, MAX_REQUEST_BYTES, Kind

log = logging.getLogger("verikv.grpc")
SERVER_VERSION = "3.4.0-verikv"  # etcdctl reads the major.minor of this


class NodeApi:
    """What the servicer needs from a node (node.Node provides it)."""

    node_id: int
    cluster_size: int
    status: dict
    kv: object

    async def submit(self, kind: Kind, request): ...
    async def read(self, request, serializable: bool): ...
    def header_fields(self) -> dict: ...


def _fill_header(node, resp) -> None:
    h = node.header_fields()
    resp.header.cluster_id = h["cluster_id"]
    resp.header.member_id = h["member_id"]
    resp.header.raft_term = h["raft_term"]


async def _call(node, context, coro):
    try:
        resp = await coro
    except EtcdError as err:
        await context.abort(err.code, err.message)
    _fill_header(node, resp)
    return resp


class KVServicer(rpc_pb2_grpc.KVServicer):
    def __init__(self, node):
        self.node = node

    async def Range(self, request, context):
        return await _call(self.node, context, self.node.read(request, request.serializable))

    async def Put(self, request, context):
        return await _call(self.node, context, self.node.submit(Kind.PUT, request))

    async def DeleteRange(self, request, context):
        return await _call(self.node, context, self.node.submit(Kind.DELETE_RANGE, request))

    async def Txn(self, request, context):
        return await _call(self.node, context, self.node.submit(Kind.TXN, request))

    async def Compact(self, request, context):
        await context.abort(errors.COMPACT_UNSUPPORTED.code, errors.COMPACT_UNSUPPORTED.message)


class MaintenanceServicer(rpc_pb2_grpc.MaintenanceServicer):
    def __init__(self, node):
        self.node = node

    async def Status(self, request, context):
        st = self.node.status
        leader = st.get("leader")
        resp = rpc_pb2.StatusResponse(
            version=SERVER_VERSION, leader=0 if leader is None else leader + 1,
            raftIndex=st.get("commit_upto", 0), raftAppliedIndex=self.node.kv.next_slot,
            raftTerm=self.node.header_fields()["raft_term"])
        resp.header.revision = self.node.kv.revision
        if leader is None:
            resp.errors.append("etcdserver: no leader")
        _fill_header(self.node, resp)
        return resp


class ClusterServicer(rpc_pb2_grpc.ClusterServicer):
    def __init__(self, node, client_urls: list[str], peer_urls: list[str]):
        self.node = node
        self.client_urls = client_urls
        self.peer_urls = peer_urls

    async def MemberList(self, request, context):
        resp = rpc_pb2.MemberListResponse()
        for i in range(self.node.cluster_size):
            resp.members.add(ID=i + 1, name=f"node{i}", peerURLs=[self.peer_urls[i]],
                             clientURLs=[self.client_urls[i]])
        _fill_header(self.node, resp)
        return resp


class _Unimplemented(grpc.GenericRpcHandler):
    """Answers every method no servicer registered (Watch, Lease, Auth, unknown services)."""

    def service(self, handler_call_details):
        err = errors.unsupported_method(handler_call_details.method)

        async def abort(request_iterator, context):
            await context.abort(err.code, err.message)
            yield  # pragma: no cover - makes this an async generator

        return grpc.stream_stream_rpc_method_handler(abort)


def build_server(node, listen: str, client_urls: list[str], peer_urls: list[str]) -> grpc.aio.Server:
    """A grpc.aio server bound to `listen` (host:port), not yet started."""
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", MAX_REQUEST_BYTES + GRPC_OVERHEAD_BYTES),
        ("grpc.max_send_message_length", 2**31 - 1),
        ("grpc.so_reuseport", 0),
    ])
    rpc_pb2_grpc.add_KVServicer_to_server(KVServicer(node), server)
    rpc_pb2_grpc.add_MaintenanceServicer_to_server(MaintenanceServicer(node), server)
    rpc_pb2_grpc.add_ClusterServicer_to_server(ClusterServicer(node, client_urls, peer_urls), server)
    server.add_generic_rpc_handlers((_Unimplemented(),))
    if server.add_insecure_port(listen) == 0:
        raise OSError(f"cannot listen for clients on {listen}")
    return server
