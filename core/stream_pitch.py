"""Streaming YIN: :func:`core.pitch.yin_pitch` of a stream, frame for frame, as audio arrives.

``yin_pitch`` pads ``frame // 2`` zeros at the start and reads frame ``i`` centred on sample
``i * hop``, from samples ``[i * hop - frame // 2, i * hop + frame - frame // 2)``. The stream
gives frame ``i`` once its last sample has arrived (``frame - frame // 2`` samples past its
centre: 512 samples at the defaults); any chunking gives the frames of one whole call
(tests/test_live_input.py). Each frame: f0 in Hz (nan where unvoiced) and a voiced flag.
"""
from __future__ import annotations

import numpy as np

from .pitch import yin_of_frames


def hz_to_midi(f0: np.ndarray) -> np.ndarray:
    """Frequency (Hz) -> MIDI note number (A4 = 69 = 440 Hz); nan stays nan."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return 69.0 + 12.0 * np.log2(np.asarray(f0, np.float64) / 440.0)


class StreamingYin:
    """Mono chunks ``ndarray[n]`` at ``sr`` -> ``(f0 Hz ndarray[k], voiced bool ndarray[k])``
    for the frames each chunk completes."""

    def __init__(self, sr: int, hop: int = 256, frame: int = 1024, fmin: float = 50.0,
                 fmax: float = 1000.0, threshold: float = 0.15):
        self.sr, self.hop, self.frame = int(sr), int(hop), int(frame)
        self.fmin, self.fmax, self.threshold = fmin, fmax, threshold
        self.reset()

    def reset(self) -> None:
        # samples from the next frame's start on, beginning with yin_pitch's zero padding
        self._buf = np.zeros(self.frame // 2, np.float64)
        self.frames_out = 0

    def process(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        buf = np.concatenate((self._buf, np.asarray(x, np.float64).reshape(-1)))
        k = 0 if len(buf) < self.frame else (len(buf) - self.frame) // self.hop + 1
        self._buf = buf[k * self.hop:]
        if k == 0:
            return np.zeros(0), np.zeros(0, bool)
        self.frames_out += k
        frames = np.lib.stride_tricks.as_strided(buf, (k, self.frame), (buf.strides[0] * self.hop, buf.strides[0]))
        return yin_of_frames(frames, self.sr, self.fmin, self.fmax, self.threshold)
