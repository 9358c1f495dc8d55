"""Low-delay resampler against soxr HQ: holdback, image and alias rejection, passband droop at 8 kHz and microseconds per 256-sample call, 22050 Hz to each device rate.

Both resamplers are fed in 256-sample calls (one mel frame) and measured the same way:

* ``group_delay_ms``: the lag of the output behind the ideal timeline (output ``k`` at
  ``k / out_rate``), from the phases of tone pairs ``f -+ 10 Hz`` through the stream
  (least-squares fit), at 100 Hz - 5 kHz (``group_delay_band_ms``: the largest) and 8 kHz;
* ``held_back_ms``: outputs the stream has not yet handed out, ``N * out / in`` minus the
  count after ``N`` inputs, over 3 s of calls (mean, largest): what ``realtime/player.py``'s
  ``resampler_delay`` measures of soxr;
* ``holdback_ms``: the two together, ``group_delay_band_ms`` + the largest held-back time
  (held-back times below 0, outputs ahead of the floor count, taken as 0);
* ``rejection_db``: for each input tone (amplitude 0.5), how far the strongest other
  component of the output spectrum (Blackman window over about 1.3 s, the tone's own
  +-25 Hz left out) lies below the tone's input amplitude, dB; ``worst_rejection_db`` the
  least of them (an image of 11 kHz at 11.05 kHz sits just past the stopband edge);
* ``droop_8k_db``: the level of an 8 kHz tone relative to a 1 kHz tone; ``level_1k_db``: a
  1 kHz tone's level relative to its input;
* ``us_per_call``: the best of 5 runs of 2000 calls of 256 samples of noise, microseconds
  per call, timed first (0.3 s after any earlier work, so that OpenBLAS workers woken by
  the fits have gone to sleep); ``other_threads_cpu_s``: CPU time the process's other
  threads (OpenBLAS's workers) spent during those runs (0: all on the calling thread).

Usage: ``python -m benchmarks.resampler [--rates 48000 44100 96000]`` (prints one JSON
object; ``benchmarks/results/resampler.json`` holds its output).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.resample import HOLDBACK_BAND, LowDelayResampler  # noqa: E402

IN_RATE = 22050
CHUNK = 256
REJECTION_TONES_HZ = (1000.0, 5000.0, 8000.0, 9900.0, 10500.0, 10800.0, 11000.0)
DELAY_TONES_HZ = (100.0, 500.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 8000.0)
PAIR_HZ = 10.0            # a tone pair f -+ PAIR_HZ gives the group delay at f
GUARD_HZ = 25.0           # a tone's own main lobe and leakage, left out of its spurs

Process = Callable[[np.ndarray], np.ndarray]


def stream(process: Process, x: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
    """``x`` through ``process`` in calls of ``chunk`` samples, concatenated."""
    return np.concatenate([process(x[i:i + chunk]) for i in range(0, len(x), chunk)])


def tones(freqs_hz, n: int, rate: int, amp: float) -> np.ndarray:
    """``ndarray[n]`` float32: the sum of sines ``amp * sin(2 pi f i / rate)``."""
    t = np.arange(n) / rate
    return (amp * np.sin(2 * np.pi * np.outer(t, freqs_hz)).sum(1)).astype(np.float32)


def sine_fit(y: np.ndarray, rate: int, freqs_hz, start: int) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares fit of ``y[start:] = sum_f a_f sin(2 pi f (k / rate - d_f))`` with all
    ``freqs_hz`` at once: ``(a_f, phase lag 2 pi f d_f in radians)``."""
    f = np.asarray(freqs_hz, np.float64)
    w = 2 * np.pi * np.outer(np.arange(start, len(y)) / rate, f)
    c, *_ = np.linalg.lstsq(np.concatenate([np.sin(w), np.cos(w)], 1), y[start:].astype(np.float64), rcond=None)
    s, co = c[:len(f)], c[len(f):]          # a sin(w - p) = a cos(p) sin(w) - a sin(p) cos(w)
    return np.hypot(s, co), np.arctan2(-co, s)


def group_delays_s(process: Process, out_rate: int, centres_hz, seconds: float = 1.5) -> np.ndarray:
    """Group delay at each of ``centres_hz`` measured through the stream, seconds: tone pairs
    ``f -+ PAIR_HZ`` (amplitude 0.05 each), ``-d(phase)/d(omega)`` between them."""
    c = np.asarray(centres_hz, np.float64)
    freqs = np.concatenate([c - PAIR_HZ, c + PAIR_HZ])
    y = stream(process, tones(freqs, int(seconds * IN_RATE), IN_RATE, 0.05))
    _, lag = sine_fit(y, out_rate, freqs, int(0.1 * out_rate))
    dphi = np.angle(np.exp(1j * (lag[len(c):] - lag[:len(c)])))
    return dphi / (2 * np.pi * 2 * PAIR_HZ)


def spectrum_n(rate: int) -> int:
    """Blackman window length at ``rate``: a power of 2 of at least 1.3 s, so that
    :data:`GUARD_HZ` spans 30 bins or more and the window's leakage there is below -110 dB."""
    return 1 << math.ceil(math.log2(1.3 * rate))


def spur_db(y: np.ndarray, rate: int, tone_hz: float, amp: float) -> float:
    """Strongest component of ``y``'s last :func:`spectrum_n` samples (Blackman window)
    outside ``tone_hz -+ GUARD_HZ``, dB relative to a sine of amplitude ``amp``."""
    n = spectrum_n(rate)
    win = np.blackman(n)
    mag = np.abs(np.fft.rfft(y[-n:].astype(np.float64) * win)) * 2 / win.sum()
    f = np.fft.rfftfreq(n, 1 / rate)
    return float(20 * np.log10(mag[np.abs(f - tone_hz) > GUARD_HZ].max() / amp))


def rejection_db(make: Callable[[], Process], out_rate: int) -> dict[str, float]:
    """Rejection (dB, positive) for each of :data:`REJECTION_TONES_HZ` (amplitude 0.5; the
    window starts 0.3 s in, after any start-up transient)."""
    n = int(math.ceil((spectrum_n(out_rate) / out_rate + 0.3) * IN_RATE))
    return {f"{f:g}": round(-spur_db(stream(make(), tones([f], n, IN_RATE, 0.5)), out_rate, f, 0.5), 2)
            for f in REJECTION_TONES_HZ}


def levels_db(make: Callable[[], Process], out_rate: int, freqs_hz) -> np.ndarray:
    """Output level of a sine (amplitude 0.5) at each of ``freqs_hz`` relative to its input, dB."""
    out = []
    for f in freqs_hz:
        y = stream(make(), tones([f], IN_RATE, IN_RATE, 0.5))
        amp, _ = sine_fit(y, out_rate, [f], int(0.1 * out_rate))
        out.append(20 * np.log10(amp[0] / 0.5))
    return np.array(out)


def held_back_s(process: Process, out_rate: int, seconds: float = 3.0) -> tuple[float, float]:
    """(mean, largest) of ``N * out / in`` minus the outputs after ``N`` inputs, seconds,
    over ``seconds`` of 256-sample calls after 1 s of warm-up."""
    got, held = 0, []
    n_calls = int((seconds + 1) * IN_RATE) // CHUNK
    zeros = np.zeros(CHUNK, np.float32)
    for i in range(1, n_calls + 1):
        got += len(process(zeros))
        if i * CHUNK >= IN_RATE:
            held.append(i * CHUNK * out_rate / IN_RATE - got)
    return float(np.mean(held)) / out_rate, float(np.max(held)) / out_rate


def other_threads_cpu_s() -> float:
    """CPU seconds of this process's threads other than the calling one (Linux; 0 elsewhere)."""
    try:
        me, total = str(threading.get_native_id()), 0
        for t in os.listdir("/proc/self/task"):
            if t != me:
                f = open(f"/proc/self/task/{t}/stat").read().rsplit(")", 1)[1].split()
                total += int(f[11]) + int(f[12])
        return total / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def us_per_call(process: Process, calls: int = 2000, runs: int = 5) -> tuple[float, float]:
    """(best of ``runs`` runs of ``calls`` 256-sample calls in microseconds per call, the
    other threads' CPU seconds during them)."""
    x = np.random.default_rng(0).standard_normal(CHUNK * 64).astype(np.float32) * 0.3
    chunks = [x[i:i + CHUNK] for i in range(0, len(x), CHUNK)]
    for c in chunks:
        process(c)
    best, cpu0 = math.inf, other_threads_cpu_s()
    for _ in range(runs):
        t = time.perf_counter()
        for i in range(calls):
            process(chunks[i % len(chunks)])
        best = min(best, (time.perf_counter() - t) / calls)
    return best * 1e6, other_threads_cpu_s() - cpu0


def measure(make: Callable[[], Process], out_rate: int) -> dict:
    """Every figure of the module notes for one resampler (``make()``: a new stream)."""
    time.sleep(0.3)
    us, other_cpu = us_per_call(make())
    lo, hi = HOLDBACK_BAND
    band = [f for f in DELAY_TONES_HZ if lo <= f <= hi]
    gd = group_delays_s(make(), out_rate, DELAY_TONES_HZ)
    gd_band = float(gd[:len(band)].max())
    held_mean, held_max = held_back_s(make(), out_rate)
    rej = rejection_db(make, out_rate)
    lv = levels_db(make, out_rate, [1000.0, 8000.0])
    return {
        "holdback_ms": round(1e3 * (gd_band + max(held_max, 0.0)), 4),
        "group_delay_band_ms": round(1e3 * gd_band, 4),
        "group_delay_ms": {f"{f:g}": round(1e3 * g, 4) for f, g in zip(DELAY_TONES_HZ, gd)},
        "held_back_ms": {"mean": round(1e3 * held_mean, 3), "max": round(1e3 * held_max, 3)},
        "worst_rejection_db": min(rej.values()),
        "rejection_db": rej,
        "level_1k_db": round(float(lv[0]), 5),
        "droop_8k_db": round(float(lv[1] - lv[0]), 5),
        "us_per_call": round(us, 2),
        "other_threads_cpu_s": round(other_cpu, 3),
    }


def ours(out_rate: int) -> dict:
    t = time.perf_counter()
    r = LowDelayResampler(IN_RATE, out_rate)
    design_s = time.perf_counter() - t
    d = r.design
    res = {"reported_holdback_ms": round(1e3 * r.holdback_s, 4),
           "design": {"up": d.up, "down": d.down, "taps_per_phase": d.taps, "passband_hz": round(d.passband_hz, 1),
                      "stopband_hz": d.stopband_hz, "design_stopband_db": round(design_stopband_db(d), 2),
                      "design_droop_8k_db": round(float(d.response_db(8000.0)[0] - d.response_db(1000.0)[0]), 5),
                      "dense_cycle_product": d.cycle_matrix is not None, "design_s": round(design_s, 3)}}
    return {**measure(lambda: LowDelayResampler(IN_RATE, out_rate).process, out_rate), **res}


def design_stopband_db(d) -> float:
    """Largest magnitude of the prototype from the stopband edge to its Nyquist, dB (FFT, 8x padded)."""
    n_fft = 1 << math.ceil(math.log2(8 * len(d.prototype)))
    mag = np.abs(np.fft.rfft(d.prototype, n_fft)) / d.oversample
    f = np.fft.rfftfreq(n_fft, 1 / (d.oversample * d.in_rate))
    return float(20 * np.log10(mag[f >= d.stopband_hz].max()))


def soxr_hq(out_rate: int) -> dict:
    import soxr

    def make():
        return soxr.ResampleStream(IN_RATE, out_rate, 1, dtype="float32", quality="HQ").resample_chunk
    return measure(make, out_rate)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", type=int, nargs="+", default=[48000, 44100, 96000])
    args = ap.parse_args()
    import scipy
    import soxr
    res = {"benchmark": "resampler", "in_rate": IN_RATE, "chunk": CHUNK, "machine": platform.processor() or platform.machine(),
           "cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2), "numpy": np.__version__, "scipy": scipy.__version__, "soxr": soxr.__version__,
           "rates": {str(r): {"low_delay": ours(r), "soxr_hq": soxr_hq(r)} for r in args.rates}}
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
