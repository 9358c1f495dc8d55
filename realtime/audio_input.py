"""Audio input: a device's input recorded by a C callback (rtmixer) into a ring buffer;
no Python runs on the device's thread. The engine thread reads what arrived, without
waiting.

The stream is an ``rtmixer.Recorder`` (a sounddevice input stream: every PortAudio host
API; on JACK its input appears as a JACK port, ``PortAudio:in_1`` or so, that another client
connects to). Its callback plays a *record action* that copies each device block into the
ring (:class:`~realtime.ringbuffer.RingBuffer`, a PortAudio ring buffer): the callback is
its writer, :meth:`AudioInput.read` (the engine thread) its one reader. When the ring has
no room for a whole block, the callback writes what fits and rtmixer *ends* the action:
the next :meth:`AudioInput.read` counts an overrun (``overruns``), and starts a new action
(the frames the device delivered meanwhile are lost). The ring holds :data:`RING_S`
seconds, so only an engine stalled that long overruns it. PortAudio's own input flags
(``paInputOverflow``: the host dropped input before the callback; ``paInputUnderflow``)
come from rtmixer's stream stats, fetched every :data:`FETCH_EVERY_S` by ``read``.

NB: shared values. The C callback and Python share the ring (single producer, single
consumer) and rtmixer's action and result queues (PortAudio ring buffers); an action's
fields are read only after rtmixer hands it back. ``overruns``, ``input_overflows``,
``input_underflows``, ``frames_read`` are ints written by the engine thread (``read``) and
read by anyone.
"""
from __future__ import annotations

import time

import numpy as np
import rtmixer

from .audio_output import pick_samplerate
from .ringbuffer import RingBuffer

_ffi = rtmixer._ffi
_lib = rtmixer._lib

RING_S = 2.0                # what the ring holds (seconds of input)
FETCH_EVERY_S = 0.05        # how stale the PortAudio flags' counts may be


class AudioInput:
    """The input ``device`` (PortAudio number or name; None: the default input), mono
    (its first channel), float32 at ``samplerate`` (the device's default when it takes
    no other)."""

    def __init__(self, device=None, samplerate: int | None = None, blocksize: int = 0,
                 latency: str | float = "low"):
        import sounddevice as sd

        info = sd.query_devices(device, "input")
        if int(info["max_input_channels"]) < 1:
            raise ValueError(f"'{info['name']}' has no input channels")
        self.device_name = info["name"]
        self.samplerate = pick_samplerate(device, samplerate, "input")
        self.ring = RingBuffer(int(RING_S * self.samplerate))
        self.overruns = 0               # record actions that ended on a full ring
        self.input_overflows = 0        # PortAudio's paInputOverflow flags
        self.input_underflows = 0
        self.callbacks = 0
        self.block_frames = 0           # the largest device block counted so far
        self.frames_read = 0
        self._rec = rtmixer.Recorder(device=device, samplerate=self.samplerate, blocksize=blocksize,
                                     latency=latency, channels=1)
        self._inflight: dict = {}       # owning cdata of each action rtmixer holds -> keep-alive
        self._req = _ffi.new("struct action**")
        self._res = _ffi.new("struct action**")
        self._record = None             # the record action rtmixer holds, if any
        self._fetch = None
        self._fetch_t = 0.0
        self._out = np.zeros(len(self.ring.buf), np.float32)   # the C writer may fill all of it

    @property
    def latency_s(self) -> float:
        """From a sample's arrival at the device to the callback that hands it over: PortAudio's
        input latency plus one device block (a block's first sample waits for its last), s."""
        return float(self._rec.latency) + self.block_frames / self.samplerate

    @property
    def active(self) -> bool:
        return bool(self._rec.active)

    def _enqueue(self, action, keep) -> bool:
        """Hands ``action`` to the callback; False (nothing held) when rtmixer's action queue
        is full: the caller tries again at its next :meth:`read`. Never raises (the engine
        thread calls it)."""
        self._req[0] = action
        if self._rec._action_q.write(self._req) != 1:
            return False
        self._inflight[action] = keep
        return True

    def _start_record(self) -> None:
        act = _ffi.new("struct action*", dict(
            type=_lib.RECORD_RINGBUFFER, actual_time=-1.0, requested_time=0, ringbuffer=self.ring.pa._ptr,
            total_frames=_lib.ULONG_MAX, channels=1, mapping=[1]))
        if self._enqueue(act, self.ring.pa):   # the ring's memory lives while the callback may write
            self._record = act

    def _add_stats(self, stats) -> None:
        self.callbacks += int(stats.blocks)
        if int(stats.blocks):
            self.block_frames = max(self.block_frames, int(stats.max_blocksize))
        self.input_overflows += int(stats.input_overflows)
        self.input_underflows += int(stats.input_underflows)

    def _service(self) -> None:
        """Takes back what rtmixer is done with; restarts an ended record action; fetches
        the stream's stats now and then. Never waits."""
        while self._rec._result_q.readinto(self._res):
            a = self._res[0]
            self._inflight.pop(a, None)
            if a == self._record:
                self._record = None
                self.overruns += 1
            elif a == self._fetch:
                self._add_stats(a.stats)
                self._fetch = None
        if self._record is None and self._rec.active:
            self._start_record()
        now = time.monotonic()
        if self._fetch is None and now - self._fetch_t >= FETCH_EVERY_S and self._rec.active:
            fetch = _ffi.new("struct action*", dict(type=_lib.FETCH_AND_RESET_STATS, actual_time=-1.0,
                                                    requested_time=0))
            if self._enqueue(fetch, None):
                self._fetch, self._fetch_t = fetch, now

    def read(self) -> np.ndarray:
        """The reader (one thread: the engine's): every frame that arrived since the last call,
        ``ndarray[n]`` float32 (a view, valid until the next call)."""
        self._service()
        n = self.ring.read_into(self._out[:self.ring.available()])
        self.frames_read += n
        return self._out[:n]

    def start(self) -> None:
        if self._record is None:
            self._start_record()
        self._rec.start()

    def stop(self) -> None:
        """Stops and closes the stream; the counts are final."""
        try:
            self._rec.stop()
            while self._rec._result_q.readinto(self._res):
                self._inflight.pop(self._res[0], None)
            self._add_stats(self._rec._state.stats)
        finally:
            self._rec.close()
