"""Pitch tracking: YIN f0 (de Cheveigné & Kawahara 2002), and f0 per mel frame for the
vocoder's harmonic excitation in copy synthesis and training."""
from __future__ import annotations

import math

import numpy as np


def midi_to_hz(note):
    """Equal-tempered frequency (A4 = MIDI 69 = 440 Hz) of MIDI note(s): a float, an ndarray
    or a Tensor in, the same kind out."""
    return 440.0 * 2.0 ** ((note - 69.0) / 12.0)


def _frames(audio: np.ndarray, frame: int, hop: int) -> np.ndarray:
    """Zero-padded frames ``[n x frame]`` centred on ``i * hop``, n = 1 + len // hop."""
    x = np.pad(np.asarray(audio, dtype=np.float64).reshape(-1), (frame // 2, frame // 2))
    n = 1 + (len(x) - frame) // hop
    return np.lib.stride_tricks.as_strided(x, (n, frame), (x.strides[0] * hop, x.strides[0]))


YIN_FRAME = 1024        # samples: yin_pitch's default analysis frame


def yin_pitch(audio: np.ndarray, sr: int, fmin: float = 50.0, fmax: float = 1000.0,
              frame: int = YIN_FRAME, hop: int = 256,
              threshold: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """YIN f0 of mono ``audio`` (floats, full scale 1): (f0 Hz ``[n]``, voiced bool ``[n]``).

    Frame ``i`` is centred on sample ``i * hop`` (zero padding), n = 1 + len // hop. The
    difference function uses an integration window of ``frame // 2`` samples and lags up to
    ``frame - frame // 2``; the first lag in [sr / fmax, sr / fmin] whose cumulative mean
    normalized difference is below ``threshold`` is refined to its local minimum, then to
    the deepest dip within :data:`BEST_SPAN` of it (YIN's best local estimate), then by
    parabolic interpolation. Frames with no such lag, or with RMS below -60 dBFS, are
    unvoiced (f0 = nan).
    """
    return yin_of_frames(_frames(audio, frame, hop), sr, fmin, fmax, threshold)


BEST_SPAN = 1.15       # lags searched past the first dip below the threshold, as a ratio (2.4 semitones)


def yin_of_frames(frames: np.ndarray, sr: int, fmin: float = 50.0, fmax: float = 1000.0,
                  threshold: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """YIN of analysis frames ``[n x frame]`` (float64): (f0 Hz ``[n]``, voiced bool ``[n]``),
    as :func:`yin_pitch` reads each of its frames (the streaming tracker,
    :mod:`core.stream_pitch`, hands it the frames that have arrived)."""
    frame = frames.shape[1]
    w = frame // 2
    max_lag = frame - w
    tau_lo = max(2, math.floor(sr / fmax))
    tau_hi = min(max_lag - 1, math.ceil(sr / fmin))
    if tau_lo >= tau_hi:
        raise ValueError("frame too short for the requested fmin / fmax")
    n = len(frames)
    f0 = np.full(n, np.nan)
    voiced = np.zeros(n, dtype=bool)
    n_fft = 1 << math.ceil(math.log2(frame + w))
    lags = np.arange(max_lag + 1)
    for s in range(0, n, 2048):
        x = frames[s:s + 2048]
        # d(tau) = sum_{j<w} (x_j - x_{j+tau})^2 = e(0) + e(tau) - 2 r(tau)
        spec_a = np.fft.rfft(x[:, :w], n_fft)
        spec_b = np.fft.rfft(x, n_fft)
        r = np.fft.irfft(np.conj(spec_a) * spec_b, n_fft)[:, :max_lag + 1]
        csum = np.concatenate([np.zeros((len(x), 1)), np.cumsum(x * x, 1)], 1)
        energy = csum[:, lags + w] - csum[:, lags]
        d = np.maximum(energy[:, :1] + energy - 2 * r, 0.0)
        d[:, 0] = 0.0
        cum = np.cumsum(d[:, 1:], 1)
        cmnd = np.ones_like(d)
        with np.errstate(divide="ignore", invalid="ignore"):
            cmnd[:, 1:] = np.where(cum > 0, d[:, 1:] * lags[1:] / cum, 1.0)
        seg = cmnd[:, tau_lo:tau_hi + 1]
        nxt = cmnd[:, tau_lo + 1:tau_hi + 2]
        cand = (seg < threshold) & (seg <= nxt)        # below threshold and a local minimum
        found = cand.any(1)
        tau = tau_lo + cand.argmax(1)
        # YIN's "best local estimate": the deepest dip within BEST_SPAN of the first one below the
        # threshold. A low piano note's dip is a comb of minima (its bright partials); the first
        # below 0.15 can lie 6 % short of the period (tests/test_metrics.py::test_yin_takes_the_deepest_dip...)
        span = np.arange(tau_lo, tau_hi + 1)
        near = (span[None, :] >= tau[:, None]) & (span[None, :] <= np.floor(tau * BEST_SPAN)[:, None])
        tau = np.where(found, tau_lo + np.where(near, seg, np.inf).argmin(1), tau)
        rows = np.arange(len(x))
        a, b, c = cmnd[rows, tau - 1], cmnd[rows, tau], cmnd[rows, tau + 1]
        den = a - 2 * b + c
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(np.abs(den) > 1e-12, 0.5 * (a - c) / den, 0.0)
        shift = np.clip(shift, -1.0, 1.0)
        rms = np.sqrt(np.mean(x * x, 1))
        loud = rms > 10 ** (-60 / 20)
        ok = found & loud
        f0[s:s + len(x)] = np.where(ok, sr / (tau + shift), np.nan)
        voiced[s:s + len(x)] = ok
    return f0, voiced


def frame_f0(audio: np.ndarray, sr: int, hop: int, n_frames: int, fmin: float = 50.0,
             fmax: float = 2000.0, fill: bool = False, refine: bool = False) -> np.ndarray:
    """f0 in Hz per frame ``ndarray[n_frames]`` (float32; 0 = unvoiced): YIN frames centred on
    ``i * hop``, cut or zero-padded to ``n_frames``. ``fill``: :func:`fill_sounding_gaps`
    (copy synthesis: a frame YIN misses inside a note would play unexcited); ``refine``:
    :func:`refine_to_fundamental` (copy synthesis: the fundamental's own frequency)."""
    frames = _frames(audio, YIN_FRAME, hop)            # yin_pitch's frames, made once for both
    f0, voiced = yin_of_frames(frames, sr, fmin=fmin, fmax=fmax)
    if fill:
        f0, voiced = fill_sounding_gaps(f0, voiced, frames)
    f0 = np.where(voiced, f0, 0.0)
    if refine:
        f0 = refine_to_fundamental(audio, sr, hop, f0)
    out = np.zeros(n_frames, np.float32)
    m = min(n_frames, len(f0))
    out[:m] = f0[:m]
    return out


REFINE_WINDOW = 2048      # samples (93 ms at 22050 Hz) of the fundamental's spectrum
REFINE_SPAN_CENTS = 70.0  # searched on each side of YIN's f0
REFINE_BELOW_PEAK_DB = 40.0


def refine_to_fundamental(audio: np.ndarray, sr: int, hop: int, f0: np.ndarray,
                          window: int = REFINE_WINDOW) -> np.ndarray:
    """Each voiced frame's f0 (``f0 ndarray[n]`` Hz, 0 unvoiced; frame ``i`` centred on ``i *
    hop``) moved to the spectral peak of its fundamental: the largest bin of a ``window``-
    sample Blackman spectrum (zero-padded 4x, parabolic on log magnitude) within
    :data:`REFINE_SPAN_CENTS` of YIN's f0, if it is a peak inside that span and at most
    :data:`REFINE_BELOW_PEAK_DB` below the frame's strongest bin; else YIN's f0 stays.

    YIN reads the period that best fits all the partials together, so partials that are not
    exact multiples pull it off the fundamental: the vibraphone's low notes read 40-60 cents
    sharp (CREPE, and this peak, within 10 of their score). Its integration window also lies
    in the first half of its frame, so under vibrato it reads 12 ms early. Ad hoc
    (docs/default-model.md "Silence gate and pitch at the fundamental"): held-out notes against
    CREPE 'full' on the originals, every third frame, median 2.9 -> 2.6 cents, 90th percentile
    16.9 -> 11.1; a ±60-cent vibrato at 5.5 Hz, 13.7 -> 4.5 cents at the median. Tested
    (``tests/test_metrics.py::test_refinement_*``): a bar-like tone YIN reads over 35 cents
    sharp is read within 2; under that vibrato every frame within 8 cents (YIN: over 15 at
    worst); a missing fundamental leaves YIN's f0. ``ndarray[n]`` float64."""
    out = np.asarray(f0, np.float64).copy()
    idx = np.flatnonzero(out > 0)
    if not len(idx):
        return out
    frames = _frames(audio, window, hop)
    idx = idx[idx < len(frames)]
    n_fft = 4 * window
    w = np.blackman(window)
    ratio = 2 ** (REFINE_SPAN_CENTS / 1200)
    for s in range(0, len(idx), 256):
        rows = idx[s:s + 256]
        mag = np.abs(np.fft.rfft(frames[rows] * w, n_fft))                      # [r x bins]
        lo = np.floor(out[rows] / ratio * n_fft / sr).astype(int)
        hi = np.minimum(np.ceil(out[rows] * ratio * n_fft / sr).astype(int), mag.shape[1] - 2)
        bins = np.arange(mag.shape[1])[None]
        inside = (bins >= lo[:, None]) & (bins <= hi[:, None])
        k = np.where(inside, mag, -1.0).argmax(1)
        r = np.arange(len(rows))
        peak = mag[r, k]
        ok = (k > lo) & (k < hi) & (peak > 0) & (peak >= mag.max(1) * 10 ** (-REFINE_BELOW_PEAK_DB / 20))
        a, b, c = (np.log(mag[r, np.clip(k + d, 0, mag.shape[1] - 1)] + 1e-30) for d in (-1, 0, 1))
        den = a - 2 * b + c
        with np.errstate(divide="ignore", invalid="ignore"):
            shift = np.where(den < 0, 0.5 * (a - c) / den, 0.0)
        out[rows] = np.where(ok, (k + np.clip(shift, -0.5, 0.5)) * sr / n_fft, out[rows])
    return out


FILL_FRAMES = 12        # at most this many frames from a voiced one (140 ms at 22050 / 256)
FILL_BELOW_PEAK_DB = 30.0


def fill_sounding_gaps(f0: np.ndarray, voiced: np.ndarray, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unvoiced frames that sound (RMS within :data:`FILL_BELOW_PEAK_DB` of the loudest frame)
    and lie within :data:`FILL_FRAMES` of a voiced frame take that nearest voiced frame's f0: a
    bowed onset or one noisy frame inside a note, which YIN calls unvoiced, keeps the note's
    pitch. Silence stays unvoiced. ``frames``: the analysis frames ``[n x frame]``."""
    n = len(f0)
    if not voiced.any():
        return f0, voiced
    rms = np.sqrt(np.mean(frames[:n] ** 2, 1))
    sounding = rms >= rms.max() * 10 ** (-FILL_BELOW_PEAK_DB / 20)
    idx = np.flatnonzero(voiced)
    pos = np.arange(n)
    right = np.clip(np.searchsorted(idx, pos), 0, len(idx) - 1)
    left = np.clip(right - 1, 0, len(idx) - 1)
    nearest = np.where(np.abs(idx[left] - pos) <= np.abs(idx[right] - pos), idx[left], idx[right])
    take = ~voiced & sounding & (np.abs(nearest - pos) <= FILL_FRAMES)
    return np.where(take, f0[nearest], f0), voiced | take
