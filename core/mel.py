"""MelGAN's log-mel analysis (Kumar et al. 2019, reference code descriptinc/melgan-neurips).

22050 Hz, n_fft 1024, hop 256, Hann window 1024, 80 Slaney mel bands from 0 Hz to Nyquist,
reflect padding of (n_fft - hop) / 2 = 384 samples on each side, no centring, magnitude
(not power), then log10 of the mel energies floored at 1e-5.
For a signal of L samples (L a multiple of the hop) it gives exactly L / hop frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .config import DictConfig


@dataclass(frozen=True)
class MelConfig(DictConfig):
    sample_rate: int = 22050
    n_fft: int = 1024
    hop: int = 256
    win: int = 1024
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float | None = None
    log_floor: float = 1e-5


# a frame whose loudest band is within this much of the mel's floor (log10: 20 dB) is silence
# asked for. A full-scale sine reads about 0.85 in its band, so this is every band below about
# -97 dBFS (16-bit dither, 1 LSB, reads -4.2 against the threshold's -4.0): the frame-rate
# notch drops its memory there (core/frame_notch.py) and the silence gate closes
# (core/silence_gate.py; tests/test_silence_gate.py)
SILENCE_ABOVE_FLOOR = 1.0


def asks_for_silence(logmel: torch.Tensor, log_floor: float) -> torch.Tensor:
    """Frames of a log10 mel ``Tensor[B x n_mels x n]`` that ask for silence (every band within
    :data:`SILENCE_ABOVE_FLOOR` of ``log10(log_floor)``): ``Tensor[B x n]`` bool."""
    return logmel.amax(1) <= float(np.log10(log_floor)) + SILENCE_ABOVE_FLOOR


def hz_to_mel_slaney(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mels)


def mel_to_hz_slaney(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


def mel_band_edges(sample_rate: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """The mel filters' corner frequencies (Hz), ``ndarray[n_mels + 2]``: filter ``k`` rises
    from edge ``k`` to its peak at edge ``k + 1`` and falls to edge ``k + 2``."""
    fmax = sample_rate / 2 if fmax is None else fmax
    return mel_to_hz_slaney(np.linspace(hz_to_mel_slaney(fmin), hz_to_mel_slaney(fmax), n_mels + 2))


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """Slaney-normalised triangular mel filters, ``ndarray[n_mels x (n_fft//2 + 1)]``."""
    fft_freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    hz_pts = mel_band_edges(sample_rate, n_mels, fmin, fmax)
    fdiff = np.diff(hz_pts)
    ramps = hz_pts[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (hz_pts[2:n_mels + 2] - hz_pts[:n_mels]))[:, None]
    return weights.astype(np.float32)


def frame_window(c: MelConfig, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """:class:`LogMel`'s analysis window (Hann ``win``), zero-padded to the centre of
    ``n_fft``: ``Tensor[n_fft]``, as ``torch.stft`` applies ``win_length``."""
    window = torch.hann_window(c.win, dtype=dtype)
    if c.win < c.n_fft:
        left = (c.n_fft - c.win) // 2
        window = F.pad(window, (left, c.n_fft - c.win - left))
    return window


class LogMel(nn.Module):
    """Audio ``Tensor[B x L]`` (or ``[L]``) in [-1, 1] -> log10 mel ``Tensor[B x n_mels x L/hop]``."""

    def __init__(self, config: MelConfig = MelConfig()):
        super().__init__()
        self.config = config
        c = config
        self.register_buffer("window", torch.hann_window(c.win), persistent=False)
        fb = mel_filterbank(c.sample_rate, c.n_fft, c.n_mels, c.fmin, c.fmax)
        self.register_buffer("fb", torch.from_numpy(fb), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        squeeze = audio.dim() == 1
        x = audio[None] if squeeze else audio
        c = self.config
        pad = (c.n_fft - c.hop) // 2
        x = F.pad(x[:, None, :], (pad, pad), mode="reflect")[:, 0]
        out = self.of_padded(x)
        return out[0] if squeeze else out

    def of_padded(self, x: torch.Tensor) -> torch.Tensor:
        """The log10 mel of audio already padded: ``Tensor[B x L]`` (or ``[L]``) -> one frame
        per ``hop`` whose ``n_fft`` window lies within it, ``Tensor[B x n_mels x k]`` (or
        ``[n_mels x k]``). :meth:`forward` pads and calls it; the streaming mel
        (core/stream_mel.py) hands it the samples that have arrived."""
        c = self.config
        spec = torch.stft(x, c.n_fft, hop_length=c.hop, win_length=c.win, window=self.window,
                          center=False, return_complex=True)
        return torch.log10(torch.clamp(torch.matmul(self.fb, spec.abs()), min=c.log_floor))
