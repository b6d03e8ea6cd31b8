"""The lease workload's keepers: clients that grant leases, attach one key each, keep them alive
for a while and let them go.

A keeper is one client thread. It grants a lease (TTL drawn from `ttls`), puts one key
`l/<lease id in hex>` with that lease (value: the lease id), then keeps the lease alive with
LeaseKeepAlive for a random while (one keep-alive every 0.2 s .. TTL/3), then stops for good
(the lease is never revoked: its key must go by expiry). It talks to one node at a time and,
after an error, moves to the next one (as etcd's client balancer does). Before it stops it
wants its last keep-alive acknowledged: after an unanswered one it keeps trying (while the run
lasts) until one is answered, with TTL > 0 or with TTL 0 (the lease is gone), so that the
last keep-alive of a lease is, as often as the faults allow, one whose outcome is known.

Everything goes into the run's history as operations (times on the run's monotonic clock, the
same clock the watchers' events are stamped with):
  grant      value: the TTL asked for; result [lease id, TTL granted]
  put        key, value: the lease id; result: the put's revision
  keepalive  key, value: the lease id; result [TTL answered (0: gone), header revision];
             `invoke_ms` is when it was SENT, `complete_ms` when its answer came
  release    key, value: the lease id, at the moment the keeper stopped keeping it alive
             (instantaneous; not a request)
A keep-alive that was never answered is `info` (it may have been applied, at any time after it
was sent); one that certainly never reached a node (connection refused) is `fail`.

The observers are the watch workload's watchers (watchers.py) on `l/`, one per node; the
final history of `l/` is read after every lease was left to expire.

A keeper must never record a keep-alive as acknowledged unless the server's answer arrived,
nor stamp a keep-alive with a send time later than the moment it was handed to gRPC (the
checker's "never early" bound rests on that time being a lower bound of when it was sent).
"""

from __future__ import annotations

import random
import threading

import grpc

from verikv.etcdpb import rpc_pb2, rpc_pb2_grpc
from verikv.jepsen.clients import classify, open_channel
from verikv.jepsen.history import FAIL, INFO, OK, History, Op
from verikv.jepsen.workloads import Clock, Failed, Indeterminate, ThreadGroup

PREFIX = "l/"


def lease_key(lease_id: int) -> str:
    return f"{PREFIX}{lease_id:016x}"


class _Node:
    """One gRPC channel to one node, with the Lease and KV stubs."""

    def __init__(self, endpoint: str):
        self.channel = open_channel(endpoint)
        self.lease = rpc_pb2_grpc.LeaseStub(self.channel)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)

    def close(self) -> None:
        self.channel.close()


def keep_alive_once(stub, lease_id: int, timeout_s: float) -> rpc_pb2.LeaseKeepAliveResponse:
    """One keep-alive on its own LeaseKeepAlive stream: send, wait for the one answer. The
    stream is not half-closed before the answer (a server may take that for the end)."""
    answered = threading.Event()

    def requests():
        yield rpc_pb2.LeaseKeepAliveRequest(ID=lease_id)
        answered.wait(timeout_s + 1.0)

    call = stub.LeaseKeepAlive(requests(), timeout=timeout_s)
    try:
        for resp in call:
            return resp
        raise Indeterminate("the keep-alive stream ended without an answer")
    except grpc.RpcError as err:
        raise classify(err, is_read=False) from None
    finally:
        answered.set()
        call.cancel()


class LeaseKeeper(threading.Thread):
    """One keeper (see the module's text)."""

    def __init__(self, index: int, endpoints: list[str], history: History, clock: Clock, stop: threading.Event,
                 seed: int, ttls: tuple[int, ...] = (3, 4, 5), op_timeout_s: float = 1.0):
        super().__init__(name=f"keeper-{index}", daemon=True)
        self.index, self.history, self.clock, self.stop_event = index, history, clock, stop
        self.endpoints = endpoints
        self.rng = random.Random(seed * 1009 + index)
        self.ttls, self.timeout_s = ttls, op_timeout_s
        self.node = index % len(endpoints)
        self.nodes = [_Node(e) for e in endpoints]
        self.process = index

    def _record(self, f: str, key, value, action) -> Op:
        t0 = self.clock.now_ms()
        try:
            result, typ, error = action(), OK, None
        except Failed as err:
            result, typ, error = None, FAIL, str(err)[:200]
        except Indeterminate as err:
            result, typ, error = None, INFO, str(err)[:200]
        except grpc.RpcError as err:
            result, typ, error = None, INFO, str(classify(err, False))[:200]
        t1 = self.clock.now_ms()
        op = self.history.append(Op(process=self.process, f=f, key=key, value=value, invoke_ms=t0, complete_ms=t1,
                                    type=typ, result=result, node=self.node, error=error))
        if typ != OK:
            self.node = (self.node + 1) % len(self.nodes)   # try the next node next time
        return op

    def _call(self, method, request):
        try:
            return method(request, timeout=self.timeout_s)
        except grpc.RpcError as err:
            raise classify(err, is_read=False) from None

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                self._one_lease()
        finally:
            for n in self.nodes:
                n.close()

    def _one_lease(self) -> None:
        ttl = self.rng.choice(self.ttls)
        grant = self._record("grant", None, ttl, lambda: self._grant(ttl))
        if grant.type != OK:
            self.stop_event.wait(0.1)
            return
        lease_id, granted = grant.result
        key = lease_key(lease_id)
        self._record("put", key, lease_id, lambda: self._call(
            self.nodes[self.node].kv.Put, rpc_pb2.PutRequest(key=key.encode(), value=str(lease_id).encode(),
                                                             lease=lease_id)).header.revision)
        hold_until = self.clock.now_ms() + self.rng.uniform(0, 2 * granted) * 1000
        last: Op | None = None
        while not self.stop_event.is_set():
            settled = last is None or last.type == OK
            if settled and self.clock.now_ms() >= hold_until:
                break
            if last is not None and last.type == OK and last.result[0] == 0:
                break   # gone: nothing more to keep alive
            self.stop_event.wait(self.rng.uniform(0.2, granted / 3) if settled else 0.1)
            if self.stop_event.is_set():
                break
            last = self._record("keepalive", key, lease_id, lambda: self._keep_alive(lease_id))
            if last.type == INFO:
                self.process += 1000   # a new logical process after an unknown outcome (as in Jepsen)
        now = round(self.clock.now_ms(), 2)
        self.history.append(Op(process=self.process, f="release", key=key, value=lease_id, invoke_ms=now,
                               complete_ms=now, type=OK, node=self.node))

    def _grant(self, ttl: int) -> list[int]:
        resp = self._call(self.nodes[self.node].lease.LeaseGrant, rpc_pb2.LeaseGrantRequest(TTL=ttl))
        if resp.error:
            raise Failed(f"grant refused: {resp.error}")
        return [resp.ID, resp.TTL]

    def _keep_alive(self, lease_id: int) -> list[int]:
        resp = keep_alive_once(self.nodes[self.node].lease, lease_id, self.timeout_s)
        return [resp.TTL, resp.header.revision]


class KeeperGroup(ThreadGroup):
    def __init__(self, endpoints: list[str], history: History, clock: Clock, seed: int, n: int,
                 ttls: tuple[int, ...] = (3, 4, 5), op_timeout_s: float = 1.0):
        super().__init__()
        self.keepers = self.threads = [LeaseKeeper(i, endpoints, history, clock, self.stop_event, seed, ttls,
                                                   op_timeout_s) for i in range(n)]
