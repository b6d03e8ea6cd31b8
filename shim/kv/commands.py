"""Client commands inside a proposed batch: their compact encoding, and etcd's request validation.

A batch is the opaque value the node proposes to the core; it carries whole client commands, each
a 25-byte header (kind, client_id, request_seq, acked_below) and the etcd request's protobuf bytes.
Validation mirrors etcd 3.4's gRPC-layer checks (v3rpc/key.go) with etcd's exact errors, so a
request that etcd would reject never reaches the log.

This module must never touch the KV state, the core or I/O: encode, decode, validate, nothing else.
Decoding is strict: a malformed batch raises `BatchFormatError` (a committed batch that does not
decode means the log is corrupt, and the node stops rather than guessing).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from verikv.etcdpb import auth_pb2, rpc_pb2

from verikv.shim.kv import errors
from verikv.shim.kv.leases import LeaseCheckpoints, LeaseExpiry
from verikv.shim.kv.protowire import varint

MAX_REQUEST_BYTES = 1536 * 1024  # etcd's default --max-request-bytes (1.5 MiB)
GRPC_OVERHEAD_BYTES = 512 * 1024  # etcd accepts gRPC messages up to max-request-bytes + this
MAX_TXN_OPS = 128  # etcd's default --max-txn-ops

_BATCH_MAGIC = b"VKB1"
_BATCH_HEAD = struct.Struct("<4sI")  # magic, command count
_LEN = struct.Struct("<I")
_CMD_HEAD = struct.Struct("<BQQQ")  # kind, client_id, request_seq, acked_below
MAX_COMMANDS_PER_BATCH = 100_000


class BatchFormatError(ValueError):
    """A batch's bytes do not decode: the log or the sender is corrupt."""


class Kind(enum.IntEnum):
    RANGE = 1  # a linearizable read, ordered through the log (never changes state)
    PUT = 2
    DELETE_RANGE = 3
    TXN = 4
    COMPACT = 5
    LEASE_GRANT = 6  # with the ID and TTL its proposer settled (see shim/kv/leases.py)
    LEASE_REVOKE = 7
    LEASE_KEEP_ALIVE = 8
    LEASE_EXPIRE = 9  # a leader's: leases whose time ran out on its clock
    LEASE_CHECKPOINT = 10  # a leader's: what its clock says leases have left
    ALARM = 11  # etcd's Alarm: get, activate or deactivate (a node raises NOSPACE this way too)
    AS_USER = 12  # a client's command with who sent it (AsUser: user, auth revision, the command)
    AUTH_ENABLE = 13
    AUTH_DISABLE = 14
    USER_ADD = 15  # an authpb.User: the password's bcrypt hash, made by the receiving node
    USER_DELETE = 16
    USER_CHANGE_PASSWORD = 17  # an authpb.User: name and the new password's hash
    USER_GRANT_ROLE = 18
    USER_REVOKE_ROLE = 19
    USER_GET = 20
    USER_LIST = 21
    ROLE_ADD = 22
    ROLE_DELETE = 23
    ROLE_GET = 24
    ROLE_LIST = 25
    ROLE_GRANT_PERMISSION = 26
    ROLE_REVOKE_PERMISSION = 27
    AUTHENTICATE = 28  # a TokenGrant: a token (its digest) for a user whose password was checked
    LEASE_KEEP_ALIVES = 29  # KeepAlives: the keep-alives a node's clients sent in one turn


class AsUser:
    """A client command with the user its token named ("" for none) and the auth revision the
    receiving node had then (etcd's RequestHeader username and auth_revision), checked when the
    command is applied (shim/kv/auth.py)."""

    __slots__ = ("user", "revision", "kind", "body")
    _HEAD = struct.Struct("<QBH")  # auth revision, the command's kind, user name length

    def __init__(self, user: str, revision: int, kind: "Kind", body: bytes):
        self.user = user
        self.revision = revision
        self.kind = kind
        self.body = body

    def SerializeToString(self) -> bytes:
        name = self.user.encode()
        return self._HEAD.pack(self.revision, self.kind, len(name)) + name + self.body

    @classmethod
    def FromString(cls, data: bytes) -> "AsUser":
        if len(data) < cls._HEAD.size:
            raise BatchFormatError(f"AsUser of {len(data)} bytes is shorter than its header")
        revision, kind, n = cls._HEAD.unpack_from(data)
        pos = cls._HEAD.size
        if pos + n > len(data):
            raise BatchFormatError("AsUser's user name runs past its end")
        try:
            kind = Kind(kind)
        except ValueError:
            raise BatchFormatError(f"unknown command kind {kind} inside AsUser") from None
        if kind == Kind.AS_USER:
            raise BatchFormatError("AsUser inside AsUser")
        return cls(bytes(data[pos:pos + n]).decode("utf-8", "surrogateescape"), revision, kind,
                   bytes(data[pos + n:]))

    def request(self):
        return REQUEST_TYPES[self.kind].FromString(self.body)


class TokenGrant:
    """etcd's InternalAuthenticateRequest: the node that received an Authenticate checked the
    password (against the users as of auth revision `revision`) and drew a token; every node
    learns the token's sha256 (the token itself is never in the log) so that it is good on any of
    them, as etcd's simple tokens are."""

    __slots__ = ("user", "revision", "digest")
    _HEAD = struct.Struct("<Q32s")  # auth revision, the token's sha256

    def __init__(self, user: str, revision: int, digest: bytes):
        self.user = user
        self.revision = revision
        self.digest = digest

    def SerializeToString(self) -> bytes:
        return self._HEAD.pack(self.revision, self.digest) + self.user.encode()

    @classmethod
    def FromString(cls, data: bytes) -> "TokenGrant":
        if len(data) < cls._HEAD.size:
            raise BatchFormatError(f"TokenGrant of {len(data)} bytes is shorter than its header")
        revision, digest = cls._HEAD.unpack_from(data)
        return cls(bytes(data[cls._HEAD.size:]).decode("utf-8", "surrogateescape"), revision, digest)


class KeepAlives:
    """The keep-alives that reached a node in one turn of its loop, on any of its streams, as one
    command: their lease IDs in the order they came (etcd's int64 IDs, 8 bytes each). A renewal
    through the log costs one command a turn rather than one a keep-alive."""

    __slots__ = ("ids",)

    def __init__(self, ids):
        self.ids = ids

    def SerializeToString(self) -> bytes:
        return struct.pack(f"<{len(self.ids)}q", *self.ids)

    def ByteSize(self) -> int:
        return 8 * len(self.ids)

    @classmethod
    def FromString(cls, data: bytes) -> "KeepAlives":
        if len(data) % 8:
            raise BatchFormatError(f"KeepAlives of {len(data)} bytes is not a whole number of IDs")
        return cls(struct.unpack(f"<{len(data) // 8}q", data))


class KeptAlives:
    """What a KeepAlives command did: the revision it was applied at and, for each of its IDs in
    order, the lease's TTL (0: no such lease, as etcd answers)."""

    __slots__ = ("revision", "ttls")

    def __init__(self, revision: int, ttls):
        self.revision = revision
        self.ttls = ttls

    def SerializeToString(self) -> bytes:
        return struct.pack(f"<q{len(self.ttls)}q", self.revision, *self.ttls)

    @classmethod
    def FromString(cls, data: bytes) -> "KeptAlives":
        if len(data) < 8 or len(data) % 8:
            raise BatchFormatError(f"KeptAlives of {len(data)} bytes is not a revision and TTLs")
        revision, *ttls = struct.unpack(f"<{len(data) // 8}q", data)
        return cls(revision, ttls)

    def answer(self, header: bytes, lease_id: int, ttl: int) -> bytes:
        """etcd's LeaseKeepAliveResponse for one of them, encoded as protobuf encodes it: the
        encoded header (field 1, shim/api/headers.py), then ID and TTL (omitted when 0)."""
        out = header
        if lease_id:
            out += b"\x10" + varint(lease_id)
        if ttl:
            out += b"\x18" + varint(ttl)
        return out


REQUEST_TYPES = {
    Kind.RANGE: rpc_pb2.RangeRequest,
    Kind.PUT: rpc_pb2.PutRequest,
    Kind.DELETE_RANGE: rpc_pb2.DeleteRangeRequest,
    Kind.TXN: rpc_pb2.TxnRequest,
    Kind.COMPACT: rpc_pb2.CompactionRequest,
    Kind.LEASE_GRANT: rpc_pb2.LeaseGrantRequest,
    Kind.LEASE_REVOKE: rpc_pb2.LeaseRevokeRequest,
    Kind.LEASE_KEEP_ALIVE: rpc_pb2.LeaseKeepAliveRequest,
    Kind.LEASE_KEEP_ALIVES: KeepAlives,
    Kind.LEASE_EXPIRE: LeaseExpiry,
    Kind.LEASE_CHECKPOINT: LeaseCheckpoints,
    Kind.ALARM: rpc_pb2.AlarmRequest,
    Kind.AS_USER: AsUser,
    Kind.AUTH_ENABLE: rpc_pb2.AuthEnableRequest,
    Kind.AUTH_DISABLE: rpc_pb2.AuthDisableRequest,
    Kind.USER_ADD: auth_pb2.User,
    Kind.USER_DELETE: rpc_pb2.AuthUserDeleteRequest,
    Kind.USER_CHANGE_PASSWORD: auth_pb2.User,
    Kind.USER_GRANT_ROLE: rpc_pb2.AuthUserGrantRoleRequest,
    Kind.USER_REVOKE_ROLE: rpc_pb2.AuthUserRevokeRoleRequest,
    Kind.USER_GET: rpc_pb2.AuthUserGetRequest,
    Kind.USER_LIST: rpc_pb2.AuthUserListRequest,
    Kind.ROLE_ADD: rpc_pb2.AuthRoleAddRequest,
    Kind.ROLE_DELETE: rpc_pb2.AuthRoleDeleteRequest,
    Kind.ROLE_GET: rpc_pb2.AuthRoleGetRequest,
    Kind.ROLE_LIST: rpc_pb2.AuthRoleListRequest,
    Kind.ROLE_GRANT_PERMISSION: rpc_pb2.AuthRoleGrantPermissionRequest,
    Kind.ROLE_REVOKE_PERMISSION: rpc_pb2.AuthRoleRevokePermissionRequest,
    Kind.AUTHENTICATE: TokenGrant,
}


@dataclass(frozen=True, slots=True)
class Command:
    """One client request as replicated.

    (client_id, request_seq) names it for exactly-once application; acked_below promises that the
    proposer will never again retry any of its requests with a smaller seq (so the state machine
    can forget their results).
    """

    kind: Kind
    client_id: int
    request_seq: int
    acked_below: int
    body: bytes  # the etcd request, protobuf-encoded

    def request(self):
        return REQUEST_TYPES[self.kind].FromString(self.body)

    def encode(self) -> bytes:
        return _CMD_HEAD.pack(self.kind, self.client_id, self.request_seq, self.acked_below) + self.body

    @staticmethod
    def decode(data: bytes) -> "Command":
        if len(data) < _CMD_HEAD.size:
            raise BatchFormatError(f"command of {len(data)} bytes is shorter than its header")
        kind, client_id, seq, acked = _CMD_HEAD.unpack_from(data)
        try:
            kind = Kind(kind)
        except ValueError:
            raise BatchFormatError(f"unknown command kind {kind}") from None
        return Command(kind, client_id, seq, acked, bytes(data[_CMD_HEAD.size:]))


def encode_batch(commands: list[bytes]) -> bytes:
    """Concatenate already-encoded commands (Command.encode()) into one proposal value."""
    parts = [_BATCH_HEAD.pack(_BATCH_MAGIC, len(commands))]
    for cmd in commands:
        parts.append(_LEN.pack(len(cmd)))
        parts.append(cmd)
    return b"".join(parts)


def split_batch(data: bytes) -> list[bytes]:
    """The encoded commands of a batch, as they are (for forwarding them without decoding)."""
    if len(data) < _BATCH_HEAD.size:
        raise BatchFormatError(f"batch of {len(data)} bytes is shorter than its header")
    magic, count = _BATCH_HEAD.unpack_from(data)
    if magic != _BATCH_MAGIC:
        raise BatchFormatError(f"batch magic {magic!r} is not {_BATCH_MAGIC!r}")
    if count > MAX_COMMANDS_PER_BATCH:
        raise BatchFormatError(f"batch claims {count} commands (max {MAX_COMMANDS_PER_BATCH})")
    view = memoryview(data)
    pos = _BATCH_HEAD.size
    out = []
    for i in range(count):
        if pos + _LEN.size > len(data):
            raise BatchFormatError(f"batch ends inside the length of command {i}")
        (n,) = _LEN.unpack_from(data, pos)
        pos += _LEN.size
        if pos + n > len(data):
            raise BatchFormatError(f"command {i} claims {n} bytes, only {len(data) - pos} remain")
        out.append(bytes(view[pos:pos + n]))
        pos += n
    if pos != len(data):
        raise BatchFormatError(f"{len(data) - pos} trailing bytes after {count} commands")
    return out


def decode_batch(data: bytes) -> list[Command]:
    return [Command.decode(c) for c in split_batch(data)]


def plain_range_key(body: bytes) -> bytes | None:
    """The key of an encoded RangeRequest that sets its key (shorter than 128 bytes) and nothing
    else, else None: such a read is answered from the key's cached encoding (KVStore.read)."""
    if 2 < len(body) < 0x82 and body[0] == 0x0A and body[1] == len(body) - 2:
        return body[2:]
    return None


# ---- validation (etcd 3.4 v3rpc/key.go), raising errors.EtcdError ----

def check_size(request_bytes: int) -> None:
    if request_bytes > MAX_REQUEST_BYTES:
        raise errors.REQUEST_TOO_LARGE.fresh()


def check_range(r: rpc_pb2.RangeRequest) -> None:
    if not r.key:
        raise errors.EMPTY_KEY.fresh()


def check_put(r: rpc_pb2.PutRequest) -> None:
    if not r.key:
        raise errors.EMPTY_KEY.fresh()
    if r.ignore_value and r.value:
        raise errors.VALUE_PROVIDED.fresh()
    if r.ignore_lease and r.lease != 0:
        raise errors.LEASE_PROVIDED.fresh()


def check_delete(r: rpc_pb2.DeleteRangeRequest) -> None:
    if not r.key:
        raise errors.EMPTY_KEY.fresh()


def _check_op(op: rpc_pb2.RequestOp, max_txn_ops: int) -> None:
    which = op.WhichOneof("request")
    if which == "request_range":
        check_range(op.request_range)
    elif which == "request_put":
        check_put(op.request_put)
    elif which == "request_delete_range":
        check_delete(op.request_delete_range)
    elif which == "request_txn":
        _check_txn_ops(op.request_txn, max_txn_ops)
    else:  # an empty RequestOp: etcd says "key not found"
        raise errors.KEY_NOT_FOUND.fresh()


def _check_txn_ops(r: rpc_pb2.TxnRequest, max_txn_ops: int) -> None:
    opc = max(len(r.compare), len(r.success), len(r.failure))
    if opc > max_txn_ops:
        raise errors.TOO_MANY_OPS.fresh()
    for c in r.compare:
        if not c.key:
            raise errors.EMPTY_KEY.fresh()
    for op in r.success:
        _check_op(op, max_txn_ops - opc)
    for op in r.failure:
        _check_op(op, max_txn_ops - opc)


class _Dels:
    """etcd's interval tree of deleted ranges, with its affine order ("" as an end is +infinity)."""

    def __init__(self) -> None:
        self.intervals: list[tuple[bytes, bytes]] = []  # [begin, end); end b"" = +infinity

    def hits_point(self, key: bytes) -> bool:
        for begin, end in self.intervals:
            if begin <= key and (end == b"" or key < end):
                return True
        return False


def _check_intervals(ops) -> tuple[set[bytes], _Dels]:
    dels = _Dels()
    for op in ops:
        if op.WhichOneof("request") == "request_delete_range":
            d = op.request_delete_range
            dels.intervals.append((d.key, d.range_end) if d.range_end else (d.key, d.key + b"\0"))
    puts: set[bytes] = set()
    for op in ops:
        if op.WhichOneof("request") != "request_txn":
            continue
        puts_then, dels_then = _check_intervals(op.request_txn.success)
        puts_else, dels_else = _check_intervals(op.request_txn.failure)
        for k in puts_then:
            if k in puts or dels.hits_point(k):
                raise errors.DUPLICATE_KEY.fresh()
            puts.add(k)
        for k in puts_else:
            if k in puts and k not in puts_then:  # then/else exclude each other
                raise errors.DUPLICATE_KEY.fresh()
            if dels.hits_point(k):
                raise errors.DUPLICATE_KEY.fresh()
            puts.add(k)
        dels.intervals += dels_then.intervals + dels_else.intervals
    for op in ops:
        if op.WhichOneof("request") != "request_put":
            continue
        k = op.request_put.key
        if k in puts or dels.hits_point(k):
            raise errors.DUPLICATE_KEY.fresh()
        puts.add(k)
    return puts, dels


def check_txn(r: rpc_pb2.TxnRequest, max_txn_ops: int = MAX_TXN_OPS) -> None:
    _check_txn_ops(r, max_txn_ops)
    _check_intervals(r.success)
    _check_intervals(r.failure)


def check_compact(r: rpc_pb2.CompactionRequest) -> None:
    pass  # etcd checks a compaction's revision when it applies it


def check_nothing(r) -> None:
    pass  # etcd checks these when it applies them


CHECKS = {Kind.RANGE: check_range, Kind.PUT: check_put, Kind.DELETE_RANGE: check_delete,
          Kind.TXN: check_txn, Kind.COMPACT: check_compact, Kind.LEASE_GRANT: check_nothing,
          Kind.LEASE_REVOKE: check_nothing, Kind.LEASE_KEEP_ALIVE: check_nothing,
          Kind.LEASE_EXPIRE: check_nothing, Kind.LEASE_CHECKPOINT: check_nothing,
          Kind.ALARM: check_nothing, **{k: check_nothing for k in REQUEST_TYPES if k >= Kind.AS_USER}}


# ---- the quota's charge for a request (etcd 3.4's etcdserver/quota.go) ----

KV_OVERHEAD = 256  # etcd's estimate of a key's metadata
LEASE_OVERHEAD = 64  # etcd's estimate of a lease


def cost_put(r: rpc_pb2.PutRequest) -> int:
    return KV_OVERHEAD + len(r.key) + len(r.value)


def cost_txn(r: rpc_pb2.TxnRequest) -> int:
    """The larger branch's puts (a nested txn's puts are not counted, as etcd 3.4 counts)."""
    def branch(ops) -> int:
        return sum(cost_put(op.request_put) for op in ops if op.WhichOneof("request") == "request_put")
    return max(branch(r.success), branch(r.failure))


def cost(kind: Kind, request) -> int:
    """What a request adds to the store as etcd's quota counts it (0: it is not checked)."""
    if kind == Kind.PUT:
        return cost_put(request)
    if kind == Kind.TXN:
        return cost_txn(request)
    if kind == Kind.LEASE_GRANT:
        return LEASE_OVERHEAD
    return 0


def validate(kind: Kind, request, size: int | None = None) -> None:
    """Raise the etcd error for a request (of `size` encoded bytes, if known) that etcd would
    refuse before proposing it."""
    check_size(request.ByteSize() if size is None else size)
    CHECKS[kind](request)
