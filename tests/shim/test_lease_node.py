"""Leases on a real 3-node cluster (in-process, real TCP and fsync): a lease's keys go when its
TTL has passed since its last keep-alive, never before, on every node at the same revision; a
keep-alive at a follower keeps it; and a new leader keeps what the old one's clock said was left
instead of starting the whole TTL again."""

import asyncio

from verikv.etcdpb import rpc_pb2 as r
from verikv.shim.kv.commands import Kind

from test_node import _answer, _outcome, leader_of, start_cluster, stop_node, submit, wait_for

LATE_S = 0.5  # what the expiry may take beyond the TTL here: scans every 50 ms, one round trip


async def grant(node, ttl, lease_id=0):
    return _outcome(await _answer(lambda done: node.lease_grant(r.LeaseGrantRequest(TTL=ttl, ID=lease_id), done)))


def now():
    return asyncio.get_running_loop().time()


async def gone(nodes, key, timeout_s):
    """When the key is gone from every node (polled every 5 ms)."""
    deadline = now() + timeout_s
    while any(key in n.kv._data for n in nodes):
        assert now() < deadline, "the key was not deleted in time"
        await asyncio.sleep(0.005)
    return now()


async def test_keys_go_when_the_ttl_passed_since_the_last_keep_alive_never_before(tmp_path):
    nodes = await start_cluster(tmp_path, 200)
    try:
        leader = leader_of(nodes)
        follower = next(n for n in nodes if n is not leader)
        lease = await grant(follower, 2)
        assert lease.TTL == 2 and lease.ID > 0
        await submit(follower, Kind.PUT, r.PutRequest(key=b"k", value=b"v", lease=lease.ID))
        await submit(leader, Kind.PUT, r.PutRequest(key=b"other", value=b"v", lease=lease.ID))
        # kept alive for 3 s (longer than its TTL) through a follower
        start = last = now()
        while now() - start < 3.0:
            sent = now()
            ka = await submit(follower, Kind.LEASE_KEEP_ALIVE, r.LeaseKeepAliveRequest(ID=lease.ID))
            assert ka.TTL == 2
            last = sent
            await asyncio.sleep(0.5)
        assert all(b"k" in n.kv._data for n in nodes)
        at = await gone(nodes, b"k", 2.0 + LATE_S + 2.0)
        assert 2.0 <= at - last <= 2.0 + LATE_S, at - last
        assert len({(n.kv.revision, n.kv.leases.exists(lease.ID)) for n in nodes}) == 1  # same everywhere
        assert not any(b"other" in n.kv._data for n in nodes)  # both keys, in one revision
        ka = await submit(leader, Kind.LEASE_KEEP_ALIVE, r.LeaseKeepAliveRequest(ID=lease.ID))
        assert ka.TTL == 0  # gone
    finally:
        for n in nodes:
            await stop_node(n)


async def test_a_new_leader_keeps_the_time_left_instead_of_the_whole_ttl(tmp_path):
    nodes = await start_cluster(tmp_path, 210)
    try:
        leader = leader_of(nodes)
        lease = await grant(leader, 6)
        sent = now()
        await submit(leader, Kind.LEASE_KEEP_ALIVE, r.LeaseKeepAliveRequest(ID=lease.ID))
        await submit(leader, Kind.PUT, r.PutRequest(key=b"k", value=b"v", lease=lease.ID))
        await asyncio.sleep(3.0)  # the leader checkpoints what is left, about every second
        logged = {n.kv.leases.leases[lease.ID].remaining_ms for n in nodes}
        assert max(logged) <= 6000 - 1000, logged  # a checkpoint reached every node
        await stop_node(leader)
        rest = [n for n in nodes if n is not leader]
        await wait_for(lambda: leader_of(rest) is not None)
        at = await gone(rest, b"k", 10.0)
        # never early; and not 6 s from the new leader's start (etcd's reset) but about when
        # the old leader's clock said, late by at most the checkpoint's slack, the election
        # and the scan
        assert 6.0 <= at - sent <= 6.0 + 2.0 + LATE_S, at - sent
    finally:
        for n in nodes:
            if not n._stopping:
                await stop_node(n)
