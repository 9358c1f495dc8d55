"""Single-producer, single-consumer ring buffer of float32 audio that C code can read.

The storage is a PortAudio ring buffer (``rtmixer.RingBuffer``, PortAudio's
``pa_ringbuffer.c``): ``2**k >= capacity`` frames of ``channels`` interleaved float32
samples, preallocated. The device callback (rtmixer's, in C, no Python) reads it; the
engine thread writes it. A mono block written to a multi-channel ring goes to every
channel (the writer fans it out: rtmixer maps each ring channel to one device channel).

NB: thread safety without locks. PortAudio's ring buffer is single-producer
single-consumer: the writer alone moves ``writeIndex``, the reader alone moves
``readIndex``, and each side copies its data *before* it moves its own index, with a
memory barrier in between (``PaUtil_GetRingBuffer{Write,Read}Regions`` and
``PaUtil_AdvanceRingBuffer{Write,Read}Index``, which :meth:`RingBuffer.write` and the C
callback both go through). So the reader never sees a frame before its data is stored,
and the writer never overwrites a frame before the reader has copied it. Exactly one
thread may write (the engine), and exactly one may read at any time: the device callback
while an :class:`~realtime.audio_output.AudioOutput` plays the ring, otherwise the caller
of :meth:`RingBuffer.read_into` / :meth:`RingBuffer.drop_written_before` (tests, and the
output's watcher during a panic flush, after the C reader has stopped).
"""
from __future__ import annotations

import numpy as np
import rtmixer

_lib = rtmixer.RingBuffer._lib
_ffi = rtmixer.RingBuffer._ffi


def _region_out() -> tuple:
    """The four out-parameters of ``PaUtil_GetRingBuffer{Write,Read}Regions``."""
    return _ffi.new("void**"), _ffi.new("ring_buffer_size_t*"), _ffi.new("void**"), _ffi.new("ring_buffer_size_t*")


def _pow2_at_least(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


class RingBuffer:
    """``capacity`` frames of ``channels`` float32 samples.

    ``capacity`` is the most the writer may hold unread (the storage is the next power of
    two, which PortAudio's ring needs). ``written`` counts every frame ever written (the
    writer's counter; a panic flush drops what was written before a mark of it)."""

    def __init__(self, capacity: int, channels: int = 1):
        self.capacity = int(capacity)
        self.written = 0
        self._alloc(int(channels))

    def _alloc(self, channels: int) -> None:
        self.channels = channels
        self.buf = np.zeros((_pow2_at_least(self.capacity), channels), dtype=np.float32)   # [size x ch]
        self.pa = rtmixer.RingBuffer(4 * channels, buffer=self.buf)     # reads/writes self.buf
        self._mask = len(self.buf) - 1
        # out-parameters of PortAudio's region calls, allocated once: one set per side
        # (the writer's and the reader's calls run on different threads at the same time)
        self._w_out = _region_out()
        self._r_out = _region_out()

    def set_channels(self, channels: int) -> None:
        """Stores ``channels`` interleaved channels from now on (the device's count). Only
        while no thread writes or reads the ring; what is unread is kept, fanned out."""
        if channels == self.channels:
            return
        unread = np.zeros((self.available(), self.channels), np.float32)
        self.read_into(unread)
        self._alloc(int(channels))
        self._write_frames(unread[:, :1])       # channel 0 (the engine writes mono), fanned out

    def available(self) -> int:
        """Frames written and not yet read."""
        return int(_lib.PaUtil_GetRingBufferReadAvailable(self.pa._ptr))

    def space(self) -> int:
        return self.capacity - self.available()

    def write(self, block: np.ndarray) -> int:
        """Writer: copies as much of ``block`` (float32 ``[n]`` or ``[n x ch]``, ch 1 or
        :attr:`channels`) as fits in ``capacity``; returns the frames written."""
        if len(block) == 0:
            return 0
        return self._write_frames(block.reshape(len(block), -1))

    def _write_frames(self, block: np.ndarray) -> int:
        n = min(len(block), self.space())
        if n <= 0:
            return 0
        # the region call returns the room and issues the barrier before the copy
        p1, s1, p2, s2 = self._w_out
        n = int(_lib.PaUtil_GetRingBufferWriteRegions(self.pa._ptr, n, p1, s1, p2, s2))
        i = int(self.pa._ptr.writeIndex) & self._mask      # the writer's own index
        first = int(s1[0])
        self.buf[i:i + first] = block[:first]
        if n > first:
            self.buf[:n - first] = block[first:n]
        # NB: ``written`` moves before the index publishes the frames, so a reader that
        # reads the fill first and ``written`` after never sees ``written`` behind the fill
        # (drop_written_before counts on it)
        self.written += n
        _lib.PaUtil_AdvanceRingBufferWriteIndex(self.pa._ptr, n)
        return n

    def read_into(self, out: np.ndarray) -> int:
        """Reader (only while no device plays the ring): copies up to ``len(out)`` frames into
        ``out`` (``[frames x ch]``; a mono ring broadcasts to every channel); returns the
        frames copied."""
        p1, s1, p2, s2 = self._r_out
        n = int(_lib.PaUtil_GetRingBufferReadRegions(self.pa._ptr, len(out), p1, s1, p2, s2))
        i = int(self.pa._ptr.readIndex) & self._mask      # the reader's own index
        first = int(s1[0])
        src = self.buf if out.ndim == 1 or out.shape[1] >= self.channels else self.buf[:, :out.shape[1]]
        if out.ndim == 1:
            src = src[:, 0]
        out[:first] = src[i:i + first]
        if n > first:
            out[first:n] = src[:n - first]
        _lib.PaUtil_AdvanceRingBufferReadIndex(self.pa._ptr, n)
        return n

    def drop(self, n: int) -> int:
        """Reader: skips up to ``n`` unread frames; returns how many it skipped."""
        n = min(int(n), self.available())
        if n > 0:
            _lib.PaUtil_AdvanceRingBufferReadIndex(self.pa._ptr, n)
        return max(n, 0)

    def drop_written_before(self, mark: int) -> int:
        """Reader: skips the unread frames the writer wrote before its ``written`` was
        ``mark``, and keeps those written after (a writer may go on meanwhile)."""
        fill = self.available()           # first the fill, then written (see _write_frames)
        after_mark = self.written - mark
        return self.drop(fill - after_mark) if fill > after_mark else 0
