"""Pseudo-quadrature mirror filter bank (PQMF) for multi-band vocoders.

A cosine-modulated bank of ``bands`` filters from one Kaiser-windowed low-pass prototype
(taps 62, cutoff 0.142 of Nyquist, beta 9: the near-perfect-reconstruction design used by
multi-band MelGAN, Yang et al. 2020, for 4 bands). Analysis splits audio at rate ``sr``
into ``bands`` critically sampled sub-bands at ``sr / bands``; synthesis puts them back.

* :func:`analysis`: whole signals, for training losses: ``Tensor[B x L]`` -> ``Tensor[B x bands x L/bands]``.
* :class:`PQMFSynthesis`: the streaming synthesis layer of a multi-band vocoder (time-major,
  like every layer of :mod:`core.streaming`): ``Tensor[B x T x bands]`` -> ``Tensor[B x T*bands x 1]``.
  It is a fixed transposed convolution (stride ``bands``) and reports its look-ahead,
  ``taps / 2`` samples (31 = 1.4 ms at 22050 Hz), as :attr:`delay`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from .streaming import CachedConvTranspose1d


def prototype_filter(taps: int = 62, cutoff: float = 0.142, beta: float = 9.0) -> np.ndarray:
    """Kaiser-windowed ideal low-pass ``ndarray[taps + 1]`` with cutoff ``cutoff * pi``."""
    if taps % 2:
        raise ValueError("taps must be even")
    n = np.arange(taps + 1) - taps / 2
    wc = math.pi * cutoff
    with np.errstate(invalid="ignore", divide="ignore"):
        h = np.sin(wc * n) / (math.pi * n)
    h[taps // 2] = cutoff
    return h * np.kaiser(taps + 1, beta)


def filters(bands: int = 4, taps: int = 62, cutoff: float = 0.142, beta: float = 9.0) -> tuple[np.ndarray, np.ndarray]:
    """(analysis, synthesis) filters, each ``ndarray[bands x taps + 1]``."""
    h = prototype_filter(taps, cutoff, beta)
    n = np.arange(taps + 1) - taps / 2
    k = np.arange(bands)[:, None]
    phase = (2 * k + 1) * math.pi / (2 * bands) * n
    sign = ((-1.0) ** k) * math.pi / 4
    return 2 * h * np.cos(phase + sign), 2 * h * np.cos(phase - sign)


def analysis(audio: torch.Tensor, bands: int = 4, taps: int = 62) -> torch.Tensor:
    """``Tensor[B x L]`` (L a multiple of ``bands``) -> sub-bands ``Tensor[B x bands x L/bands]``,
    centred (zero padding of ``taps/2`` on both sides) and decimated by ``bands``."""
    h, _ = filters(bands, taps)
    w = torch.as_tensor(h, dtype=audio.dtype, device=audio.device)[:, None]
    x = F.pad(audio[:, None], (taps // 2, taps // 2))
    return F.conv1d(x, w, stride=bands)


def _transposed(g: np.ndarray) -> np.ndarray:
    """Synthesis filters as the kernel of a transposed convolution. The reference designs
    apply them as a correlation (``conv1d``) after zero insertion; a transposed conv
    convolves, so the taps are reversed."""
    return np.ascontiguousarray(g[:, ::-1])


def synthesis(subbands: torch.Tensor, taps: int = 62) -> torch.Tensor:
    """Whole-signal synthesis (the reference for :class:`PQMFSynthesis`):
    ``Tensor[B x bands x T]`` -> ``Tensor[B x T*bands]``, centred."""
    bands = subbands.shape[1]
    _, g = filters(bands, taps)
    w = torch.as_tensor(_transposed(g) * bands, dtype=subbands.dtype, device=subbands.device)[:, None]
    y = F.conv_transpose1d(subbands, w, stride=bands)            # length (T-1)*bands + taps + 1
    return y[:, 0, taps // 2: taps // 2 + subbands.shape[2] * bands]


class PQMFSynthesis(CachedConvTranspose1d):
    """Streaming PQMF synthesis: ``Tensor[B x T x bands]`` -> ``Tensor[B x T*bands x 1]``.

    The filters are a non-persistent buffer (rebuilt from ``bands`` and ``taps``; nothing to
    store in a bundle). Output equals :func:`synthesis` delayed by :attr:`delay` = taps/2.
    """

    def __init__(self, bands: int = 4, taps: int = 62):
        kernel = math.ceil((taps + 1) / bands) * bands
        super().__init__(bands, 1, kernel, stride=bands, padding=taps // 2)
        _, g = filters(bands, taps)
        w = torch.zeros(bands, 1, kernel)
        w[:, 0, :taps + 1] = torch.as_tensor(_transposed(g) * bands, dtype=torch.float32)
        del self.weight, self.bias
        self.register_buffer("weight", w, persistent=False)
        self.bias = None
        self.bands, self.taps = bands, taps
