"""realtime/gc_pauses.py: freezing moves the existing heap out of the collector's reach,
frozen objects are still freed by their reference counts, and every collection is counted."""
import gc
import weakref

from realtime.gc_pauses import GC_PAUSES, GcPauses, freeze_heap


class Node:
    pass


def test_freezing_takes_the_heap_out_of_collections_and_refcounts_still_free_it():
    before = Node()
    try:
        frozen = freeze_heap()
        assert frozen == gc.get_freeze_count() == GC_PAUSES.frozen > 1000
        assert not any(o is before for o in gc.get_objects())        # no collection walks it now
        after = Node()
        assert any(o is after for o in gc.get_objects())             # new objects are collected as before
        ref = weakref.ref(before)
        del before                                                   # a frozen object without cycles
        assert ref() is None                                         # is freed by its reference count
    finally:
        gc.unfreeze()        # the rest of the suite's cyclic garbage stays collectable
        GC_PAUSES.frozen = 0


def test_every_collection_is_counted_and_timed(monkeypatch):
    p = GcPauses()
    p.install()
    try:
        p.install()                                    # once only
        assert gc.callbacks.count(p._callback) == 1
        n = p.count
        gc.collect()
        gc.collect(0)
        assert p.count == n + 2
    finally:
        gc.callbacks.remove(p._callback)
    # timing on a clock the test drives: 0.5 ms, 50 ms, 5 ms collections
    import realtime.gc_pauses as mod
    now = {"perf": 0.0, "mono": 100.0}
    monkeypatch.setattr(mod.time, "perf_counter", lambda: now["perf"])
    monkeypatch.setattr(mod.time, "monotonic", lambda: now["mono"])
    q = GcPauses()
    for ms, at in ((0.5, 100.0), (50.0, 101.0), (5.0, 102.0)):
        now["mono"] = at
        q._callback("start", {})
        now["perf"] += ms / 1e3
        q._callback("stop", {})
    assert q.count == 3 and q.long == 1                           # only the 50 ms one is over 20 ms
    assert [round(ms, 6) for _, ms in q.slow] == [50.0, 5.0]      # under 1 ms is not kept
    assert round(q.longest_since(100.5), 6) == 50.0
    assert round(q.longest_since(101.5), 6) == 5.0 and q.longest_since(102.5) == 0.0


def test_a_hot_swapped_bundle_is_freed_without_the_collector(small_bundle):
    """The app freezes its heap, so a bundle that only a collection could free would leak
    on every hot swap: the old player and its models must go by reference counts alone."""
    import time

    import numpy as np

    from core.bundle import load_bundle
    from realtime.engine import Engine

    gc.collect()
    gc.disable()
    engine = Engine(load_bundle(small_bundle), 48000, threads=1)
    try:
        engine.start()
        old_player, old_vocoder = weakref.ref(engine.player), weakref.ref(engine.player.bundle.vocoder)
        engine.load_bundle(str(small_bundle)).join()
        buf = np.zeros((1024, 1), np.float32)
        deadline = time.monotonic() + 30
        while (engine.player is old_player() or engine._fading is not None) and time.monotonic() < deadline:
            engine.ring.read_into(buf)                 # as the audio callback pulls
            time.sleep(0.005)
        assert engine.player is not old_player() and engine._fading is None, "the swap never finished"
        for _ in range(20):                            # the engine's own step may still hold it
            engine.ring.read_into(buf)
            time.sleep(0.01)
        assert old_player() is None and old_vocoder() is None
    finally:
        engine.stop()
        gc.enable()


def test_the_engines_stats_never_walk_the_frozen_heap(small_bundle, monkeypatch):
    """``gc.get_freeze_count()`` walks every frozen object holding the GIL (19 ms for
    170,000); the window's status line calls ``stats()`` 4 times a second."""
    from core.bundle import load_bundle
    from realtime.engine import Engine

    engine = Engine(load_bundle(small_bundle), 48000, threads=1)

    def walks(*_):
        raise AssertionError("stats() walked the frozen heap")
    monkeypatch.setattr(gc, "get_freeze_count", walks)
    s = engine.stats()
    assert s["gc_frozen_objects"] == GC_PAUSES.frozen
