"""etcd v3 gRPC API (KV, Maintenance.Status, Cluster.MemberList) over a node.

Writes go through `node.submit_future`, reads through `node.read_then` (see node.py
for how a follower's requests reach the leader); serializable reads are answered from the local
state. Every failure is an etcd-style gRPC status; any method verikv does not serve (Watch,
Lease, Auth, Compact, historical revisions, ...) is UNIMPLEMENTED with a message saying so.

This module must never change the KV state itself nor talk to the core: it only translates.
"""

from __future__ import annotations

import asyncio
import functools
import logging

import grpc
from google.protobuf.message import DecodeError

from verikv.etcdpb import rpc_pb2
from verikv.shim.api import _front
from verikv.shim.kv import errors
from verikv.shim.kv.errors import EtcdError
from verikv.shim.kv.store import EncodedRange, encode_header
from verikv.shim.kv.commands import GRPC_OVERHEAD_BYTES, MAX_REQUEST_BYTES, Kind

log = logging.getLogger("verikv.grpc")
SERVER_VERSION = "3.4.0-verikv"  # etcdctl reads the major.minor of this
RANGE = "/etcdserverpb.KV/Range"


class ClientServer:
    """The etcd v3 API on `listen`, served by the grpc++ front (shim/api/front/front.cpp).

    The front's thread accepts calls and reads their requests; the event loop takes them in
    batches (one wake-up per batch), parses each, starts it on the node and finishes the call
    when the node's future resolves. `start()` and `stop(grace)` match grpc.aio.Server's."""

    def __init__(self, node, listen: str, client_urls: list[str], peer_urls: list[str]):
        self.node = node
        self.listen = listen
        self.client_urls = client_urls
        self.peer_urls = peer_urls
        self._front = None
        # (node.status it was made from, header fields, encoded headers by revision)
        self._header: tuple[object, dict, dict[int, bytes]] | None = None
        # method: (request type, start(request, done)); start returns a Future, an immediate
        # result or EtcdError, or None when it calls done(result) itself
        self._methods = {
            RANGE: (rpc_pb2.RangeRequest, self._range),
            "/etcdserverpb.KV/Put": (rpc_pb2.PutRequest, lambda r, _: node.submit_future(Kind.PUT, r)),
            "/etcdserverpb.KV/DeleteRange": (rpc_pb2.DeleteRangeRequest,
                                             lambda r, _: node.submit_future(Kind.DELETE_RANGE, r)),
            "/etcdserverpb.KV/Txn": (rpc_pb2.TxnRequest, lambda r, _: node.submit_future(Kind.TXN, r)),
            "/etcdserverpb.KV/Compact": (rpc_pb2.CompactionRequest, self._compact),
            "/etcdserverpb.Maintenance/Status": (rpc_pb2.StatusRequest, self._status),
            "/etcdserverpb.Cluster/MemberList": (rpc_pb2.MemberListRequest, self._member_list),
        }

    async def start(self) -> None:
        try:
            self._front = _front.Front(self.listen, MAX_REQUEST_BYTES + GRPC_OVERHEAD_BYTES)
        except RuntimeError as err:
            raise OSError(str(err)) from None
        asyncio.get_running_loop().add_reader(self._front.fd, self._on_calls)

    async def stop(self, grace: float | None = None) -> None:
        front, self._front = self._front, None
        if front is None:
            return
        asyncio.get_running_loop().remove_reader(front.fd)
        await asyncio.get_running_loop().run_in_executor(None, front.shutdown, grace or 0.0)

    # ---- calls ----

    def _on_calls(self) -> None:
        front = self._front
        if front is None:
            return
        node = self.node
        for call_id, method, body in front.take():
            if method == RANGE and 2 < len(body) < 0x82 and body[0] == 0x0A and body[1] == len(body) - 2:
                # RangeRequest(key=...) and nothing else (the key's field alone, not parsed here)
                node.read_then(body[2:], False, functools.partial(self._finish, call_id))
                continue
            entry = self._methods.get(method)
            if entry is None:
                self._finish(call_id, errors.unsupported_method(method))
                continue
            request_type, start = entry
            try:
                outcome = start(request_type.FromString(body), functools.partial(self._finish, call_id))
            except DecodeError:
                outcome = EtcdError(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"verikv: {method}: the request is not a valid {request_type.__name__}")
            except EtcdError as err:
                outcome = err
            if outcome is None:
                continue  # start calls _finish itself
            if isinstance(outcome, asyncio.Future):
                outcome.add_done_callback(functools.partial(self._finish_future, call_id))
            else:
                self._finish(call_id, outcome)

    def _finish_future(self, call_id: int, fut: asyncio.Future) -> None:
        if fut.cancelled():
            result = errors.NO_LEADER
        else:
            result = fut.exception() or fut.result()
        self._finish(call_id, result)

    def _finish(self, call_id: int, result) -> None:
        front = self._front
        if front is None:
            return
        if isinstance(result, EtcdError):
            front.finish(call_id, result.code.value[0], result.message, b"")
        elif isinstance(result, BaseException):
            log.error("request failed: %s: %s", type(result).__name__, result)
            front.finish(call_id, grpc.StatusCode.INTERNAL.value[0], f"verikv: internal error: {result}", b"")
        else:
            header = self._header
            if header is None or header[0] is not self.node.status:  # a new status each turn
                header = self._header = (self.node.status, self.node.header_fields(), {})
            h = header[1]
            if type(result) is EncodedRange:
                encoded = header[2].get(result.header_revision)  # the status's headers, by revision
                if encoded is None:
                    if len(header[2]) >= 64:
                        header[2].clear()
                    encoded = header[2][result.header_revision] = encode_header(rpc_pb2.ResponseHeader(
                        cluster_id=h["cluster_id"], member_id=h["member_id"], revision=result.header_revision,
                        raft_term=h["raft_term"]))
                front.finish(call_id, 0, "", encoded + result.body)
                return
            resp = result.header
            resp.cluster_id = h["cluster_id"]
            resp.member_id = h["member_id"]
            resp.raft_term = h["raft_term"]
            front.finish(call_id, 0, "", result.SerializeToString())

    # ---- methods ----

    def _range(self, request, done):
        self.node.read_then(request, request.serializable, done)

    def _compact(self, request, _):
        return errors.COMPACT_UNSUPPORTED

    def _status(self, request, _):
        node = self.node
        st = node.status
        leader = st.get("leader")
        resp = rpc_pb2.StatusResponse(
            version=SERVER_VERSION, leader=0 if leader is None else leader + 1,
            raftIndex=st.get("commit_upto", 0), raftAppliedIndex=node.kv.next_slot,
            raftTerm=node.header_fields()["raft_term"])
        resp.header.revision = node.kv.revision
        if leader is None:
            resp.errors.append("etcdserver: no leader")
        return resp

    def _member_list(self, request, _):
        resp = rpc_pb2.MemberListResponse()
        for i in range(self.node.cluster_size):
            resp.members.add(ID=i + 1, name=f"node{i}", peerURLs=[self.peer_urls[i]],
                             clientURLs=[self.client_urls[i]])
        return resp


def build_server(node, listen: str, client_urls: list[str], peer_urls: list[str]) -> ClientServer:
    """The client API server for `node` on `listen` (host:port), not yet started."""
    return ClientServer(node, listen, client_urls, peer_urls)
