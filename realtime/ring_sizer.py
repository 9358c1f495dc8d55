"""How full the engine keeps its ring: sized from what the ring itself went through.

The engine sleeps while the ring holds its target fill and steps once it holds less. A
*dip* is one such stretch of stepping, from the last check that found the ring at its target
to the ring back at it: its **depth** is the target minus the lowest fill seen just before a
write (frames). It holds everything that can delay the write: the device's block, the wake-up
after the sleep, the step's compute, a GIL holder, the host taking the core. Depth does not
depend on the target (every part of it is time), so the target the ring needs is the deepest
dip plus a margin; a dip deeper than the target is an underrun.

:class:`RingSizer` keeps the deepest dip of each second over the last :data:`WINDOW_S`
seconds and sets the target to the deepest of those plus the latency mode's margin. For the
first :data:`WARMUP_S` seconds (the start: compiles, first allocations, a GUI building) the
target is the ``warmup`` fill. An underrun the window did not foresee adds half a device
block for good (``grown``). The window is 20 s because the rare slow steps of a loaded
machine came about 10 s apart in the soaks (docs/measurements.md): a window shorter than
that forgets one before the next arrives. A 120-s window was measured too: under load it
kept the ring at its ceiling most of the time (83 ms control latency against 71) and still
underran, in stalls deeper than the ceiling (``soak_load_dips_120.json``).

Guarded by ``tests/test_ring_sizer.py``.
"""
from __future__ import annotations

import numpy as np

WARMUP_S = 20           # seconds the ring holds the warm-up fill after the start
WINDOW_S = 20           # seconds of dips the target is sized from


class RingSizer:
    """Engine thread only. Frames throughout; ``now`` in seconds (a monotonic clock)."""

    def __init__(self, *, margin: int, floor: int, ceiling: int, warmup: int, grow_by: int,
                 window_s: int = WINDOW_S, warmup_s: int = WARMUP_S):
        """``margin``: frames kept beyond the deepest dip; ``floor``/``ceiling``: the target's
        bounds; ``warmup``: the target until a window has been seen; ``grow_by``: frames an
        unforeseen underrun adds."""
        self.margin, self.floor, self.ceiling, self.grow_by = int(margin), int(floor), int(ceiling), int(grow_by)
        self.window_s, self.warmup_s = int(window_s), int(warmup_s)
        self.target = min(max(int(warmup), self.floor), self.ceiling)
        self.grown = 0                      # frames added after underruns
        self.depths = np.zeros(self.window_s, dtype=np.int64)    # deepest dip of each second, by second % window
        self._slot_second = np.full(self.window_s, -1, dtype=np.int64)
        self._first_second: int | None = None
        self.settled = False                # a whole window seen: the target follows the dips
        self.deepest = 0                    # the deepest dip since the start (frames), for stats

    def observe(self, now: float, depth: int) -> None:
        """A dip ended (or an underrun happened) ``now``, ``depth`` frames deep."""
        sec = int(now)
        if self._first_second is None:
            self._first_second = sec
        i = sec % self.window_s
        if self._slot_second[i] != sec:
            self._slot_second[i] = sec
            self.depths[i] = 0
        self.depths[i] = max(self.depths[i], int(depth))
        self.deepest = max(self.deepest, int(depth))

    def underrun(self) -> None:
        """The device found the ring empty: the window did not foresee that dip."""
        self.grown = min(self.grown + self.grow_by, self.ceiling)

    def window_depth(self, now: float) -> int:
        """The deepest dip of the last ``window_s`` seconds (frames)."""
        live = self._slot_second > int(now) - self.window_s
        return int(self.depths[live].max()) if live.any() else 0

    def update(self, now: float) -> int:
        """The target for ``now`` (frames): once a whole window has been seen, the deepest
        dip in it plus the margin and what underruns added, within the bounds."""
        if not self.settled:
            if self._first_second is None or int(now) - self._first_second < self.warmup_s:
                return self.target
            self.settled = True
        want = self.window_depth(now) + self.margin + self.grown
        self.target = min(max(want, self.floor), self.ceiling)
        return self.target
