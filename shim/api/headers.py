"""etcd's ResponseHeader as verikv fills it: cluster_id, member_id (node id + 1), revision and
raft_term (one more than the round of the ballot the node promised: machine.term_of).

This module must never read anything but the values it is given.
"""

from __future__ import annotations

from verikv.etcdpb import rpc_pb2
from verikv.shim.kv.store import encode_header

CLUSTER_ID = 0x766B5F3300000001  # one local cluster
MAX_CACHED = 64


class HeaderCache:
    """One node's headers; encoded ones (for EncodedRange answers) are kept by (term, revision)."""

    def __init__(self, node_id: int):
        self.member_id = node_id + 1
        self._encoded: dict[tuple[int, int], bytes] = {}

    def fill(self, header: rpc_pb2.ResponseHeader, term: int) -> None:
        """Complete a header whose revision is set."""
        header.cluster_id = CLUSTER_ID
        header.member_id = self.member_id
        header.raft_term = term

    def encoded(self, term: int, revision: int) -> bytes:
        """The header of revision at term, as field 1 of a response."""
        key = (term, revision)
        b = self._encoded.get(key)
        if b is None:
            if len(self._encoded) >= MAX_CACHED:
                self._encoded.clear()
            b = self._encoded[key] = encode_header(rpc_pb2.ResponseHeader(
                cluster_id=CLUSTER_ID, member_id=self.member_id, revision=revision, raft_term=term))
        return b
