"""Giving the C heap's free memory back to the system after a burst that left it behind.

Replaying a WAL at start holds every record since the last snapshot at once (hundreds of MiB after
a bulk load); once they are applied Python frees them, but glibc's allocator keeps most of the
freed pages, scattered among live objects, and a restarted node's RSS stayed 80 % above a node
that never restarted (`verikv bench --big-store --keys 200000`: 472-485 MiB per node after a
restart against 262-263 MiB after the load). glibc's `malloc_trim` hands the free pages back.

This module must never touch anything but the allocator and /proc/self.
"""

from __future__ import annotations

import ctypes
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

