"""The node's cycle-collector policy (shim/serve.py, Collector): the survivors of a full collection
are frozen, so later collections look only at newer objects; garbage cycles made later still go;
a cycle frozen and dropped afterwards goes once the periodic unfreeze lets a collection see it."""

import asyncio
import gc
import weakref

from verikv.shim.serve import Collector


class Cell:
    pass


async def test_full_collections_freeze_their_survivors_and_the_periodic_unfreeze_frees_what_they_held():
    gc.unfreeze()
    collector = Collector(unfreeze_every_s=0.2)
    collector.start()
    try:
        kept = [{"n": i} for i in range(1000)]  # long-lived objects, as a store's
        old = Cell()
        old.self = old  # a cycle that is alive at the freeze and dropped later
        gone_later = weakref.ref(old)
        gc.collect()
        assert collector.freezes == 1 and gc.get_freeze_count() >= len(kept)
        young = Cell()
        young.self = young  # a cycle made after the freeze: collected as ever
        young_ref = weakref.ref(young)
        del young, old
        gc.collect()
        assert young_ref() is None
        assert gone_later() is not None  # frozen: the next collections do not look at it
        await asyncio.sleep(0.3)  # the unfreeze
        gc.collect()
        assert gone_later() is None
        assert collector.freezes == 3 and kept
    finally:
        collector.stop()
    assert collector._after not in gc.callbacks and gc.get_freeze_count() == 0
