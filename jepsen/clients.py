"""A client for etcd's v3 gRPC API (spoken by etcd and verikv) for the workloads.

Maps every outcome to ok / Failed / Indeterminate. It must never report Failed unless the
request certainly did not reach the server (connection refused / no connection before
sending) or is a read (reads change nothing); everything else uncertain is Indeterminate.
"""

from __future__ import annotations

import grpc

from verikv.etcdpb import rpc_pb2, rpc_pb2_grpc

from verikv.jepsen.workloads import Failed, Indeterminate

SET_PREFIX = b"set/"
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
    ("grpc.enable_retries", 0),
]
NOT_SENT_MARKERS = ("failed to connect to all addresses", "connection refused")

# The TLS files every channel of this process uses ({"ca", "cert", "key"}: PEM bytes), or None for
# plain text; set by a driver whose cluster serves clients over TLS (`verikv jepsen run --tls`).
_TLS: dict | None = None


def use_tls(files: dict | None) -> None:
    global _TLS
    _TLS = files


def open_channel(endpoint: str, options=CHANNEL_OPTIONS) -> grpc.Channel:
    """A channel to one node's client port: over TLS with the client certificate once `use_tls`
    gave one, plain text otherwise."""
    if _TLS is None:
        return grpc.insecure_channel(endpoint, options=options)
    creds = grpc.ssl_channel_credentials(_TLS["ca"], _TLS["key"], _TLS["cert"])
    return grpc.secure_channel(endpoint, creds, options=options)


def _prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


def classify(err: grpc.RpcError, is_read: bool) -> Exception:
    code = err.code() if hasattr(err, "code") else None
    details = (err.details() if hasattr(err, "details") else str(err)) or ""
    text = f"{code.name if code else 'ERROR'}: {details}"
    if is_read:
        return Failed(text)
    if code == grpc.StatusCode.UNAVAILABLE and any(m in details.lower() for m in NOT_SENT_MARKERS):
        return Failed(text)
    return Indeterminate(text)


class EtcdClient:
    """One gRPC channel to one node; operations time out after `timeout_s`."""

    def __init__(self, endpoint: str, timeout_s: float = 1.0, serializable_reads: bool = False):
        self.endpoint = endpoint
        self.timeout_s = timeout_s
        # serializable reads are served from the local node's state without a quorum:
        # deliberately NOT linearizable; only for showing that the checker catches it.
        self.serializable_reads = serializable_reads
        self.channel = open_channel(endpoint)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)

    def _call(self, method, request, is_read: bool):
        try:
            return method(request, timeout=self.timeout_s)
        except grpc.RpcError as err:
            raise classify(err, is_read) from None

    def read(self, key: str) -> int | None:
        resp = self._call(self.kv.Range, rpc_pb2.RangeRequest(key=key.encode(), serializable=self.serializable_reads),
                          True)
        return int(resp.kvs[0].value) if resp.kvs else None

    def write(self, key: str, value: int) -> None:
        self._call(self.kv.Put, rpc_pb2.PutRequest(key=key.encode(), value=str(value).encode()), False)

    def cas(self, key: str, old: int, new: int) -> bool:
        k = key.encode()
        req = rpc_pb2.TxnRequest(
            compare=[rpc_pb2.Compare(key=k, target=rpc_pb2.Compare.VALUE, result=rpc_pb2.Compare.EQUAL,
                                     value=str(old).encode())],
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=str(new).encode()))])
        return bool(self._call(self.kv.Txn, req, False).succeeded)

    def add(self, element: int) -> None:
        key = SET_PREFIX + f"{element:09d}".encode()
        self._call(self.kv.Put, rpc_pb2.PutRequest(key=key, value=str(element).encode()), False)

    def read_set(self) -> list[int]:
        resp = self._call(self.kv.Range, rpc_pb2.RangeRequest(key=SET_PREFIX, range_end=_prefix_end(SET_PREFIX)),
                          True)
        return sorted(int(kv.value) for kv in resp.kvs)

    # -- the watch workload's writes: each returns the revision its response names ---------
    def put(self, key: str, value: int) -> int:
        return self._call(self.kv.Put, rpc_pb2.PutRequest(key=key.encode(), value=str(value).encode()),
                          False).header.revision

    def delete(self, key: str) -> list[int]:
        """[revision, keys deleted]; with nothing deleted the revision is the store's, not a new one."""
        resp = self._call(self.kv.DeleteRange, rpc_pb2.DeleteRangeRequest(key=key.encode()), False)
        return [resp.header.revision, resp.deleted]

    def txn(self, ops: list) -> int:
        """Several writes in one revision: ops is [["put", key, value] | ["delete", key, None], ...]
        (distinct keys, as etcd requires), applied in that order without a compare."""
        success = []
        for f, key, value in ops:
            if f == "put":
                success.append(rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key.encode(),
                                                                                value=str(value).encode())))
            else:
                success.append(rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=key.encode())))
        return self._call(self.kv.Txn, rpc_pb2.TxnRequest(success=success), False).header.revision

    def close(self) -> None:
        self.channel.close()
