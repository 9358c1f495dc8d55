"""What the vocoder measure gives a copy of noise.

The multi-resolution STFT distance of ``main.py eval`` (``training.metrics.mr_stft_distance``, spectral convergence + mean
|log magnitude| difference) between a noise clip and

* ``independent``: another realization of the same random process (same spectrum, same
  level, independent samples): what any resynthesis scores that gets the noise's spectrum
  exactly right but not its particular waveform;
* ``griffin_lim``: Griffin-Lim from the clip's log-mel (60 iterations, as ``eval``);
* ``vocoder``: the bundle's vocoder from the clip's log-mel, mel-matched, as ``eval``.

Three processes, 2-s clips at 22050 Hz: white noise, pink noise (-3 dB per octave), and a
bowed-string-like tone (220 Hz, 20 partials at 1/k) with pink noise 20 dB below it. For
two independent Gaussian realizations, each STFT magnitude is Rayleigh distributed, so the
expected distance is known in closed form: spectral convergence ``sqrt(2 - pi / 2)`` =
0.655 and log term ``ln 2`` = 0.693 (half the mean |x| of a standard logistic variable:
``log |X|^2`` is Gumbel, and the difference of two Gumbels is logistic), 1.348 in all;
``theory_independent`` holds that figure. The log term holds for any spectrum; the spectral
convergence of pink noise comes out higher (its energy sits in a few low bins, the DC bin's
real-valued, so half-normal, not Rayleigh). Prints one JSON object.

Usage: ``python -m benchmarks.noise_floor [--bundle models/default.dwb] [--clips 4]``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.metrics import griffin_lim, mr_stft_parts  # noqa: E402

SR = 22050
LENGTH = 172 * 256                      # 2.0 s, a whole number of mel frames
THEORY_SC = math.sqrt(2 - math.pi / 2)
THEORY_LOG = math.log(2)


def shaped(rng: np.random.Generator, slope_db_per_octave: float) -> np.ndarray:
    """Gaussian noise ``ndarray[LENGTH]`` whose power falls ``slope`` dB per octave, RMS 0.05."""
    spec = np.fft.rfft(rng.standard_normal(LENGTH))
    f = np.arange(len(spec), dtype=np.float64)
    spec[1:] *= f[1:] ** (slope_db_per_octave / (20 * math.log10(2)))
    spec[0] = 0
    x = np.fft.irfft(spec, LENGTH)
    return (0.05 * x / x.std()).astype(np.float32)


def bowed(rng: np.random.Generator) -> np.ndarray:
    t = np.arange(LENGTH) / SR
    tone = sum(np.sin(2 * np.pi * 220 * k * t + 0.7 * k) / k for k in range(1, 21))
    tone = 0.2 * tone / tone.std()
    return (tone + 0.1 * shaped(rng, -3.0)).astype(np.float32)   # noise 20 dB below the tone


PROCESSES = {"white": lambda rng: shaped(rng, 0.0), "pink": lambda rng: shaped(rng, -3.0), "tone_plus_noise": bowed}


def measure(bundle=None, clips: int = 4, seed: int = 0) -> dict:
    """Mean (distance, spectral convergence, log term) per process and resynthesis."""
    from core.mel import LogMel, MelConfig
    mel_config = bundle.mel if bundle is not None else MelConfig()
    logmel = LogMel(mel_config)
    rng = np.random.default_rng(seed)
    out: dict = {}
    for name, make in PROCESSES.items():
        rows: dict[str, list[tuple[float, float]]] = {"independent": [], "griffin_lim": []}
        if bundle is not None:
            rows["vocoder"] = []
        for _ in range(clips):
            x, other = make(rng), make(rng)
            rows["independent"].append(mr_stft_parts(x, other))
            with torch.no_grad():
                m = logmel(torch.from_numpy(x)).numpy()
            rows["griffin_lim"].append(mr_stft_parts(x, griffin_lim(m, mel_config)[:LENGTH]))
            if bundle is not None:
                from core.resynth import resynthesize
                rows["vocoder"].append(mr_stft_parts(x, resynthesize(bundle, x)))
        out[name] = {k: {"distance": float(np.mean([a + b for a, b in v])), "spectral_convergence": float(np.mean([a for a, _ in v])),
                         "log_term": float(np.mean([b for _, b in v]))} for k, v in rows.items()}
    out["theory_independent"] = {"distance": THEORY_SC + THEORY_LOG, "spectral_convergence": THEORY_SC,
                                 "log_term": THEORY_LOG}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default=str(ROOT / "models" / "default.dwb"))
    ap.add_argument("--clips", type=int, default=4)
    args = ap.parse_args()
    from core.bundle import load_bundle
    torch.set_num_threads(1)
    res = {"benchmark": "noise_floor", "bundle": args.bundle, "clips_per_process": args.clips, "torch": torch.__version__,
           **measure(load_bundle(args.bundle), args.clips)}
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
