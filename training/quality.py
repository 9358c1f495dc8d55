"""Measures of audible defects, each read against the original audio (issue "sound").

All frame-wise measures take frames by their centre (seconds), so the original and its
resynthesis are read at the same instants (:func:`training.crepe.frame_centres` gives one
per mel frame).

* :class:`PitchTrack` / :func:`track`: CREPE f0 and periodicity (:mod:`training.crepe`)
  with each frame's level; :meth:`PitchTrack.voiced`: periodicity above
  :data:`VOICED_PERIODICITY` (0.21, as CARGAN's evaluation) and level within
  :data:`SILENCE_GATE_DB` (60 dB) of the signal's loudest frame.
* :class:`PitchComparison`: pooled over clips, CARGAN's measures (Morrison et al. 2022):
  gross pitch error rate (frames voiced in both, more than :data:`GROSS_CENTS` = 50 cents
  apart), median absolute cents over the same frames, voiced/unvoiced F1 (the original's
  voicing the truth), periodicity RMSE over all frames; gross errors per labelled pitch.
* :func:`harmonic_to_noise`: harmonic-to-noise ratio per frame from a 2048-point Blackman
  spectrum with partials tracked from f0 (defined exactly there).
* :func:`frame_rate_buzz`: how far lines at multiples of the vocoder's frame rate
  (``sample_rate / hop``, 86.1 Hz at 22050 / 256) stand above the bins halfway between
  them, away from the note's own partials: a buzz at the frame rate reads tens of dB, real
  audio about 0.
* :func:`silence_level_db`: the output's level where the original is digital silence, in dB
  below the original's loudest frame.
* log10-mel L1: :func:`training.metrics.logmel_l1`.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from core.pitch import midi_to_hz

from .crepe import crepe_pitch

VOICED_PERIODICITY = 0.21     # CARGAN's unvoiced threshold on CREPE periodicity
SILENCE_GATE_DB = 60.0        # frames more than this below the signal's loudest frame are unvoiced
GROSS_CENTS = 50.0
LEVEL_WINDOW = 1024           # samples (at the signal's rate) of a frame's level
LEVEL_FLOOR_DB = -200.0       # the level of digital silence (a finite stand-in for -inf)


# ----------------------------------------------------------------------------- levels

def moving_power(audio: np.ndarray, centres: np.ndarray, window: int = LEVEL_WINDOW) -> np.ndarray:
    """Mean square of ``audio`` over ``window`` samples centred on each sample index of
    ``centres`` (zero outside the signal): ``ndarray[N]``."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    csum = np.concatenate([[0.0], np.cumsum(x * x)])
    lo = np.clip(np.asarray(centres, dtype=np.int64) - window // 2, 0, len(x))
    hi = np.clip(np.asarray(centres, dtype=np.int64) + window - window // 2, 0, len(x))
    return (csum[hi] - csum[lo]) / window


def power_db(p: np.ndarray | float) -> np.ndarray:
    """``10 log10(p)``, floored at :data:`LEVEL_FLOOR_DB`."""
    return np.maximum(10.0 * np.log10(np.maximum(p, 1e-300)), LEVEL_FLOOR_DB)


def peak_level_db(audio: np.ndarray, hop: int = 256, window: int = LEVEL_WINDOW) -> float:
    """The loudest frame of a signal: the largest :func:`moving_power` (dB re full scale)
    over frames centred every ``hop`` samples."""
    centres = np.arange(hop // 2, max(len(audio), 1), hop)
    return float(power_db(moving_power(audio, centres, window).max()))


# ----------------------------------------------------------------------------- pitch

@dataclass
class PitchTrack:
    """Per-frame pitch of one signal: f0 (Hz), CREPE periodicity (0..1) and level (dB re
    full scale, :func:`moving_power`) ``ndarray[N]`` each, and the signal's loudest frame
    (dB, :func:`peak_level_db`)."""
    f0: np.ndarray
    periodicity: np.ndarray
    level_db: np.ndarray
    peak_db: float

    def voiced(self, threshold: float = VOICED_PERIODICITY, gate_db: float = SILENCE_GATE_DB) -> np.ndarray:
        """Voiced frames ``bool[N]``: periodicity above ``threshold`` and level above the
        loudest frame minus ``gate_db``."""
        return (self.periodicity > threshold) & (self.level_db > self.peak_db - gate_db)


def track(audio: np.ndarray, sample_rate: int, centres_s: np.ndarray, capacity: str = "full",
          hop: int = 256) -> PitchTrack:
    """:class:`PitchTrack` of ``audio [L]`` at the frames centred on ``centres_s`` (seconds);
    the loudest frame is searched every ``hop`` samples over the whole signal."""
    f0, per = crepe_pitch(audio, sample_rate, capacity=capacity, centres_s=np.asarray(centres_s))
    level = power_db(moving_power(audio, np.round(np.asarray(centres_s) * sample_rate)))
    return PitchTrack(f0, per, level, peak_level_db(audio, hop))


def cents_between(f_est: np.ndarray, f_ref: np.ndarray) -> np.ndarray:
    """``1200 log2(f_est / f_ref)`` (cents)."""
    return 1200.0 * np.log2(np.asarray(f_est, dtype=np.float64) / np.asarray(f_ref, dtype=np.float64))


@dataclass
class PitchComparison:
    """Pitch of estimates against references, pooled over every :meth:`add`."""
    both: int = 0                 # frames voiced in both
    gross: int = 0                # of those, more than GROSS_CENTS apart
    abs_cents: list = field(default_factory=list)
    tp: int = 0                   # voiced in both
    fp: int = 0                   # voiced in the estimate only
    fn: int = 0                   # voiced in the reference only
    periodicity_sq: float = 0.0
    frames: int = 0
    by_pitch: dict = field(default_factory=dict)    # labelled MIDI pitch -> [gross, both]
    scored: int = 0               # voiced in both, with a labelled pitch
    ref_off_score: int = 0        # of those, the reference more than GROSS_CENTS from the label
    est_off_score: int = 0        # ... the estimate more than GROSS_CENTS from the label
    gross_ref_on_score: int = 0   # gross errors where the reference is within GROSS_CENTS of the label

    def add(self, ref: PitchTrack, est: PitchTrack, pitch_labels: np.ndarray | None = None) -> None:
        """One clip: ``ref`` and ``est`` tracked at the same frames; ``pitch_labels``: the
        labelled MIDI pitch of each frame (NaN where none) for :attr:`by_pitch`."""
        vr, ve = ref.voiced(), est.voiced()
        both = vr & ve
        dev = np.abs(cents_between(est.f0[both], ref.f0[both]))
        gross = dev > GROSS_CENTS
        self.both += int(both.sum())
        self.gross += int(gross.sum())
        self.abs_cents.extend(dev.tolist())
        self.tp += int(both.sum())
        self.fp += int((ve & ~vr).sum())
        self.fn += int((vr & ~ve).sum())
        self.periodicity_sq += float(((est.periodicity - ref.periodicity) ** 2).sum())
        self.frames += len(ref.f0)
        if pitch_labels is not None:
            labels = np.asarray(pitch_labels, dtype=np.float64)[both]
            for p, g in zip(labels, gross):
                if np.isfinite(p):
                    row = self.by_pitch.setdefault(int(p), [0, 0])
                    row[0] += int(g)
                    row[1] += 1
            self._score_check(labels, ref.f0[both], est.f0[both], gross)

    def _score_check(self, labels: np.ndarray, f_ref: np.ndarray, f_est: np.ndarray, gross: np.ndarray) -> None:
        """Both tracks against the labelled pitch (MIDI, NaN where none), on frames voiced in
        both. Where the reference itself reads off its label (a previous note's release or
        reverb still louder than a slow attack: a monophonic tracker on polyphonic audio), a
        player of exactly the labels scores a gross error against it; ``ref_off_score`` counts
        those frames, the floor of the gross error rate against the reference
        (``tests/test_quality.py::test_pitch_against_the_score...``)."""
        scored = np.isfinite(labels)
        hz = midi_to_hz(labels[scored])
        ref_off = np.abs(cents_between(f_ref[scored], hz)) > GROSS_CENTS
        est_off = np.abs(cents_between(f_est[scored], hz)) > GROSS_CENTS
        self.scored += int(scored.sum())
        self.ref_off_score += int(ref_off.sum())
        self.est_off_score += int(est_off.sum())
        self.gross_ref_on_score += int((gross[scored] & ~ref_off).sum())

    def summary(self) -> dict:
        """gross_pitch_error_rate (0..1), median_abs_cents, vuv_f1, vuv_precision,
        vuv_recall, periodicity_rmse, frames, frames_voiced_both; None where undefined;
        pitches_with_gross_errors: {MIDI pitch: fraction of its frames}."""
        prec = self.tp / (self.tp + self.fp) if self.tp + self.fp else None
        rec = self.tp / (self.tp + self.fn) if self.tp + self.fn else None
        f1 = 2 * prec * rec / (prec + rec) if prec and rec else (0.0 if prec is not None and rec is not None else None)
        return {"gross_pitch_error_rate": self.gross / self.both if self.both else None,
                "median_abs_cents": float(np.median(self.abs_cents)) if self.abs_cents else None,
                "vuv_f1": f1, "vuv_precision": prec, "vuv_recall": rec,
                "periodicity_rmse": math.sqrt(self.periodicity_sq / self.frames) if self.frames else None,
                "frames": self.frames, "frames_voiced_both": self.both,
                "pitches_with_gross_errors": {str(p): round(g / n, 3) for p, (g, n) in sorted(self.by_pitch.items())
                                              if g},
                **self._score_summary()}

    def _score_summary(self) -> dict:
        """Over frames voiced in both with a labelled pitch: how often the reference and the
        estimate read more than GROSS_CENTS from the label, and the gross error rate
        against the reference on the frames where the reference reads the label."""
        on = self.scored - self.ref_off_score
        return {"frames_scored": self.scored,
                "reference_off_score_rate": self.ref_off_score / self.scored if self.scored else None,
                "estimate_off_score_rate": self.est_off_score / self.scored if self.scored else None,
                "gross_pitch_error_rate_where_reference_reads_the_score": self.gross_ref_on_score / on if on else None}


# ----------------------------------------------------------------------------- harmonic-to-noise ratio

HNR_FFT = 2048
LOBE_BINS = 3.0           # a Blackman main lobe's half-width, in bins
STRONG_PARTIAL_DB = 20.0  # a tracked partial this far above the frame's median bin updates the partial spacing
HNR_FMAX_FRACTION = 0.45  # partials and inter-partial bins up to this fraction of the sample rate


def _track_partials(power: np.ndarray, f0_bins: np.ndarray, kmax: int, fmax_bins: float) -> np.ndarray:
    """Fractional bin of partials 1..kmax in each frame (``power [N x F]``, f0 in bins
    ``[N]``): partial ``k`` is the largest bin within ``min(3, 0.3 f0)`` bins of ``k`` times
    the spacing, refined by a parabola through the log power of its neighbours; the
    spacing starts at f0 and becomes (position / k) after each partial at least
    :data:`STRONG_PARTIAL_DB` above the frame's median bin (inharmonic strings stretch).
    ``ndarray[N x kmax]``, NaN above ``fmax_bins``."""
    n, nb = power.shape
    logp = np.log(np.maximum(power, 1e-300))
    floor = np.median(power, axis=1) * 10 ** (STRONG_PARTIAL_DB / 10)
    spacing = f0_bins.astype(np.float64).copy()
    radius = np.minimum(3.0, 0.3 * f0_bins)
    offsets = np.arange(-3, 4)
    rows = np.arange(n)
    pos = np.full((n, kmax), np.nan)
    for k in range(1, kmax + 1):
        pred = k * spacing
        ok = pred <= fmax_bins
        if not ok.any():
            break
        idx = np.clip(np.round(pred)[:, None].astype(np.int64) + offsets[None], 1, nb - 2)
        cand = np.where(np.abs(idx - pred[:, None]) <= radius[:, None] + 0.5, logp[rows[:, None], idx], -np.inf)
        peak = idx[rows, cand.argmax(1)]
        a, b, c = logp[rows, peak - 1], logp[rows, peak], logp[rows, peak + 1]
        den = a - 2 * b + c
        frac = np.where(den < 0, 0.5 * (a - c) / np.where(den < 0, den, -1.0), 0.0)
        p = peak + np.clip(frac, -0.5, 0.5)
        pos[ok, k - 1] = p[ok]
        strong = ok & (power[rows, peak] > floor)
        spacing = np.where(strong, p / k, spacing)
    return pos


def harmonic_to_noise(audio: np.ndarray, sample_rate: int, centres_s: np.ndarray, f0: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic-to-noise ratio and partial-to-floor ratio (dB) per frame: ``(hnr [N],
    partial_to_floor [N])``, NaN where ``f0`` is NaN or not positive.

    Frame: the :data:`HNR_FFT` (2048) samples centred on each centre (zero outside the
    signal), times a Blackman window; ``P[b] = |rfft|^2``, bins ``b = 0..1024`` of width
    ``sample_rate / 2048``. Partials: tracked from ``f0`` (:func:`_track_partials`) up to
    ``0.45 sample_rate``. Harmonic bins H: within :data:`LOBE_BINS` (3) bins of a tracked
    partial (the Blackman main lobe). Inter-partial bins I: bins from ``f0 / 2`` to
    ``0.45 sample_rate`` at least 3 bins from every partial, and for a pair of neighbouring
    partials with no such bin between them (f0 under 7 bins, 75 Hz at 22050 Hz), the bin
    nearest their midpoint (moved from H to I). Noise per bin ``n = median(P[I]) / ln 2``
    (for Gaussian noise a bin's power is exponential, and its median is ln 2 times its
    mean). Then

        hnr = 10 log10( (sum P[H] - |H| n) / (n * 1024) )

    the partials' energy (less the noise inside their lobes) over the energy of white noise
    at the inter-partial level across the whole band 0..Nyquist: for a harmonic tone plus
    white noise, the ratio of their powers (``tests/test_quality.py``). The numerator is
    floored at 1e-12 of ``sum P[H]``; ``n`` at 1e-14 of the frame's energy.
    ``partial_to_floor = 10 log10(max over partials of P[peak bin] / median(P[I]))``.
    """
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    f0 = np.asarray(f0, dtype=np.float64)
    centres = np.round(np.asarray(centres_s) * sample_rate).astype(np.int64)
    hnr = np.full(len(centres), np.nan)
    ptf = np.full(len(centres), np.nan)
    ok = np.isfinite(f0) & (f0 > 0)
    if not ok.any():
        return hnr, ptf
    xp = np.pad(x, (HNR_FFT, HNR_FFT))
    starts = centres[ok] - HNR_FFT // 2 + HNR_FFT
    frames = xp[starts[:, None] + np.arange(HNR_FFT)[None]] * np.blackman(HNR_FFT)[None]
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2                             # N x 1025
    df = sample_rate / HNR_FFT
    fmax_bins = HNR_FMAX_FRACTION * sample_rate / df
    f0_bins = f0[ok] / df
    kmax = math.floor(fmax_bins / f0_bins.min()) + 1
    pos = _track_partials(power, f0_bins, kmax, fmax_bins)
    bins = np.arange(power.shape[1], dtype=np.float64)
    out_h, out_p = [], []
    for p, parts, f in zip(power, pos, f0_bins):
        parts = parts[np.isfinite(parts)]
        if not len(parts):
            out_h.append(np.nan)
            out_p.append(np.nan)
            continue
        j = np.clip(np.searchsorted(parts, bins), 1, len(parts) - 1) if len(parts) > 1 else np.zeros(len(bins), int)
        dist = np.abs(bins - parts[j]) if len(parts) == 1 else np.minimum(np.abs(bins - parts[j - 1]), np.abs(bins - parts[j]))
        in_band = (bins >= f / 2) & (bins <= fmax_bins)
        harm = dist < LOBE_BINS
        noise = in_band & ~harm
        for a, b in itertools.pairwise(parts):
            lo, hi = math.ceil(a + LOBE_BINS), math.floor(b - LOBE_BINS)
            if lo > hi:                     # no bin 3 bins clear: the bin nearest the midpoint
                mid = round((a + b) / 2)
                harm[mid] = False
                noise[mid] = True
        total = p.sum()
        med = float(np.median(p[noise])) if noise.any() else 0.0
        n = max(med / math.log(2), 1e-14 * total)
        h = p[harm].sum()
        out_h.append(10 * math.log10(max(h - harm.sum() * n, 1e-12 * h, 1e-300) / (n * (HNR_FFT // 2))))
        peaks = p[np.clip(np.round(parts).astype(int), 0, len(p) - 1)].max()
        out_p.append(10 * math.log10(max(peaks, 1e-300) / max(med, 1e-14 * total)))
    hnr[ok], ptf[ok] = out_h, out_p
    return hnr, ptf


# ----------------------------------------------------------------------------- frame-rate buzz

BUZZ_FFT_FRAMES = 32        # the analysis window, in hops (8192 samples at hop 256: 0.37 s at 22050 Hz)
BUZZ_LINE_BINS = 2          # a line's power: its bin and this many on each side (a Blackman main lobe)
BUZZ_PARTIAL_GUARD = 6      # bins kept clear of the note's partials (line and halfway bins alike)
BUZZ_MIN_LINES = 8          # fewer usable lines than this: no reading (NaN)


def frame_rate_buzz(audio: np.ndarray, sample_rate: int, hop: int, centres_s: np.ndarray,
                    f0: np.ndarray | None = None) -> np.ndarray:
    """Frame-rate buzz per frame (dB): ``ndarray[N]``, NaN where it cannot be read.

    Frame: :data:`BUZZ_FFT_FRAMES` hops (``W = 32 hop`` samples) centred on each centre,
    Blackman window, ``P = |rfft|^2``. The frame rate ``sample_rate / hop`` then falls on bin
    32 exactly, so its multiple ``m`` on bin ``32 m`` and the point halfway to the next on
    ``32 m + 16``. For every ``m`` with ``32 m + 16`` under ``0.45 sample_rate``: the line's
    power ``L_m`` is the sum of ``P`` within :data:`BUZZ_LINE_BINS` (2) bins of ``32 m``,
    the halfway power ``H_m`` the same around ``32 m + 16``; a multiple whose line or halfway
    bins lie within :data:`BUZZ_PARTIAL_GUARD` (6) bins of a partial ``k f0`` (``f0`` per
    frame, Hz; NaN or 0: no partials) is left out. Then

        buzz = 10 log10( median_m L_m / median_m H_m )

    For noise with a smooth spectrum ``L`` and ``H`` have one distribution: 0 dB. For sines
    of amplitude ``A`` at every multiple in white noise of variance ``s^2``, the ratio of
    means is ``1 + A^2 W / (20 s^2)`` (``tests/test_quality.py``). NaN with fewer than
    :data:`BUZZ_MIN_LINES` multiples left."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    n_fft = BUZZ_FFT_FRAMES * hop
    centres = np.round(np.asarray(centres_s, dtype=np.float64) * sample_rate).astype(np.int64)
    f0 = np.full(len(centres), np.nan) if f0 is None else np.asarray(f0, dtype=np.float64)
    xp = np.pad(x, (n_fft, n_fft))
    frames = xp[(centres - n_fft // 2 + n_fft)[:, None] + np.arange(n_fft)[None]] * np.blackman(n_fft)[None]
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2                                    # N x (n_fft/2 + 1)
    df = sample_rate / n_fft
    half = BUZZ_FFT_FRAMES // 2
    m = np.arange(1, int((0.45 * sample_rate / df - half) // BUZZ_FFT_FRAMES) + 1)
    line_bins, half_bins = m * BUZZ_FFT_FRAMES, m * BUZZ_FFT_FRAMES + half
    around = np.arange(-BUZZ_LINE_BINS, BUZZ_LINE_BINS + 1)
    lines = power[:, line_bins[:, None] + around].sum(-1)                               # N x M
    halves = power[:, half_bins[:, None] + around].sum(-1)
    out = np.full(len(centres), np.nan)
    for i in range(len(centres)):
        keep = np.ones(len(m), bool)
        if np.isfinite(f0[i]) and f0[i] > 0:
            partials = np.arange(1, int(0.5 * sample_rate / f0[i]) + 2) * f0[i] / df   # bins
            for b in (line_bins, half_bins):
                nearest = np.abs(b[:, None] - partials[None]).min(1)
                keep &= nearest > BUZZ_PARTIAL_GUARD + BUZZ_LINE_BINS
        if keep.sum() < BUZZ_MIN_LINES:
            continue
        h = np.median(halves[i, keep])
        out[i] = 10 * math.log10(max(np.median(lines[i, keep]), 1e-300) / max(h, 1e-300))
    return out


def percentiles(values: list | np.ndarray, qs: tuple[float, ...] = (50, 90)) -> dict:
    """``{"p50": ..., "p90": ...}`` of the finite values (None when there are none)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return {f"p{q:g}": (float(np.percentile(v, q)) if len(v) else None) for q in qs}


# ----------------------------------------------------------------------------- silence

DIGITAL_SILENCE_DB = -75.0  # |sample| at most this far below the signal's peak sample: digital silence
SILENCE_GUARD_BLOCKS = 4    # hops of silence needed on each side (a 1024-sample frame's reach and more)


def silent_blocks(audio: np.ndarray, hop: int = 256, guard: int = SILENCE_GUARD_BLOCKS) -> np.ndarray:
    """Blocks ``[k hop, (k+1) hop)`` of ``audio`` that are digital silence (every sample at
    most :data:`DIGITAL_SILENCE_DB` below the peak sample: FluidSynth's 16-bit output dithers
    its silence by 1 LSB), as are the ``guard`` blocks on each side: ``bool[L // hop]``."""
    x = np.abs(np.asarray(audio, dtype=np.float64).reshape(-1))
    nb = len(x) // hop
    limit = max(x.max(initial=0.0) * 10 ** (DIGITAL_SILENCE_DB / 20), 1e-12)
    quiet = x[:nb * hop].reshape(nb, hop).max(1) <= limit
    out = quiet.copy()
    for s in range(1, guard + 1):
        out[s:] &= quiet[:-s]
        out[:-s] &= quiet[s:]
        out[:s] = False
        out[-s:] = False
    return out


def silence_level_db(original: np.ndarray, output: np.ndarray, hop: int = 256) -> float | None:
    """How far below the original's loudest frame (:func:`peak_level_db`) the output plays
    where the original is digital silence (:func:`silent_blocks`): ``peak - 10 log10(mean
    square of the output over those blocks)`` in dB (positive: below; at most 200 dB when
    the output is silent too); None when the original has no such blocks."""
    mask = silent_blocks(original, hop)
    if not mask.any():
        return None
    y = np.asarray(output, dtype=np.float64).reshape(-1)[:len(mask) * hop].reshape(len(mask), hop)[mask]
    return float(peak_level_db(original, hop) - power_db(np.mean(y * y)))
