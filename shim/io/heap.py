"""Memory around a burst of objects: the cycle collector kept out of a recovery that builds the
whole state at once, and the C heap's free memory given back to the system after one.

A recovery (a snapshot restored, the WAL replayed) makes millions of objects that live long.
Python's cycle collector, which looks at the young objects every 700 allocations and at older
generations as they grow, would look at them again and again while they are made: 1,000,000
keys restored and replayed took 7.9-8.6 s with it running, 5.6-7.0 s without (and 0.4 s for one
full collection afterwards). So `collector_paused()` keeps it off meanwhile, then moves what was
made into the oldest generation without looking (`gc.freeze()` then `gc.unfreeze()`), where the
next full collection finds it, as it would have anyway.

Replaying a WAL at start holds every record since the last snapshot at once (hundreds of MiB after
a bulk load); once they are applied Python frees them, but glibc's allocator keeps most of the
freed pages, scattered among live objects, and a restarted node's RSS stayed 80 % above a node
that never restarted (`verikv bench --big-store --keys 200000`: 472-485 MiB per node after a
restart against 262-263 MiB after the load). glibc's `malloc_trim` hands the free pages back.

This module must never touch anything but the allocator, the cycle collector and /proc/self.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os


def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim  # glibc; other C libraries may have no such call
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _malloc_trim()
RELEASES = _MALLOC_TRIM is not None  # whether release_free_memory() can do anything here
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def release_free_memory() -> int | None:
    """Return the C heap's free pages to the system: by how many bytes the RSS fell, or None
    where the C library cannot (not glibc)."""
    if _MALLOC_TRIM is None:
        return None
    before = rss_bytes()
    _MALLOC_TRIM(0)
    return before - rss_bytes()


@contextlib.contextmanager
def collector_paused():
    """The cycle collector off while the block runs (it stays off if it was); what the block
    made goes to the oldest generation. Anything frozen before (`gc.freeze()`) is thawed too."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()  # every tracked object to the permanent generation, and the young count to 0
        gc.unfreeze()  # ... and from there into the oldest generation, unexamined
        if collecting:
            gc.enable()
