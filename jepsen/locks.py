"""The lock workload's clients: etcd's lock recipe (clientv3/concurrency's Session and Mutex),
written against the etcd v3 gRPC API so that the same code runs against both systems.

Every key is under `lk/` (one prefix, so the final history is one watch): the lock's keys are
`lk/lock/<session lease id in hex>`, the shared keys `lk/fenced` and `lk/unfenced`.

A locker is one client thread talking to one node (a locker sticks to its node: under a pause
nemesis its requests wait in a stopped process, as a client's do). It
  * opens a session: a lease (TTL `ttl_s`) kept alive every TTL/3 by a thread of its own;
  * locks: a Txn "if create_revision(my key) == 0 then put my key with the lease, else get it"
    gives its key's create revision; then, until its key is the lowest: Range the prefix for
    the key with the highest create revision below its own and Watch that key from the
    Range's revision + 1 until it is deleted (etcd's waitDeletes); then it checks that its key
    still exists with that create revision (else the session was lost: the lease expired);
  * holds: a few rounds of a fenced write (a Txn "if create_revision(my key) == mine then put
    lk/fenced = <lease>:<create revision>:<n>") and an unfenced one (a plain Put of
    lk/unfenced = the same kind of value), a short rest between them;
  * unlocks: deletes its key. After an error or a lost session it revokes the lease and
    opens a new session.
Everything goes into the run's history:
  acquire         key: the lock key; result: its create revision (when the recipe said "held")
  fenced-write    key: lk/fenced, value; result [succeeded?, revision]
  unfenced-write  key: lk/unfenced, value; result: revision
  release         key: the lock key; result: the delete's revision
A holder's interval, as it believes it, runs from its acquire's answer to its release's
invocation.

A locker must never write a value that does not name its lock key's lease and create revision
(the checker attributes every write by its value), nor record a write as acknowledged unless
its answer arrived.
"""

from __future__ import annotations

import random
import threading

import grpc

from verikv.etcdpb import rpc_pb2, rpc_pb2_grpc
from verikv.jepsen.clients import _prefix_end, classify, open_channel
from verikv.jepsen.history import FAIL, INFO, OK, History, Op
from verikv.jepsen.leases import keep_alive_once
from verikv.jepsen.workloads import Clock, Failed, Indeterminate, ThreadGroup

PREFIX = "lk/"
LOCK_PREFIX = PREFIX + "lock/"
FENCED, UNFENCED = PREFIX + "fenced", PREFIX + "unfenced"


class SessionLost(Exception):
    pass


class Locker(threading.Thread):
    def __init__(self, index: int, endpoint: str, node: int, history: History, clock: Clock,
                 stop: threading.Event, seed: int, ttl_s: int = 3, op_timeout_s: float = 1.0,
                 rounds: tuple[int, int] = (1, 3), acquire_timeout_s: float = 10.0):
        super().__init__(name=f"locker-{index}", daemon=True)
        self.index, self.node, self.history, self.clock, self.stop_event = index, node, history, clock, stop
        self.rng = random.Random(seed * 7727 + index)
        self.ttl_s, self.timeout_s, self.rounds, self.acquire_timeout_s = ttl_s, op_timeout_s, rounds, acquire_timeout_s
        self.channel = open_channel(endpoint)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.lease = rpc_pb2_grpc.LeaseStub(self.channel)
        self.watch = rpc_pb2_grpc.WatchStub(self.channel)
        self.process = index
        self.lease_id = 0
        self.session_lost = threading.Event()
        self._keeper: threading.Thread | None = None
        self._session_stop = threading.Event()
        self.seq = 0

    # -- plumbing ---------------------------------------------------------------------------
    def _call(self, method, request, is_read=False):
        try:
            return method(request, timeout=self.timeout_s)
        except grpc.RpcError as err:
            raise classify(err, is_read) from None

    def _record(self, f: str, key, value, action) -> Op:
        t0 = self.clock.now_ms()
        try:
            result, typ, error = action(), OK, None
        except Failed as err:
            result, typ, error = None, FAIL, str(err)[:200]
        except Indeterminate as err:
            result, typ, error = None, INFO, str(err)[:200]
        t1 = self.clock.now_ms()
        op = self.history.append(Op(process=self.process, f=f, key=key, value=value, invoke_ms=t0, complete_ms=t1,
                                    type=typ, result=result, node=self.node, error=error))
        if typ == INFO:
            self.process += 1000
        return op

    # -- the session ------------------------------------------------------------------------
    def _open_session(self) -> bool:
        try:
            resp = self._call(self.lease.LeaseGrant, rpc_pb2.LeaseGrantRequest(TTL=self.ttl_s))
        except (Failed, Indeterminate):
            return False
        if resp.error:
            return False
        self.lease_id, self.ttl_s = resp.ID, max(self.ttl_s, resp.TTL)
        self.session_lost = threading.Event()
        self._session_stop = threading.Event()
        self._keeper = threading.Thread(target=self._keep_alive, name=f"locker-{self.index}-session", daemon=True,
                                        args=(self.lease_id, self._session_stop, self.session_lost))
        self._keeper.start()
        return True

    def _keep_alive(self, lease_id: int, stop: threading.Event, lost: threading.Event) -> None:
        while not stop.wait(self.ttl_s / 3):
            try:
                if keep_alive_once(self.lease, lease_id, self.timeout_s).TTL <= 0:
                    lost.set()
                    return
            except (Failed, Indeterminate):
                pass   # try again at the next period, as etcd's client does

    def _close_session(self) -> None:
        self._session_stop.set()
        if self.lease_id:
            try:
                self._call(self.lease.LeaseRevoke, rpc_pb2.LeaseRevokeRequest(ID=self.lease_id))
            except (Failed, Indeterminate):
                pass   # it will expire
        self.lease_id = 0

    # -- the recipe -------------------------------------------------------------------------
    def _lock(self, key: bytes) -> int:
        """Returns my key's create revision once it is the lowest; raises SessionLost, Failed or
        Indeterminate."""
        cmp = rpc_pb2.Compare(key=key, target=rpc_pb2.Compare.CREATE, result=rpc_pb2.Compare.EQUAL, create_revision=0)
        resp = self._call(self.kv.Txn, rpc_pb2.TxnRequest(
            compare=[cmp],
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=b"", lease=self.lease_id))],
            failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key))]))
        if resp.succeeded:
            my_rev = resp.header.revision
        else:
            kvs = resp.responses[0].response_range.kvs
            if not kvs:
                raise SessionLost("my key vanished")
            my_rev = kvs[0].create_revision
        deadline = self.clock.now_ms() + self.acquire_timeout_s * 1000
        while True:
            if self.stop_event.is_set() or self.clock.now_ms() > deadline:
                raise Indeterminate("gave up waiting for the lock")
            lp = LOCK_PREFIX.encode()
            below = self._call(self.kv.Range, rpc_pb2.RangeRequest(
                key=lp, range_end=_prefix_end(lp), max_create_revision=my_rev - 1, limit=1,
                sort_order=rpc_pb2.RangeRequest.DESCEND, sort_target=rpc_pb2.RangeRequest.CREATE), is_read=True)
            if not below.kvs:
                break
            self._wait_delete(below.kvs[0].key, below.header.revision + 1, deadline)
        mine = self._call(self.kv.Range, rpc_pb2.RangeRequest(key=key), is_read=True)
        if not mine.kvs or mine.kvs[0].create_revision != my_rev or self.session_lost.is_set():
            raise SessionLost("my lock key is gone (the session's lease expired)")
        return my_rev

    def _wait_delete(self, key: bytes, from_rev: int, deadline_ms: float) -> None:
        done = threading.Event()

        def requests():
            yield rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=key, start_revision=from_rev))
            done.wait()

        timeout = max(0.2, min(2.0, (deadline_ms - self.clock.now_ms()) / 1000))
        call = self.watch.Watch(requests(), timeout=timeout)
        try:
            for resp in call:
                if resp.canceled or any(ev.type == 1 for ev in resp.events):   # 1: DELETE
                    return
                if self.session_lost.is_set() or self.stop_event.is_set():
                    return
        except grpc.RpcError:
            return   # timed out or failed: look again
        finally:
            done.set()
            call.cancel()

    def _value(self, my_rev: int) -> str:
        self.seq += 1
        return f"{self.lease_id:x}:{my_rev}:{self.index}.{self.seq}"

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                if not self.lease_id or self.session_lost.is_set():
                    if self.lease_id:
                        self._close_session()
                    if not self._open_session():
                        self.stop_event.wait(0.3)
                        continue
                self._one_hold()
        finally:
            self._session_stop.set()
            if self.lease_id:
                try:
                    self._call(self.lease.LeaseRevoke, rpc_pb2.LeaseRevokeRequest(ID=self.lease_id))
                except (Failed, Indeterminate):
                    pass
            self.channel.close()

    def _one_hold(self) -> None:
        key = f"{LOCK_PREFIX}{self.lease_id:016x}"
        try:
            acquire = self._record("acquire", key, None, lambda: self._lock(key.encode()))
        except SessionLost:
            self.session_lost.set()
            return
        if acquire.type != OK:
            self._close_session()   # whatever state my key is in, the lease takes it away
            self.stop_event.wait(0.2)
            return
        my_rev = acquire.result
        for _ in range(self.rng.randint(*self.rounds)):
            value = self._value(my_rev)
            cmp = rpc_pb2.Compare(key=key.encode(), target=rpc_pb2.Compare.CREATE, result=rpc_pb2.Compare.EQUAL,
                                  create_revision=my_rev)
            req = rpc_pb2.TxnRequest(compare=[cmp], success=[rpc_pb2.RequestOp(
                request_put=rpc_pb2.PutRequest(key=FENCED.encode(), value=value.encode()))])
            self._record("fenced-write", FENCED, value, lambda: (
                lambda r: [bool(r.succeeded), r.header.revision])(self._call(self.kv.Txn, req)))
            self.stop_event.wait(self.rng.uniform(0.02, 0.1))
            value = self._value(my_rev)
            self._record("unfenced-write", UNFENCED, value, lambda: self._call(
                self.kv.Put, rpc_pb2.PutRequest(key=UNFENCED.encode(), value=value.encode())).header.revision)
            self.stop_event.wait(self.rng.uniform(0.02, 0.1))
        release = self._record("release", key, my_rev, lambda: self._call(
            self.kv.DeleteRange, rpc_pb2.DeleteRangeRequest(key=key.encode())).header.revision)
        if release.type != OK:
            self._close_session()


class LockerGroup(ThreadGroup):
    stop_timeout_s = 15.0

    def __init__(self, endpoints: list[str], history: History, clock: Clock, seed: int, n: int,
                 ttl_s: int = 3, op_timeout_s: float = 1.0):
        super().__init__()
        self.lockers = self.threads = [Locker(i, endpoints[i % len(endpoints)], i % len(endpoints), history, clock,
                                              self.stop_event, seed, ttl_s, op_timeout_s) for i in range(n)]
