"""etcd's client-visible errors, as (gRPC status code, message) pairs, with etcd 3.4's exact text.

Every error a client can get from verikv is defined here, so the wire behaviour can be checked
against etcd in one place. This module must never import the node, the core or gRPC servers:
it is plain data used by the state machine (which must stay deterministic) and the servicer.
"""

from __future__ import annotations

import grpc

Code = grpc.StatusCode


class EtcdError(Exception):
    """An error returned to the client as a gRPC status; deterministic (part of replicated results)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EtcdError) and (self.code, self.message) == (other.code, other.message)

    def __hash__(self) -> int:
        return hash((self.code, self.message))

    def __repr__(self) -> str:
        return f"EtcdError({self.code.name}, {self.message!r})"

    def fresh(self) -> "EtcdError":
        """A new instance, equal to this one, to raise. The module's errors are shared: raising one
        of them would leave the traceback of its last raise on it, and with it every frame of that
        stack and their locals (a request, its callbacks), alive until the next raise."""
        return EtcdError(self.code, self.message)


def _err(code: grpc.StatusCode, message: str) -> EtcdError:
    return EtcdError(code, message)


# Observed from etcd 3.4.23 (see tests/shim/test_kv_vs_etcd.py and tests/shim/test_requests.py).
EMPTY_KEY = _err(Code.INVALID_ARGUMENT, "etcdserver: key is not provided")
KEY_NOT_FOUND = _err(Code.INVALID_ARGUMENT, "etcdserver: key not found")
VALUE_PROVIDED = _err(Code.INVALID_ARGUMENT, "etcdserver: value is provided")
LEASE_PROVIDED = _err(Code.INVALID_ARGUMENT, "etcdserver: lease is provided")
TOO_MANY_OPS = _err(Code.INVALID_ARGUMENT, "etcdserver: too many operations in txn request")
DUPLICATE_KEY = _err(Code.INVALID_ARGUMENT, "etcdserver: duplicate key given in txn request")
REQUEST_TOO_LARGE = _err(Code.INVALID_ARGUMENT, "etcdserver: request is too large")
LEASE_NOT_FOUND = _err(Code.NOT_FOUND, "etcdserver: requested lease not found")
LEASE_EXISTS = _err(Code.FAILED_PRECONDITION, "etcdserver: lease already exists")
LEASE_TTL_TOO_LARGE = _err(Code.OUT_OF_RANGE, "etcdserver: too large lease TTL")
FUTURE_REV = _err(Code.OUT_OF_RANGE, "etcdserver: mvcc: required revision is a future revision")
COMPACTED = _err(Code.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted")
NO_SPACE = _err(Code.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded")
# verikv's own: a Range's answer over store.MAX_RANGE_BYTES (etcd has no such limit short of gRPC's)
RANGE_TOO_LARGE = _err(Code.RESOURCE_EXHAUSTED, "verikv: the range's answer is too large")
CORRUPT = _err(Code.DATA_LOSS, "etcdserver: corrupt cluster")
NOT_LEADER = _err(Code.FAILED_PRECONDITION, "etcdserver: not leader")
BAD_LEADER_TRANSFEREE = _err(Code.FAILED_PRECONDITION, "etcdserver: bad leader transferee")
LEADER_TRANSFER_TIMEOUT = _err(Code.UNKNOWN,  # etcd has no gRPC status for it: Unknown
                                "etcdserver: request timed out, leader transfer took too long")
NO_LEADER = _err(Code.UNAVAILABLE, "etcdserver: no leader")
TIMEOUT = _err(Code.UNAVAILABLE, "etcdserver: request timed out")
# etcd 3.4's auth errors (etcdserver/api/v3rpc/rpctypes/error.go)
ROOT_USER_NOT_EXIST = _err(Code.FAILED_PRECONDITION, "etcdserver: root user does not exist")
ROOT_ROLE_NOT_EXIST = _err(Code.FAILED_PRECONDITION, "etcdserver: root user does not have root role")
USER_ALREADY_EXIST = _err(Code.FAILED_PRECONDITION, "etcdserver: user name already exists")
USER_EMPTY = _err(Code.INVALID_ARGUMENT, "etcdserver: user name is empty")
USER_NOT_FOUND = _err(Code.FAILED_PRECONDITION, "etcdserver: user name not found")
ROLE_ALREADY_EXIST = _err(Code.FAILED_PRECONDITION, "etcdserver: role name already exists")
ROLE_NOT_FOUND = _err(Code.FAILED_PRECONDITION, "etcdserver: role name not found")
ROLE_EMPTY = _err(Code.INVALID_ARGUMENT, "etcdserver: role name is empty")
AUTH_FAILED = _err(Code.INVALID_ARGUMENT, "etcdserver: authentication failed, invalid user ID or password")
PERMISSION_DENIED = _err(Code.PERMISSION_DENIED, "etcdserver: permission denied")
ROLE_NOT_GRANTED = _err(Code.FAILED_PRECONDITION, "etcdserver: role is not granted to the user")
PERMISSION_NOT_GRANTED = _err(Code.FAILED_PRECONDITION, "etcdserver: permission is not granted to the role")
AUTH_NOT_ENABLED = _err(Code.FAILED_PRECONDITION, "etcdserver: authentication is not enabled")
INVALID_AUTH_TOKEN = _err(Code.UNAUTHENTICATED, "etcdserver: invalid auth token")
INVALID_AUTH_MGMT = _err(Code.INVALID_ARGUMENT, "etcdserver: invalid auth management")
# etcd 3.4 does not map this one to a gRPC status: its clients see Unknown
NO_PASSWORD_USER = _err(Code.UNKNOWN, "auth: authentication failed, password was given for no password user")
AUTH_OLD_REVISION = _err(Code.INVALID_ARGUMENT, "etcdserver: revision of auth store is old")

# verikv's own: features it does not have. UNIMPLEMENTED, so clients can tell "not here" from "wrong".
OUTCOME_UNKNOWN = _err(
    Code.UNKNOWN, "verikv: the outcome of this request is unknown (its result left the dedup window)")


def unsupported_method(full_method: str) -> EtcdError:
    """The status for a gRPC method verikv does not serve."""
    return _err(Code.UNIMPLEMENTED, f"verikv: {full_method} is not supported "
                                    "(verikv serves KV Range/Put/DeleteRange/Txn/Compact, Watch, Lease, "
                                    "Maintenance, Auth, Cluster.MemberList and "
                                    "grpc.health.v1.Health/Check)")


# etcd 3.4's maintenance calls reserved to root return its auth store's errors as they are (no
# gRPC status of their own: Unknown, with the auth package's text)
_UNMAPPED = {USER_EMPTY: "auth: user name is empty", USER_NOT_FOUND: "auth: user not found",
             PERMISSION_DENIED: "auth: permission denied", INVALID_AUTH_TOKEN: "auth: invalid auth token"}


def unmapped(err: EtcdError) -> EtcdError:
    """`err` as etcd 3.4's Defragment, Hash, HashKV and Snapshot return it."""
    text = _UNMAPPED.get(err)
    return err if text is None else _err(Code.UNKNOWN, text)


def go_status_text(err: EtcdError) -> str:
    """`err` as grpc-go's status error prints it (what etcd puts in a watch's cancel_reason)."""
    name = "".join(part.capitalize() for part in err.code.name.split("_"))
    return f"rpc error: code = {name} desc = {err.message}"


def encode_error(err: EtcdError) -> bytes:
    """Stable bytes for an error (for the dedup table inside snapshots)."""
    return err.code.name.encode() + b"\0" + err.message.encode()


def decode_error(data: bytes) -> EtcdError:
    name, _, message = data.partition(b"\0")
    return EtcdError(grpc.StatusCode[name.decode()], message.decode())
