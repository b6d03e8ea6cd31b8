"""When a node starts a snapshot (NodeMachine._snapshot_due): once the records logged since its
last snapshot are about as many bytes as that snapshot's state (and at least 4 MiB), or after a
bound of slots that keeps the core's window from filling, and at different slots on different
nodes."""

from __future__ import annotations

import random

import pytest

from verikv.shim.node.machine import NodeConfig, NodeMachine, WriteState
from verikv.verified_core.core import WINDOW, Core

EVERY = 1024
STATE = 2800 * 2048  # bytes: about a state of 100,000 leases
SMALL_RECORDS = 400  # bytes logged per slot by one client's puts
MIN_LOG = NodeConfig.snapshot_min_log_bytes  # 4 MiB


def _machine(tmp_path, node_id: int = 0) -> NodeMachine:
    config = NodeConfig(node_id=node_id, peer_addresses=[("127.0.0.1", 1)] * 3, data_dir=tmp_path)
    return NodeMachine(config, Core(node_id, 3), clock=lambda: 100.0, rng=random.Random(node_id))


def _after_a_snapshot(m: NodeMachine, slots: int, logged_per_slot: int, state_bytes: int = STATE,
                      slots_while_writing: int = 0) -> NodeMachine:
    """`m` as it is `slots` slots after a snapshot of `state_bytes` at slot 10,000, which took
    `slots_while_writing` slots to write, having logged `logged_per_slot` bytes per slot."""
    m.snapshot_slot = 10_000
    m._snapshot_writing = 10_000
    m.kv.next_slot = 10_000 + slots_while_writing
    m.state_written(10_000, state_bytes)
    m._snapshot_durable = m._snapshot_writing = None
    m.kv.next_slot = 10_000 + slots
    m._logged_bytes = slots * logged_per_slot
    return m


def _first_due(m: NodeMachine, logged_per_slot: int, **kw) -> int:
    return next(s for s in range(1, WINDOW + 1) if _after_a_snapshot(m, s, logged_per_slot, **kw)._snapshot_due())


def test_a_fresh_node_snapshots_once_it_logged_the_least_number_of_bytes(tmp_path):
    m = _machine(tmp_path)
    m.kv.next_slot = EVERY
    m._logged_bytes = MIN_LOG - 1
    assert not m._snapshot_due()
    m._logged_bytes = MIN_LOG
    assert m._snapshot_due()
    # and the turn starts writing its state
    assert [a.slot for a in m.turn() if type(a) is WriteState] == [EVERY]
    # never before the least number of slots, however many bytes
    m = _machine(tmp_path)
    m.kv.next_slot, m._logged_bytes = EVERY - 1, 10 * MIN_LOG
    assert not m._snapshot_due()


def test_a_small_state_waits_for_the_least_number_of_bytes(tmp_path):
    # one client's small puts beside a small state: every ~10,000 slots, not every 1,024 (each
    # snapshot forks the node), and the nodes at different slots
    small = [_first_due(_machine(tmp_path / str(i), i), SMALL_RECORDS, state_bytes=200_000) for i in range(3)]
    assert small == [10_486, 8_739, 6_991]  # node i of 3: (6 - i) / 6 of 4 MiB
    # 16 KiB values: the bytes come at once, and the least number of slots decides, as before
    assert _first_due(_machine(tmp_path, 0), 16 * 1024, state_bytes=200_000) == EVERY


def test_snapshot_count_bounds_the_slots_whatever_the_bytes(tmp_path):
    # serve's --snapshot-count N (etcd's flag): a snapshot after at most N slots, on every node,
    # even when N is below the least number of slots
    for n in (1024, 100):
        due = []
        for i in range(3):
            config = NodeConfig(node_id=i, peer_addresses=[("127.0.0.1", 1)] * 3, data_dir=tmp_path / f"{n}-{i}",
                                snapshot_max_slots=n)
            m = NodeMachine(config, Core(i, 3), clock=lambda: 100.0, rng=random.Random(i))
            due.append(_first_due(m, SMALL_RECORDS, state_bytes=200_000))
        assert due == [n, n, n]


def test_a_large_state_with_small_records_is_written_once_they_are_as_many_bytes(tmp_path):
    # 1,024 slots of 400 bytes are 410 kB: a 5.7 MB state written then would be 14 times the
    # bytes it saves replaying; node 0 waits until the records are as many bytes as the state
    assert _first_due(_machine(tmp_path, 0), SMALL_RECORDS) == STATE // SMALL_RECORDS == 14_336
    # a state larger still: at the most slots the core's window allows (room left for the
    # least number of slots)
    assert _first_due(_machine(tmp_path, 0), SMALL_RECORDS, state_bytes=4 * STATE) == WINDOW - EVERY


def test_records_as_large_as_the_state_make_a_snapshot_due(tmp_path):
    per_slot = STATE // (2 * EVERY)  # the state's bytes logged after 2,048 slots
    assert _first_due(_machine(tmp_path, 0), per_slot) == 2 * EVERY
    # never before the least number of slots, however large the records
    assert _first_due(_machine(tmp_path, 0), STATE) == EVERY


def test_the_nodes_write_their_states_at_different_slots(tmp_path):
    small = [_first_due(_machine(tmp_path / str(i), i), SMALL_RECORDS) for i in range(3)]
    assert small == [14_336, 11_947, 9_558]  # node i of 3: (6 - i) / 6 of the state's bytes
    bound = [_first_due(_machine(tmp_path / str(i), i), SMALL_RECORDS, state_bytes=4 * STATE) for i in range(3)]
    assert bound == [15_360, 12_800, 10_240]  # and of the bound
    per_slot = STATE // (2 * EVERY)
    large = [_first_due(_machine(tmp_path / str(i), i), per_slot) for i in range(3)]
    assert large == [2048, 1707, 1366]  # and of the state's bytes


@pytest.mark.parametrize("while_writing, due", [(300, 14_760), (3000, 9_360), (7500, EVERY)])
def test_a_slow_write_makes_the_next_snapshot_earlier(tmp_path, while_writing, due):
    # the log may reach WINDOW slots past the last snapshot: the next state starts early enough
    # to be written (taking as many slots as the last one did, twice over) before it does
    m = _machine(tmp_path)
    assert _first_due(m, SMALL_RECORDS, state_bytes=4 * STATE, slots_while_writing=while_writing) == due
    assert m._slots_while_writing == while_writing
    assert due + 2 * while_writing <= WINDOW - EVERY or due == EVERY


def test_configured_bounds(tmp_path):
    config = NodeConfig(node_id=0, peer_addresses=[("127.0.0.1", 1)] * 3, data_dir=tmp_path,
                        snapshot_every_slots=40, snapshot_max_slots=100)
    m = NodeMachine(config, Core(0, 3), clock=lambda: 100.0, rng=random.Random(0))
    assert _first_due(m, 1) == 100
    config.snapshot_max_slots = 40  # one fixed number of slots
    assert _first_due(m, 1) == 40
