"""etcd 3.4's auth store as replicated state: users, roles, their permissions, whether auth is
enabled, and the auth revision; and the permission checks every node makes with it.

Its commands come through the log like the KV store's and are applied by every node alike (no
clock, no randomness, no I/O here). Passwords reach the log already hashed (bcrypt, by the node
that received the request, as etcd 3.5 does: hashing here would make each node draw its own salt
and stall the apply loop); this module only stores the hash and never sees a password.

The auth revision (etcd's) starts at 1 and grows by one with every change of users, roles or
permissions and with AuthDisable (not with AuthEnable, as etcd). A client request carries the
revision the node that received it had when it looked up the client's token; a request that
checks permissions is refused with etcd's "revision of auth store is old" if the store has moved
on by the time it is applied (etcd 3.4's rule: it is refused, not re-checked), so a permission
revoked before a request is applied is never used by it.

A request's user is "" (and its revision 0) when it came without a token: while auth is enabled,
such a request is refused with "user name is empty" wherever etcd checks one.
"""

from __future__ import annotations

import bisect
import struct

from verikv.etcdpb import auth_pb2, rpc_pb2

from verikv.shim.kv import errors

ROOT = "root"  # etcd's root user and root role
MAX_UNTAKEN_GRANTS = 10_000  # token grants kept for a node that does not take them
READ, WRITE, READWRITE = auth_pb2.Permission.READ, auth_pb2.Permission.WRITE, auth_pb2.Permission.READWRITE


class AuthInfo:
    """Who sent a request: user name ("" for none) and the auth revision it was authorised at
    (0 for none), etcd's AuthInfo."""

    __slots__ = ("user", "revision")

    def __init__(self, user: str = "", revision: int = 0):
        self.user = user
        self.revision = revision

    def __eq__(self, other) -> bool:
        return isinstance(other, AuthInfo) and (self.user, self.revision) == (other.user, other.revision)

    def __repr__(self) -> str:
        return f"AuthInfo({self.user!r}, {self.revision})"


NOBODY = AuthInfo()


def _covers(intervals: list[tuple[bytes, bytes]], key: bytes, end: bytes) -> bool:
    """Whether the union of [b, e) intervals (e b"": +infinity, etcd's affine order) covers
    [key, end) (end b"": +infinity)."""
    at = key
    for b, e in sorted(intervals):
        if b > at:
            return False
        if e == b"":
            return True
        if e > at:
            at = e
            if end != b"" and at >= end:
                return True
    return False


class _Perms:
    """One user's merged permissions (etcd's unifiedRangePermissions): READ and WRITE intervals."""

    __slots__ = ("read", "write")

    def __init__(self) -> None:
        self.read: list[tuple[bytes, bytes]] = []
        self.write: list[tuple[bytes, bytes]] = []

    def allows(self, key: bytes, range_end: bytes, kind: int) -> bool:
        intervals = self.read if kind == READ else self.write
        if not range_end:  # a point: etcd's Intersects
            return any(b <= key and (e == b"" or key < e) for b, e in intervals)
        if range_end == b"\0":
            range_end = b""
        return _covers(intervals, key, range_end)


class AuthStore:
    def __init__(self) -> None:
        self.enabled = False
        self.revision = 1
        self.disables = 0  # AuthDisable commands applied (a node's tokens die with each)
        self.users: dict[str, auth_pb2.User] = {}
        self.roles: dict[str, auth_pb2.Role] = {}
        self._perms: dict[str, _Perms] | None = None  # per user, rebuilt after a change
        # tokens granted since take_grants(): (sha256, user, password hash, disables); the nodes'
        # token tables follow these (they are not part of the state: etcd's simple tokens live
        # in each member's memory and die with it)
        self._grants: list[tuple[bytes, str, bytes, int]] = []

    # ---- the checks (etcd's auth store: isOpPermitted, IsAdminPermitted) ----

    def _merged(self, user: str) -> _Perms | None:
        if self._perms is None:
            self._perms = {}
            for name, u in self.users.items():
                p = _Perms()
                for role_name in u.roles:
                    role = self.roles.get(role_name)
                    if role is None:
                        continue
                    for perm in role.keyPermission:
                        if perm.range_end:
                            ivl = (perm.key, b"" if perm.range_end == b"\0" else perm.range_end)
                        else:
                            ivl = (perm.key, perm.key + b"\0")
                        if perm.permType in (READ, READWRITE):
                            p.read.append(ivl)
                        if perm.permType in (WRITE, READWRITE):
                            p.write.append(ivl)
                self._perms[name] = p
        return self._perms.get(user)

    def has_root_role(self, user: str) -> bool:
        u = self.users.get(user)
        return u is not None and ROOT in u.roles

    def check_op(self, who: AuthInfo, key: bytes, range_end: bytes, kind: int) -> None:
        """etcd's isOpPermitted: raise the EtcdError refusing `who` `kind` (READ or WRITE) on
        [key, range_end) (a single key without range_end), or return."""
        if not self.enabled:
            return
        if who.revision == 0:
            raise errors.USER_EMPTY.fresh()
        if who.revision < self.revision:
            raise errors.AUTH_OLD_REVISION.fresh()
        if who.user not in self.users:
            raise errors.PERMISSION_DENIED.fresh()
        if self.has_root_role(who.user):
            return
        if not self._merged(who.user).allows(key, range_end, kind):
            raise errors.PERMISSION_DENIED.fresh()

    def check_admin(self, who: AuthInfo) -> None:
        """etcd's IsAdminPermitted (user-management commands and some maintenance ones)."""
        if not self.enabled:
            return
        if not who.user:
            raise errors.USER_EMPTY.fresh()
        if who.user not in self.users:
            raise errors.USER_NOT_FOUND.fresh()
        if not self.has_root_role(who.user):
            raise errors.PERMISSION_DENIED.fresh()

    def check_txn(self, who: AuthInfo, r: rpc_pb2.TxnRequest) -> None:
        """etcd's checkTxnAuth: every compare's key (READ), every op of both branches, and those
        of nested txns too (etcd 3.4 does not look into a nested txn, so its ops would go
        unchecked there; here they are checked like the others)."""
        for c in r.compare:
            self.check_op(who, c.key, c.range_end, READ)
        for ops in (r.success, r.failure):
            for op in ops:
                which = op.WhichOneof("request")
                if which == "request_txn":
                    self.check_txn(who, op.request_txn)
                if which == "request_range":
                    self.check_op(who, op.request_range.key, op.request_range.range_end, READ)
                elif which == "request_put":
                    self.check_op(who, op.request_put.key, b"", WRITE)
                elif which == "request_delete_range":
                    d = op.request_delete_range
                    if d.prev_kv:
                        self.check_op(who, d.key, d.range_end, READ)
                    self.check_op(who, d.key, d.range_end, WRITE)

    def check_lease_keys(self, who: AuthInfo, keys) -> None:
        """LeaseTimeToLive with its keys: READ on each (etcd 3.4.23 does not check, so a lease's
        key names leak to any user; later etcd releases check so)."""
        if not self.enabled:
            return
        if who.revision == 0:
            raise errors.USER_EMPTY.fresh()
        for key in sorted(keys):
            self.check_op(who, key, b"", READ)

    def password_hash(self, user: str) -> bytes | None:
        """The stored hash of a user who may authenticate (None: no such user, or one added
        with no_password)."""
        u = self.users.get(user)
        if u is None or u.options.no_password:
            return None
        return u.password

    # ---- commands (etcd's authStore methods, after the admin check) ----

    def _changed(self) -> None:
        self.revision += 1
        self._perms = None

    def enable(self) -> None:
        if self.enabled:
            return
        root = self.users.get(ROOT)
        if root is None:
            raise errors.ROOT_USER_NOT_EXIST.fresh()
        if ROOT not in root.roles:
            raise errors.ROOT_ROLE_NOT_EXIST.fresh()
        self.enabled = True
        self._perms = None

    def disable(self) -> None:
        if not self.enabled:
            return
        self.enabled = False
        self.disables += 1
        self._changed()

    def user_add(self, u: auth_pb2.User) -> None:
        """`u`: name, the password's hash (none with options.no_password) and options."""
        name = u.name.decode("utf-8", "surrogateescape")
        if not name:
            raise errors.USER_EMPTY.fresh()
        if name in self.users:
            raise errors.USER_ALREADY_EXIST.fresh()
        self.users[name] = auth_pb2.User(name=u.name, password=b"" if u.options.no_password else u.password,
                                         options=u.options)
        self._changed()

    def user_delete(self, name: str) -> None:
        if self.enabled and name == ROOT:
            raise errors.INVALID_AUTH_MGMT.fresh()
        if name not in self.users:
            raise errors.USER_NOT_FOUND.fresh()
        del self.users[name]
        self._changed()

    def user_change_password(self, u: auth_pb2.User) -> None:
        name = u.name.decode("utf-8", "surrogateescape")
        old = self.users.get(name)
        if old is None:
            raise errors.USER_NOT_FOUND.fresh()
        self.users[name] = auth_pb2.User(name=old.name, password=u.password, roles=old.roles,
                                         options=old.options)
        self._changed()

    def user_grant_role(self, user: str, role: str) -> None:
        u = self.users.get(user)
        if u is None:
            raise errors.USER_NOT_FOUND.fresh()
        if role != ROOT and role not in self.roles:
            raise errors.ROLE_NOT_FOUND.fresh()
        if role in u.roles:
            return  # etcd ignores it (and the revision stays)
        roles = sorted([*u.roles, role])
        del u.roles[:]
        u.roles.extend(roles)
        self._changed()

    def user_revoke_role(self, user: str, role: str) -> None:
        if self.enabled and user == ROOT and role == ROOT:
            raise errors.INVALID_AUTH_MGMT.fresh()
        u = self.users.get(user)
        if u is None:
            raise errors.USER_NOT_FOUND.fresh()
        if role not in u.roles:
            raise errors.ROLE_NOT_GRANTED.fresh()
        u.roles.remove(role)
        self._changed()

    def role_add(self, name: str) -> None:
        if not name:
            raise errors.ROLE_EMPTY.fresh()
        if name in self.roles:
            raise errors.ROLE_ALREADY_EXIST.fresh()
        self.roles[name] = auth_pb2.Role(name=name.encode())
        self._changed()

    def role_delete(self, name: str) -> None:
        if self.enabled and name == ROOT:
            raise errors.INVALID_AUTH_MGMT.fresh()
        if name not in self.roles:
            raise errors.ROLE_NOT_FOUND.fresh()
        del self.roles[name]
        for u in self.users.values():
            if name in u.roles:
                u.roles.remove(name)
        self._changed()

    def role_grant_permission(self, name: str, perm: auth_pb2.Permission) -> None:
        role = self.roles.get(name)
        if role is None:
            raise errors.ROLE_NOT_FOUND.fresh()
        perms = role.keyPermission
        keys = [p.key for p in perms]
        i = bisect.bisect_left(keys, perm.key)
        if i < len(perms) and perms[i].key == perm.key and perms[i].range_end == perm.range_end:
            perms[i].permType = perm.permType
        else:
            new = sorted([*perms, auth_pb2.Permission(permType=perm.permType, key=perm.key,
                                                      range_end=perm.range_end)],
                         key=lambda p: p.key)
            del perms[:]
            perms.extend(new)
        self._changed()

    def role_revoke_permission(self, name: str, key: bytes, range_end: bytes) -> None:
        role = self.roles.get(name)
        if role is None:
            raise errors.ROLE_NOT_FOUND.fresh()
        keep = [p for p in role.keyPermission if p.key != key or p.range_end != range_end]
        if len(keep) == len(role.keyPermission):
            raise errors.PERMISSION_NOT_GRANTED.fresh()
        del role.keyPermission[:]
        role.keyPermission.extend(keep)
        self._changed()

    def authenticate(self, user: str, revision: int, digest: bytes) -> None:
        """etcd's Authenticate as applied: the proposer checked the password at `revision`;
        if the users changed since, the token is not granted (its proposer checks again)."""
        if not self.enabled:
            raise errors.AUTH_NOT_ENABLED.fresh()
        u = self.users.get(user)
        if u is None or u.options.no_password:
            raise errors.AUTH_FAILED.fresh()
        if revision != self.revision:
            raise errors.AUTH_OLD_REVISION.fresh()
        if len(self._grants) >= MAX_UNTAKEN_GRANTS:
            del self._grants[:len(self._grants) // 2]
        self._grants.append((digest, user, u.password, self.disables))

    def take_grants(self) -> list[tuple[bytes, str, bytes, int]]:
        grants, self._grants = self._grants, []
        return grants

    # ---- reads ----

    def user_get(self, name: str) -> list[str]:
        u = self.users.get(name)
        if u is None:
            raise errors.USER_NOT_FOUND.fresh()
        return list(u.roles)

    def role_get(self, name: str) -> list[auth_pb2.Permission]:
        role = self.roles.get(name)
        if role is None:
            raise errors.ROLE_NOT_FOUND.fresh()
        return list(role.keyPermission)

    def user_list(self) -> list[str]:
        return sorted(self.users, key=lambda n: n.encode("utf-8", "surrogateescape"))

    def role_list(self) -> list[str]:
        return sorted(self.roles, key=lambda n: n.encode("utf-8", "surrogateescape"))

    # ---- snapshots ----

    _HEAD = struct.Struct("<BQQII")  # enabled, revision, disables, users, roles

    def encode(self) -> bytes:
        parts = [self._HEAD.pack(self.enabled, self.revision, self.disables, len(self.users), len(self.roles))]
        for _, u in sorted(self.users.items()):
            b = u.SerializeToString(deterministic=True)
            parts += [struct.pack("<I", len(b)), b]
        for _, r in sorted(self.roles.items()):
            b = r.SerializeToString(deterministic=True)
            parts += [struct.pack("<I", len(b)), b]
        return b"".join(parts)

    def decode(self, data: bytes, pos: int) -> int:
        enabled, self.revision, self.disables, nusers, nroles = self._HEAD.unpack_from(data, pos)
        self.enabled = bool(enabled)
        pos += self._HEAD.size
        for _ in range(nusers):
            (n,) = struct.unpack_from("<I", data, pos)
            u = auth_pb2.User.FromString(data[pos + 4:pos + 4 + n])
            pos += 4 + n
            self.users[u.name.decode("utf-8", "surrogateescape")] = u
        for _ in range(nroles):
            (n,) = struct.unpack_from("<I", data, pos)
            r = auth_pb2.Role.FromString(data[pos + 4:pos + 4 + n])
            pos += 4 + n
            self.roles[r.name.decode("utf-8", "surrogateescape")] = r
        self._perms = None
        return pos
