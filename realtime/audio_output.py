"""Audio output: a device callback in C (rtmixer) that reads the ring buffer; no Python runs
on the device's thread, so no holder of the GIL (the garbage collector, an import, the GUI,
rtmidi's JACK calls) can starve it.

The stream is an ``rtmixer.Mixer`` (a sounddevice stream: every PortAudio host API, device
and latency choice). Its callback zeroes the device buffer, then plays a *ring action*:
it copies what the ring holds, up to the block. When the ring holds less than a block,
the rest of the block stays zero (silence, never stale audio) and rtmixer *ends* the ring
action. So a Python thread, ``driftwave-audio-watch``, starts a new one; it is not on the
audio path while the ring holds enough (the callback then needs nothing from Python).

Counting: rtmixer counts callbacks ("blocks") and PortAudio's output-underflow flags, for
the stream (``FETCH_AND_RESET_STATS`` actions) and for each action. Each new ring action
goes to the callback linked to a stats fetch, so both run in the same callback: that fixes
the callback index where the action started. An action that ended on an empty ring at
callback ``e`` (its start + its blocks - 1), followed by one that started at ``s``, leaves
``s - e`` blocks that were not filled from the ring: ``e``, partly silent, and every block
in between, wholly silent. Those are the underruns, as the old Python callback counted
them (one per callback short of frames). While the device plays, the counts trail it by a
poll of the watcher (underruns) or ``FETCH_EVERY_S`` (the others); after ``pause()`` or
``stop()`` they are exact. Guarded by tests/test_audio_path.py.

The watcher drives rtmixer's queues itself (``_action_q``, ``_result_q``, ``_state``, as
rtmixer 0.1.7 lays them out): rtmixer's own methods would discard the results it counts.

Panic (``flush_requested = True``, the engine thread): the audio written before the request
is dropped, the audio written after it is kept. The ring keeps one reader at any time: the
watcher cancels the ring action (an rtmixer CANCEL), and once rtmixer hands the action back
(its result queue, a PortAudio ring buffer with memory barriers), the C callback no longer
reads the ring, so the watcher may: it skips the frames written before the mark, then
starts a new ring action, which hands the reader's role back to the callback.

NB: shared values. ``underruns``, ``xruns``, ``frames_played`` and ``callbacks`` are ints
written by the watcher (and by ``pause``/``stop`` under the same lock) and read by anyone
(atomic under the GIL). ``_flush_request`` is a tuple replaced whole by the writer. The C
callback and Python share only PortAudio ring buffers (the audio ring, rtmixer's action and
result queues) and the actions' fields, which Python reads only after rtmixer hands an
action back, or while the stream is stopped.
"""
from __future__ import annotations

import threading
import time

import rtmixer

from .priority import WATCHER_PRIORITY, raise_priority
from .ringbuffer import RingBuffer

_ffi = rtmixer._ffi
_lib = rtmixer._lib

FETCH_EVERY_S = 0.05        # how stale ``callbacks``, ``xruns`` and ``frames_played`` may be
# the watcher's poll: a quarter of a device block within these bounds, so that a ring action
# that ended is restarted before the next callback (a 2 ms poll: about 2 % of a core)
WATCH_EVERY_S = (0.001, 0.005)


def pick_samplerate(device, wanted: float | None, kind: str = "output") -> int:
    """``wanted`` if the device takes it, else the device's default rate; ``kind``: "output"
    or "input" (realtime/audio_input.py), the side of the device asked."""
    import sounddevice as sd

    info = sd.query_devices(device, kind)
    check = sd.check_output_settings if kind == "output" else sd.check_input_settings
    if wanted:
        try:
            check(device=device, samplerate=wanted, channels=1, dtype="float32")
            return int(wanted)
        except Exception:
            pass
    return int(info["default_samplerate"])


class _Play:
    """One ring action and what is known about it (callback indices count from 1)."""

    def __init__(self, action, prev: _Play | None):
        self.action = action
        self.prev = prev                # the action before: its gap is settled when this starts
        self.start: int | None = None   # callback of its first block
        self.blocks: int | None = None  # callbacks it ran, once it ended
        self.cancelled = False

    @property
    def ended_empty(self) -> bool:
        return self.blocks is not None and not self.cancelled

    @property
    def end(self) -> int:
        """Callback of its last block (it ran short of frames there, unless cancelled)."""
        return self.start + self.blocks - 1


class AudioOutput:
    def __init__(self, ring: RingBuffer, device=None, samplerate: int | None = None,
                 blocksize: int = 0, latency: str | float = "high", channels: int | None = None,
                 realtime: bool = True):
        """``realtime``: the watcher thread asks for real-time scheduling (as the engine does)."""
        import sounddevice as sd

        info = sd.query_devices(device, "output")
        self.device_name = info["name"]
        self.host_api = sd.query_hostapis(info["hostapi"])["name"]
        self.realtime = realtime
        self.samplerate = pick_samplerate(device, samplerate)
        self.channels = channels or min(2, int(info["max_output_channels"]))
        self.ring = ring
        ring.set_channels(self.channels)    # the writer fans mono out; rtmixer maps 1:1
        self.underruns = 0
        self.xruns = 0
        self.frames_played = 0
        self.callbacks = 0
        self._block_max = 0
        self.restarts = 0               # ring actions started after one ran empty
        self._settled = 0               # underruns of gaps whose next action has started
        self._flush_request = (0, 0)    # (ring.written at the request, request number)
        self._flush_done = 0
        self._mixer = rtmixer.Mixer(device=device, samplerate=self.samplerate, blocksize=blocksize,
                                    latency=latency, channels=self.channels)
        self._lock = threading.Lock()   # the watcher vs pause/resume/stop (never the callback)
        self._inflight: dict = {}       # owning cdata of each action rtmixer holds -> keep-alive
        self._req = _ffi.new("struct action**")
        self._res = _ffi.new("struct action**")
        self._play: _Play | None = None         # the ring action rtmixer holds, if any
        self._ended: _Play | None = None        # the latest ring action that ended
        self._pairs: dict = {}                  # stats fetch -> the ring action linked to it
        self._fetch = None                      # the periodic stats fetch in flight
        self._fetch_t = 0.0
        self._cancel = None
        self._quit = threading.Event()
        self._watcher: threading.Thread | None = None

    # ---- counters --------------------------------------------------------------------
    @property
    def flush_requested(self) -> bool:
        return self._flush_request[1] > self._flush_done

    @flush_requested.setter
    def flush_requested(self, value: bool) -> None:
        """True: drop what the ring holds now (the writer's thread: the mark is its count)."""
        if value:
            self._flush_request = (self.ring.written, self._flush_request[1] + 1)

    def _add_stats(self, stats) -> None:
        blocks = int(stats.blocks)
        self.callbacks += blocks
        self.xruns += int(stats.output_underflows)
        # exact for the fixed block size of JACK and ALSA; else the mean of the extremes
        self.frames_played += blocks * (int(stats.min_blocksize) + int(stats.max_blocksize)) // 2
        if blocks:
            self._block_max = max(self._block_max, int(stats.max_blocksize))

    def _pending_gap(self, exact: bool) -> None:
        """Underruns of the open gap (the latest action ran empty, the next has not started),
        up to the last counted callback (``exact``: the stream is stopped) or the one before
        it (a fetch may have run in the same callback as the next action's start)."""
        last = self._ended
        if last is None or not last.ended_empty or last.start is None:
            return
        silent = self.callbacks - last.end + (1 if exact else 0)
        self.underruns = max(self.underruns, self._settled + silent)

    # ---- rtmixer's queues (the watcher's, or a caller's holding the lock) ----------------
    def _enqueue(self, *actions) -> None:
        """Hands ``actions`` to the callback as one linked list: it takes them all in one
        callback, in this order."""
        for a, b in zip(actions, actions[1:]):
            a.next = b
        self._req[0] = actions[0]
        if self._mixer._action_q.write(self._req) != 1:
            raise RuntimeError("rtmixer's action queue is full")

    def _new_fetch(self):
        a = _ffi.new("struct action*", dict(type=_lib.FETCH_AND_RESET_STATS, actual_time=-1.0, requested_time=0))
        self._inflight[a] = None
        return a

    def _start_play(self) -> None:
        """A ring action and, in the same callback, a stats fetch (its start index)."""
        act = _ffi.new("struct action*", dict(
            type=_lib.PLAY_RINGBUFFER, actual_time=-1.0, requested_time=0, ringbuffer=self.ring.pa._ptr,
            total_frames=_lib.ULONG_MAX, channels=self.channels, mapping=list(range(1, self.channels + 1))))
        self._inflight[act] = self.ring.pa      # the ring's memory lives while the callback may read it
        fetch = self._new_fetch()
        play = _Play(act, self._ended)      # started only once the one before has ended
        self._play = play
        self._pairs[fetch] = play
        self._enqueue(act, fetch)

    def _drain(self) -> None:
        """Takes back every action rtmixer is done with, in the order it finished them."""
        while self._mixer._result_q.readinto(self._res):
            a = self._res[0]
            self._inflight.pop(a)
            if self._play is not None and a == self._play.action:
                self._play.blocks = int(a.stats.blocks)
                self._play.cancelled = int(a.total_frames) != int(_lib.ULONG_MAX)
                self._ended, self._play = self._play, None
            elif a in self._pairs:
                self._add_stats(a.stats)
                play = self._pairs.pop(a)
                play.start = self.callbacks
                prev, play.prev = play.prev, None
                if prev is not None and prev.ended_empty:
                    self._settled += play.start - prev.end
                    self.underruns = max(self.underruns, self._settled)
            elif self._fetch is not None and a == self._fetch:
                self._add_stats(a.stats)
                self._fetch = None
                if self._play is None or self._play.start is None:
                    self._pending_gap(exact=False)
            elif self._cancel is not None and a == self._cancel:
                self._cancel = None

    def _service(self) -> None:
        """One round of the watcher: take results back, carry out a flush, restart the ring
        action, fetch the stats now and then."""
        self._drain()
        mark, number = self._flush_request
        if self._play is None:          # the callback no longer reads the ring: this thread may
            if number > self._flush_done:
                self.ring.drop_written_before(mark)
                self._flush_done = number
            if self._ended is not None and self._ended.ended_empty:
                self.restarts += 1
            self._start_play()
        elif number > self._flush_done and self._cancel is None:
            self._cancel = _ffi.new("struct action*", dict(
                type=_lib.CANCEL, actual_time=-1.0, requested_time=0, action=self._play.action))
            self._inflight[self._cancel] = self._play.action     # its target lives while it may look
            self._enqueue(self._cancel)
        now = time.monotonic()
        if self._fetch is None and now - self._fetch_t >= FETCH_EVERY_S and self._mixer.active:
            self._fetch, self._fetch_t = self._new_fetch(), now
            self._enqueue(self._fetch)

    def _poll_s(self) -> float:
        lo, hi = WATCH_EVERY_S
        return min(hi, max(lo, self._block_max / self.samplerate / 4)) if self._block_max else lo

    def _watch(self) -> None:
        # NB: the watcher takes the GIL at every poll (WATCH_EVERY_S: 200 to 1000 times a second);
        # preempted by a busy program while it holds it, it would stall the real-time engine
        # thread behind it (priority inversion), so it asks for the same class of scheduling, one
        # level below the engine's
        raise_priority(self.realtime, rt_priority=WATCHER_PRIORITY)
        while not self._quit.wait(self._poll_s()):
            with self._lock:
                self._service()

    def _settle_stopped(self) -> None:
        """With the stream stopped (no callback runs): every count exact, now."""
        self._drain()
        state = self._mixer._state
        self._add_stats(state.stats)
        state.stats = _ffi.new("struct stats*")[0]      # counted: a later fetch starts from zero
        if self._play is None or self._play.start is None:
            self._pending_gap(exact=True)

    # ---- the stream ------------------------------------------------------------------
    @property
    def block_frames(self) -> int:
        """Frames per device callback: the largest block counted so far (0 before any)."""
        return self._block_max

    @property
    def latency_s(self) -> float:
        return float(self._mixer.latency)

    @property
    def cpu_load(self) -> float:
        return float(self._mixer.cpu_load)

    @property
    def active(self) -> bool:
        return bool(self._mixer.active)

    def start(self) -> None:
        with self._lock:
            if self._play is None:
                self._start_play()
            self._mixer.start()
        if self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="driftwave-audio-watch", daemon=True)
            self._watcher.start()

    def pause(self) -> None:
        """Transport stop: the device stops pulling; the stream stays open."""
        with self._lock:
            if self._mixer.active:
                self._mixer.stop()
                self._settle_stopped()

    def resume(self) -> None:
        with self._lock:
            if not self._mixer.active:
                self._mixer.start()

    def stop(self) -> None:
        self._quit.set()
        if self._watcher is not None:
            self._watcher.join(5.0)
        with self._lock:
            try:
                self._mixer.stop()
                self._settle_stopped()
            finally:
                self._mixer.close()


def list_devices() -> str:
    import sounddevice as sd

    return str(sd.query_devices())
