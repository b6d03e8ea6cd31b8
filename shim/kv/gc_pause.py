"""Python's cycle collector kept out of a burst that makes a whole state at once.

A recovery (a snapshot restored, the WAL replayed) or a peer's snapshot read into a new store
makes millions of objects that live long. The cycle collector, which looks at the young objects
every 700 allocations and at the older generations as they grow, would look at them again and
again while they are made: 1,000,000 keys restored and replayed by a node took 7.9-8.6 s with it
running, 5.6-7.0 s without (and 0.4 s for one full collection afterwards); `KVStore.restore` of
1,000,000 keys alone 5.2-5.7 s against 3.6-3.7 s. So `collector_paused()` keeps it off meanwhile,
then moves what was made into the oldest generation without looking at it (`gc.freeze()` then
`gc.unfreeze()`), where the next full collection finds it, as it would have anyway.

This module must never touch anything but the cycle collector.
"""

from __future__ import annotations

import contextlib
import gc


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
