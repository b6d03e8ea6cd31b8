"""Automatic compaction: when it is due (etcd's modes and retention syntax), and that a leader's
proposal compacts every node's store through the log."""

import pytest

from verikv.etcdpb import rpc_pb2 as r
from verikv.shim.kv.commands import Kind
from verikv.shim.node.compaction import AutoCompaction, parse_retention

from test_node import leader_of, start_cluster, stop_node, submit, wait_for


@pytest.mark.parametrize("mode, text, seconds_or_revisions", [
    ("revision", "10000", 10000), ("revision", "0", 0),
    ("periodic", "1", 3600), ("periodic", "0.5", 1800), ("periodic", "30m", 1800),
    ("periodic", "1h30m", 5400), ("periodic", "45s", 45), ("periodic", "0", 0),
])
def test_retention_reads_as_etcd_reads_it(mode, text, seconds_or_revisions):
    assert parse_retention(mode, text) == seconds_or_revisions


@pytest.mark.parametrize("mode, text", [("revision", "1h"), ("revision", "-5"), ("periodic", "5x"),
                                        ("periodic", "m5"), ("periodic", ""), ("weekly", "1")])
def test_a_bad_retention_is_refused_with_a_message(mode, text):
    with pytest.raises(ValueError, match="auto-compaction"):
        parse_retention(mode, text)


def test_revision_mode_keeps_the_last_retention_revisions_in_steps_of_a_tenth():
    auto = AutoCompaction("revision", 100)
    assert auto.due(0.0, 100, -1, leading=True) == 0  # nothing older than 100 revisions yet
    assert auto.due(1.0, 109, -1, leading=True) == 0  # 9 old revisions are under a tenth of 100
    assert auto.due(2.0, 110, -1, leading=True) == 10
    assert auto.due(3.0, 115, 10, leading=True) == 0  # 5 more: under a tenth again
    assert auto.due(3.5, 200, 10, leading=True) == 0  # checked once a second only
    assert auto.due(4.0, 200, 10, leading=True) == 100
    assert auto.due(5.0, 300, 10, leading=False) == 0  # a follower never proposes
    assert auto.due(6.0, 300, 10, leading=True) == 200  # counted from what it proposed, not yet applied


def test_periodic_mode_compacts_to_the_revision_of_retention_ago():
    auto = AutoCompaction("periodic", 60)  # sampled every 6 s
    revisions, targets = {}, []
    for t in range(0, 200):
        revision = 10 + 3 * t
        revisions[t] = revision
        target = auto.due(float(t), revision, -1, leading=True)
        if target:
            # the newest sample at least 60 s old: taken in (t - 66, t - 60]
            assert target in [revisions.get(s) for s in range(t - 65, t - 59)], (t, target)
            targets.append(target)
    assert len(targets) >= 20 and targets == sorted(set(targets))  # every 6 s from t = 60 on
    assert AutoCompaction("periodic", 0).due(1e9, 10**6, -1, leading=True) == 0  # 0: off


@pytest.mark.ports(150)
async def test_a_leaders_automatic_compaction_reaches_every_node(tmp_path):
    nodes = await start_cluster(tmp_path, 150, auto_compaction_retention=20)
    try:
        leader = leader_of(nodes)
        for i in range(60):
            await submit(leader, Kind.PUT, r.PutRequest(key=b"k%d" % (i % 5), value=b"%d" % i))
        await wait_for(lambda: all(n.kv.compact_revision >= 61 - 20 - 2 for n in nodes), timeout_s=15)
        assert len({n.kv.compact_revision for n in nodes}) == 1
        assert all(n.kv.history_size() < 30 for n in nodes), [n.kv.history_size() for n in nodes]
        with pytest.raises(Exception, match="required revision has been compacted"):
            await submit(leader, Kind.COMPACT, r.CompactionRequest(revision=2))
    finally:
        for n in nodes:
            await stop_node(n)
