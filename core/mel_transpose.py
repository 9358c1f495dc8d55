"""Notes beyond the generator's pitch range: the nearest pitch it knows, moved along frequency.

A pitch-conditioned generator learned the notes ``pitch_min .. pitch_max`` of its corpus; its
condition clamps a note outside them to the nearest end (:func:`core.generator._soft_one_hot`),
so without this a MIDI 36 plays the mel of MIDI 48. :class:`MelTranspose` moves each log-mel
frame by ``s = pitch - clamp(pitch)`` semitones, as if the frame were spectral lines: band
``k``'s magnitude (above the log floor) is a line at the band's centre ``c_k`` whose amplitude
is the magnitude times the band's half width (a Slaney-normalised band reads a line at its
centre as amplitude / half width, and a line anywhere as its amplitude in total over the
bands, weighted by their half widths); each line moves to ``c_k * 2^(s/12)`` and is read by
the mel filters there. So a moved partial keeps its level (within 1 dB: a sine's moved mel
reads the level of the moved sine's own mel, tests/test_mel_transpose.py), lines moved above
the top band vanish, and silence stays silence. The vocoder is excited at the note's own f0
(:meth:`core.synth.Synth._compute`).

Per frame, with no look-ahead (``delay = 0``): chunked equals whole. A frame with ``s = 0``
passes unchanged, bit for bit, so notes inside the range play as before.
Tests: tests/test_mel_transpose.py.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .mel import MelConfig, mel_band_edges

MAX_SEMITONES = 60          # shifts are clamped here: MIDI 0-127 from a range inside 48-84


def band_edges(mel: MelConfig) -> np.ndarray:
    """:func:`core.mel.mel_band_edges` of ``mel``: band ``k`` rises from edge ``k`` to its
    centre, edge ``k + 1``, and falls to edge ``k + 2``; ``ndarray[n_mels + 2]``, Hz."""
    return mel_band_edges(mel.sample_rate, mel.n_mels, mel.fmin, mel.fmax)


def band_centres(mel: MelConfig) -> np.ndarray:
    """Centre frequency (Hz) of each mel band, ``ndarray[n_mels]``."""
    return band_edges(mel)[1:-1]


def shift_map(mel: MelConfig, semitones: float) -> np.ndarray:
    """The linear map of one shift on mel magnitudes above the floor, ``ndarray[n_mels x
    n_mels]``: ``out[m] = sum_k T[m, k] in[k]``, ``T[m, k] = tri_m(c_k r) half_k / half_m`` with
    ``r = 2^(semitones/12)``, ``tri_m`` band ``m``'s unit triangle and ``half`` the bands' half
    widths (Hz). The identity at 0."""
    e = band_edges(mel)
    lo, c, hi = e[:-2], e[1:-1], e[2:]
    half = (hi - lo) / 2
    f = c * 2 ** (semitones / 12)                          # where each band's line moves
    rise = (f[None, :] - lo[:, None]) / (c - lo)[:, None]
    fall = (hi[:, None] - f[None, :]) / (hi - c)[:, None]
    tri = np.clip(np.minimum(rise, fall), 0, None)         # [m x k]
    return tri * half[None, :] / half[:, None]


class MelTranspose(nn.Module):
    """``forward(logmel: Tensor[B x n_mels x n], shift: Tensor[B x n])`` (log10 mel, semitones)
    -> the moved log-mel, ``Tensor[B x n_mels x n]``. Shifts between whole semitones blend the
    two neighbouring maps (a pitch bend moves smoothly)."""

    delay = 0

    def __init__(self, mel: MelConfig, max_semitones: int = MAX_SEMITONES):
        super().__init__()
        self.max_semitones = max_semitones
        self.floor = float(mel.log_floor)
        maps = np.stack([shift_map(mel, k) for k in range(-max_semitones, max_semitones + 1)])
        self.register_buffer("maps", torch.tensor(maps, dtype=torch.float32), persistent=False)

    def forward(self, logmel: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        k = self.max_semitones
        s = shift.to(torch.float32).clamp(-k, k) + k                     # [B x n], 0 .. 2k
        lo = s.floor().clamp(max=2 * k - 1)
        frac = (s - lo)[..., None, None]
        lo = lo.long()
        t = self.maps[lo] * (1 - frac) + self.maps[lo + 1] * frac       # [B x n x M x M]
        above = (torch.pow(10.0, logmel.float()) - self.floor).clamp(min=0)
        moved = torch.einsum("btmk,bkt->bmt", t, above) + self.floor
        moved = torch.log10(moved).to(logmel.dtype)
        return torch.where((shift == 0)[:, None, :], logmel, moved)


def out_of_range_shift(pitch: torch.Tensor, pitch_min: int, pitch_max: int) -> torch.Tensor:
    """Semitones from the pitch the generator plays (``pitch`` clamped to its range) to
    ``pitch``: ``Tensor`` of ``pitch``'s shape, 0 inside the range."""
    p = pitch.to(torch.float32)
    return p - p.clamp(pitch_min, pitch_max)
