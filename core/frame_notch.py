"""Frame-rate notch: takes out what a vocoder's audio repeats every hop.

A deterministic upsampling vocoder plays a steady mel as a waveform that repeats every
``hop`` samples (the tonal artefacts of transposed-convolution upsamplers, Pons et al.
2021): lines at every multiple of the frame rate ``sample_rate / hop`` (86.1 Hz at 22050 /
256), a buzz under every note (``training/quality.py`` ``frame_rate_buzz``; the shipped
vocoder reads 12-14 dB, real audio 0.2; docs/default-model.md "Frame-rate buzz"). The
repeating part is estimated as a running mean of the hop-long blocks before the current one
and taken off::

    m[n] = (1 - a) m[n - hop] + a x[n - hop]
    y[n] = x[n] - m[n]

which is the comb notch ``H(z) = (1 - z^-hop) / (1 - (1 - a) z^-hop)``: zero at DC and at
every multiple of the frame rate, ``2 / (2 - a)`` (+0.9 dB at the default ``a``) halfway
between them, each notch ``a / (2 pi sqrt(1 - a))`` frame rates wide at -3 dB (3.1 Hz at
the default and 86.1 Hz). Partials inside a notch are cut with it; anything that does not
repeat every hop passes within the ripple. No latency (:attr:`FrameRateNotch.delay` is 0).

The running mean remembers: a sound that stops would ring on as ``-m``, an echo every hop
fading by ``1 - a`` (2 dB) a hop, into the silence after a note or under the next one. What
repeats is a property of the mel being played, so the mean is kept only while the mel holds
still and sounds: each frame keeps the share :meth:`FrameRateNotch.trust` of it, 1 for a held
note, 0 where the mel moved by more than :data:`MOVED_FLUX` (an onset, a release) and where
silence is asked for, and the subtracted mean fades to that share across the block, so
dropping it never clicks.

Streaming: ``forward(audio, logmel)`` takes the next ``n`` blocks ``Tensor[B x n*hop]`` and
the ``n`` mel frames the vocoder played; the state is the running mean ``Tensor[B x hop]``,
the last mel frame and (with a lag) the per-sample trust the audio has not reached yet, so any
chunking in whole hops gives the samples of one whole call, and audio that lags its frames by
any number of samples is notched as the same audio unlagged (``tests/test_frame_notch.py``).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .mel import asks_for_silence
from .streaming import frame_ramp, keep_state

# a, the share of each new block in the running mean: buzz in render --midi 14.3 -> 2.8 dB
# (docs/default-model.md "Frame-rate notch"; benchmarks/results/midi_render_quality_notch.json)
DEFAULT_RATE = 0.2
# the rate core.synth.Synth and core.resynth.resynthesize build their notch with when made;
# 0: no notch (benchmarks/midi_render_quality.py --frame-notch 0, the baseline)
RATE = DEFAULT_RATE
# mean change of the log10 mel from one frame to the next (every band's |difference|, averaged):
# under STEADY_FLUX the running mean is kept whole, from MOVED_FLUX up it is dropped. A held
# note changes by 0.05 (median) and 0.19 (99th percentile) in render --midi of the held-out
# phrases; a note's start and end in silence by 1 and more
STEADY_FLUX = 0.2
MOVED_FLUX = 0.5


class FrameRateNotch(nn.Module):
    """The notch of the module docstring for ``hop``-sample frames; ``rate``: ``a``, 0 < a <= 1.
    ``lag``: samples by which the audio given lags the mel frames given with it (the
    vocoder's look-ahead); ``log_floor``: the mel's floor (linear,
    :class:`core.mel.MelConfig` ``log_floor``)."""

    state_attrs = (("_mean", 0), ("_last_mel", 0), ("_lagged", 0))
    is_stream_state = True

    def __init__(self, hop: int, rate: float = DEFAULT_RATE, lag: int = 0, log_floor: float = 1e-5):
        super().__init__()
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"frame-rate notch rate must be in (0, 1], got {rate}")
        self.hop, self.rate = int(hop), float(rate)
        if lag < 0:
            raise ValueError(f"frame-rate notch lag must be at least 0, got {lag}")
        self.lag = int(lag)
        self.log_floor = float(log_floor)
        self._mean: torch.Tensor | None = None      # [B x hop] what the next block has repeated
        self._last_mel: torch.Tensor | None = None  # [B x n_mels] the last mel frame given
        self._lagged: torch.Tensor | None = None    # [B x lag x 2] controls the audio has not reached

    @property
    def delay(self) -> int:
        return 0

    def reset(self) -> None:
        self._mean = self._last_mel = self._lagged = None

    def gain_db(self, offset: float) -> float:
        """The steady response (dB) ``offset`` frame rates from a multiple of it (0: the
        notch, 0.5: halfway between two)."""
        z = complex(math.cos(2 * math.pi * offset), -math.sin(2 * math.pi * offset))
        h = (1 - z) / (1 - (1 - self.rate) * z)
        return 20 * math.log10(max(abs(h), 1e-12))

    def trust(self, logmel: torch.Tensor) -> torch.Tensor:
        """How much of the running mean each frame keeps, ``Tensor[B x n]`` in 0..1, from the
        mel ``Tensor[B x n_mels x n]`` (log10): 1 while the mean change from the frame before
        stays under :data:`STEADY_FLUX`, 0 from :data:`MOVED_FLUX` up, linear between; 0 on a
        stream's first frame and where silence is asked for (:func:`core.mel.asks_for_silence`),
        so nothing that came before (a note's end) rings into it (tests/test_silence_offset.py)."""
        mel = logmel.float()
        last = self._last_mel
        if last is None or last.shape[0] != mel.shape[0]:
            last = mel[:, :, 0]
            first_moved = True
        else:
            first_moved = False
        prev = torch.cat([last[:, :, None], mel[:, :, :-1]], 2)
        # each frame's mean over its bands, reduced along a contiguous row: the same sum in
        # the same order for any chunking (tests/test_frame_notch.py, chunked == whole)
        flux = (mel - prev).abs().transpose(1, 2).contiguous().mean(-1)                 # [B x n]
        if first_moved:     # a stream's first frame: nothing has repeated yet
            flux[:, 0] = MOVED_FLUX
        keep_state(self, "_last_mel", mel[:, :, -1])
        sounding = (~asks_for_silence(mel, self.log_floor)).float()
        return ((MOVED_FLUX - flux) / (MOVED_FLUX - STEADY_FLUX)).clamp(0.0, 1.0) * sounding

    def _controls(self, trust: torch.Tensor) -> torch.Tensor:
        """Per-sample controls ``Tensor[B x n*hop x 2]`` for the audio of this call: the trust
        ``c`` of the frame that made each sample and ``1 - r``, ``r`` the sample's place in
        that frame (``1/hop .. 1``), both delayed by :attr:`lag` samples. Before a stream's
        first frame both are 0 (no trust, the fade done), so a row of zero state (what
        :class:`core.streaming.BatchSubset` gives a row it never stepped) is a fresh row."""
        b, n = trust.shape
        ramp = frame_ramp(self.hop, trust.device)
        ctl = torch.stack([trust[..., None].expand(b, n, self.hop), (1.0 - ramp).expand(b, n, self.hop)], -1)
        ctl = ctl.reshape(b, n * self.hop, 2)
        if not self.lag:
            return ctl
        lagged = self._lagged
        if lagged is None or lagged.shape[0] != b:
            lagged = trust.new_zeros(b, self.lag, 2)
        both = torch.cat([lagged, ctl], 1)
        keep_state(self, "_lagged", both[:, both.shape[1] - self.lag:])
        return both[:, :n * self.hop]

    def forward(self, audio: torch.Tensor, logmel: torch.Tensor) -> torch.Tensor:
        """``audio Tensor[B x n*hop]`` and the mel frames that made it ``Tensor[B x n_mels x
        n]`` (log10) -> ``Tensor[B x n*hop]`` float32.

        Block ``k`` of the call: ``y = x - m (1 + (c - 1) r)``, then ``m = (1 - a) c m + a x``,
        with ``c`` the trust and ``r`` the place in its frame of each sample (so the mean fades
        to ``c`` across the frame that moved, and a lag that is not a whole number of hops
        lands each frame's trust on the samples it made)."""
        x = audio.float()
        b = x.shape[0]
        blocks = x.view(b, -1, self.hop)
        n = blocks.shape[1]
        m = self._mean
        if m is None or m.shape[0] != b:
            m = x.new_zeros(b, self.hop)
        out = torch.empty_like(blocks)
        ctl = self._controls(self.trust(logmel)).view(b, n, self.hop, 2)
        for k in range(n):
            block, c, r = blocks[:, k], ctl[:, k, :, 0], 1.0 - ctl[:, k, :, 1]
            out[:, k] = block - m * (1.0 + (c - 1.0) * r)
            m = c * m
            m = m + self.rate * (block - m)
        keep_state(self, "_mean", m)
        return out.view(b, -1)
