"""Evaluation measures (numpy / torch only).

* ``ndb_jsd``: number of statistically different bins and Jensen-Shannon divergence of
  bin proportions (Richardson & Weiss 2018), as reported by UNAGAN and GANSynth: k-means
  bins fitted on real frames, both sets binned, a two-proportion z-test per bin.
* ``yin_pitch`` / ``voiced_ratio`` / ``cents``: YIN f0 (de Cheveigné & Kawahara 2002).
* ``mr_stft_distance``: multi-resolution STFT distance (spectral convergence + log-magnitude
  L1 at three resolutions, the multi-band MelGAN loss).
* ``logmel_l1``: mean absolute difference of MelGAN log10-mels.
* ``griffin_lim``: inversion of a MelGAN log10-mel without a vocoder (the baseline);
  ``griffin_lim_from_magnitude``: the same from an exact STFT magnitude (a reference).
* ``mel_change`` / ``loudness_spread``: how much a log-mel moves frame to frame, and the
  spread of its frame loudness (a drone scores low on both; notes with onsets and decays high).
* ``stream_stability``: per-bin statistics of early vs late frames of a long stream.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from core.mel import LogMel, MelConfig, frame_window, mel_filterbank
from core.pitch import midi_to_hz, yin_pitch  # noqa: F401  (yin_pitch re-exported: the evaluation's pitch tracker)

# ----------------------------------------------------------------------------- NDB / JSD

def _sq_dists(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``[N x K]`` between rows of ``x [N x D]`` and ``c [K x D]``."""
    d = (x * x).sum(1)[:, None] - 2.0 * x @ c.T + (c * c).sum(1)[None, :]
    return np.maximum(d, 0.0)


def _assign(x: np.ndarray, c: np.ndarray, block: int = 8192) -> np.ndarray:
    """Index of the nearest centroid for every row of ``x``, in blocks to bound memory."""
    return np.concatenate([_sq_dists(x[i:i + block], c).argmin(1) for i in range(0, len(x), block)]
                          or [np.zeros(0, dtype=np.int64)])


def kmeans(x: np.ndarray, k: int, seed: int = 0, max_iter: int = 50) -> np.ndarray:
    """k-means++ seeding then Lloyd iterations; returns centroids ``[k x D]`` (float64).

    Deterministic for a seed. A cluster that empties keeps its previous centroid.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if n < k:
        raise ValueError(f"need at least k={k} rows, got {n}")
    rng = np.random.default_rng(seed)
    centers = np.empty((k, x.shape[1]))
    centers[0] = x[rng.integers(n)]
    d2 = _sq_dists(x, centers[:1])[:, 0]
    for i in range(1, k):
        total = d2.sum()
        j = rng.choice(n, p=d2 / total) if total > 0 else rng.integers(n)
        centers[i] = x[j]
        d2 = np.minimum(d2, _sq_dists(x, centers[i:i + 1])[:, 0])
    labels = None
    for _ in range(max_iter):
        new = _assign(x, centers)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        counts = np.bincount(labels, minlength=k)
        sums = np.zeros_like(centers)
        np.add.at(sums, labels, x)
        filled = counts > 0
        centers[filled] = sums[filled] / counts[filled, None]
    return centers


def ndb_jsd(real: np.ndarray, generated: np.ndarray, k: int = 50, seed: int = 0,
            alpha: float = 0.05) -> tuple[int, float]:
    """NDB and JSD between ``real [N x D]`` and ``generated [M x D]`` (e.g. mel frames).

    k-means (k bins) is fitted on at most 20000 rows of ``real``; both sets are assigned to
    the nearest centroid. NDB counts bins whose proportions differ by a two-sided
    two-proportion z-test (pooled variance) at level ``alpha``; JSD (natural log, in
    [0, ln 2]) is between the two bin-proportion histograms.
    """
    real = np.asarray(real, dtype=np.float64)
    generated = np.asarray(generated, dtype=np.float64)
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError("real and generated must be [N x D] and [M x D] with the same D")
    if len(generated) == 0:
        raise ValueError("generated is empty")
    rng = np.random.default_rng(seed)
    fit = real if len(real) <= 20000 else real[rng.choice(len(real), 20000, replace=False)]
    centers = kmeans(fit, k, seed=seed)
    n_r = np.bincount(_assign(real, centers), minlength=k).astype(np.float64)
    n_g = np.bincount(_assign(generated, centers), minlength=k).astype(np.float64)
    big_n, big_m = n_r.sum(), n_g.sum()
    p_r, p_g = n_r / big_n, n_g / big_m
    pooled = (n_r + n_g) / (big_n + big_m)
    se = np.sqrt(pooled * (1 - pooled) * (1 / big_n + 1 / big_m))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, np.abs(p_g - p_r) / se, 0.0)
    p_values = np.array([math.erfc(v / math.sqrt(2)) for v in z])
    ndb = int((p_values < alpha).sum())
    m = 0.5 * (p_r + p_g)

    def kl(p: np.ndarray) -> float:
        nz = p > 0
        return float((p[nz] * np.log(p[nz] / m[nz])).sum())

    jsd = float(np.clip(0.5 * kl(p_r) + 0.5 * kl(p_g), 0.0, math.log(2)))
    return ndb, jsd


# ----------------------------------------------------------------------------- pitch

def voiced_ratio(audio: np.ndarray, sr: int) -> float:
    """Fraction of YIN frames (default settings) that are voiced."""
    _, voiced = yin_pitch(audio, sr)
    return float(voiced.mean()) if voiced.size else 0.0


def cents(f_hz: np.ndarray, midi_note: float | np.ndarray) -> np.ndarray:
    """Deviation of ``f_hz`` from equal-tempered MIDI note(s) (A4 = 440 Hz), in cents."""
    ref = midi_to_hz(np.asarray(midi_note, dtype=np.float64))
    return 1200.0 * np.log2(np.asarray(f_hz, dtype=np.float64) / ref)


# ----------------------------------------------------------------------------- spectral distances

MR_STFT_RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))


def mr_stft_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Multi-resolution STFT distance of 1-D signals of equal length (``x`` the reference,
    e.g. the original clip, ``y`` its resynthesis).

    Mean over (fft, hop, win) in ``MR_STFT_RESOLUTIONS`` of spectral convergence
    ``|| |X| - |Y| ||_F / || |X| ||_F`` plus the mean absolute difference of
    ``log(clamp(|.|, 1e-7))``; Hann windows, centred frames with zero padding.
    """
    sc, log_term = mr_stft_parts(x, y)
    return sc + log_term


def mr_stft_parts(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The two terms of :func:`mr_stft_distance`, each averaged over the resolutions:
    (spectral convergence, mean |log magnitude difference|)."""
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32).reshape(-1))
    yt = torch.as_tensor(np.asarray(y, dtype=np.float32).reshape(-1))
    if xt.shape != yt.shape:
        raise ValueError(f"lengths differ: {xt.numel()} vs {yt.numel()}")
    sc_total = log_total = 0.0
    for n_fft, hop, win in MR_STFT_RESOLUTIONS:
        window = torch.hann_window(win)
        mags = [torch.stft(s, n_fft, hop_length=hop, win_length=win, window=window, center=True,
                           pad_mode="constant", return_complex=True).abs() for s in (xt, yt)]
        mx, my = mags
        sc_total += float(torch.linalg.norm(mx - my) / torch.linalg.norm(mx).clamp_min(1e-7))
        log_total += float((torch.log(mx.clamp_min(1e-7)) - torch.log(my.clamp_min(1e-7))).abs().mean())
    return sc_total / len(MR_STFT_RESOLUTIONS), log_total / len(MR_STFT_RESOLUTIONS)


def logmel_l1(x: np.ndarray, y: np.ndarray, mel_config: MelConfig = MelConfig()) -> float:
    """Mean ``|LogMel(x) - LogMel(y)|`` (log10 units) of two 1-D signals of equal length."""
    x = np.asarray(x, dtype=np.float32).reshape(-1)
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"lengths differ: {x.size} vs {y.size}")
    mel = LogMel(mel_config)
    with torch.no_grad():
        mx, my = mel(torch.from_numpy(x)), mel(torch.from_numpy(y))
    return float((mx - my).abs().mean())


# ----------------------------------------------------------------------------- Griffin-Lim

def frames_stft(x: torch.Tensor, c: MelConfig = MelConfig()) -> torch.Tensor:
    """Signal ``Tensor[L]`` -> complex STFT ``Tensor[n_fft/2+1 x T]`` (float64) framed as
    ``core.mel.LogMel`` frames: reflect-padded by (n_fft - hop) / 2 on each side, not centred,
    so T frames cover exactly T * hop samples."""
    pad = (c.n_fft - c.hop) // 2
    xp = torch.nn.functional.pad(torch.as_tensor(x, dtype=torch.float64)[None, None], (pad, pad), mode="reflect")[0, 0]
    return torch.stft(xp, c.n_fft, hop_length=c.hop, window=frame_window(c, torch.float64), center=False, return_complex=True)


def frames_overlap_add(spec: torch.Tensor, c: MelConfig = MelConfig()) -> torch.Tensor:
    """Weighted overlap-add of ``spec`` ``[F x T]``: ``Tensor[(T-1) * hop + n_fft]`` (float64),
    in the padded coordinates of :func:`frames_stft` (sample 0 = the first frame's first)."""
    window = frame_window(c, torch.float64)
    t = spec.shape[1]
    length = (t - 1) * c.hop + c.n_fft
    frames = torch.fft.irfft(spec, n=c.n_fft, dim=0) * window[:, None]                  # n_fft x T
    if c.n_fft % c.hop == 0:        # overlap-add as n_fft / hop shifted block sums (fold is slow)
        y = _block_overlap_add(frames.T, c.hop)
        env = _block_overlap_add((window ** 2)[None].expand(t, c.n_fft), c.hop)
    else:
        y = torch.nn.functional.fold(frames[None], (1, length), (1, c.n_fft), stride=(1, c.hop)).view(-1)
        env = torch.nn.functional.fold((window ** 2)[None, :, None].expand(1, c.n_fft, t).contiguous(), (1, length),
                                       (1, c.n_fft), stride=(1, c.hop)).view(-1)
    return y / env.clamp_min(1e-8)


def _block_overlap_add(frames: torch.Tensor, hop: int) -> torch.Tensor:
    """Overlap-add of ``frames [T x n_fft]`` (n_fft a multiple of ``hop``) placed every
    ``hop`` samples: ``Tensor[(T - 1) * hop + n_fft]``; block ``j`` of the output sums block
    ``i`` of frame ``j - i`` over the frame's ``n_fft / hop`` blocks."""
    t, n = frames.shape
    r = n // hop
    blocks = frames.reshape(t, r, hop)
    out = frames.new_zeros(t + r - 1, hop)
    for i in range(r):
        out[i:i + t] += blocks[:, i]
    return out.reshape(-1)


def frames_istft(spec: torch.Tensor, length: int, c: MelConfig = MelConfig()) -> torch.Tensor:
    """Inverse of :func:`frames_stft`: ``Tensor[length]`` (float64)."""
    pad = (c.n_fft - c.hop) // 2
    return frames_overlap_add(spec, c)[pad:pad + length]


def griffin_lim_iterations(mag: torch.Tensor, analyse, synthesise, n_iter: int, phase: torch.Tensor | None = None,
                           seed: int = 0, momentum: float = 0.99) -> torch.Tensor:
    """Griffin-Lim on magnitude ``mag`` ``[F x T]`` with the given ``analyse`` (signal ->
    spectrum) and ``synthesise`` (spectrum -> signal): ``n_iter`` iterations (with the "fast"
    momentum of Perraudin et al. 2013; ``momentum=0`` gives the original algorithm) from
    ``phase`` (unit phasors) or a uniform random phase drawn with ``seed``. Returns the signal."""
    if phase is None:
        rng = np.random.default_rng(seed)
        phase = torch.from_numpy(np.exp(2j * np.pi * rng.random(tuple(mag.shape))))
    previous = torch.zeros_like(phase)
    for _ in range(n_iter):
        rebuilt = analyse(synthesise(mag * phase))
        accel = rebuilt - (momentum / (1 + momentum)) * previous if momentum else rebuilt
        previous = rebuilt
        phase = accel / accel.abs().clamp_min(1e-16)
    return synthesise(mag * phase)


def griffin_lim(logmel: np.ndarray, mel_config: MelConfig = MelConfig(), n_iter: int = 60,
                seed: int = 0, momentum: float = 0.99) -> np.ndarray:
    """Invert a MelGAN log10-mel ``[n_mels x T]`` to ``T * hop`` samples (float32).

    Magnitude: pseudo-inverse of the mel filterbank applied to ``10 ** logmel``, clipped at
    0. Phase: :func:`griffin_lim_iterations` from a random phase drawn with ``seed``. Every
    analysis matches ``core.mel.LogMel`` (:func:`frames_stft`).
    """
    c = mel_config
    logmel = np.asarray(logmel, dtype=np.float64)
    if logmel.ndim != 2 or logmel.shape[0] != c.n_mels:
        raise ValueError(f"expected [{c.n_mels} x T], got {logmel.shape}")
    length = logmel.shape[1] * c.hop
    fb = mel_filterbank(c.sample_rate, c.n_fft, c.n_mels, c.fmin, c.fmax).astype(np.float64)
    mag = torch.from_numpy(np.maximum(np.linalg.pinv(fb) @ (10.0 ** logmel), 0.0))   # F x T
    y = griffin_lim_iterations(mag, lambda x: frames_stft(x, c), lambda s: frames_istft(s, length, c),
                               n_iter, seed=seed, momentum=momentum)
    return y.numpy().astype(np.float32)


def griffin_lim_from_magnitude(x: np.ndarray, n_fft: int = 1024, hop: int = 256, n_iter: int = 100,
                               seed: int = 0, momentum: float = 0.99) -> np.ndarray:
    """Griffin-Lim (fast, as :func:`griffin_lim`) from the exact STFT magnitude of ``x``
    (Hann window ``n_fft``, centred frames): the best a phase-blind resynthesis of a perfect
    magnitude estimate does; a reference for the distances, not a vocoder."""
    xt = torch.from_numpy(np.asarray(x, dtype=np.float64).reshape(-1))
    window = torch.hann_window(n_fft, dtype=torch.float64)

    def analyse(y: torch.Tensor) -> torch.Tensor:
        return torch.stft(y, n_fft, hop, window=window, return_complex=True)

    def synthesise(spec: torch.Tensor) -> torch.Tensor:
        return torch.istft(spec, n_fft, hop, window=window, length=len(xt))

    y = griffin_lim_iterations(analyse(xt).abs(), analyse, synthesise, n_iter, seed=seed, momentum=momentum)
    return y.numpy().astype(np.float32)


# ----------------------------------------------------------------------------- dynamics

def mel_change(mel: np.ndarray) -> float:
    """Mean absolute frame-to-frame change of a log10 mel ``[T x n_mels]``: how much it moves."""
    return float(np.abs(np.diff(mel, axis=0)).mean()) if len(mel) > 1 else 0.0


def loudness_spread(mel: np.ndarray) -> float:
    """Standard deviation over frames of each frame's mean log10 mel: its dynamics."""
    return float(mel.mean(1).std())


# ----------------------------------------------------------------------------- streaming

def stream_stability(first: np.ndarray, last: np.ndarray) -> dict:
    """Compare log-mel frames ``first [N x n_mels]`` (e.g. minute 1 of a stream) with
    ``last [M x n_mels]`` (e.g. minute 10).

    Returns floats: "first_mean" / "first_std" and "last_mean" / "last_std" (mean and std
    over bins of the per-bin means), "mean_abs_diff" (mean over bins of the absolute
    difference of per-bin means) and "std_ratio" (std of all of ``last`` / std of all of
    ``first``; 1.0 when both are constant, inf when only ``first`` is).
    """
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(last, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError("first and last must be [N x bins] and [M x bins] with the same bins")
    ma, mb = a.mean(0), b.mean(0)
    sa, sb = float(a.std()), float(b.std())
    ratio = sb / sa if sa > 0 else (1.0 if sb == 0 else math.inf)
    return {
        "first_mean": float(ma.mean()), "first_std": float(ma.std()),
        "last_mean": float(mb.mean()), "last_std": float(mb.std()),
        "mean_abs_diff": float(np.abs(ma - mb).mean()),
        "std_ratio": float(ratio),
    }
