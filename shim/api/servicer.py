"""etcd v3 gRPC API (KV with Compact, Watch, Lease, Maintenance, Auth, Cluster.MemberList) over a node.

Writes and compactions go through `node.command`, reads through `node.read` (see shim/node/ for how a
follower's requests reach the leader); serializable reads are answered from the local state.
A request's bytes are parsed once, here, and the bytes go into the log as the client sent them.
Every answer comes back through one `done`: a response, or an EtcdError that becomes the call's
gRPC status; any method verikv does not serve is UNIMPLEMENTED with a message saying so.

Auth (etcd's, with its simple or JWT tokens): a client's "token" metadata names an AuthInfo (user,
and the node's auth revision now, or for a JWT the revision it was made at; without a token, with
--client-cert-auth, the common name of the client's certificate is the user, etcd's rule); writes
carry it into the log and are checked when applied (shim/kv/store.py); reads, watch creations and
the maintenance calls etcd reserves for root are checked here against this node's auth state, as
etcd checks them on the node that serves them.
Simple tokens (etcd's default): random, drawn by the node that checked the password, and made
known to every node through the log (as its sha256: the log never holds a usable token), so a
token is good on any node; each node holds them in memory only (a restarted node has forgotten
them, as an etcd member has: its clients authenticate again), for --auth-token-ttl after their
last use. JWTs (`--auth-token jwt,...`, shim/io/auth_token.py): signed by the node that checked
the password, naming the user and the auth revision it was checked at; no grant goes through the
log and no node holds a table: every node verifies a token with the key, and any change of the
auth state since it was made fails its requests with "revision of auth store is old" (etcd's rule).
Passwords are hashed (bcrypt) here, on a worker thread, before the request is proposed, and
checked here, so neither a password nor the work of hashing reaches the log or the apply loop.

This module must never change the KV state itself nor talk to the core: it only translates.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import secrets
import string

import bcrypt

import grpc
from google.protobuf.message import DecodeError

from verikv.etcdpb import auth_pb2, health_pb2, rpc_pb2
from verikv.shim.api import _front, headers
from verikv.shim.api.auth_limit import MAX_FAILURES, WINDOW_S, FailureLimit
from verikv.shim.kv import backup, errors
from verikv.shim.kv.auth import NOBODY, READ, AuthInfo
from verikv.shim.kv.errors import EtcdError
from verikv.shim.kv.commands import (GRPC_OVERHEAD_BYTES, MAX_REQUEST_BYTES, REQUEST_TYPES, KeepAlives, Kind,
                                     TokenGrant, plain_range_key)
from verikv.shim.kv.store import EncodedRange
from verikv.shim.kv.watch import FanOut, WatchHub, fragments

log = logging.getLogger(__name__)

SERVER_VERSION = "3.4.0-verikv"  # etcdctl reads the major.minor of this
RANGE = "/etcdserverpb.KV/Range"
WATCH = "/etcdserverpb.Watch/Watch"
KEEP_ALIVE = "/etcdserverpb.Lease/LeaseKeepAlive"
KEEP_ALIVES_PER_COMMAND = 4096  # keep-alives renewed by one command in the log (32 KiB of IDs)
SNAPSHOT = "/etcdserverpb.Maintenance/Snapshot"
STREAMING = [WATCH, KEEP_ALIVE, SNAPSHOT]
SNAPSHOT_CHUNK_BYTES = 32 * 1024  # etcd's snapshotSendBufferSize
MESSAGE, END, OPEN, HALF_CLOSED = 1, 2, 3, 4  # what the front hands over besides unary requests (0)
# A Watch stream whose client has this many bytes not yet taken is paused; it resumes (caught up
# from the history, RESUME_RESPONSES responses per watcher at a time) below the low mark.
WATCH_BACKLOG_HIGH = 8 * 1024 * 1024
WATCH_BACKLOG_LOW = 1024 * 1024
RESUME_RESPONSES = 4
_BARRIER = rpc_pb2.RangeRequest(key=b"\0", count_only=True)  # a linearizable read, for its wait only
# etcd splits the responses of a watcher created with `fragment` from this size on (its
# max-request-bytes plus the gRPC overhead it allows on top)
FRAGMENT_BYTES = MAX_REQUEST_BYTES + GRPC_OVERHEAD_BYTES
MAX_WATCH_ID_FIELD = 11  # a WatchResponse's watch_id field: its tag and at most ten varint bytes
AUTH_TOKEN_TTL_S = 300.0  # etcd's --auth-token-ttl: a token not used for this long is forgotten
BCRYPT_COST = 10  # etcd's (bcrypt.DefaultCost)
_TOKEN_LETTERS = string.ascii_letters
# the methods whose requests go into the log with the client's AuthInfo: method -> command kind
LOGGED = {
    "/etcdserverpb.KV/Put": Kind.PUT,
    "/etcdserverpb.KV/DeleteRange": Kind.DELETE_RANGE,
    "/etcdserverpb.KV/Txn": Kind.TXN,
    "/etcdserverpb.KV/Compact": Kind.COMPACT,
    "/etcdserverpb.Lease/LeaseRevoke": Kind.LEASE_REVOKE,
    "/etcdserverpb.Maintenance/Alarm": Kind.ALARM,
    "/etcdserverpb.Auth/AuthEnable": Kind.AUTH_ENABLE,
    "/etcdserverpb.Auth/AuthDisable": Kind.AUTH_DISABLE,
    "/etcdserverpb.Auth/UserDelete": Kind.USER_DELETE,
    "/etcdserverpb.Auth/UserGrantRole": Kind.USER_GRANT_ROLE,
    "/etcdserverpb.Auth/UserRevokeRole": Kind.USER_REVOKE_ROLE,
    "/etcdserverpb.Auth/UserGet": Kind.USER_GET,
    "/etcdserverpb.Auth/UserList": Kind.USER_LIST,
    "/etcdserverpb.Auth/RoleAdd": Kind.ROLE_ADD,
    "/etcdserverpb.Auth/RoleDelete": Kind.ROLE_DELETE,
    "/etcdserverpb.Auth/RoleGet": Kind.ROLE_GET,
    "/etcdserverpb.Auth/RoleList": Kind.ROLE_LIST,
    "/etcdserverpb.Auth/RoleGrantPermission": Kind.ROLE_GRANT_PERMISSION,
    "/etcdserverpb.Auth/RoleRevokePermission": Kind.ROLE_REVOKE_PERMISSION,
}
# Maintenance calls etcd serves to root only while auth is enabled (its authMaintenanceServer)
ADMIN_ONLY = {"/etcdserverpb.Maintenance/Defragment", "/etcdserverpb.Maintenance/Hash",
              "/etcdserverpb.Maintenance/HashKV", SNAPSHOT}


class _Token:
    """A token some node handed out: whose, and what makes it void (a change of the user's
    password, the user's deletion, an AuthDisable, or AUTH_TOKEN_TTL_S without use)."""

    __slots__ = ("user", "password", "disables", "deadline")

    def __init__(self, user: str, password: bytes, disables: int, deadline: float):
        self.user = user
        self.password = password
        self.disables = disables
        self.deadline = deadline


class ClientServer:
    """The etcd v3 API on `listen`, served by the grpc++ front (shim/api/front/front.cpp).

    The front's thread accepts calls and reads their requests; the event loop takes them in
    batches (one wake-up per batch), parses each once, starts it on the node with a `done`
    that finishes the call: a response, or an EtcdError that becomes its gRPC status.
    `start()` and `stop(grace)` match grpc.aio.Server's."""

    def __init__(self, node, listen: str, client_urls: list[str], peer_urls: list[str],
                 progress_notify_interval_s: float = 600.0,
                 watch_backlog_bytes: tuple[int, int] = (WATCH_BACKLOG_HIGH, WATCH_BACKLOG_LOW),
                 require_leader_timeout_s: float = 1.0, tls=None, auth_token_ttl_s: float = AUTH_TOKEN_TTL_S,
                 max_concurrent_streams: int = 0, jwt=None, auth_max_failures: int = MAX_FAILURES,
                 auth_failure_window_s: float = WINDOW_S, max_connections_per_client: int = 0):
        self.node = node
        # failed Authenticate calls per user name (auth_limit.py): beyond the limit, no bcrypt
        self.auth_failures = FailureLimit(auth_max_failures, auth_failure_window_s)
        # shim.io.auth_token.JwtTokens (duck-typed: make(user, revision), info(token)), or None
        # for etcd's simple tokens
        self.jwt = jwt
        self.max_concurrent_streams = max_concurrent_streams  # per client connection; 0: no limit
        self.max_connections_per_client = max_connections_per_client  # per client address; 0: no limit
        self._refused_logged = 0  # connections refused so far that the log has told of
        self._connections_timer: asyncio.TimerHandle | None = None
        self.auth_token_ttl_s = auth_token_ttl_s
        self._tokens: dict[bytes, _Token] = {}  # the tokens granted, by their sha256
        self._stream_who: dict[int, tuple] = {}  # a stream's (token, certificate's name), from its OPEN
        self._token_serial = 0
        self.tls = tls  # shim.io.tls.ClientTLS (duck-typed: this package imports no I/O), or None
        self.listen = listen
        self.client_urls = client_urls
        self.peer_urls = peer_urls
        self._front = None
        self._headers = headers.HeaderCache(node.node_id)
        self.watches = WatchHub()
        node.on_applied.append(self._on_applied)
        self.progress_notify_interval_s = progress_notify_interval_s
        self.watch_backlog_high, self.watch_backlog_low = watch_backlog_bytes
        # etcd's WithRequireLeader: streams that end once the node has had no leader this long
        self.require_leader_timeout_s = require_leader_timeout_s
        self._require_leader: set[int] = set()
        self._keep_alives: dict[int, int] = {}  # keep-alive stream: its requests not answered yet
        self._half_closed: set[int] = set()  # keep-alive streams whose clients send no more
        # keep-alive answers of this turn, handed to the front together once the turn's callbacks
        # are done (one lock and one wake-up of its thread, not one per answer)
        self._answers: list[tuple[int, bytes]] = []
        self._renewals: list[tuple[int, int]] = []  # (stream, lease ID) of this turn's keep-alives
        self._leaderless_since: float | None = None
        self._progress_timer: asyncio.TimerHandle | None = None
        # calls finished, by (method, gRPC status code): Prometheus' grpc_server_handled_total
        self.handled: dict[tuple[str, int], int] = {}
        # method: (request type, start(request, body, done)); start answers through done
        self._methods = {
            RANGE: (rpc_pb2.RangeRequest, self._range),
            "/etcdserverpb.KV/Put": (rpc_pb2.PutRequest, functools.partial(node.command, Kind.PUT)),
            "/etcdserverpb.KV/DeleteRange": (rpc_pb2.DeleteRangeRequest,
                                             functools.partial(node.command, Kind.DELETE_RANGE)),
            "/etcdserverpb.KV/Txn": (rpc_pb2.TxnRequest, functools.partial(node.command, Kind.TXN)),
            "/etcdserverpb.KV/Compact": (rpc_pb2.CompactionRequest,
                                         functools.partial(node.command, Kind.COMPACT)),
            "/etcdserverpb.Lease/LeaseGrant": (rpc_pb2.LeaseGrantRequest,
                                               lambda request, body, done: node.lease_grant(request, done)),
            "/etcdserverpb.Lease/LeaseRevoke": (rpc_pb2.LeaseRevokeRequest,
                                                functools.partial(node.command, Kind.LEASE_REVOKE)),
            "/etcdserverpb.Lease/LeaseTimeToLive": (rpc_pb2.LeaseTimeToLiveRequest, self._time_to_live),
            "/etcdserverpb.Lease/LeaseLeases": (rpc_pb2.LeaseLeasesRequest, self._leases),
            "/etcdserverpb.Maintenance/Status": (rpc_pb2.StatusRequest, self._status),
            "/etcdserverpb.Maintenance/Alarm": (rpc_pb2.AlarmRequest, functools.partial(node.command, Kind.ALARM)),
            "/etcdserverpb.Maintenance/Hash": (rpc_pb2.HashRequest, self._hash),
            "/etcdserverpb.Maintenance/HashKV": (rpc_pb2.HashKVRequest, self._hash_kv),
            "/etcdserverpb.Maintenance/Defragment": (rpc_pb2.DefragmentRequest,
                                                     lambda request, body, done: node.defragment(done)),
            "/etcdserverpb.Maintenance/MoveLeader": (rpc_pb2.MoveLeaderRequest,
                                                     lambda request, body, done: node.move_leader(request.targetID, done)),
            "/grpc.health.v1.Health/Check": (health_pb2.HealthCheckRequest, self._health),
            "/etcdserverpb.Cluster/MemberList": (rpc_pb2.MemberListRequest, self._member_list),
            "/etcdserverpb.Auth/Authenticate": (rpc_pb2.AuthenticateRequest, self._authenticate),
            "/etcdserverpb.Auth/UserAdd": (rpc_pb2.AuthUserAddRequest, self._user_add),
            "/etcdserverpb.Auth/UserChangePassword": (rpc_pb2.AuthUserChangePasswordRequest,
                                                      self._user_change_password),
        }
        for method, kind in LOGGED.items():
            if method not in self._methods:
                self._methods[method] = (REQUEST_TYPES[kind], functools.partial(node.command, kind))

    async def start(self) -> None:
        try:
            tls = self.tls
            self._front = _front.Front(self.listen, MAX_REQUEST_BYTES + GRPC_OVERHEAD_BYTES, STREAMING,
                                       max_concurrent_streams=self.max_concurrent_streams,
                                       max_connections_per_client=self.max_connections_per_client,
                                       **({} if tls is None else dict(
                                           cert_pem=tls.cert_pem, key_pem=tls.key_pem, ca_pem=tls.ca_pem,
                                           client_cert_auth=tls.client_cert_auth, check=tls.check)))
        except RuntimeError as err:
            raise OSError(str(err)) from None
        loop = asyncio.get_running_loop()
        loop.add_reader(self._front.fd, self._on_calls)
        self._progress_timer = loop.call_later(self.progress_notify_interval_s, self._progress_notify)
        if self.max_connections_per_client:
            self._connections_timer = loop.call_later(1.0, self._log_refused_connections)

    @property
    def refused_connections(self) -> int:
        """Client connections refused so far for --max-connections-per-client."""
        front = self._front
        return front.refused_connections if front is not None else self._refused_logged

    def _log_refused_connections(self) -> None:
        """Once a second, what the front refused since the last time (one line, not one per connection)."""
        if self._front is None:
            return
        refused = self._front.refused_connections
        if refused > self._refused_logged:
            log.warning("refused %d client connection(s) in the last second: their address had "
                        "--max-connections-per-client (%d) open; each call on them was answered "
                        "RESOURCE_EXHAUSTED", refused - self._refused_logged, self.max_connections_per_client)
            self._refused_logged = refused
        self._connections_timer = asyncio.get_running_loop().call_later(1.0, self._log_refused_connections)

    async def stop(self, grace: float | None = None) -> None:
        if self._progress_timer is not None:
            self._progress_timer.cancel()
        if self._connections_timer is not None:
            self._connections_timer.cancel()
        self._send_answers()
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
        node, finish = self.node, self._finish
        auth = node.kv.auth
        for call_id, method, body, kind, token, cn in front.take():
            if kind:
                if kind == OPEN and (token is not None or cn is not None) and method != KEEP_ALIVE:
                    self._stream_who[call_id] = (token, cn)
                elif kind == END:
                    self._stream_who.pop(call_id, None)
                try:
                    if method == WATCH:
                        self._on_watch(call_id, body, kind)
                    elif method == KEEP_ALIVE:
                        self._on_keep_alive(call_id, body, kind)
                    else:
                        self._on_snapshot(call_id, kind)
                except Exception as err:  # noqa: BLE001 - a fault on one stream ends that stream, loudly
                    failed = internal_error(method, err)
                    if self._front is not None:
                        self._send_answers()
                        self._front.finish(call_id, failed.code.value[0], failed.message, b"")
                continue
            done = functools.partial(finish, call_id, method)
            if token is not None or auth.enabled:
                try:
                    self._as_user(call_id, method, body, token, cn, done)
                except Exception as err:  # noqa: BLE001 - as below
                    done(internal_error(method, err))
                continue
            if method == RANGE:
                key = plain_range_key(body)
                if key is not None:  # RangeRequest(key=...) and nothing else: not parsed
                    node.read(key, False, done)
                    continue
            entry = self._methods.get(method)
            if entry is None:  # not counted in `handled`: its name is the client's
                finish(call_id, None, errors.unsupported_method(method))
                continue
            request_type, start = entry
            try:
                request = request_type.FromString(body)
            except DecodeError:
                finish(call_id, method, EtcdError(grpc.StatusCode.INVALID_ARGUMENT,
                                          f"verikv: {method}: the request is not a valid {request_type.__name__}"))
                continue
            try:
                start(request, body, done)
            except Exception as err:  # noqa: BLE001 - a fault in one handler answers that call, loudly
                done(internal_error(method, err))

    # ---- auth ----

    def who(self, token: bytes | None) -> AuthInfo | None:
        """The AuthInfo of a call's token metadata (None without one); raise etcd's "invalid auth
        token" for a token no grant in the log named (or one this node forgot: it restarted since,
        or installed a peer's snapshot) or that is void."""
        if token is None:
            return None
        if self.jwt is not None:  # etcd's: checked even while auth is disabled
            claims = self.jwt.info(token)
            if claims is None:
                raise errors.INVALID_AUTH_TOKEN.fresh()
            return AuthInfo(*claims)
        auth = self.node.kv.auth
        digest = hashlib.sha256(token).digest()
        t = self._tokens.get(digest)
        now = asyncio.get_running_loop().time()
        if t is not None:
            user = auth.users.get(t.user)
            if (auth.enabled and auth.disables == t.disables and user is not None
                    and user.password == t.password and now < t.deadline):
                t.deadline = now + self.auth_token_ttl_s
                return AuthInfo(t.user, auth.revision)
            del self._tokens[digest]
        raise errors.INVALID_AUTH_TOKEN.fresh()

    def who_of(self, token: bytes | None, cn: str | None) -> AuthInfo | None:
        """The AuthInfo of a call: its token's, or without one (etcd's rule when clients must
        show a certificate) its certificate's common name as the user name."""
        who = self.who(token)
        if who is None and cn is not None:
            auth = self.node.kv.auth
            if auth.enabled:
                return AuthInfo(cn, auth.revision)
        return who

    def _stream_user(self, stream: int, keep: bool = True) -> AuthInfo | None:
        token, cn = (self._stream_who.get if keep else self._stream_who.pop)(stream, None) or (None, None)
        return self.who_of(token, cn)

    def _granted(self, grants) -> None:
        """Tokens the log granted (shim/kv/auth.py): good from now for auth_token_ttl_s."""
        now = asyncio.get_running_loop().time()
        if len(self._tokens) + len(grants) > 1024:  # forget the expired ones
            for t in [t for t, v in self._tokens.items() if v.deadline <= now]:
                del self._tokens[t]
        for digest, user, password, disables in grants:
            if digest not in self._tokens:
                self._tokens[digest] = _Token(user, password, disables, now + self.auth_token_ttl_s)

    def _as_user(self, call_id: int, method: str, body: bytes, token: bytes | None, cn: str | None, done) -> None:
        """A call while auth is enabled, or one that came with a token: what etcd checks
        before (or instead of) proposing it, then the call with the client's AuthInfo."""
        entry = self._methods.get(method)
        if entry is None:
            self._finish(call_id, None, errors.unsupported_method(method))
            return
        request_type, start = entry
        try:
            request = request_type.FromString(body)
        except DecodeError:
            done(EtcdError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"verikv: {method}: the request is not a valid {request_type.__name__}"))
            return
        try:
            who = self.who_of(token, cn)
            if method in ADMIN_ONLY:
                self.node.kv.auth.check_admin(who or NOBODY)
        except EtcdError as err:
            done(errors.unmapped(err) if method in ADMIN_ONLY else err)
            return
        if method == RANGE:
            self.node.read(request, request.serializable, functools.partial(self._read_checked, request, who, done))
        elif method == LEASE_TIME_TO_LIVE and request.keys:
            start(request, body, functools.partial(self._lease_keys_checked, request, who, done))
        elif method in LOGGED:
            self.node.command(LOGGED[method], request, body, done, who or NOBODY)
        elif method in (AUTHENTICATE, USER_ADD, USER_CHANGE_PASSWORD):
            start(request, body, done, who)
        else:
            start(request, body, done)

    def _read_checked(self, request, who: AuthInfo | None, done, result) -> None:
        """A Range's answer, once the node read it: etcd's check of the reader's permission on
        the range with the node's auth state then (an AuthInfo older than it: "revision of
        auth store is old")."""
        if not isinstance(result, EtcdError):
            try:
                self.node.kv.auth.check_op(who or NOBODY, request.key, request.range_end, READ)
            except EtcdError as err:
                result = err
        done(result)

    def _lease_keys_checked(self, request, who: AuthInfo | None, done, result) -> None:
        """A LeaseTimeToLive with its keys, once answered: the user may read each key."""
        if not isinstance(result, EtcdError):
            lease = self.node.kv.leases.leases.get(request.ID)
            try:
                self.node.kv.auth.check_lease_keys(who or NOBODY, lease.keys if lease is not None else ())
            except EtcdError as err:
                result = err
        done(result)

    def _new_token(self) -> str:
        """etcd's simple token: 16 random letters, a dot, a serial number."""
        self._token_serial += 1
        return "".join(secrets.choice(_TOKEN_LETTERS) for _ in range(16)) + f".{self._token_serial}"

    def _authenticate(self, request, body, done, who=None) -> None:
        """etcd's Authenticate: once this node has applied everything committed before it (a
        linearizable read's wait), the password is checked against the user's bcrypt hash on a
        worker thread, then the token's grant goes through the log; if the auth state changed
        meanwhile, all again (etcd's loop). With JWTs, no grant: if the auth state is still the
        one the password was checked against, a token for that revision is signed (on a worker
        thread) and handed out."""
        loop = asyncio.get_running_loop()

        def check(result=None) -> None:
            if isinstance(result, EtcdError):
                done(result)
                return
            auth = self.node.kv.auth
            if not auth.enabled:
                done(errors.AUTH_NOT_ENABLED)
                return
            refused = self.auth_failures.admit(request.name)
            if refused is not None:  # too many failures for the name lately: no bcrypt
                done(refused)
                return
            hashed = auth.password_hash(request.name)
            if hashed is None:
                u = auth.users.get(request.name)
                self.auth_failures.done(request.name, None if u is not None else False)
                done(errors.NO_PASSWORD_USER if u is not None else errors.AUTH_FAILED)
                return
            revision = auth.revision
            checking = loop.run_in_executor(None, _password_matches, request.password, hashed)
            checking.add_done_callback(lambda f: checked(f, revision, hashed))

        def checked(f, revision: int, hashed: bytes) -> None:
            matched = not f.cancelled() and f.exception() is None and f.result()
            self.auth_failures.done(request.name, bool(matched))
            if not matched:
                done(errors.AUTH_FAILED)
                return
            if self.jwt is not None:
                if self.node.kv.auth.revision != revision:
                    check()  # the users changed while the password was checked: all again
                    return
                signing = loop.run_in_executor(None, self.jwt.make, request.name, revision)
                signing.add_done_callback(signed)
                return
            token = self._new_token()
            digest = hashlib.sha256(token.encode()).digest()
            grant = TokenGrant(request.name, revision, digest)
            self.node.command(Kind.AUTHENTICATE, grant, grant.SerializeToString(),
                              functools.partial(granted, token, digest))

        def signed(f) -> None:
            """A JWT for the user at the revision its password was checked at."""
            if self._front is None:
                return  # the server stopped meanwhile
            err = f.exception()
            if err is not None:  # etcd's ErrVerifyOnly (no private key), or a key that cannot sign
                done(EtcdError(grpc.StatusCode.UNKNOWN, str(err).splitlines()[0] if str(err) else
                               f"auth: cannot sign the token: {type(err).__name__}"))
                return
            resp = rpc_pb2.AuthenticateResponse(token=f.result())
            resp.header.revision = self.node.kv.revision
            done(resp)

        def granted(token: str, digest: bytes, result) -> None:
            if result == errors.AUTH_OLD_REVISION:
                check()
                return
            if isinstance(result, EtcdError):
                done(result)
                return
            self._granted(self.node.kv.auth.take_grants())  # this one among them, before its answer
            resp = rpc_pb2.AuthenticateResponse()
            resp.CopyFrom(result)  # the dedup table's copy keeps no token
            resp.token = token
            done(resp)

        self.node.read(_BARRIER, False, check)

    def _hashed(self, kind: Kind, name: str, password: str, no_password: bool, done, who) -> None:
        """A user's new password hashed on a worker thread, then the command (an authpb.User with
        the hash) for the log. A client that is not root is refused first (without hashing)."""
        try:
            self.node.kv.auth.check_admin(who or NOBODY)
        except EtcdError as err:
            done(err)
            return
        if kind == Kind.USER_ADD and not name:
            done(errors.USER_EMPTY)
            return

        def propose(hashed: bytes) -> None:
            if self._front is None:
                return  # the server stopped meanwhile
            user = auth_pb2.User(name=name.encode(), password=hashed)
            if kind == Kind.USER_ADD:
                user.options.no_password = no_password
            self.node.command(kind, user, user.SerializeToString(), done, who)

        if no_password:
            propose(b"")
            return
        if "\0" in password:  # bcrypt takes none (etcd's Go bcrypt would)
            done(BAD_PASSWORD)
            return
        hashing = asyncio.get_running_loop().run_in_executor(None, _hash_password, password)

        def hashed(f) -> None:
            if f.exception() is not None:  # never a password in the message
                done(EtcdError(grpc.StatusCode.INVALID_ARGUMENT, "verikv: the password cannot be hashed"))
                return
            propose(f.result())

        hashing.add_done_callback(hashed)

    def _user_add(self, request, body, done, who=None) -> None:
        self._hashed(Kind.USER_ADD, request.name, request.password, request.options.no_password, done, who)

    def _user_change_password(self, request, body, done, who=None) -> None:
        self._hashed(Kind.USER_CHANGE_PASSWORD, request.name, request.password, False, done, who)

    def _count(self, method: str, code: int) -> None:
        """One more call of `method` (one verikv serves) finished with `code` (grpc_server_handled_total)."""
        key = (method, code)
        handled = self.handled
        handled[key] = handled.get(key, 0) + 1

    def _finish(self, call_id: int, method: str | None, result) -> None:
        front = self._front
        if front is None:
            return
        if isinstance(result, EtcdError):
            code = result.code.value[0]
            front.finish(call_id, code, result.message, b"")
            if method is not None:
                self._count(method, code)
            return
        self._count(method, 0)
        if type(result) is EncodedRange:
            front.finish(call_id, 0, "", self._headers.encoded(self.node.machine.term, result.header_revision)
                         + result.body)
        else:
            if type(result) is not health_pb2.HealthCheckResponse:  # the one without etcd's header
                self._headers.fill(result.header, self.node.machine.term)
            front.finish(call_id, 0, "", result.SerializeToString())

    # ---- Watch ----

    def _on_watch(self, stream: int, body: bytes, kind: int) -> None:
        """A new Watch stream, a message on one, or its end (the client cancelled or went away)."""
        if kind == OPEN:
            if body == b"true":  # etcd's WithRequireLeader
                if not self._has_leader():
                    self._end_stream(stream, errors.NO_LEADER)
                else:
                    self._require_leader.add(stream)
            return
        if kind == HALF_CLOSED:
            return  # etcd goes on sending to a watcher whose client sends nothing more
        if kind == END:
            self.watches.close(stream)
            self._require_leader.discard(stream)
            self._front.finish(stream, grpc.StatusCode.CANCELLED.value[0], "", b"")
            self._count(WATCH, grpc.StatusCode.CANCELLED.value[0])
            return
        try:
            request = rpc_pb2.WatchRequest.FromString(body)
        except DecodeError:
            self._end_stream(stream, EtcdError(grpc.StatusCode.INVALID_ARGUMENT,
                                               f"verikv: {WATCH}: a message is not a valid WatchRequest"))
            return
        if request.HasField("create_request") and (self.node.kv.auth.enabled or stream in self._stream_who):
            create = request.create_request
            try:
                self.node.kv.auth.check_op(self._stream_user(stream) or NOBODY, create.key,
                                           create.range_end, READ)
            except EtcdError as err:  # etcd: created and canceled at once, with the reason
                if err not in (errors.INVALID_AUTH_TOKEN, errors.AUTH_OLD_REVISION, errors.USER_EMPTY):
                    err = errors.PERMISSION_DENIED
                resp = rpc_pb2.WatchResponse(watch_id=-1, created=True, canceled=True,
                                             cancel_reason=errors.go_status_text(err))
                resp.header.revision = self.node.kv.revision
                self._send_watch([(stream, resp)])
                return
        self._send_watch(self.watches.request(stream, request, self.node.kv))

    def _progress_notify(self) -> None:
        if self._front is None:
            return
        self._send_watch(self.watches.progress_tick(self.node.kv))
        self._progress_timer = asyncio.get_running_loop().call_later(self.progress_notify_interval_s,
                                                                     self._progress_notify)

    def _end_stream(self, stream: int, err: EtcdError) -> None:
        self._stream_who.pop(stream, None)
        self.watches.close(stream)
        self._require_leader.discard(stream)
        self._front.finish(stream, err.code.value[0], err.message, b"")
        self._count(WATCH, err.code.value[0])

    def has_leader(self) -> bool:
        """See _has_leader (for the metrics endpoint and health checks)."""
        return self._has_leader()

    def _has_leader(self) -> bool:
        """The node follows a leader, or leads one that a quorum heard from lately (a candidate
        has none, whatever leader it last knew; a leader cut off from the others has none either,
        as etcd's raft steps down with CheckQuorum)."""
        st = self.node.status
        if st.get("role") == "leader":
            return self.node.machine.leader_has_quorum()
        return st.get("leader") is not None and st.get("role") != "candidate"

    def _check_leader(self) -> None:
        """Streams that require a leader end (etcd's "no leader") once the node has had none for
        require_leader_timeout_s."""
        if self._has_leader():
            self._leaderless_since = None
            return
        now = asyncio.get_running_loop().time()
        if self._leaderless_since is None:
            self._leaderless_since = now
        elif now - self._leaderless_since >= self.require_leader_timeout_s and self._front is not None:
            for stream in list(self._require_leader):
                self._end_stream(stream, errors.NO_LEADER)

    def _on_applied(self, store, writes) -> None:
        grants = store.auth.take_grants()
        if grants:
            self._granted(grants)
        if self._require_leader:
            self._check_leader()
        hub = self.watches
        out = hub.applied(store, writes, fan_out=True)
        if out:
            self._send_watch(out)
        if hub.paused and self._front is not None:
            for stream in list(hub.paused):
                backlog = self._front.backlog(stream)
                if backlog < 0:
                    hub.close(stream)
                elif backlog < self.watch_backlog_low:
                    self._send_watch(hub.resume(stream, store, RESUME_RESPONSES))

    def _send_watch(self, responses) -> None:
        front = self._front
        if front is None:
            return
        term, fill, encoded, hub = self.node.machine.term, self._headers.fill, self._headers.encoded, self.watches
        out = []  # handed to the front at once: one lock, one wake-up of its thread

        def add(stream: int, data: bytes, fragment: bool, resp=None) -> None:
            if len(data) < FRAGMENT_BYTES or not fragment:
                out.append((stream, data))
            else:  # etcd measures the whole response, header included
                whole = resp if resp is not None else rpc_pb2.WatchResponse.FromString(data)
                out.extend((stream, part.SerializeToString()) for part in fragments(whole, FRAGMENT_BYTES))

        for item in responses:
            if type(item) is FanOut:  # one revision's events for many watchers: the front copies them
                header = encoded(term, item.revision)
                if len(header) + len(item.events) + MAX_WATCH_ID_FIELD < FRAGMENT_BYTES:
                    out.append((header, item.events, item.targets.ids))
                else:
                    for w in item.targets.watchers:
                        add(w.stream, header + w.id_field + item.events, w.fragment)
                continue
            stream, resp = item
            fill(resp.header, term)
            data = resp.SerializeToString()
            add(stream, data, len(data) >= FRAGMENT_BYTES and hub.fragmenting(stream, resp.watch_id), resp)
        failed, behind = front.send_many(out, self.watch_backlog_high)
        for stream in failed:
            hub.close(stream)  # the stream is over
        for stream in behind:
            hub.pause(stream)  # its client is behind: caught up from the history later

    # ---- LeaseKeepAlive ----

    def _on_keep_alive(self, stream: int, body: bytes, kind: int) -> None:
        """A keep-alive stream: each message renews a lease through the log (the keep-alives of a
        turn, from every stream, in one command); the answers go back on the stream in order as
        they come (TTL 0: no such lease, as etcd answers). A client that half-closes the stream
        gets its answers, then the end of the stream (etcd's too)."""
        if kind == OPEN:
            self._keep_alives[stream] = 0
            return
        if kind == END:
            self._keep_alives.pop(stream, None)
            self._half_closed.discard(stream)
            self._send_answers()  # a stream finishes after its answers queued, never before
            self._front.finish(stream, grpc.StatusCode.CANCELLED.value[0], "", b"")
            self._count(KEEP_ALIVE, grpc.StatusCode.CANCELLED.value[0])
            return
        if kind == HALF_CLOSED:
            self._half_closed.add(stream)
            self._end_keep_alives(stream)
            return
        try:
            request = rpc_pb2.LeaseKeepAliveRequest.FromString(body)
        except DecodeError:
            self._send_answers()
            self._front.finish(stream, grpc.StatusCode.INVALID_ARGUMENT.value[0],
                               f"verikv: {KEEP_ALIVE}: a message is not a valid LeaseKeepAliveRequest", b"")
            self._count(KEEP_ALIVE, grpc.StatusCode.INVALID_ARGUMENT.value[0])
            return
        self._keep_alives[stream] = self._keep_alives.get(stream, 0) + 1
        if not self._renewals:
            asyncio.get_running_loop().call_soon(self._renew)
        self._renewals.append((stream, request.ID))

    def _renew(self) -> None:
        """The keep-alives taken this turn, on every stream, go into the log as one command (at
        most KEEP_ALIVES_PER_COMMAND each)."""
        renewals, self._renewals = self._renewals, []
        for i in range(0, len(renewals), KEEP_ALIVES_PER_COMMAND):
            part = renewals[i:i + KEEP_ALIVES_PER_COMMAND]
            request = KeepAlives([lease_id for _, lease_id in part])
            self.node.command(Kind.LEASE_KEEP_ALIVES, request, request.SerializeToString(),
                              functools.partial(self._kept_alive, part))

    def _kept_alive(self, part: list[tuple[int, int]], result) -> None:
        """The answers to one KeepAlives command: each (stream, lease ID) of `part` in order."""
        front = self._front
        if front is None:
            return
        pending = self._keep_alives
        if isinstance(result, EtcdError):  # as etcd: each of the streams ends with the error
            self._send_answers()
            for stream in dict.fromkeys(stream for stream, _ in part):
                if pending.pop(stream, None) is not None:
                    self._half_closed.discard(stream)
                    front.finish(stream, result.code.value[0], result.message, b"")
                    self._count(KEEP_ALIVE, result.code.value[0])
            return
        header = self._headers.encoded(self.node.machine.term, result.revision)
        if not self._answers:
            asyncio.get_running_loop().call_soon(self._send_answers)
        answers, answer = self._answers, result.answer
        for (stream, lease_id), ttl in zip(part, result.ttls):
            if stream in pending:
                pending[stream] -= 1
            answers.append((stream, answer(header, lease_id, ttl)))
        if self._half_closed:
            for stream in dict.fromkeys(stream for stream, _ in part):
                self._end_keep_alives(stream)

    def _send_answers(self) -> None:
        """Hand the keep-alive answers queued so far to the front, in order, at once."""
        answers, self._answers = self._answers, []
        if answers and self._front is not None:
            self._front.send_many(answers)

    def _end_keep_alives(self, stream: int) -> None:
        """A half-closed keep-alive stream whose every request was answered ends (OK)."""
        if stream in self._half_closed and not self._keep_alives.get(stream):
            self._half_closed.discard(stream)
            self._keep_alives.pop(stream, None)
            self._send_answers()
            self._front.finish(stream, 0, "", b"")
            self._count(KEEP_ALIVE, 0)

    # ---- Maintenance.Snapshot ----

    def _on_snapshot(self, stream: int, kind: int) -> None:
        """etcd's Snapshot: this node's whole applied state, point in time, in chunks with the
        bytes still to come, then its sha256 (which `verikv snapshot restore` checks, as etcd's
        restore does). The file is a bolt file as etcd's is, with etcd's buckets and the node's
        own state (shim/kv/backup.py), encoded in steps between which the node goes on."""
        front = self._front
        if kind == END:
            front.finish(stream, grpc.StatusCode.CANCELLED.value[0], "", b"")
            self._count(SNAPSHOT, grpc.StatusCode.CANCELLED.value[0])
            return
        if kind != MESSAGE:
            return
        try:
            self.node.kv.auth.check_admin(self._stream_user(stream, keep=False) or NOBODY)
        except EtcdError as err:
            err = errors.unmapped(err)
            front.finish(stream, err.code.value[0], err.message, b"")
            self._count(SNAPSHOT, err.code.value[0])
            return

        def send(data) -> None:
            if isinstance(data, EtcdError):
                front.finish(stream, data.code.value[0], data.message, b"")
                self._count(SNAPSHOT, data.code.value[0])
                return
            body, digest = data[:-32], data[-32:]  # etcd sends the sha256 last, on its own
            total = len(body)
            for start in range(0, total, SNAPSHOT_CHUNK_BYTES):
                blob = body[start:start + SNAPSHOT_CHUNK_BYTES]
                resp = rpc_pb2.SnapshotResponse(remaining_bytes=total - start - len(blob), blob=blob)
                if not front.send(stream, resp.SerializeToString()):
                    return  # the client went away
            front.send(stream, rpc_pb2.SnapshotResponse(blob=digest).SerializeToString())
            front.finish(stream, 0, "", b"")
            self._count(SNAPSHOT, 0)

        self._in_steps(backup.encode_steps(self.node.kv), send)

    # ---- methods ----

    def _time_to_live(self, request, body, done):
        """etcd's leader answers from its lease clock; here the node answers from its own, once
        it has applied everything committed before the request (a linearizable read's wait). A
        follower's clock runs from when it applied the lease's last command, so it may say a
        little more than the leader's."""
        def answer(result):
            if isinstance(result, EtcdError):
                done(result)
                return
            node = self.node
            lease = node.kv.leases.leases.get(request.ID)
            resp = rpc_pb2.LeaseTimeToLiveResponse(ID=request.ID, TTL=-1)  # etcd's answer for none
            if lease is not None:
                left = node.machine.lease_timers.remaining_s(request.ID, node.machine.clock())
                resp.TTL = int(left if left is not None else lease.remaining_ms / 1000)
                resp.grantedTTL = lease.ttl
                if request.keys:
                    resp.keys.extend(sorted(lease.keys))
            resp.header.revision = node.kv.revision
            done(resp)

        self.node.read(_BARRIER, False, answer)

    def _leases(self, request, body, done):
        kv = self.node.kv
        resp = rpc_pb2.LeaseLeasesResponse(leases=[rpc_pb2.LeaseStatus(ID=i) for i in sorted(kv.leases.leases)])
        resp.header.revision = kv.revision
        done(resp)

    def _health(self, request, body, done):
        """gRPC's health check, for the whole server (service ""): SERVING while the node has a
        leader (see _has_leader), NOT_SERVING otherwise, so that a load balancer sends clients to
        nodes that can answer them (etcd answers SERVING for as long as it runs)."""
        if request.service:
            done(EtcdError(grpc.StatusCode.NOT_FOUND, f"verikv: unknown service {request.service!r}"))
            return
        status = health_pb2.HealthCheckResponse.SERVING if self._has_leader() \
            else health_pb2.HealthCheckResponse.NOT_SERVING
        done(health_pb2.HealthCheckResponse(status=status))

    def _range(self, request, body, done):
        self.node.read(request, request.serializable, done)

    def _status(self, request, body, done):
        node = self.node
        st = node.machine.current_status()  # read again if the core stepped since: raftTerm with it
        leader = st.get("leader") if self._has_leader() else None  # as etcd's raft: none while electing
        kv = node.kv
        # raftIndex: the slots committed (the core's commit_upto: every slot below it is chosen
        # and known here), raftAppliedIndex: the slots applied to the KV state; raftTerm: the
        # highest ballot round this node has seen; dbSize (= dbSizeInUse): KVStore.db_size
        resp = rpc_pb2.StatusResponse(
            version=SERVER_VERSION, leader=0 if leader is None else leader + 1,
            raftIndex=st.get("commit_upto", 0), raftAppliedIndex=kv.next_slot,
            raftTerm=node.machine.term, dbSize=kv.db_size, dbSizeInUse=kv.db_size)
        resp.header.revision = kv.revision
        if leader is None:
            resp.errors.append("etcdserver: no leader")
        for member, alarm in sorted(kv.alarms):  # as etcd prints an AlarmMember (gogoproto's String)
            name = rpc_pb2.AlarmType.Name(alarm) if alarm in rpc_pb2.AlarmType.values() else alarm
            resp.errors.append(f"memberID:{member} alarm:{name} ")
        done(resp)

    def _hash_kv(self, request, body, done):
        """etcd's HashKV, from this node's state (not through the log, as etcd): nodes that
        applied the same revisions answer the same hash (KVStore.hash_steps). Computed in steps,
        between which the node goes on (a store of a million keys takes about a second)."""
        def answer(result):
            if not isinstance(result, EtcdError):
                h, rev, compact = result
                result = rpc_pb2.HashKVResponse(hash=h, compact_revision=compact)
                result.header.revision = rev
            done(result)

        self._in_steps(self.node.kv.hash_steps(request.revision), answer)

    def _hash(self, request, body, done):
        def answer(result):
            if not isinstance(result, EtcdError):
                h, rev, _ = result
                result = rpc_pb2.HashResponse(hash=h)
                result.header.revision = rev
            done(result)

        self._in_steps(self.node.kv.hash_steps(0, whole=True), answer)

    @staticmethod
    def _in_steps(steps, finish) -> None:
        """Run a generator of steps, one per turn of the event loop; finish(what it returns, or
        the EtcdError it raises)."""
        loop = asyncio.get_running_loop()

        def step():
            try:
                next(steps)
            except StopIteration as stop:
                finish(stop.value)
            except EtcdError as err:
                finish(err)
            except Exception as err:  # noqa: BLE001 - see internal_error
                finish(internal_error("a computation in steps", err))
            else:
                loop.call_soon(step)

        step()

    def _member_list(self, request, body, done):
        resp = rpc_pb2.MemberListResponse()
        for i in range(self.node.cluster_size):
            resp.members.add(ID=i + 1, name=f"node{i}", peerURLs=[self.peer_urls[i]],
                             clientURLs=[self.client_urls[i]])
        done(resp)


AUTHENTICATE = "/etcdserverpb.Auth/Authenticate"
LEASE_TIME_TO_LIVE = "/etcdserverpb.Lease/LeaseTimeToLive"
BAD_PASSWORD = EtcdError(grpc.StatusCode.INVALID_ARGUMENT, "verikv: a password may not contain a NUL character")
USER_ADD = "/etcdserverpb.Auth/UserAdd"
USER_CHANGE_PASSWORD = "/etcdserverpb.Auth/UserChangePassword"


def _hash_password(password: str) -> bytes:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_COST))


def _password_matches(password: str, hashed: bytes) -> bool:
    try:
        return bcrypt.checkpw(password.encode(), hashed)
    except ValueError:  # not a bcrypt hash
        return False


def build_server(node, listen: str, client_urls: list[str], peer_urls: list[str], **options) -> ClientServer:
    """The client API server for `node` on `listen` (host:port), not yet started."""
    return ClientServer(node, listen, client_urls, peer_urls, **options)


def internal_error(what: str, err: Exception) -> EtcdError:
    """A handler failed on a request (a fault in verikv, not in the request): its call gets
    INTERNAL with the error, the error goes to the log with its traceback, and the node serves on
    (the key-value state changes only when the log is applied, not in a handler)."""
    log.error("internal error in %s: %s: %s", what, type(err).__name__, err, exc_info=err)
    return EtcdError(grpc.StatusCode.INTERNAL, f"verikv: internal error in {what}: {type(err).__name__}: {err}")
