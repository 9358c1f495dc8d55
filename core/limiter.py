"""Safety stage for the output: NaN/Inf and runaway guard, a peak limiter, a hard ceiling."""
from __future__ import annotations

import numpy as np


class SafetyLimiter:
    """Block peak limiter with instant attack and exponential release, then a hard clip at
    ``ceiling``: whatever comes in, nothing above ``ceiling`` (< full scale) goes out.

    ``process(block)`` works in place on ``ndarray[n]`` float32 and returns it.
    """

    def __init__(self, sample_rate: int, ceiling: float = 0.98, release_s: float = 0.25):
        self.ceiling = ceiling
        self.release_per_sample = float(np.exp(-1.0 / (release_s * sample_rate)))
        self.gain = 1.0

    def process(self, block: np.ndarray) -> np.ndarray:
        n = len(block)
        if n == 0:
            return block
        peak = float(np.max(np.abs(block)))
        target = min(1.0, self.ceiling / peak) if peak > 0 else 1.0
        if target < self.gain:          # attack: the whole block at the lower gain
            self.gain = target
            block *= self.gain
        else:                           # release: glide towards the target over the block
            end = target - (target - self.gain) * self.release_per_sample ** n
            if self.gain < 1.0 or end < 1.0:
                block *= np.linspace(self.gain, end, n, dtype=np.float32)
            self.gain = end
        np.clip(block, -self.ceiling, self.ceiling, out=block)
        return block


def is_runaway(block: np.ndarray, limit: float = 8.0) -> bool:
    """True when a block holds NaN/Inf or a level no trained model should produce."""
    if not np.all(np.isfinite(block)):
        return True
    return bool(len(block)) and float(np.max(np.abs(block))) > limit
