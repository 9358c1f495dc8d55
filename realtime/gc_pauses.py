"""Python's cyclic garbage collector, and the sound.

A full collection walks every object the collector tracks while it holds the GIL, and
while it does, no other Python thread runs. With the default bundle and the window open
that takes several times what the ring holds (docs/measurements.md): a full collection
during play starves the engine thread.
Python 3.11 runs one only when the objects that survived since the last grow by a quarter
of the old ones, so it is rare (minutes to hours), but a performance is long.

* :func:`freeze_heap` (``gc.collect()`` then ``gc.freeze()``) runs once before the sound
  starts: the startup heap (torch, Qt, the models) moves out of the collector's reach, and
  later collections walk only what was made since. Objects frozen are still freed by their
  reference counts (a hot swap's old bundle is: no cycles hold it); only cyclic garbage
  among them would stay, which is why tests, which start many engines in one process, do
  not freeze.
* :data:`GC_PAUSES` times every collection (``gc.callbacks``) so the engine's stats show
  the longest one and how many exceeded 20 ms.
"""
from __future__ import annotations

import collections
import gc
import time

LONG_MS = 20.0


def freeze_heap() -> int:
    """Collects, then freezes every object now tracked; returns how many are frozen and
    keeps that count in ``GC_PAUSES.frozen`` for the stats. Ask nothing else for it:
    ``gc.get_freeze_count()`` walks the whole frozen list holding the GIL, far too long for
    the window's status line (``tests/test_gc_pauses.py``)."""
    gc.collect()
    gc.freeze()
    GC_PAUSES.frozen = gc.get_freeze_count()
    return GC_PAUSES.frozen


class GcPauses:
    """Counts and times collections, process wide (install once). The callback runs in
    whichever thread the collection runs in, holding the GIL: int stores and a deque append."""

    def __init__(self):
        self.count = 0
        self.long = 0                 # collections over LONG_MS
        self.frozen = 0               # objects frozen by freeze_heap
        self.slow: collections.deque = collections.deque(maxlen=4096)  # (monotonic s, ms), those >= 1 ms
        self._t0 = 0.0
        self.installed = False

    def install(self) -> None:
        if not self.installed:
            gc.callbacks.append(self._callback)
            self.installed = True

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        ms = (time.perf_counter() - self._t0) * 1e3
        self.count += 1
        if ms >= 1.0:
            self.slow.append((time.monotonic(), ms))
        if ms > LONG_MS:
            self.long += 1

    def longest_since(self, t: float) -> float:
        """The longest collection (ms) that ended after monotonic time ``t`` (0: none >= 1 ms)."""
        return max((ms for when, ms in list(self.slow) if when >= t), default=0.0)


GC_PAUSES = GcPauses()
