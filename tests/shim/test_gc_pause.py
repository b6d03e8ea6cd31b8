"""The cycle collector kept out of a burst that makes a whole state (shim/kv/gc_pause.py): a
node's recovery (its wiring: tests/shim/test_node.py) and a store restored from a snapshot."""

from __future__ import annotations

import gc

import pytest

from verikv.etcdpb import rpc_pb2 as r
from verikv.shim.kv import gc_pause
from verikv.shim.kv.store import KVStore


class _Record:  # tracked by the cycle collector, as the store's records are
    __slots__ = ("value",)


def _in_generation(obj, generation: int) -> bool:
    return any(o is obj for o in gc.get_objects(generation=generation))


@pytest.mark.parametrize("enabled_before", [True, False])
def test_the_collector_is_off_while_a_state_is_built_and_what_it_made_is_old_afterwards(enabled_before):
    """Inside collector_paused() no collection runs, however many objects are made; afterwards
    they are in the oldest generation (not left young, for the next young collection to look at
    all of them) and the collector is as it was before."""
    collections = []

    def observe(phase, info):
        if phase == "start":
            collections.append(info["generation"])

    was = gc.isenabled()
    (gc.enable if enabled_before else gc.disable)()
    gc.callbacks.append(observe)
    try:
        with gc_pause.collector_paused():
            assert not gc.isenabled()
            made = [_Record() for _ in range(50_000)]  # 70 times the young generation's threshold
        assert collections == []
        assert gc.isenabled() is enabled_before
        assert _in_generation(made[0], 2) and _in_generation(made[-1], 2) and _in_generation(made, 2)
    finally:
        gc.callbacks.remove(observe)
        (gc.enable if was else gc.disable)()


def test_a_store_is_restored_with_the_collector_paused_and_its_records_are_old_afterwards():
    kv = KVStore()
    for b in range(0, 20_000, 100):
        kv.txn(r.TxnRequest(success=[r.RequestOp(request_put=r.PutRequest(key=b"k%06d" % i, value=b"v"))
                                     for i in range(b, b + 100)]))
    snapshot = kv.snapshot()
    collections = []

    def observe(phase, info):
        if phase == "start":
            collections.append(info["generation"])

    was = gc.isenabled()
    gc.enable()
    gc.callbacks.append(observe)
    try:
        restored = KVStore.restore(snapshot)
        assert collections == [] and gc.isenabled()
        assert _in_generation(restored._data[b"k000000"], 2) and _in_generation(restored._data[b"k019999"], 2)
    finally:
        gc.callbacks.remove(observe)
        (gc.enable if was else gc.disable)()
    assert restored.snapshot() == snapshot
