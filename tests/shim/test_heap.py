"""Freed memory goes back to the system when the node asks (shim/io/heap.py), as after replaying
its WAL at start. Measured in a fresh process: a test process's heap, shaped by every test before
it, says little about what one call frees."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

import pytest

from verikv.shim.io import heap

releases = pytest.mark.skipif(not heap.RELEASES, reason="the C library has no malloc_trim")

# 160 MiB of record-sized blocks (what a replayed WAL holds), every 64th kept: the others, freed,
# sit among live blocks, where the allocator does not give them back by itself
SCENARIO = """
import gc, json
from verikv.shim.io import heap
base = heap.rss_bytes()
blocks = [bytes(40_000) + i.to_bytes(4, "little") for i in range(4_000)]
kept = blocks[::64]
grown = heap.rss_bytes() - base
del blocks
gc.collect()
before = heap.rss_bytes()
freed = heap.release_free_memory() if RELEASE else 0
after = heap.rss_bytes()
print(json.dumps(dict(base=base, grown=grown, before=before, freed=freed, after=after, kept=len(kept))))
"""


def scenario(release: bool) -> dict:
    out = subprocess.run([sys.executable, "-c", SCENARIO.replace("RELEASE", str(release))],
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)


@releases
def test_freed_records_go_back_to_the_system():
    r = scenario(release=True)
    assert r["grown"] > 100 << 20, r  # the blocks were resident
    assert r["freed"] == r["before"] - r["after"], r
    assert r["after"] - r["base"] < r["grown"] // 4, r  # most of it went back
    assert r["kept"] == 63


@releases
def test_without_the_call_the_freed_records_stay_resident():
    """What the call is for: freeing alone leaves them in the process."""
    r = scenario(release=False)
    assert r["before"] - r["base"] > r["grown"] // 2, r


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
        with heap.collector_paused():
            assert not gc.isenabled()
            made = [_Record() for _ in range(50_000)]  # 70 times the young generation's threshold
        assert collections == []
        assert gc.isenabled() is enabled_before
        assert _in_generation(made[0], 2) and _in_generation(made[-1], 2) and _in_generation(made, 2)
    finally:
        gc.callbacks.remove(observe)
        (gc.enable if was else gc.disable)()
