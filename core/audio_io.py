"""Reading audio files as mono float32 at a given rate (soxr resampling)."""
from __future__ import annotations

import numpy as np
import soundfile as sf
import soxr


class AudioReadError(Exception):
    pass


def read_mono(path: str, sample_rate: int) -> np.ndarray:
    """Any file soundfile reads -> ``ndarray[L]`` float32 mono at ``sample_rate`` Hz."""
    try:
        data, sr = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioReadError(f"cannot read audio file '{path}': {e}") from None
    mono = data.mean(axis=1)
    if sr != sample_rate:
        mono = soxr.resample(mono, sr, sample_rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)
