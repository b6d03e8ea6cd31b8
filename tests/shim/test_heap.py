"""Freed memory goes back to the system when the node asks (shim/io/heap.py), as after replaying
its WAL at start. Measured in a fresh process: a test process's heap, shaped by every test before
it, says little about what one call frees."""

from __future__ import annotations

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

