"""Mel matching: a streaming spectral post-filter that gives the vocoder's audio the mel it
was asked for.

The vocoder is given a log-mel frame and misses it: on held-out notes its partials and its
level come out several dB off (docs/measurements.md). This filter closes that loop at run time. Each ``core.mel.LogMel``
frame of the vocoder's audio (Hann window ``n_fft``; frame ``k`` covers samples
``[k*hop - (n_fft-hop)/2, k*hop + (n_fft+hop)/2)``) is analysed, its mel energies are
compared with the requested frame's, and every FFT bin is scaled by the geometric mean of
the gains of the bands it feeds (weighted by the filterbank, normalised per bin). A band is
cut by at most ``max_cut_db`` (24) and lifted by at most ``max_boost_db`` (12): lifted
further, the generator's blurred mel between the partials of a note comes out as noise
(docs/history.md). Weighted overlap-add resynthesises the frames with the
vocoder's own phase. The fine structure inside a band (harmonic peaks and valleys) stays
the vocoder's; the energy of each band becomes the mel's.

Given each frame's f0 (``forward(audio, mel, f0)``), a band that holds no partial of it (no
multiple of f0 between the band's lower and upper edge: below the fundamental, and between
the partials of a note whose partials lie further apart than the band is wide) is cut but
never lifted: what a generator's mel asks for there is the blur between partials, and
lifting it plays that blur as noise (docs/default-model.md "Mel matching between partials":
`render --midi` of held-out phrases, HNR gap -2.2 -> +0.6 dB; tests/test_mel_match.py).
Without f0 (or on an unvoiced frame, f0 0) every band is matched, as copy synthesis of a real
mel wants.

Streaming: ``forward(audio, mel, f0=None)`` takes the next ``n`` vocoder blocks ``Tensor[B x
n*hop]``, the ``n`` log10-mel frames ``Tensor[B x n_mels x n]`` they were made from (and their
f0 ``Tensor[B x n]``, Hz), and returns
``n*hop`` samples (float32, computed in float32) that lag the input by
:attr:`MelMatch.delay` samples: a frame can only be analysed once the audio up to its window's end has arrived (``lookahead`` frames), and
a sample is final once the last window over it has been added. At the MelGAN sizes (n_fft
1024, hop 256) and a vocoder without look-ahead that is 2 frames + 384 samples = 896
samples (40.6 ms at 22050 Hz). The stream starts from zeros (no reflect padding), so any
chunking gives the output of one whole call.

"zero-latency" (:class:`CausalMelMatch`) measures the same frames but shapes the audio that
arrives now with them, updated by a short window over the newest audio, through a
minimum-phase filter: delay 0. Held-out copy synthesis, off / zero-latency / low-latency /
full, and each mode's compute time per step: benchmarks/mel_match_modes.py.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .mel import MelConfig, frame_window, mel_band_edges, mel_filterbank


MODES = ("full", "low-latency", "zero-latency", "off")
# core.synth.Synth hands mel matching each voice's f0 (with a vocoder that takes f0), so bands
# between partials are only cut, while this is on (read when a Synth is made); off: every band matched
# (benchmarks/midi_render_quality.py --match-between-partials, the baseline). Copy synthesis
# (core.resynth) plays a real mel, which is no blur, and matches every band
CUT_ONLY_BETWEEN_PARTIALS = True


def mel_matcher(mode: str, mel: MelConfig, audio_delay: int) -> "MelMatch | None":
    """The filter for a mode of :data:`MODES`: "full", "low-latency" (``low_latency``),
    "zero-latency" (:class:`CausalMelMatch`) or "off" (None)."""
    if mode not in MODES:
        raise ValueError(f"mel matching mode must be one of {', '.join(MODES)}; got {mode!r}")
    if mode == "off":
        return None
    if mode == "zero-latency":
        return CausalMelMatch(mel, audio_delay)
    return MelMatch(mel, audio_delay, low_latency=mode == "low-latency")


class MelMatch(nn.Module):
    """``audio_delay``: samples by which the audio stream lags the mel frames (the vocoder's
    :attr:`~core.vocoders.Vocoder.delay`).

    ``low_latency``: measure each frame as above, but apply its gains to the last ``2*hop``
    samples of its window only (square-root Hann frames, ``2*hop`` long, every ``hop``,
    which add up to one), so a sample is final as soon as the newest frame over it has
    been measured: 384 samples (17.4 ms) of delay instead of 896 at the MelGAN sizes. The
    gains then act up to a hop after the middle of the window they were measured on."""

    is_stream_state = True
    state_attrs = (("_cache", 0), ("_tail", 0), ("_mel", 0), ("_mel_seen", 0), ("_f0", 0))

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
        edges = torch.from_numpy(mel_band_edges(c.sample_rate, c.n_mels, c.fmin, c.fmax)).float()
        self.register_buffer("band_edges", torch.stack((edges[:-2], edges[2:])), persistent=False)  # 2 x mels, Hz
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
        self._f0: torch.Tensor | None = None         # those frames' f0 (0: none given), B x L

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
        self._cache = self._tail = self._mel = self._mel_seen = self._f0 = None

    def _working_dtype(self, audio: torch.Tensor) -> torch.dtype:
        # float32: close to float64's output and a 1-frame step of 4 rows faster, in every
        # mode (benchmarks/results/mel_match_modes.json, step_time_1_frame_4_rows); chunked ==
        # whole within 1e-5 (test_chunked_equals_whole)
        return torch.float32

    def _targets(self, mel: torch.Tensor, dtype: torch.dtype, keep: int, f0: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The last ``keep`` requested frames before this call's, then this call's:
        (``Tensor[B x (keep+n) x n_mels]`` log10, ``Tensor[B x (keep+n)]`` 1 where that frame
        exists, 0 before the stream's first, ``Tensor[B x (keep+n)]`` their f0, 0 where none
        was given). Zeros mean "not seen" and "no f0", so rows that BatchSubset creates start
        right."""
        b, n = mel.shape[0], mel.shape[2]
        pending, seen, pitch = self._mel, self._mel_seen, self._f0
        if pending is None or pending.shape[0] != b:
            pending = mel.new_zeros(b, keep, self.config.n_mels, dtype=dtype)
            seen = mel.new_zeros(b, keep, dtype=dtype)
            pitch = mel.new_zeros(b, keep, dtype=dtype)
        target = torch.cat((pending, mel.to(dtype).transpose(1, 2)), 1)
        seen = torch.cat((seen, seen.new_ones(b, n)), 1)
        now = seen.new_zeros(b, n) if f0 is None else f0.to(dtype).clamp_min(0.0)
        pitch = torch.cat((pitch, now), 1)
        self._mel, self._mel_seen, self._f0 = target[:, n:], seen[:, n:], pitch[:, n:]
        return target, seen, pitch

    def _without_partials(self, f0: torch.Tensor) -> torch.Tensor:
        """The bands that hold no multiple of each frame's f0 between their edges, ``Tensor[B x
        n x n_mels]`` (1: none, so the band is only cut; 0: matched), from f0 ``Tensor[B x n]``
        (Hz; 0: every band matched)."""
        lo, hi = self.band_edges.to(f0.dtype)
        f = f0[..., None]
        voiced = f > 0
        f = torch.where(voiced, f, torch.ones_like(f))
        return (voiced & (torch.ceil(lo / f).clamp_min(1.0) > torch.floor(hi / f))).to(f0.dtype)

    def _history(self, audio: torch.Tensor, length: int) -> torch.Tensor:
        """The last ``length`` input samples before this call's, then this call's:
        ``Tensor[B x (length + n*hop)]`` (zeros before the stream's start)."""
        cache = self._cache
        if cache is None or cache.shape[0] != audio.shape[0]:
            cache = audio.new_zeros(audio.shape[0], length)
        x = torch.cat((cache, audio), 1)
        self._cache = x[:, x.shape[1] - length:]
        return x

    def _log_gains(self, spec: torch.Tensor, target: torch.Tensor, seen: torch.Tensor,
                   cut_only: torch.Tensor) -> torch.Tensor:
        """``spec: Tensor[B x n x bins]``, the analysis frames' spectra of the vocoder's audio,
        ``target: Tensor[B x n x n_mels]`` (log10) -> each band's gain towards the target,
        natural log, clamped to the cut and boost limits (no boost where ``cut_only`` is 1),
        0 where ``seen`` is 0: ``Tensor[B x n x n_mels]``."""
        return self._clamped(target - self._band_levels(spec), seen, cut_only)

    def _band_levels(self, spec: torch.Tensor) -> torch.Tensor:
        """``spec: Tensor[B x n x bins]`` -> log10 mel band magnitudes ``Tensor[B x n x n_mels]``."""
        fb_t = self._constants(spec.real.dtype)[1]
        return torch.log10((spec.abs() @ fb_t).clamp_min(self.config.log_floor))

    def _clamped(self, log10_gain: torch.Tensor, seen: torch.Tensor, cut_only: torch.Tensor) -> torch.Tensor:
        """log10 band gains ``Tensor[B x n x n_mels]`` -> natural log, clamped to the cut and
        boost limits, no boost where ``cut_only`` (``Tensor[B x n x n_mels]``) is 1, 0 where
        ``seen`` (``Tensor[B x n]``) is 0."""
        g = (log10_gain * math.log(10)).clamp(-self.max_log_cut, self.max_log_boost)
        return (g - cut_only * g.clamp_min(0.0)) * seen[:, :, None]

    def forward(self, audio: torch.Tensor, mel: torch.Tensor, f0: torch.Tensor | None = None) -> torch.Tensor:
        """``audio: Tensor[B x n*hop]``, ``mel: Tensor[B x n_mels x n]`` (log10, as
        ``LogMel`` gives), ``f0: Tensor[B x n]`` (Hz) or None -> ``Tensor[B x n*hop]`` (float32)."""
        c = self.config
        b, n = mel.shape[0], mel.shape[2]
        if audio.shape != (b, n * c.hop):
            raise ValueError(f"expected audio [{b} x {n * c.hop}] for {n} mel frames, got {list(audio.shape)}")
        dtype = self._working_dtype(audio)
        audio = audio.to(dtype)
        # the frame analysed now is the one ``lookahead`` frames back; before the stream's
        # first frame there is none (seen 0: those frames, which overlap its start, pass
        # unchanged)
        target, seen, pitch = self._targets(mel, dtype, self.lookahead, f0)
        target, seen, pitch = target[:, :n], seen[:, :n], pitch[:, :n]                   # B x n (x mels)
        x = self._history(audio, self.cache_len)
        window, _, spread, synth_window = self._constants(dtype)
        raw = x.unfold(1, c.n_fft, c.hop)[:, :n]                                       # B x n x n_fft
        spec = torch.fft.rfft(raw * window)                                              # B x n x bins
        gain = torch.exp(self._log_gains(spec, target, seen, self._without_partials(pitch)) @ spread)  # B x n x bins
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


class CausalMelMatch(MelMatch):
    """Mel matching with no look-ahead ("zero-latency"; ``output_delay`` samples of it if
    asked). The last frame whose window has wholly arrived (``lookahead`` frames back, as
    :class:`MelMatch` measures it) gives the vocoder's band levels then; a short Hann window
    (``short_len`` samples) that ends at the newest block's last sample, against the same
    short window ``lookahead`` blocks earlier, gives how those levels changed since. Their sum
    estimates the band levels of the newest block, and the gain is the requested frame of
    that block against it:

        gain(j) = want(j) - [have(j - L) + short(j) - short(j - L)]      (log10, per band)

    A steady error (the vocoder's per-note tilt and level) is in ``have(j - L)``; the short
    window tracks what changed in the last ``L`` frames (2 frames, 23 ms, at audio delay 0).
    A band whose level rose by more than ``guard_db[0]`` dB since the measured frame, in
    the request or in the short window (an onset: the measured frame is the silence before
    it, or half of it), has its gain faded to unity, fully at ``guard_db[1]``: gains
    measured on silence neither boost nor mute an attack (without this, a clean attack came
    out +7 dB, then -24 dB; test_an_onset_is_neither_boosted_nor_muted). Clamped as
    :class:`MelMatch`. A steady aperiodic signal's short-window levels fluctuate from block
    to block (noise, beating partials), so a steady error is removed less exactly than by
    :class:`MelMatch` (test_a_steady_tilt_is_removed); a signal that repeats every
    ``short_back`` hops (the blocks between the two short windows: ``L``, less the frames
    of the vocoder's look-ahead) passes exactly.

    The gains shape the audio through a minimum-phase filter (``n_fft`` taps, from the
    real cepstrum of the gain curve at ``conv_len = n_fft + hop`` points), applied by
    overlap-save convolution to each block as it arrives; each block crossfades linearly
    from the last block's filter to its own, so the filter changes without clicks.
    :attr:`delay` is ``output_delay``: 0 by default. Frames before the stream's start
    (``seen`` 0) give unity gain, as in :class:`MelMatch`.

    On held-out copy synthesis (benchmarks/results/mel_match_modes.json) it keeps about
    three quarters of what full mel matching gains in log-mel L1 and MR-STFT, as much as
    the low-latency mode; 110 samples of ``output_delay`` (5 ms, the gains 110 samples
    nearer the frames they were measured on) gain a little more."""

    state_attrs = MelMatch.state_attrs + (("_short", 0), ("_fir_prev", 0))

    def __init__(self, mel: MelConfig = MelConfig(), audio_delay: int = 0, max_cut_db: float = 24.0,
                 max_boost_db: float = 12.0, output_delay: int = 0, short_len: int = 384,
                 guard_db: tuple[float, float] = (6.0, 12.0), max_quefrency: int = 384):
        super().__init__(mel, audio_delay, max_cut_db, max_boost_db)
        c = self.config
        if not (0 <= output_delay <= c.hop and c.hop <= short_len <= c.n_fft and 0 <= guard_db[0] < guard_db[1]
                and 0 < max_quefrency <= (c.n_fft + c.hop) // 2):
            raise ValueError("causal mel matching needs 0 <= output_delay <= hop, hop <= short_len <= n_fft, "
                             "0 <= guard_db[0] < guard_db[1] and 0 < max_quefrency <= (n_fft + hop) / 2")
        self.output_delay = output_delay
        self.guard = (guard_db[0] / 20, guard_db[1] / 20)                 # log10 magnitude
        self.fir_len, self.conv_len = c.n_fft, c.n_fft + c.hop           # overlap-save: taps + one block
        self.history_len = max(self.cache_len, self.fir_len + output_delay, c.n_fft - c.hop)
        # the newest block holds the audio of the frame ``audio_delay / hop`` back
        self.block_frame_back = min(self.lookahead, round(audio_delay / c.hop))
        self.short_back = self.lookahead - self.block_frame_back          # blocks between short windows
        # the short window, at the end of an n_fft segment that ends with the block
        self.register_buffer("short_window", F.pad(torch.hann_window(short_len), (c.n_fft - short_len, 0)),
                             persistent=False)
        # the filter's magnitudes at the conv_len bins: each bin the weighted mean of its bands
        fb = torch.from_numpy(mel_filterbank(c.sample_rate, self.conv_len, c.n_mels, c.fmin, c.fmax))
        self.register_buffer("spread_conv", fb / fb.sum(0, keepdim=True).clamp_min(1e-12), persistent=False)
        fold = torch.zeros(self.conv_len)                  # real cepstrum -> minimum phase, cut at max_quefrency
        fold[0] = 1.0
        fold[1:max_quefrency] = 2.0
        self.register_buffer("fold", fold, persistent=False)
        ramp = torch.arange(1, c.hop + 1) / c.hop          # crossfade: last block's filter -> this block's
        self.register_buffer("crossfade", torch.stack((1 - ramp, ramp)), persistent=False)     # 2 x hop
        self._short: torch.Tensor | None = None     # short-window levels of the last blocks, B x short_back x mels
        self._fir_prev: torch.Tensor | None = None  # the last block's filter spectrum minus 1 (0: unity), B x bins

    @property
    def delay(self) -> int:
        return self.output_delay

    def reset(self) -> None:
        super().reset()
        self._short = self._fir_prev = None

    def _causal_constants(self, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        key = (dtype, self.window.device)
        if getattr(self, "_causal_key", None) != key:
            windows = torch.stack((self.window, self.short_window))                # 2 x n_fft
            self._causal = tuple(t.to(dtype) for t in (windows, self.spread_conv, self.fold, self.crossfade))
            self._causal_key = key
        return self._causal

    def _min_phase(self, log_gain: torch.Tensor, fold: torch.Tensor) -> torch.Tensor:
        """Natural-log magnitudes at the ``conv_len`` bins ``Tensor[... x bins]`` -> the
        spectrum of the minimum-phase filter with them, complex, same shape: the real
        cepstrum folded onto positive quefrencies and cut at ``max_quefrency`` (384 samples:
        the magnitudes smoothed to about 57 Hz, the width of the lowest mel bands). Cut there,
        the taps past ``fir_len``, which overlap-save would wrap onto the block, stay below
        -33 dB of its energy for random band gains within the clamp
        (test_the_filter_is_minimum_phase_and_short)."""
        log_spec = torch.fft.rfft(torch.fft.irfft(log_gain, n=self.conv_len) * fold)
        return torch.polar(torch.exp(log_spec.real), log_spec.imag)        # exp(log_spec): faster

    def forward(self, audio: torch.Tensor, mel: torch.Tensor, f0: torch.Tensor | None = None) -> torch.Tensor:
        """``audio: Tensor[B x n*hop]``, ``mel: Tensor[B x n_mels x n]`` (log10), ``f0:
        Tensor[B x n]`` (Hz) or None -> ``Tensor[B x n*hop]`` (float32), :attr:`delay` samples
        behind ``audio``."""
        c = self.config
        b, n = mel.shape[0], mel.shape[2]
        if audio.shape != (b, n * c.hop):
            raise ValueError(f"expected audio [{b} x {n * c.hop}] for {n} mel frames, got {list(audio.shape)}")
        dtype = self._working_dtype(audio)
        windows, spread, fold, crossfade = self._causal_constants(dtype)
        L, h = self.lookahead, self.history_len
        target, seen, pitch = self._targets(mel, dtype, L, f0)        # frames j-L .. j of each block j
        measured, seen = target[:, :n], seen[:, :n]
        now = slice(L - self.block_frame_back, L - self.block_frame_back + n)
        want, pitch = target[:, now], pitch[:, now]
        x = self._history(audio.to(dtype), h)
        # frame j-L's window, and the n_fft samples that end with block j (short window)
        frames = torch.stack((x[:, h - self.cache_len:].unfold(1, c.n_fft, c.hop)[:, :n],
                              x[:, h + c.hop - c.n_fft:].unfold(1, c.n_fft, c.hop)[:, :n]), 2)
        have, short = self._band_levels(torch.fft.rfft(frames * windows)).unbind(2)    # B x n x mels
        then = self._short
        if then is None or then.shape[0] != b:
            then = short.new_zeros(b, self.short_back, c.n_mels)
        then = torch.cat((then, short), 1)
        self._short = then[:, n:]
        change = short - then[:, :n]                          # short(j) - short(j - short_back)
        lo, hi = self.guard
        onset = ((hi - torch.maximum(want - measured, change)) / (hi - lo)).clamp(0, 1)   # 0: unity gain
        gains = self._clamped(want - have - change, seen, self._without_partials(pitch))
        fir = self._min_phase((gains * onset) @ spread, fold)
        prev = self._fir_prev
        if prev is None or prev.shape[0] != b:
            prev = fir.new_zeros(b, fir.shape[2])
        self._fir_prev = fir[:, -1] - 1
        firs = torch.stack((torch.cat((prev[:, None] + 1, fir[:, :-1]), 1), fir), 2)      # B x n x 2 x bins
        # overlap-save: each block with the fir_len samples before it; its last hop are exact
        start = h - self.output_delay - self.fir_len
        seg = torch.fft.rfft(x[:, start:start + (n - 1) * c.hop + self.conv_len].unfold(1, self.conv_len, c.hop))
        y = torch.fft.irfft(seg[:, :, None] * firs, n=self.conv_len)[..., self.fir_len:]
        return (y * crossfade).sum(2).reshape(b, n * c.hop).float()
