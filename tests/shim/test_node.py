"""The node drives the real verified core: three in-process nodes over real TCP with real fsync
elect a leader, commit client commands from any node, serve linearizable reads, recover from their
WAL and snapshots; and the runtime checks stop the node when the core breaks a rule (the broken
core here is a scripted test double that returns fixed Readies — it decides nothing)."""

import asyncio
import errno
import os
import shutil
import struct
from types import SimpleNamespace

import pytest
from answers import decoded
import pytest_asyncio

from verikv.etcdpb import rpc_pb2 as r
from verikv.shim.node.checks import Checks, RuntimeCheckFailed
from verikv.verified_core import core as vcore
from verikv.shim.io.disk import RealDisk
from verikv.shim.kv.errors import EtcdError
from verikv.shim.io.runner import Node, NodeConfig
from verikv.shim.node.machine import Append, Send
from verikv.shim.kv.commands import Kind, encode_batch
from verikv.shim.node.peer_wire import KIND_READ_INDEX
from verikv.shim.io.wal import Wal, WalFatalError
from verikv.verified_core.core import Core

BASE_PORT = 25300


def config(i, tmp_path, port_offset, **kw):
    peers = [("127.0.0.1", BASE_PORT + port_offset + j) for j in range(3)]
    return NodeConfig(node_id=i, peer_addresses=peers, data_dir=tmp_path / f"n{i}", tick_ms=5, **kw)


async def start_node(i, tmp_path, port_offset, **kw):
    node = Node(config(i, tmp_path, port_offset, **kw), Core(i, 3))
    await node.start()
    node.task = asyncio.get_running_loop().create_task(node.run())
    return node


async def start_cluster(tmp_path, port_offset, **kw):
    """Three nodes (NodeConfig options `kw`), once one of them leads."""
    nodes = [await start_node(i, tmp_path, port_offset, **kw) for i in range(3)]
    await wait_for(lambda: leader_of(nodes) is not None)
    return nodes


async def stop_node(node):
    await node.stop()
    node.task.cancel()
    await asyncio.gather(node.task, return_exceptions=True)


async def wait_for(cond, timeout_s=10.0):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def submit(node, kind, request):
    """Order a request through the node's log; its response, or raise its EtcdError."""
    return _outcome(await _answer(lambda done: node.command(kind, request, request.SerializeToString(), done)))


async def read(node, request, serializable):
    """A Range (a RangeRequest, or a key for RangeRequest(key=...)); its response or EtcdError."""
    got = _outcome(await _answer(lambda done: node.read(request, serializable, done)))
    return decoded(got)


async def _answer(start):
    fut = asyncio.get_running_loop().create_future()
    start(lambda answer: fut.done() or fut.set_result(answer))
    return await fut


def _outcome(answer):
    if isinstance(answer, EtcdError):
        raise answer
    return answer


def leader_of(nodes):
    leaders = [n for n in nodes if n.status.get("role") == "leader"]
    return leaders[0] if leaders else None


@pytest_asyncio.fixture
async def cluster(tmp_path, request):
    offset = request.node.get_closest_marker("ports").args[0]
    nodes = await start_cluster(tmp_path, offset)
    yield nodes
    for n in nodes:
        if not n._stopping:
            await stop_node(n)


@pytest.mark.ports(0)
async def test_a_put_at_a_follower_commits_everywhere(cluster):
    leader = leader_of(cluster)
    follower = next(n for n in cluster if n is not leader)
    resp = await submit(follower, Kind.PUT, r.PutRequest(key=b"k", value=b"v"))
    assert resp.header.revision == 2
    await wait_for(lambda: all(n.kv.revision == 2 for n in cluster))
    for n in cluster:
        (kv,) = n.kv.range(r.RangeRequest(key=b"k")).kvs
        assert kv.value == b"v" and kv.mod_revision == 2


@pytest.mark.ports(60)
async def test_watchers_hear_of_a_write_before_its_writer_is_answered(cluster):
    # As in etcd, whose apply notifies the watchers before the put returns: the node hands the
    # writes of a batch to its listeners (the watch hub) before it answers their clients, so
    # a watcher's event does not wait for the rest of the node's turn.
    leader = leader_of(cluster)
    seen = []
    leader.on_applied.append(lambda kv, writes: seen.extend(writes))
    answered_after = []
    fut = asyncio.get_running_loop().create_future()

    def done(answer):
        answered_after.append(len(seen))
        fut.set_result(answer)

    request = r.PutRequest(key=b"w", value=b"v")
    leader.command(Kind.PUT, request, request.SerializeToString(), done)
    resp = _outcome(await fut)
    assert resp.header.revision == 2
    assert answered_after == [1], (answered_after, seen)  # its write, handed over before the answer


@pytest.mark.ports(75)
async def test_followers_hear_of_a_commit_before_its_writer_is_answered(cluster):
    await _learn_leaves_before_the_answer(cluster)


def test_followers_hear_of_a_commit_before_its_writer_is_answered_on_uvloop(tmp_path):
    # The node runs on uvloop, which writes to sockets only after a loop iteration's callbacks
    # (asyncio's own loop writes at once): the frames must be in the sockets, not only handed to
    # the transport's writers, before the turn goes on to apply and answer.
    uvloop = pytest.importorskip("uvloop")

    async def body():
        nodes = await start_cluster(tmp_path, 80)
        try:
            await _learn_leaves_before_the_answer(nodes)
        finally:
            for n in nodes:
                await stop_node(n)

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(body())
    finally:
        loop.close()


async def _learn_leaves_before_the_answer(cluster):
    # As etcd's leader sends the commit index before it applies: the leader's frames of the
    # turn that commits a write (its Learn to each follower) are written to the sockets before
    # it applies the write and answers, so a follower's watchers do not wait for the leader's.
    leader = leader_of(cluster)
    followers = {n.node_id for n in cluster if n is not leader}
    log = []
    turn = leader.machine.turn

    def logged_turn():
        log.append(("turn",))
        for action in turn():
            if type(action) is Send:
                log.append(("send", {dst for dst, _, _ in action.frames}, action.now, leader.transport.writes))
            yield action

    def unwritten():  # bytes each writer holds that are not yet in the kernel's socket buffer
        return {i: p.writer.transport.get_write_buffer_size() for i, p in leader.transport.peers.items()}

    await wait_for(lambda: all(p.writer is not None for p in leader.transport.peers.values()))
    leader.machine.turn = logged_turn
    fut = asyncio.get_running_loop().create_future()

    def done(answer):
        log.append(("answered", leader.transport.writes, unwritten()))
        fut.set_result(answer)

    request = r.PutRequest(key=b"f", value=b"v")
    leader.command(Kind.PUT, request, request.SerializeToString(), done)
    assert _outcome(await fut).header.revision == 2
    answered = next(i for i, e in enumerate(log) if e[0] == "answered")
    start = max(i for i, e in enumerate(log[:answered]) if e[0] == "turn")
    sends = [e for e in log[start:answered] if e[0] == "send"]
    assert any(e[1] == followers and e[2] for e in sends), log[start:answered + 1]
    # and they left: one write per follower between the hand-over and the answer, each in the
    # kernel by then
    assert log[answered][1] - sends[-1][3] >= len(followers), log[start:answered + 1]
    assert log[answered][2] == {i: 0 for i in followers}, log[start:answered + 1]


@pytest.mark.ports(10)
async def test_concurrent_requests_apply_once_each(cluster):
    puts = [submit(n, Kind.PUT, r.PutRequest(key=b"c", value=b"%d" % i)) for i, n in
            enumerate(cluster * 20)]
    results = await asyncio.gather(*puts)
    assert sorted(x.header.revision for x in results) == list(range(2, 62))
    try:
        await wait_for(lambda: all(n.kv.revision == 61 for n in cluster))
    except AssertionError:
        raise AssertionError([(n.kv.revision, n.status, n.task.done() and n.task.exception()) for n in cluster])
    for n in cluster:
        (kv,) = n.kv.range(r.RangeRequest(key=b"c")).kvs
        assert kv.version == 60


@pytest.mark.ports(20)
async def test_linearizable_reads_see_the_latest_write(cluster):
    leader = leader_of(cluster)
    follower = next(n for n in cluster if n is not leader)
    await submit(follower, Kind.PUT, r.PutRequest(key=b"x", value=b"1"))
    at_leader = await read(leader, r.RangeRequest(key=b"x"), serializable=False)  # confirm_read path
    at_follower = await read(follower, r.RangeRequest(key=b"x"), serializable=False)  # ReadIndex
    assert at_leader.kvs[0].value == b"1" and at_follower.kvs[0].value == b"1"
    await submit(leader, Kind.PUT, r.PutRequest(key=b"x", value=b"2"))
    again = await read(follower, r.RangeRequest(key=b"x"), serializable=False)
    assert again.kvs[0].value == b"2"


@pytest.mark.ports(20)
async def test_reads_of_a_plain_key_see_every_write_on_every_path(cluster):
    """A read given as a key (bytes; what the servicer passes for RangeRequest(key=...)) at the
    leader, at a follower, serializable, and ordered through the log; each sees the last write."""
    leader = leader_of(cluster)
    follower = next(n for n in cluster if n is not leader)

    async def through_log(node, key):
        fut = asyncio.get_running_loop().create_future()
        node.machine.reads.through_log([(key, lambda result: fut.done() or fut.set_result(result))])
        return await fut

    for i, value in enumerate([b"1", b"2" * 200]):
        await submit(follower, Kind.PUT, r.PutRequest(key=b"p", value=value))
        for got in [await read(leader, b"p", serializable=False), await read(follower, b"p", serializable=False),
                    await through_log(leader, b"p"), await through_log(follower, b"p")]:
            assert (got.kvs[0].value, got.kvs[0].version, got.count) == (value, i + 1, 1)
        await wait_for(lambda: follower.kv.next_slot == leader.kv.next_slot)
        assert (await read(follower, b"p", serializable=True)).kvs[0].value == value
    await submit(leader, Kind.DELETE_RANGE, r.DeleteRangeRequest(key=b"p"))
    assert (await read(follower, b"p", serializable=False)).count == 0
    with pytest.raises(EtcdError):
        await read(leader, b"", serializable=False)


@pytest.mark.ports(25)
async def test_follower_reads_ask_the_leader_for_a_read_slot_instead_of_using_the_log(cluster):
    leader = leader_of(cluster)
    follower = next(n for n in cluster if n is not leader)
    for i in range(5):
        await submit(leader, Kind.PUT, r.PutRequest(key=b"y", value=b"%d" % i))
        slots = leader.status["commit_upto"]
        got = await read(follower, r.RangeRequest(key=b"y"), serializable=False)
        assert got.kvs[0].value == b"%d" % i  # it waited until it had applied the leader's write
        assert leader.status["commit_upto"] == slots  # and the read took no log slot
    assert not follower.machine.reads.asked and not follower.machine.reads.at_slot


@pytest.mark.ports(35)
async def test_reads_arriving_together_at_a_follower_share_one_read_index_request(cluster):
    leader = leader_of(cluster)
    follower = next(n for n in cluster if n is not leader)
    await submit(leader, Kind.PUT, r.PutRequest(key=b"z", value=b"1"))
    asks = []
    send = follower.transport.send
    follower.transport.send = lambda dst, kind, payload: (asks.append(kind), send(dst, kind, payload))
    got = await asyncio.gather(*(read(follower, r.RangeRequest(key=b"z"), serializable=False)
                                 for _ in range(10)))
    assert all(g.kvs[0].value == b"1" for g in got)
    assert asks.count(KIND_READ_INDEX) == 1, asks


@pytest.mark.ports(50)
async def test_a_followers_read_index_request_needs_no_heartbeat_round_when_its_promise_completes_a_quorum(cluster):
    """Three nodes: the follower's promise when it asked and the leader make a quorum, so the
    leader answers with its read slot at once (no confirm_read); when the core refuses the
    attestation, the request waits for a confirmation as before. Every read sees the last write."""
    leader = leader_of(cluster)
    follower = next(n for n in cluster if n is not leader)
    core = leader.machine.core
    confirms, attested, refuse = [], [], []

    class CountingCore:  # the real core, its read confirmations observed
        def __getattr__(self, name):
            return getattr(core, name)

        def confirm_read(self):
            confirms.append(1)
            return core.confirm_read()

        def read_index_attested(self, src, promised):
            slot = 0 if refuse else core.read_index_attested(src, promised)
            attested.append(slot)
            return slot

    leader.machine.core = CountingCore()
    for i in range(5):
        await submit(leader, Kind.PUT, r.PutRequest(key=b"a", value=b"%d" % i))
        got = await read(follower, r.RangeRequest(key=b"a"), serializable=False)
        assert got.kvs[0].value == b"%d" % i
    assert len(attested) == 5 and all(attested) and not confirms, (attested, confirms)
    refuse.append(True)
    await submit(leader, Kind.PUT, r.PutRequest(key=b"a", value=b"last"))
    got = await read(follower, r.RangeRequest(key=b"a"), serializable=False)
    assert got.kvs[0].value == b"last"
    assert attested[-1] == 0 and confirms, (attested, confirms)


@pytest.mark.ports(45)
async def test_one_read_confirmation_at_a_time_covers_every_read_that_arrived_meanwhile(cluster, monkeypatch):
    """Reads arriving over many loop turns: the leader never starts a confirmation while another
    is in flight, its reads' or its own quorum probe's, a follower never sends a ReadIndex request
    while one is unanswered, and every read still sees the latest acknowledged write. The probe
    is made due at every turn, so that it falls among the reads."""
    from verikv.shim.node import check_quorum
    monkeypatch.setattr(check_quorum, "PROBE_EVERY_S", 0.0)
    leader = leader_of(cluster)
    follower = next(n for n in cluster if n is not leader)
    await submit(leader, Kind.PUT, r.PutRequest(key=b"w", value=b"1"))
    overlaps, confirms, asks, probing, probes = [], [], [], [], []
    core = leader.machine.core

    class CountingCore:  # the real core, with its confirm_read calls observed
        def __getattr__(self, name):
            return getattr(core, name)

        def confirm_read(self):
            if confirms and core.status()["read_confirmed"] < confirms[-1]:
                overlaps.append(("leader", confirms[-1], "probe" if probing else "read"))
            rd, seq, slot = core.confirm_read()
            confirms.append(seq)
            if probing:
                probes.append(seq)
            return rd, seq, slot

    probe = leader.machine.check_quorum.probe

    def observed_probe(readies):
        probing.append(True)
        try:
            probe(readies)
        finally:
            probing.pop()

    leader.machine.check_quorum.probe = observed_probe
    leader.machine.core = CountingCore()
    send = follower.transport.send

    def counting_send(dst, kind, payload):
        if kind == KIND_READ_INDEX:
            asks.append(kind)
            if len(follower.machine.reads.asked) != 1:
                overlaps.append(("follower", len(follower.machine.reads.asked)))
        send(dst, kind, payload)

    follower.transport.send = counting_send

    async def reads(node, count):
        out = []
        for i in range(count):
            out.append(asyncio.ensure_future(read(node, r.RangeRequest(key=b"w"), serializable=False)))
            # one read per loop iteration, in bursts: between them the probe starts its own
            await asyncio.sleep(0.002 if i % 10 == 9 else 0)
        return await asyncio.gather(*out)

    got = await asyncio.gather(reads(leader, 200), reads(follower, 200))
    assert all(g.kvs[0].value == b"1" for batch in got for g in batch)
    assert not overlaps, overlaps
    assert probes and len(probes) < len(confirms), (len(probes), len(confirms))
    assert 1 <= len(confirms) - len(probes) < 200 and 1 <= len(asks) < 200, (len(confirms), len(asks))


@pytest.mark.ports(30)
async def test_validation_errors_never_reach_the_log(cluster):
    leader = leader_of(cluster)
    slots = leader.kv.next_slot
    with pytest.raises(Exception, match="key is not provided"):
        await submit(leader, Kind.PUT, r.PutRequest(key=b""))
    assert leader.kv.next_slot == slots


@pytest.mark.ports(40)
async def test_a_restarted_node_recovers_its_state_from_the_wal(cluster, tmp_path):
    for i in range(5):
        await submit(cluster[i % 3], Kind.PUT, r.PutRequest(key=b"r%d" % i, value=b"v"))
    victim = cluster[1]
    await stop_node(victim)
    revision = max(n.kv.revision for n in cluster)
    cluster[1] = await start_node(1, tmp_path, 40)
    await wait_for(lambda: cluster[1].kv.revision == revision)
    assert len(cluster[1].kv.items()) == 5


@pytest.mark.ports(105)
async def test_a_restarted_node_recovers_with_the_collector_paused_and_returns_the_replayed_records_memory(cluster, tmp_path,
                                                                                     monkeypatch):
    """The WAL's records, replayed at start, are freed and the C heap's free pages handed back to
    the system (shim/io/heap.py) once, after the node's state is recovered; the recovery runs
    with the cycle collector paused, from before the first record to after the last."""
    import contextlib

    from verikv.shim.io import runner

    for i in range(5):
        await submit(cluster[i % 3], Kind.PUT, r.PutRequest(key=b"m%d" % i, value=b"v"))
    await stop_node(cluster[1])
    starting, keys_at_release = [], []
    original_start = runner.Node.start

    async def start(self):
        starting.append(self)
        await original_start(self)

    def release():
        keys_at_release.append(len(starting[0].kv.items()))
        return 0

    paused, collector_paused = [], runner.collector_paused

    @contextlib.contextmanager
    def observed_pause():
        with collector_paused():
            paused.append(len(starting[0].kv.items()))
            yield
            paused.append(len(starting[0].kv.items()))

    monkeypatch.setattr(runner.Node, "start", start)
    monkeypatch.setattr(runner, "release_free_memory", release)
    monkeypatch.setattr(runner, "collector_paused", observed_pause)
    cluster[1] = await start_node(1, tmp_path, 105)
    assert keys_at_release == [5]  # once, with every replayed put applied
    assert paused == [0, 5]


async def test_snapshots_truncate_the_wal_and_restore(tmp_path):
    nodes = await start_cluster(tmp_path, 50, snapshot_every_slots=5, snapshot_min_log_bytes=0)
    try:
        for i in range(30):
            await submit(nodes[i % 3], Kind.PUT, r.PutRequest(key=b"s%d" % (i % 4), value=b"%d" % i))
        await wait_for(lambda: all(n.kv.revision == 31 for n in nodes))
        # a snapshot is written by a child process while the node goes on: wait for it
        await wait_for(lambda: list((tmp_path / "n0" / "wal").glob("snap-*.snap")) and nodes[0].status["log_start"] > 0)
        await stop_node(nodes[0])
        nodes[0] = await start_node(0, tmp_path, 50, snapshot_every_slots=5, snapshot_min_log_bytes=0)
        await wait_for(lambda: nodes[0].kv.revision == 31)
        assert nodes[0].kv.items() == nodes[1].kv.items()
    finally:
        for n in nodes:
            if not n._stopping:
                await stop_node(n)


class SlowSnapshotDisk(RealDisk):
    """A disk whose snapshot files take `delay_s` to write (in whichever process writes them)."""

    def __init__(self, delay_s):
        self.delay_s = delay_s

    def write_new(self, path, *args):
        import time
        time.sleep(self.delay_s)
        super().write_new(path, *args)


class FullSnapshotDisk(RealDisk):
    def write_new(self, path, *args):
        raise OSError(errno.ENOSPC, "No space left on device")


async def start_nodes_on(disks, tmp_path, port_offset, **kw):
    nodes = []
    for i, disk in enumerate(disks):
        node = Node(config(i, tmp_path, port_offset, **kw), Core(i, 3), disk)
        await node.start()
        node.task = asyncio.get_running_loop().create_task(node.run())
        nodes.append(node)
    await wait_for(lambda: leader_of(nodes) is not None)
    return nodes


async def test_a_snapshot_is_written_by_a_child_while_the_node_goes_on_serving(tmp_path):
    # every snapshot takes 2 s to write: the leader commits puts meanwhile, and its log is
    # truncated, and its old segments deleted, only once the snapshot is durable
    nodes = await start_nodes_on([SlowSnapshotDisk(2.0)] * 3, tmp_path, 55, snapshot_every_slots=5, snapshot_min_log_bytes=0)
    try:
        leader = leader_of(nodes)
        wal_dir = tmp_path / f"n{leader.node_id}" / "wal"
        for i in range(20):
            if leader._state_job is not None:
                break
            await submit(leader, Kind.PUT, r.PutRequest(key=b"k", value=b"%d" % i))
        assert leader._state_job is not None, "twenty slots and no snapshot being written by a child"
        job, slot = leader._state_job, leader.machine._snapshot_writing
        segments = sorted(wal_dir.glob("*.wal"))
        for j in range(10):
            await submit(leader, Kind.PUT, r.PutRequest(key=b"during", value=b"%d" % j))
        assert not job.done(), "ten puts waited for the snapshot's write"
        assert leader.status["log_start"] == 0 and not list(wal_dir.glob("snap-*.snap"))
        await job
        await wait_for(lambda: leader.status["log_start"] == slot)
        assert [p.name for p in wal_dir.glob("snap-*.snap")] == [f"snap-{slot:016x}.snap"]
        assert not any(p.exists() for p in segments[:-1]) and not list(wal_dir.glob("*.tmp"))
        assert 2.0 <= leader.state_write_seconds < 10
        # the ten puts started another snapshot: stop does not wait for its writer (2 s), and a
        # restart starts from the newest snapshot made (the file begun is removed)
        await wait_for(lambda: leader._state_writer is not None)
        writer, stopping = leader._state_writer, asyncio.get_running_loop().time()
        await stop_node(leader)
        assert asyncio.get_running_loop().time() - stopping < 1.5
        with pytest.raises(ChildProcessError):
            os.waitpid(writer, os.WNOHANG)  # killed and reaped
        (newest,) = wal_dir.glob("snap-*.snap")
        assert newest.name == f"snap-{slot:016x}.snap" and not list(wal_dir.glob("*.tmp"))
        # the child wrote the core's state truncated at the snapshot's slot: none of the log
        # the KV state covers (read from a copy of the directory: opening a WAL may repair it)
        shutil.copytree(wal_dir, tmp_path / "wal-copy")
        _, rec = Wal.open(tmp_path / "wal-copy", RealDisk())
        assert rec.snapshot.slot == slot
        from_snapshot = Core(leader.node_id, 3)
        assert from_snapshot.recover(rec.snapshot.core_records).commits == []
        assert from_snapshot.status()["log_start"] == slot
        nodes[leader.node_id] = again = Node(config(leader.node_id, tmp_path, 55, snapshot_every_slots=5, snapshot_min_log_bytes=0),
                                             Core(leader.node_id, 3), RealDisk())
        await again.start()
        again.task = asyncio.get_running_loop().create_task(again.run())
        assert again.machine.snapshot_slot == int(newest.name[5:21], 16)
        assert (await read(again, r.RangeRequest(key=b"during"), True)).kvs[0].value == b"9"
    finally:
        for n in nodes:
            if not n._stopping:
                await stop_node(n)


async def test_a_snapshot_that_cannot_be_written_stops_the_node(tmp_path, capfd):
    nodes = await start_nodes_on([FullSnapshotDisk()] * 3, tmp_path, 70, snapshot_every_slots=3, snapshot_min_log_bytes=0)
    try:
        leader = leader_of(nodes)
        for i in range(3):  # the third slot starts the snapshot (a dead node answers nothing)
            await submit(leader, Kind.PUT, r.PutRequest(key=b"k", value=b"%d" % i))
        with pytest.raises(WalFatalError, match=r"writing the snapshot at slot 3 failed \(its writer exited with 1\)"):
            await asyncio.wait_for(leader.task, 10)
        assert "writing the snapshot at slot 3 failed: OSError(28, 'No space left on device')" in capfd.readouterr().err
        wal_dir = tmp_path / f"n{leader.node_id}" / "wal"
        assert not list(wal_dir.glob("snap-*")) and not list(wal_dir.glob("*.tmp"))
    finally:
        for n in nodes:
            if not n._stopping:
                await stop_node(n)


# ---- runtime checks, with a scripted core ----

def ready(records=(), messages=(), commits=(), accepted=False, early=(), sync=None):
    return SimpleNamespace(records=list(records), messages=list(messages), commits=list(commits),
                           accepted=accepted, early=list(early),
                           sync=bool(records) if sync is None else sync, need_snapshot=[], early_after=0)


class ScriptedCore:
    """Returns the Readies and statuses it is given, in order; decides nothing."""

    def __init__(self, readies, statuses):
        self.readies = list(readies)
        self.statuses = list(statuses)

    def recover(self, records):
        return ready()

    def tick(self):
        return self.readies.pop(0) if self.readies else ready()

    def receive(self, message):
        return ready()

    def status(self):
        return self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]

    def checkpoint_records(self):
        return []


def status(promised=(1, 0), role="follower", commit_upto=0, log_start=0):
    return {"role": role, "leader": None, "ballot": promised, "promised": promised,
            "commit_upto": commit_upto, "log_start": log_start, "next_slot": commit_upto, "read_confirmed": 0}


async def run_scripted(tmp_path, port_offset, readies, statuses):
    node = Node(config(0, tmp_path, port_offset), ScriptedCore(readies, statuses))
    await node.start()
    try:
        for _ in range(len(readies)):
            node.machine.tick()
            await node.turn()
    finally:
        await node.stop()
    return node


async def test_a_changed_committed_slot_stops_the_node(tmp_path):
    first, other = encode_batch([]), encode_batch([b"\x02" + b"\0" * 24])
    with pytest.raises(RuntimeCheckFailed, match="CommittedSlotNeverChanges"):
        await run_scripted(tmp_path, 60, [ready(commits=[(0, first)]), ready(commits=[(0, other)])],
                           [status()])


async def test_the_same_slot_redelivered_with_the_same_value_is_fine(tmp_path):
    node = await run_scripted(tmp_path, 65, [ready(commits=[(0, b"")]), ready(commits=[(0, b"")])], [status()])
    assert node.kv.next_slot == 1


async def test_a_gap_in_commits_stops_the_node(tmp_path):
    with pytest.raises(RuntimeCheckFailed, match="CommitsContiguous"):
        await run_scripted(tmp_path, 61, [ready(commits=[(0, b""), (2, b"")])], [status()])


async def test_a_decreasing_promise_stops_the_node(tmp_path):
    with pytest.raises(RuntimeCheckFailed, match="PromisedNeverDecreases"):
        await run_scripted(tmp_path, 62, [ready()], [status(promised=(5, 1)), status(promised=(4, 2))])


class CountingScriptedCore(ScriptedCore):
    """A ScriptedCore that counts status() calls and accepts proposals."""

    def __init__(self, readies, statuses):
        super().__init__(readies, statuses)
        self.status_calls = 0

    def status(self):
        self.status_calls += 1
        return super().status()

    def propose(self, value):
        return ready(accepted=True)


async def test_the_status_after_a_proposal_is_checked_in_the_same_turn(tmp_path):
    core = CountingScriptedCore([], [status(promised=(5, 0), role="leader")] * 2
                                + [status(promised=(4, 0), role="leader")])
    node = Node(config(0, tmp_path, 66), core)
    await node.start()
    try:
        put = r.PutRequest(key=b"k", value=b"v")
        node.command(Kind.PUT, put, put.SerializeToString(), lambda answer: None)
        node.machine.tick()
        with pytest.raises(RuntimeCheckFailed, match="PromisedNeverDecreases"):
            await node.turn()
    finally:
        await node.stop()


async def test_the_status_is_read_once_per_core_step_batch_and_not_without_steps(tmp_path):
    core = CountingScriptedCore([], [status()])
    node = Node(config(0, tmp_path, 67), core)
    await node.start()
    try:
        calls = core.status_calls
        await node.turn()  # no tick, no message: the core did not change
        assert core.status_calls == calls
        node.machine.tick()
        await node.turn()  # a tick: read (and checked) once, not again at the end of the turn
        assert core.status_calls == calls + 1
    finally:
        await node.stop()


async def test_leading_with_another_nodes_ballot_stops_the_node(tmp_path):
    with pytest.raises(RuntimeCheckFailed, match="LeaderUsesOwnBallot"):
        await run_scripted(tmp_path, 63, [ready()], [status(promised=(2, 1), role="leader")])


async def test_records_are_durable_before_the_turns_messages_leave(tmp_path):
    node = Node(config(0, tmp_path, 64), ScriptedCore([ready(records=[b"vote"], messages=[(1, b"msg")])],
                                                     [status()]))
    await node.start()
    seen = []
    node.transport.send = lambda dst, kind, payload: seen.append((dst, payload, node.wal.synced_records))
    node.machine.tick()
    await node.turn()
    await node.stop()
    assert seen == [(1, b"msg", 1)]  # the record was synced when the message was handed over


async def test_a_slow_turn_is_counted_and_logged_with_where_its_time_went(tmp_path, caplog):
    import gc
    import time
    from verikv.shim.io import runner
    node = Node(config(0, tmp_path, 68), ScriptedCore([ready(records=[b"vote"], messages=[(1, b"m")]), ready()],
                                                     [status(), status()]))
    await node.start()
    node.transport.send = lambda dst, kind, payload: time.sleep(runner.SLOW_TURN_S * 1.5)  # a slow send
    node.machine.tick()
    with caplog.at_level("WARNING", logger="verikv.node"):
        gc.disable()  # no collection in this turn, so none may be named
        try:
            await node.turn()
        finally:
            gc.enable()
        assert node.slow_turns == 1
        node.transport.send = lambda dst, kind, payload: None
        node.machine.tick()
        await node.turn()  # a quick one
    await node.stop()
    assert node.slow_turns == 1
    (line,) = [r.getMessage() for r in caplog.records if "a turn took" in r.getMessage()]
    took = int(line.split("a turn took ")[1].split(" ms")[0])
    sending = int(line.split("sending ")[1].split(" ms")[0])
    assert took >= sending >= 150 and "the node's own work" in line, line
    assert "cycle collector" not in line, line  # none ran: none is named


async def test_a_slow_turn_names_the_time_of_pythons_cycle_collector(tmp_path, caplog):
    import gc
    import time
    node = Node(config(0, tmp_path, 69), ScriptedCore([ready()], [status()]))
    await node.start()

    def slow_collection(phase, info):  # after the node's own callback: inside what it measures
        if phase == "start":
            time.sleep(0.12)

    gc.callbacks.append(slow_collection)
    try:
        with caplog.at_level("WARNING", logger="verikv.node"):
            node.machine.core.tick = lambda: (gc.collect(), ready())[1]  # the turn's tick collects
            node.machine.tick()
            await node.turn()
    finally:
        gc.callbacks.remove(slow_collection)
        await node.stop()
    assert node.slow_turns == 1
    (line,) = [r.getMessage() for r in caplog.records if "a turn took" in r.getMessage()]
    own = int(line.split("answering) ")[1].split(" ms")[0])
    collector = int(line.split("cycle collector ")[1].split(" ms")[0])
    assert own >= collector >= 120, line


async def test_early_messages_leave_before_the_sync_and_lazy_records_do_not_delay_commits(tmp_path):
    node = Node(config(0, tmp_path, 65), ScriptedCore(
        [ready(records=[b"vote"], messages=[(1, b"late")], early=[(2, b"early")])], [status()]))
    await node.start()
    seen = []
    node.transport.send = lambda dst, kind, payload: seen.append((dst, payload, node.wal.synced_records))
    node.machine.tick()
    await node.turn()
    await node.stop()
    assert seen == [(2, b"early", 0), (1, b"late", 1)]


async def test_a_machine_that_sends_before_asking_for_the_sync_is_caught(tmp_path):
    """PersistBeforeSend counts what each message needs from the core's Readies, not from where
    the machine asks for durability: the same turn with its durable Append moved after the Send
    of the messages that depend on it stops the node."""
    node = Node(config(0, tmp_path, 67), ScriptedCore(
        [ready(records=[b"vote"], messages=[(1, b"late")], commits=[(0, encode_batch([]))])], [status()]))
    await node.start()
    sent = []
    node.transport.send = lambda dst, kind, payload: sent.append(payload)
    honour = node.machine._honour

    def append_last(readies):
        actions = list(honour(readies))
        return iter([a for a in actions if type(a) is not Append] + [a for a in actions if type(a) is Append])

    node.machine._honour = append_last
    node.machine.tick()
    with pytest.raises(RuntimeCheckFailed, match="PersistBeforeSend"):
        await node.turn()
    await node.stop()
    assert sent == []


async def test_a_wal_that_acknowledges_without_syncing_is_caught(tmp_path):
    node = Node(config(0, tmp_path, 66), ScriptedCore([ready(records=[b"vote"], messages=[(1, b"m")])],
                                                     [status()]))
    await node.start()
    node.transport.send = lambda dst, kind, payload: None

    async def lying_append(records):  # returns as if durable, but syncs nothing
        node.wal.written_records += len(records)

    node.wal.append_many = lying_append
    node.machine.tick()
    with pytest.raises(RuntimeCheckFailed, match="PersistBeforeSend"):
        await node.turn()
    await node.stop()


def test_checks_can_be_turned_off():
    checks = Checks(0, 3, enabled=False)
    checks.on_status(status(promised=(5, 1)))
    checks.on_status(status(promised=(1, 1)))
    checks.on_commits([(0, b"a"), (0, b"b")], 0)
    checks.on_messages([(1, b"m")], 5)
    checks.before_send(3)
    assert checks.failures_seen == 0


def test_persist_before_send_check_fires_on_unsynced_records():
    checks = Checks(0, 3)
    checks.before_send(0)  # nothing queued needs anything
    checks.on_messages([(1, b"m")], 2)
    with pytest.raises(RuntimeCheckFailed, match="PersistBeforeSend"):
        checks.before_send(1)
    checks.before_send(2)  # once they are durable


def test_persist_before_send_counts_what_each_message_needs_from_the_readies():
    """A Ready's early messages need the records of every earlier Ready that needed a sync; its
    other messages its own records too; a Ready with nothing to sync adds no need."""
    checks = Checks(0, 3)
    lazy = ready(records=[_record("commit")], sync=False)
    synced = ready(records=[_record("commit"), _record("vote")], sync=True, messages=[(1, b"2b")])
    assert checks.on_ready(lazy) == (0, 0)
    assert checks.on_ready(synced) == (0, 3)  # the lazy record comes first in the WAL
    assert checks.on_ready(lazy) == (3, 3)
    assert checks.on_ready(ready(records=[_record("vote")], sync=True)) == (3, 5)
    assert checks.records_handed == 5


def _record(kind: str) -> bytes:
    tags = {"promised": 1, "vote": 2, "commit": vcore.RECORD_COMMIT_TAG, "truncate": 4, "learn": vcore.RECORD_LEARN_TAG}
    return bytes([tags[kind]]) + b"body"


def test_the_commit_tags_are_the_ones_the_core_writes():
    core = vcore.Core(0, 1, election_ticks=1, heartbeat_ticks=1)  # a cluster of one commits alone
    while core.status()["role"] != "leader":
        core.tick()
    rd = core.propose(b"x")
    assert rd.commits == [(0, b"x")] and len(rd.records) == 2  # its vote, then the commit
    assert [rec[0] for rec in rd.records] == [2, vcore.RECORD_LEARN_TAG]  # the commit names its vote
    Checks(0, 1).on_ready(rd)
    follower = vcore.Core(1, 3)  # a slot learned from a Commit message, with no vote here
    rd = follower.recover([_record_commit(0, b"y")])
    assert rd.commits == [(0, b"y")]


def _record_commit(slot: int, value: bytes) -> bytes:
    return bytes([vcore.RECORD_COMMIT_TAG]) + struct.pack("<QI", slot, len(value)) + value


@pytest.mark.parametrize("records, early_after, sync, messages, fails", [
    (["commit", "vote"], 1, True, [(1, b"m")], None),          # early packets after a commit record only
    (["vote", "commit"], 0, True, [], None),
    ([], 0, False, [], None),
    (["commit"], 1, False, [], None),                           # nothing to sync: everything early
    (["learn", "commit"], 2, False, [], None),
    (["learn", "vote"], 1, True, [(1, b"m")], None),
    (["learn", "vote"], 2, True, [], "needs a sync"),
    (["learn"], 0, True, [], "sync is True"),
    (["vote", "commit"], 1, True, [], "needs a sync"),          # an early packet after the vote
    (["promised"], 1, True, [], "needs a sync"),
    (["commit"], 2, False, [], "after record 2 of 1"),
    (["vote"], 0, False, [], "sync is False"),                  # sync must follow the records
    (["commit"], 0, True, [], "sync is True"),
    (["commit"], 0, False, [(1, b"m")], "late messages"),       # late messages with nothing to sync
])
def test_early_before_sync_check(records, early_after, sync, messages, fails):
    rd = ready(records=[_record(k) for k in records], messages=messages, sync=sync)
    rd.early_after = early_after
    checks = Checks(0, 3)
    if fails is None:
        checks.on_ready(rd)
        assert checks.failures_seen == 0
    else:
        with pytest.raises(RuntimeCheckFailed, match=f"EarlyBeforeSync.*{fails}"):
            checks.on_ready(rd)


def test_message_destination_check():
    with pytest.raises(RuntimeCheckFailed, match="MessageDestinationValid"):
        Checks(0, 3).on_messages([(0, b"to myself")], 0)
    with pytest.raises(RuntimeCheckFailed, match="MessageDestinationValid"):
        Checks(0, 3).on_messages([(3, b"outside")], 0)


def _commit_range(checks, first_slot, value):
    checks.on_commits([(s, value) for s in range(first_slot, first_slot + 64)], first_slot)


def test_replicas_that_committed_other_values_stop_each_other():
    a, b = Checks(0, 3), Checks(1, 3)
    _commit_range(a, 0, b"x")
    _commit_range(b, 0, b"x")
    (last, digest_a), = a.announcements
    (_, digest_b), = b.announcements
    assert last == 63 and digest_a == digest_b
    b.on_peer_digest(0, last, digest_a)  # the same values: nothing happens
    c = Checks(2, 3)
    c.on_peer_digest(0, last, digest_a)  # a claim that arrives before c committed the range
    with pytest.raises(RuntimeCheckFailed, match="CommittedValuesMatch"):
        _commit_range(c, 0, b"y")


@pytest.mark.ports(95)
async def test_digests_travel_between_real_nodes_and_agree(cluster):
    for i in range(70):
        await submit(cluster[i % 3], Kind.PUT, r.PutRequest(key=b"d%d" % i, value=b"v"))
    await wait_for(lambda: all(n.kv.next_slot >= 64 for n in cluster))
    await wait_for(lambda: all(63 in n.machine.checks._ranges for n in cluster))
    digests = {n.machine.checks._ranges[63] for n in cluster}
    assert len(digests) == 1  # and no node stopped on CommittedValuesMatch
    assert all(not n.task.done() for n in cluster)


@pytest.mark.ports(100)
async def test_a_node_behind_the_others_snapshots_catches_up_from_a_peer_snapshot(tmp_path, monkeypatch):
    """...and hands the memory of the state it replaced back to the system (shim/io/heap.py)."""
    from verikv.shim.io import runner
    releases = []
    monkeypatch.setattr(runner, "release_free_memory", lambda: releases.append(1) or 0)
    nodes = await start_cluster(tmp_path, 100, snapshot_every_slots=40, snapshot_min_log_bytes=0)
    try:
        leader = leader_of(nodes)
        lagger = next(n for n in nodes if n is not leader)
        await stop_node(lagger)
        for i in range(120):
            await submit(leader, Kind.PUT, r.PutRequest(key=b"s%d" % i, value=b"%d" % i))
        live = [n for n in nodes if n is not lagger]
        await wait_for(lambda: all(n.machine.core.status()["log_start"] > 40 for n in live))
        for n in live:  # what the peers queued for it is lost too (a long outage overflows the queue)
            n.transport.peers[lagger.node_id].queue.clear()
        revived = await start_node(lagger.node_id, tmp_path, 100, snapshot_every_slots=40, snapshot_min_log_bytes=0)
        nodes[lagger.node_id] = revived
        await wait_for(lambda: revived.kv.revision == leader.kv.revision, timeout_s=20)
        got = revived.kv.range(r.RangeRequest(key=b"s", range_end=b"t"))
        assert len(got.kvs) == 120
        # it jumped over slots no peer holds any more
        assert revived.machine.peer_snapshots_installed >= 1, (revived.machine.core.status(), [n.machine.core.status() for n in live])
        # once at each start (the three, and the revived node's), once at each install
        assert len(releases) == 4 + revived.machine.peer_snapshots_installed, len(releases)
    finally:
        for n in nodes:
            if not n.task.done():
                await stop_node(n)


class _SnapshotWriteFails(RealDisk):
    """The WAL works; writing a snapshot file fails (EIO), as a full or failing disk would."""

    def write_new(self, path, *args):
        raise OSError(errno.EIO, "injected fault: writing the snapshot failed")


async def test_a_failed_snapshot_write_stops_the_node_and_its_log_still_recovers(tmp_path):
    first = Node(config(0, tmp_path, 60, snapshot_every_slots=5, snapshot_min_log_bytes=0), Core(0, 3), _SnapshotWriteFails())
    await first.start()
    first.task = asyncio.get_running_loop().create_task(first.run())
    others = [await start_node(i, tmp_path, 60) for i in (1, 2)]
    try:
        for i in range(12):
            await submit(others[i % 2], Kind.PUT, r.PutRequest(key=b"f%d" % (i % 3), value=b"%d" % i))
        await wait_for(lambda: first.task.done())
        assert isinstance(first.task.exception(), WalFatalError)  # fail-stop, not carry on
        await first.stop()
        # Nothing durable may claim a truncation the failed snapshot did not cover: the node
        # recovers from its log and catches up.
        again = await start_node(0, tmp_path, 60)
        others.append(again)
        await wait_for(lambda: again.kv.revision == others[0].kv.revision == 13)
        assert again.kv.items() == others[0].kv.items()
    finally:
        for n in others:
            await stop_node(n)


def test_role_changes_are_logged_and_repeated_elections_at_most_once_a_second(tmp_path, caplog):
    now = [0.0]
    node = Node(config(0, tmp_path, 95), Core(0, 3), clock=lambda: now[0])
    status = {"role": "candidate", "ballot": (1, 0), "promised": (1, 0), "leader": None,
              "log_start": 0, "next_slot": 0, "commit_upto": 0}
    caplog.set_level("INFO", logger="verikv.node")
    node.machine._log_role(status, True)
    for b in range(2, 7):  # five more failed elections within the same second
        now[0] += 0.1
        node.machine._log_role(dict(status, ballot=(b, 0), promised=(b, 0)), False)
    now[0] += 1.0
    node.machine._log_role(dict(status, ballot=(7, 0), promised=(7, 0)), False)
    node.machine._log_role(dict(status, role="leader", ballot=(7, 0), promised=(7, 0), leader=0), True)
    lines = [rec.getMessage() for rec in caplog.records if rec.name == "verikv.node"]
    assert len(lines) == 3, lines
    assert lines[0].startswith("candidate at ballot (1, 0)")
    assert lines[1].startswith("candidate at ballot (7, 0)") and "(5 more promises since the last line)" in lines[1]
    assert lines[2].startswith("leader at ballot (7, 0)") and "more promises" not in lines[2]


async def test_a_leader_cut_off_from_a_quorum_knows_it(tmp_path):
    """etcd's CheckQuorum, as clients see it: a leader that no quorum has heard from for
    check_quorum_s says it has none (Status and WithRequireLeader watchers then report no
    leader), though it still thinks it leads."""
    nodes = await start_cluster(tmp_path, 230, check_quorum_s=0.3)
    leader = leader_of(nodes)
    try:
        await asyncio.sleep(0.2)
        assert leader.machine.leader_has_quorum()
        for n in nodes:
            if n is not leader:
                await stop_node(n)
        await asyncio.sleep(0.6)
        assert leader.status["role"] == "leader" and not leader.machine.leader_has_quorum()
    finally:
        for n in nodes:
            if not n._stopping:
                await stop_node(n)


async def test_a_leaders_read_confirmations_tell_it_a_quorum_heard_it(tmp_path, monkeypatch):
    """Check-quorum counts every leadership confirmation, a read's as well as the leader's own
    probe: with the probe kept away, a leader knows a quorum heard it after each linearizable
    read, and not once check_quorum_s passed without one."""
    from verikv.shim.node import check_quorum
    monkeypatch.setattr(check_quorum, "PROBE_EVERY_S", 3600.0)
    nodes = await start_cluster(tmp_path, 235, check_quorum_s=0.3)
    leader = leader_of(nodes)
    try:
        for _ in range(2):
            await asyncio.sleep(0.45)
            assert not leader.machine.leader_has_quorum()
            await read(leader, r.RangeRequest(key=b"k"), serializable=False)
            await wait_for(leader.machine.leader_has_quorum)
            assert leader.status["role"] == "leader"
    finally:
        for n in nodes:
            await stop_node(n)
