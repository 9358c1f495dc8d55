"""A beat clock: the beat position at each model frame, from a BPM or from MIDI clock.

Pure (no threads, no real-time imports): the engine thread owns one :class:`BeatClock`,
feeds it MIDI clock and transport messages as the controller drains them, and asks it once
per step for the beat positions of the step's frames; :func:`beat_slots` turns them into
the slots the token source moves on (one move at the first frame of each slot, i.e. at the
first frame at or after each beat boundary when ``token_beats`` is 1).

Tempo sources (:data:`TEMPO_SOURCES`):

* ``free``: no beat grid (the token source keeps its own ``token_rate`` frames per move);
* ``bpm``: beats at a fixed rate, beat 0 at the frame the mode is chosen; a new BPM goes on
  from the beat position reached (no jump);
* ``midi_clock``: 24 clock ticks (0xF8) per beat. Start (0xFA) puts the next tick on beat 0,
  Stop (0xFC) freezes the position, Continue (0xFB) goes on from it, Song Position (0xF2,
  in sixteenths) puts the next tick there. The position follows the ticks counted so far:
  between two ticks it advances at the estimated tempo but never reaches the next tick's
  position before that tick arrives, and never stays behind a tick that has arrived. So a
  beat's move comes with the step that drains the beat's tick; a clock that stops sending
  stops the moves within one tick.

Ticks come a step at a time: the position resolves ticks, not the time inside a step.
Tempo (for the status line and the interpolation between ticks) is the least-squares slope
of the last :data:`TEMPO_WINDOW` tick times (:class:`TickTempo`).
"""
from __future__ import annotations

import collections
import math

import numpy as np

TICKS_PER_BEAT = 24                   # MIDI clock: 24 pulses per quarter note
TICKS_PER_SIXTEENTH = 6               # Song Position Pointer counts sixteenths
TEMPO_SOURCES = ("free", "bpm", "midi_clock")
TEMPO_WINDOW = 96                     # ticks in the tempo fit (4 beats)
TEMPO_MIN_TICKS = 12                  # ticks before a tempo is estimated (half a beat)
TICK_GAP_S = 0.5                      # a longer silence between ticks starts a new fit (20 BPM: 0.125 s)
_BELOW_NEXT_TICK = 1e-9               # beats: how far below the next tick's position the position stops


class TickTempo:
    """Tempo from MIDI clock tick times: ``60 / (24 * slope)`` BPM, where ``slope``
    (seconds per tick) is the least-squares fit of the last :data:`TEMPO_WINDOW` tick
    times against their index. A fit over 4 beats keeps jitter of a few ms per tick well
    under 1 % (``tests/test_tempo.py::test_the_tick_tempo_fit_is_robust_to_jitter``)."""

    def __init__(self, window: int = TEMPO_WINDOW):
        self._times: collections.deque[float] = collections.deque(maxlen=window)

    def tick(self, t: float) -> None:
        """One tick at ``t`` seconds (any monotonic time base: rtmidi's delta times summed)."""
        times = self._times
        if times and not 0.0 <= t - times[-1] <= TICK_GAP_S:
            times.clear()           # the clock paused, or the time base jumped
        times.append(float(t))

    def reset(self) -> None:
        self._times.clear()

    @property
    def bpm(self) -> float | None:
        """The tempo, BPM, or None before :data:`TEMPO_MIN_TICKS` ticks."""
        n = len(self._times)
        if n < TEMPO_MIN_TICKS:
            return None
        t = np.fromiter(self._times, np.float64, n)
        i = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        slope = float(np.dot(i, t - t.mean()) / np.dot(i, i))
        return 60.0 / (TICKS_PER_BEAT * slope) if slope > 0 else None


class BeatClock:
    """Beat positions of model frames. Engine thread only.

    :meth:`advance` gives the position at each frame of a step, in beats (float64
    ``[n]``), NaN while MIDI clock has not counted a tick since Start; None in free mode."""

    def __init__(self):
        self.tempo = TickTempo()
        self.running = True             # MIDI transport: False after Stop
        self.bpm_estimate: float | None = None      # the MIDI clock's tempo at the last step, BPM
        self._tick = -1                 # last MIDI clock tick counted since Start (-1: none yet)
        self._pos = math.nan            # MIDI clock: beat position at the last frame given
        self._source = "free"
        self._bpm = 0.0                 # BPM mode: the tempo the anchor was set at
        self._anchor = 0.0              # BPM mode: beat position at the anchor frame
        self._since = 0                 # BPM mode: frames since the anchor

    # ---- MIDI clock and transport (from the controller, engine thread) -------------------
    def clock(self, t: float) -> None:
        """A clock tick (0xF8) at ``t`` seconds."""
        self.tempo.tick(t)
        if self.running:
            self._tick += 1

    def start(self) -> None:
        """Start (0xFA): the next tick is beat 0."""
        self.running = True
        self._tick = -1
        self._pos = math.nan

    def stop(self) -> None:
        """Stop (0xFC): the position stays where it is."""
        self.running = False

    def resume(self) -> None:
        """Continue (0xFB): the next tick goes on from the position."""
        self.running = True

    def song_position(self, sixteenths: int) -> None:
        """Song Position Pointer (0xF2): the next tick lands on ``sixteenths`` sixteenths."""
        self._tick = TICKS_PER_SIXTEENTH * int(sixteenths) - 1
        self._pos = self._tick / TICKS_PER_BEAT if self._tick >= 0 else math.nan

    # ---- positions (engine thread, once per step) --------------------------------------
    def advance(self, n: int, frame_rate: float, source: str, bpm: float) -> np.ndarray | None:
        """Beat positions of the next ``n`` frames at ``frame_rate`` frames/s for tempo
        source ``source`` (one of :data:`TEMPO_SOURCES`), BPM mode at ``bpm``."""
        if source != self._source:
            self._source = source
            self._anchor, self._since, self._bpm = 0.0, 0, float(bpm)     # BPM mode: beat 0 here
        if source == "bpm":
            return self._advance_bpm(n, frame_rate, float(bpm))
        if source == "midi_clock":
            return self._advance_midi(n, frame_rate)
        return None

    def _advance_bpm(self, n: int, frame_rate: float, bpm: float) -> np.ndarray:
        if bpm != self._bpm:            # go on from the position reached, at the new rate
            self._anchor += self._since * self._bpm / (60.0 * frame_rate)
            self._since, self._bpm = 0, bpm
        frames = self._since + np.arange(n, dtype=np.float64)
        self._since += n
        return self._anchor + frames * (bpm / (60.0 * frame_rate))

    def _advance_midi(self, n: int, frame_rate: float) -> np.ndarray:
        est = self.tempo.bpm
        self.bpm_estimate = est
        out = np.full(n, math.nan)
        if self._tick < 0:
            return out
        floor = self._tick / TICKS_PER_BEAT
        ceiling = (self._tick + 1) / TICKS_PER_BEAT - _BELOW_NEXT_TICK
        per_frame = (est or 0.0) / (60.0 * frame_rate) if self.running else 0.0
        pos = self._pos
        for i in range(n):
            pos = floor if math.isnan(pos) else min(max(pos + per_frame, floor), ceiling)
            out[i] = pos
        self._pos = pos
        return out


def beat_slots(positions: np.ndarray, token_beats: float) -> np.ndarray:
    """The token slot of each frame: ``floor(position / token_beats)`` (int64 ``[n]``), -1
    where the position is NaN (MIDI clock before its first tick)."""
    q = np.asarray(positions, np.float64) / max(float(token_beats), 1e-6)
    return np.where(np.isnan(q), -1, np.floor(np.nan_to_num(q, nan=-1.0))).astype(np.int64)
