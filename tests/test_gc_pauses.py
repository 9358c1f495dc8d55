"""realtime/gc_pauses.py: freezing moves the existing heap out of the collector's reach,
frozen objects are still freed by their reference counts, and every collection is counted."""
import gc
import weakref

from realtime.gc_pauses import GcPauses, freeze_heap


class Node:
    pass


def test_freezing_takes_the_heap_out_of_collections_and_refcounts_still_free_it():
    before = Node()
    try:
        frozen = freeze_heap()
        assert frozen == gc.get_freeze_count() > 1000
        assert not any(o is before for o in gc.get_objects())        # no collection walks it now
        after = Node()
        assert any(o is after for o in gc.get_objects())             # new objects are collected as before
        ref = weakref.ref(before)
        del before                                                   # a frozen object without cycles
        assert ref() is None                                         # is freed by its reference count
    finally:
        gc.unfreeze()        # the rest of the suite's cyclic garbage stays collectable


def test_every_collection_is_counted_and_timed():
    p = GcPauses()
    p.install()
    try:
        p.install()                                    # once only
        assert gc.callbacks.count(p._callback) == 1
        n = p.count
        gc.collect()
        gc.collect(0)
        assert p.count == n + 2
        assert p.longest_since(0.0) >= 0.0 and p.long >= 0
        assert all(ms >= 1.0 for _, ms in p.slow)
    finally:
        gc.callbacks.remove(p._callback)
