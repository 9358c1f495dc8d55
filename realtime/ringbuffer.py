"""Single-producer, single-consumer ring buffer of float32 audio, preallocated.

NB: thread safety without locks. The producer (engine thread) only advances ``_written``;
the consumer (audio callback) only advances ``_read``. Both are Python ints that only grow
and are replaced by one atomic assignment under the GIL. The producer copies the data in
*before* publishing it by advancing ``_written``; the consumer copies data out *before*
releasing the space by advancing ``_read``. So neither side ever sees a half-written block.
"""
from __future__ import annotations

import numpy as np


class RingBuffer:
    def __init__(self, capacity: int, channels: int = 1):
        self.capacity = int(capacity)
        self.channels = channels
        self.buf = np.zeros((self.capacity, channels), dtype=np.float32)
        self._written = 0   # total frames ever written (producer's counter)
        self._read = 0      # total frames ever read (consumer's counter)

    def available(self) -> int:
        """Frames written and not yet read."""
        return self._written - self._read

    def space(self) -> int:
        return self.capacity - (self._written - self._read)

    def write(self, block: np.ndarray) -> int:
        """Producer: copies as much of ``block`` (``[n]`` or ``[n x channels]``) as fits;
        returns the frames written."""
        if len(block) == 0:
            return 0
        block = block.reshape(len(block), -1)
        w = self._written
        n = min(len(block), self.capacity - (w - self._read))
        i = w % self.capacity
        first = min(n, self.capacity - i)
        self.buf[i:i + first] = block[:first]
        if n > first:
            self.buf[:n - first] = block[first:n]
        self._written = w + n
        return n

    def read_into(self, out: np.ndarray) -> int:
        """Consumer: copies up to ``len(out)`` frames into ``out`` (``[frames x ch]``; a
        mono ring broadcasts to every channel); returns the frames copied. Allocates nothing
        but numpy's small view objects."""
        r = self._read
        n = min(len(out), self._written - r)
        i = r % self.capacity
        first = min(n, self.capacity - i)
        out[:first] = self.buf[i:i + first]
        if n > first:
            out[first:n] = self.buf[:n - first]
        self._read = r + n
        return n

    def clear(self) -> None:
        """Consumer side: drop everything unread (panic)."""
        self._read = self._written
