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
             fmax: float = 2000.0, fill: bool = False) -> np.ndarray:
    """f0 in Hz per frame ``ndarray[n_frames]`` (float32; 0 = unvoiced): YIN frames centred on
    ``i * hop``, cut or zero-padded to ``n_frames``. ``fill``: :func:`fill_sounding_gaps`
    (copy synthesis: a frame YIN misses inside a note would play unexcited)."""
    frames = _frames(audio, YIN_FRAME, hop)            # yin_pitch's frames, made once for both
    f0, voiced = yin_of_frames(frames, sr, fmin=fmin, fmax=fmax)
    if fill:
        f0, voiced = fill_sounding_gaps(f0, voiced, frames)
    out = np.zeros(n_frames, np.float32)
    m = min(n_frames, len(f0))
    out[:m] = np.where(voiced[:m], f0[:m], 0.0)
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
