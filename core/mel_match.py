"""Mel matching: a streaming spectral post-filter that gives the vocoder's audio the mel it
was asked for.

The vocoder is given a log-mel frame and misses it: on held-out notes its partials come out
up to 10-15 dB off and its level several dB low (log-mel L1 0.25 against the input, where
Griffin-Lim is 0.11). This filter closes that loop at run time. Each ``core.mel.LogMel``
frame of the vocoder's audio (Hann window ``n_fft``; frame ``k`` covers samples
``[k*hop - (n_fft-hop)/2, k*hop + (n_fft+hop)/2)``) is analysed, its mel energies are
compared with the requested frame's, and every FFT bin is scaled by the geometric mean of
the gains of the bands it feeds (weighted by the filterbank, normalised per bin). A band is
cut by at most ``max_cut_db`` (24) and lifted by at most ``max_boost_db`` (12): lifted
further, the generator's blurred mel between the partials of a note came out as noise (a
rendered A3 then read an octave low by YIN; held-out copy synthesis gains 0.015 in MR-STFT
from lifts up to 24 dB). Weighted overlap-add resynthesises the frames with the
vocoder's own phase. The fine structure inside a band (harmonic peaks and valleys) stays
the vocoder's; the energy of each band becomes the mel's.

Streaming: ``forward(audio, mel)`` takes the next ``n`` vocoder blocks ``Tensor[B x n*hop]``
and the ``n`` log10-mel frames ``Tensor[B x n_mels x n]`` they were made from, and returns
``n*hop`` samples (float32; computed in float64 except on MPS) that lag the input by
:attr:`MelMatch.delay` samples: a frame can only be analysed once the audio up to its window's end has arrived (``lookahead`` frames), and
a sample is final once the last window over it has been added. At the MelGAN sizes (n_fft
1024, hop 256) and a vocoder without look-ahead that is 2 frames + 384 samples = 896
samples (40.6 ms at 22050 Hz). The stream starts from zeros (no reflect padding), so any
chunking gives the output of one whole call.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .mel import MelConfig, frame_window, mel_filterbank


MODES = ("full", "low-latency", "off")


def mel_matcher(mode: str, mel: MelConfig, audio_delay: int) -> "MelMatch | None":
    """The filter for a mode of :data:`MODES`: "full", "low-latency" (``low_latency``) or
    "off" (None)."""
    if mode not in MODES:
        raise ValueError(f"mel matching mode must be one of {', '.join(MODES)}; got {mode!r}")
    return None if mode == "off" else MelMatch(mel, audio_delay, low_latency=mode == "low-latency")


class MelMatch(nn.Module):
    """``audio_delay``: samples by which the audio stream lags the mel frames (the vocoder's
    :attr:`~core.vocoders.Vocoder.delay`).

    ``low_latency``: measure each frame as above, but apply its gains to the last ``2*hop``
    samples of its window only (square-root Hann frames, ``2*hop`` long, every ``hop``,
    which add up to one), so a sample is final as soon as the newest frame over it has
    been measured: 384 samples (17.4 ms) of delay instead of 896 at the MelGAN sizes. The
    gains then act up to a hop after the middle of the window they were measured on."""

    is_stream_state = True
    state_attrs = (("_cache", 0), ("_tail", 0), ("_mel", 0), ("_mel_seen", 0))

    def __init__(self, mel: MelConfig = MelConfig(), audio_delay: int = 0, max_cut_db: float = 24.0,
                 max_boost_db: float = 12.0, low_latency: bool = False):
        super().__init__()
        c = self.config = mel
        if c.hop > c.n_fft or audio_delay < 0:
            raise ValueError("mel matching needs hop <= n_fft and a non-negative audio delay")
        # synthesis frames: the whole analysis window, or its last 2 hops
        self.synth_len = 2 * c.hop if low_latency else c.n_fft
        if low_latency and c.n_fft % self.synth_len:
            raise ValueError("low-latency mel matching needs n_fft a multiple of 2 * hop")
        self.audio_delay = audio_delay
        self.max_log_cut = max_cut_db / 20 * math.log(10)
        self.max_log_boost = max_boost_db / 20 * math.log(10)
        pad = (c.n_fft - c.hop) // 2
        # frame k is analysed once the block holding its window's last sample has arrived
        self.lookahead = math.ceil((c.n_fft - pad + audio_delay) / c.hop) - 1
        self.cache_len = (self.lookahead + 1) * c.hop + pad - audio_delay - c.hop
        w = frame_window(c)
        fb = torch.from_numpy(mel_filterbank(c.sample_rate, c.n_fft, c.n_mels, c.fmin, c.fmax))
        self.register_buffer("window", w, persistent=False)
        self.register_buffer("fb_t", fb.T.contiguous(), persistent=False)                 # bins x mels
        self.register_buffer("spread", (fb / fb.sum(0, keepdim=True).clamp_min(1e-12)), persistent=False)  # mels x bins
        sw = torch.hann_window(self.synth_len) ** 0.5 if low_latency else w
        self.register_buffer("synth_window", sw, persistent=False)
        # weighted overlap-add with the synthesis window again: its squares over the frames
        # that cover a sample sum to this constant
        n = self.synth_len
        env = torch.zeros(2 * n)
        for s in range(0, n, c.hop):
            env[s:s + n] += sw ** 2
        self.ola_norm = float(env[n - c.hop:n].mean())
        self._cache: torch.Tensor | None = None
        self._tail: torch.Tensor | None = None
        self._mel: torch.Tensor | None = None        # the last ``lookahead`` mel frames, B x L x mels
        self._mel_seen: torch.Tensor | None = None   # 1 where that frame exists, 0 before the start, B x L

    @property
    def delay(self) -> int:
        """Samples by which the output lags the input audio stream."""
        c = self.config
        return self.lookahead * c.hop + (c.n_fft - c.hop) // 2 - self.audio_delay - (c.n_fft - self.synth_len)

    def _constants(self, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """Window, filterbank and its spread in ``dtype`` on the buffers' device, made once."""
        key = (dtype, self.window.device)
        if getattr(self, "_consts_key", None) != key:
            self._consts = tuple(t.to(dtype) for t in (self.window, self.fb_t, self.spread, self.synth_window))
            self._consts_key = key
        return self._consts

    def reset(self) -> None:
        self._cache = self._tail = self._mel = self._mel_seen = None

    def forward(self, audio: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """``audio: Tensor[B x n*hop]``, ``mel: Tensor[B x n_mels x n]`` (log10, as
        ``LogMel`` gives) -> ``Tensor[B x n*hop]`` (float32)."""
        c = self.config
        b, n = mel.shape[0], mel.shape[2]
        if audio.shape != (b, n * c.hop):
            raise ValueError(f"expected audio [{b} x {n * c.hop}] for {n} mel frames, got {list(audio.shape)}")
        # float64 where the device has it: float32 rounding in the FFTs and products differs
        # with the chunk size, and the gains amplify it past 1e-5
        dtype = torch.float32 if audio.device.type == "mps" else torch.float64
        audio = audio.to(dtype)
        # the frame analysed now is the one ``lookahead`` frames back; before the stream's
        # first frame there is none (seen 0: those frames, which overlap its start, pass
        # unchanged). Zeros mean "not seen", so rows that BatchSubset creates start right.
        pending, seen = self._mel, self._mel_seen
        if pending is None or pending.shape[0] != b:
            pending = audio.new_zeros(b, self.lookahead, c.n_mels)
            seen = audio.new_zeros(b, self.lookahead)
        target = torch.cat((pending, mel.to(dtype).transpose(1, 2)), 1)
        seen = torch.cat((seen, audio.new_ones(b, n)), 1)
        self._mel, self._mel_seen = target[:, n:], seen[:, n:]
        target, seen = target[:, :n], seen[:, :n]                                         # B x n (x mels)
        cache = self._cache
        if cache is None or cache.shape[0] != b:
            cache = audio.new_zeros(b, self.cache_len)
        x = torch.cat((cache, audio), 1)
        self._cache = x[:, x.shape[1] - self.cache_len:]
        window, fb_t, spread, synth_window = self._constants(dtype)
        raw = x.unfold(1, c.n_fft, c.hop)[:, :n]                                       # B x n x n_fft
        spec = torch.fft.rfft(raw * window)                                              # B x n x bins
        have = torch.log10((spec.abs() @ fb_t).clamp_min(c.log_floor))            # B x n x mels
        log_gain = ((target - have) * math.log(10)).clamp(-self.max_log_cut, self.max_log_boost) * seen[:, :, None]
        gain = torch.exp(log_gain @ spread)                                              # B x n x bins
        m = self.synth_len
        if m < c.n_fft:      # the window's last m samples, at the m-point FFT's bins (every k-th)
            spec = torch.fft.rfft(raw[..., c.n_fft - m:] * synth_window)
            gain = gain[..., ::c.n_fft // m]
        out = torch.fft.irfft(spec * gain, n=m) * synth_window
        # overlap-add: frame i starts at i*hop; the first n*hop samples are final
        length = (n - 1) * c.hop + m
        y = F.fold(out.transpose(1, 2), (1, length), (1, m), stride=(1, c.hop)).view(b, length)
        tail = self._tail
        if tail is not None and tail.shape[0] == b:
            y[:, :tail.shape[1]] += tail
        self._tail = y[:, n * c.hop:]
        return (y[:, :n * c.hop] / self.ola_norm).float()
