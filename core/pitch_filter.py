"""Pitch post-filter: a causal comb at the note's period that takes the noise out from
between a voice's partials.

The generator's mel is smoother between partials than real audio's, and the vocoder
plays that blur as noise: generated notes sit 2-7 dB under the real notes' harmonic-to-noise
ratio while the same vocoder on the real mel keeps it (``benchmarks/results/hnr_stages.json``;
docs/default-model.md). Every voice's f0 is known (the requested pitch; in copy synthesis
the tracked one), so the noise can be taken out where it is: between the harmonics of that
f0. Speech codecs do the same after their decoders (the long-term, or pitch, post-filter
of CELP coders).

The filter averages the voice's audio with itself one period ago (more taps: further
periods back)::

    c_P[n] = sum_k w_k x[n - k P]        (k = 0 .. K-1, sum_k w_k = 1)
    y[n]   = x[n] + g[n] (c[n] - x[n])

``P = sample_rate / f0`` in fractional samples (the delayed taps read through a 16-tap
Kaiser-windowed sinc), ``g`` the strength where the frame is voiced and 0 where it is not.
A signal periodic at ``P`` passes unchanged, in level and in phase, so the filter adds no
latency (:attr:`PitchFilter.delay` is 0). At strength ``s`` and the default weights (1/2,
1/2), ``y = (1 - s/2) x[n] + (s/2) x[n - P]``: halfway between two partials the gain is
``1 - s``, and white noise falls by ``10 log10((1 - s/2)^2 + (s/2)^2)`` (-2.4 dB at the
default 0.6). Inside each frame ``c`` crossfades from the comb at the previous frame's
period to the comb at this frame's, and ``g`` moves linearly, so a note change or a bend
never jumps a tap (a click) or sweeps one (a chirp). Periods shorter than the
interpolator's half-width (f0 above ``sample_rate / 9``, 2450 Hz at 22050 Hz) or longer
than ``f0_min``'s play unfiltered; an unvoiced frame keeps the last period and fades ``g``
to 0.

Streaming: ``forward(audio, f0)`` takes the next ``n`` blocks ``Tensor[B x n*hop]`` and the
``n`` frames' f0 ``Tensor[B x n]`` (Hz, 0 = unvoiced) and returns ``n*hop`` samples; the
state is the last :attr:`PitchFilter.history` input samples and the last frame's period and
strength, so any chunking gives the samples of one whole call
(``tests/test_pitch_filter.py``).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .streaming import keep_state

TAPS = 16                      # windowed-sinc fractional delay: taps, centred on the read position
HALF = TAPS // 2
KAISER_BETA = 8.0
DEFAULT_WEIGHTS = (0.5, 0.5)   # the current sample, one period ago
# the default strength: HNR of generated notes +4.0 dB (docs/default-model.md "Pitch post-filter")
DEFAULT_STRENGTH = 0.6
TABLE_STEPS = 512             # fractions of a sample the interpolator is tabulated at
F0_MIN = 40.0                  # Hz; lower f0 plays unfiltered (the state's length is set by it)


def kernel_table(steps: int = TABLE_STEPS) -> torch.Tensor:
    """Windowed-sinc interpolators ``Tensor[steps+1 x TAPS]`` for fractions ``0, 1/steps .. 1``
    past a sample (taps at ``-HALF+1 .. HALF``), each summing to 1 (DC passes unchanged)."""
    frac = torch.arange(steps + 1, dtype=torch.float64) / steps
    t = torch.arange(-HALF + 1, HALF + 1, dtype=torch.float64)[None] - frac[:, None]
    window = torch.special.i0(KAISER_BETA * torch.sqrt((1 - (t / (HALF + 0.5)) ** 2).clamp_min(0)))
    h = torch.sinc(t) * window
    return (h / h.sum(-1, keepdim=True)).float()


class PitchFilter(nn.Module):
    """The comb of the module docstring for ``hop``-sample frames at ``sample_rate`` Hz.
    ``weights``: ``w_0 .. w_{K-1}`` (normalised to sum 1); ``strength``: ``g`` on voiced
    frames, 0..1. ``lag``: samples by which the audio given lags the f0 frames given with
    it (a filter after mel matching: that filter's delay), so that each sample is filtered
    at the f0 of the frame that made it."""

    state_attrs = (("_history", 0), ("_period", 0), ("_gain", 0), ("_lagged", 0))
    is_stream_state = True

    def __init__(self, hop: int, sample_rate: int, weights: tuple[float, ...] = DEFAULT_WEIGHTS,
                 strength: float = DEFAULT_STRENGTH, f0_min: float = F0_MIN, lag: int = 0):
        super().__init__()
        if len(weights) < 2 or min(weights) < 0 or sum(weights) <= 0:
            raise ValueError("pitch filter weights: at least two, none negative")
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"pitch filter strength must be between 0 and 1, got {strength}")
        if lag < 0:
            raise ValueError(f"pitch filter lag must be at least 0, got {lag}")
        self.hop, self.sample_rate = hop, sample_rate
        self.strength, self.lag = float(strength), int(lag)
        total = float(sum(weights))
        self.weights = tuple(float(w) / total for w in weights)
        self.max_period = sample_rate / f0_min
        self.min_period = float(HALF + 1)
        self.history = int(math.ceil((len(self.weights) - 1) * self.max_period)) + HALF + 2
        self._history: torch.Tensor | None = None    # [B x history] the last input samples
        self._period: torch.Tensor | None = None     # [B] the last frame's period (samples)
        self._gain: torch.Tensor | None = None       # [B] the last frame's strength
        self._lagged: torch.Tensor | None = None     # [B x lag x 4] controls not yet reached by the audio

    @property
    def delay(self) -> int:
        return 0

    def noise_gain_db(self) -> float:
        """What the filter does to white noise on a voiced frame (dB)."""
        w = [self.strength * wk for wk in self.weights]
        w[0] += 1.0 - self.strength
        return 10 * math.log10(sum(v * v for v in w))

    def reset(self) -> None:
        self._history = self._period = self._gain = self._lagged = None

    def _frame_controls(self, f0: torch.Tensor, last_p: torch.Tensor | None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """f0 ``Tensor[B x n]`` (Hz) -> (period, strength) ``Tensor[B x n]`` of each frame. A frame
        that plays unfiltered has strength 0 and keeps the period before it (``last_p [B]``
        before the first; None: its own, clamped into the filter's range)."""
        f = f0.float()
        b, n = f.shape
        period = self.sample_rate / f.clamp_min(1e-3)
        ok = (f > 0) & (period >= self.min_period) & (period <= self.max_period)
        period = period.clamp(self.min_period, self.max_period)
        frames = torch.arange(n, device=f.device)[None].expand(b, n)
        held = torch.cummax(torch.where(ok, frames, torch.full_like(frames, -1)), 1).values
        before = period[:, 0] if last_p is None else last_p
        period = torch.where(held >= 0, period.gather(1, held.clamp_min(0)), before[:, None])
        return period, ok.float() * self.strength

    def _controls(self, period: torch.Tensor, gain: torch.Tensor, last_p: torch.Tensor,
                  last_g: torch.Tensor) -> torch.Tensor:
        """Per-sample controls ``Tensor[B x n*hop x 4]``: the previous frame's period, this
        frame's, the crossfade between their combs (1/hop .. 1 over the frame) and the
        strength (linear from the previous frame's). The previous frame's period is this
        frame's where the previous frame was unfiltered."""
        b, n = period.shape
        prev_g = torch.cat([last_g[:, None], gain[:, :-1]], 1)
        # after an unfiltered frame the comb starts at its own period: what the filter did
        # before it was voiced cannot matter (a stream's start, chunked == whole)
        prev_p = torch.where(prev_g > 0, torch.cat([last_p[:, None], period[:, :-1]], 1), period)
        r = self._cached("ramp", lambda d: torch.arange(1, self.hop + 1, dtype=torch.float32, device=d) / self.hop,
                         period.device)
        g = prev_g[..., None] + (gain - prev_g)[..., None] * r                            # [B x n x hop]
        ctl = torch.stack([prev_p[..., None].expand(b, n, self.hop), period[..., None].expand(b, n, self.hop),
                           r.expand(b, n, self.hop), g], -1)
        return ctl.reshape(b, n * self.hop, 4)

    def _cached(self, name: str, make, device: torch.device) -> torch.Tensor:
        """A constant tensor made once per device (kept outside the module's state)."""
        key = "_const_" + name
        t = self.__dict__.get(key)
        if t is None or t.device != device:
            t = make(device)
            self.__dict__[key] = t
        return t

    def _combs(self, buf: torch.Tensor, x: torch.Tensor, periods: torch.Tensor) -> torch.Tensor:
        """``c_P`` of the module docstring for the chunk ``x [B x N]`` (the end of ``buf``, after
        :attr:`history` earlier samples) at per-sample periods ``periods [B x N x C]`` (C combs
        at once): ``Tensor[B x N x C]``. Sample n is ``buf[H + n]``; the tap k periods back
        reads ``buf[H + n - d]``, ``d = k P`` split into whole and fraction so that the fraction
        keeps float32's precision anywhere in a long chunk (``tests/test_pitch_filter.py``,
        chunked == whole); the interpolator's weights come from a table of
        :data:`TABLE_STEPS` + 1 fractions (the nearest: a read position off by at most 1/1024
        sample)."""
        b, n, c = periods.shape
        device = x.device
        # a row whose state was never played holds zeros (core.streaming.BatchSubset fills the
        # rows it did not step so), with strength 0: its taps are read in range all the same
        periods = periods.clamp(self.min_period, self.max_period)
        ks = self._cached(f"k{len(self.weights)}", lambda d: torch.arange(1, len(self.weights), dtype=torch.float32,
                                                                         device=d), device)
        w = self._cached(f"w{len(self.weights)}", lambda d: torch.tensor(self.weights[1:], dtype=torch.float32,
                                                                        device=d), device)
        d = periods[..., None] * ks                                                       # [B x N x C x K-1]
        whole = torch.floor(d)
        here = torch.arange(self.history - 1, self.history - 1 + n, device=device)[:, None, None]
        j = self._cached("taps", lambda dev: torch.arange(-HALF + 1, HALF + 1, device=dev), device)
        idx = (here - whole.long())[..., None] + j                                       # [B x N x C x K-1 x TAPS]
        taps = buf.gather(1, idx.reshape(b, -1)).view(idx.shape)
        table = self._cached("table", lambda dev: kernel_table().to(dev), device)
        kernel = table[torch.round((1.0 - (d - whole)) * TABLE_STEPS).long()]
        delayed = (taps * kernel).sum(-1)                                                 # [B x N x C x K-1]
        return x[..., None] * self.weights[0] + (delayed * w).sum(-1)

    def forward(self, audio: torch.Tensor, f0: torch.Tensor | None) -> torch.Tensor:
        """``audio Tensor[B x n*hop]``, ``f0 Tensor[B x n]`` (Hz, 0 = unvoiced) or None (all
        unvoiced) -> ``Tensor[B x n*hop]`` float32."""
        x = audio.float()
        b, n = x.shape[0], x.shape[1] // self.hop
        if f0 is None:
            f0 = x.new_zeros(b, n)
        hist, last_p, last_g, lagged = self._history, self._period, self._gain, self._lagged
        fresh = hist is None or hist.shape[0] != b
        period, gain = self._frame_controls(f0, None if fresh else last_p)
        if fresh:
            hist, last_p, last_g = x.new_zeros(b, self.history), period[:, 0], x.new_zeros(b)
        ctl = self._controls(period, gain, last_p, last_g)                             # [B x N x 4]
        if self.lag:
            if fresh:
                lagged = torch.stack([last_p, last_p, x.new_ones(b), x.new_zeros(b)], -1)[:, None].expand(b, self.lag, 4)
            ctl = torch.cat([lagged, ctl], 1)
            keep_state(self, "_lagged", ctl[:, ctl.shape[1] - self.lag:])
            ctl = ctl[:, :x.shape[1]]
        buf = torch.cat([hist, x], 1)                                                   # [B x H+N]
        keep_state(self, "_history", buf[:, buf.shape[1] - self.history:])
        keep_state(self, "_period", period[:, -1])
        keep_state(self, "_gain", gain[:, -1])
        combs = self._combs(buf, x, ctl[..., :2])                                       # [B x N x 2]
        before, now = combs[..., 0], combs[..., 1]
        comb = before + ctl[..., 2] * (now - before)
        return x + ctl[..., 3] * (comb - x)
