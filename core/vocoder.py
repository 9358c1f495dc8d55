"""MelGAN vocoder (Kumar et al. 2019), streamed with cached convolutions.

The module tree mirrors the reference ``Generator.model`` (an ``nn.Sequential``) index for
index, so a reference checkpoint loads once its weight norm is folded
(:func:`fold_weight_norm`): first conv ``model.1``, transposed convs ``model.3/8/13/18``,
residual blocks ``model.4-6, 9-11, 14-16, 19-21`` (``block.2``, ``block.4``, ``shortcut``),
last conv ``model.24``. The reference's ReflectionPad layers become ``nn.Identity``
placeholders: padding is the cache of the next conv.

Input: log10 mel ``Tensor[B x 80 x T]`` (frames at 22050/256 Hz).
Output: audio ``Tensor[B x T * hop]`` (in [-1, 1] for one band) where ``hop = prod(ratios) = 256``.

Multi-band (``bands`` > 1, multi-band MelGAN, Yang et al. 2020): the last conv gives
``bands`` sub-band signals at ``sr / bands`` (``prod(ratios) * bands = hop``, e.g. ratios
(8, 4, 2) with 4 bands), which :class:`core.pqmf.PQMFSynthesis` turns into audio; about a
quarter of the upsampling stack's work per sample, and 31 samples (1.4 ms) of look-ahead
from the synthesis filters even when the stack is causal.

Harmonic excitation (``harmonics`` = H > 0, an extension, off in the paper's model): a
convolutional upsampler fed a steady mel (a held note) can only repeat itself every hop,
so its output is periodic at the frame rate (86.1 Hz at 22050/256) whatever the note (every
spectral peak of a vocoded C3 without excitation lies on a multiple of 86.1 Hz). With
``f0`` per frame, :class:`HarmonicSource` adds sample-rate sines ``sin(k phi)``, k = 1..H,
whose phase runs on across chunks, to the last upsampling stage through a learned
projection gated by the features (``x + P(e) * (1 + G(x))``), as source-filter neural
vocoders do (NSF, SiFi-GAN). ``f0`` comes from the requested pitch in the instrument and
from a pitch tracker for copy synthesis; 0 = unvoiced (no sines).

Non-causal (default, reference-compatible): the output for any chunking equals the
reference output delayed by :attr:`MelGANVocoder.delay` samples (1425 at paper sizes:
64.6 ms of look-ahead), except near the very start where the reference reflect-pads and
the stream sees zeros. Causal (``causal=True``): no look-ahead, for models trained so.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .config import DictConfig
from .pqmf import PQMFSynthesis
from .streaming import CachedConv1d, CachedConvTranspose1d, DelayLine, _PreparedWeight, keep_state, reset_streams


@dataclass(frozen=True)
class VocoderConfig(DictConfig):
    n_mels: int = 80
    ngf: int = 32
    n_residual_layers: int = 3
    ratios: tuple[int, ...] = (8, 8, 2, 2)
    causal: bool = False
    bands: int = 1
    harmonics: int = 0
    sample_rate: int = 22050


class ResnetBlock(nn.Module):
    """``shortcut(x) + block(x)``; the shortcut is delayed to match the block's look-ahead."""

    def __init__(self, dim: int, dilation: int, causal: bool):
        super().__init__()
        self.block = nn.Sequential(
            nn.LeakyReLU(0.2),
            nn.Identity(),
            CachedConv1d(dim, dim, 3, dilation=dilation, causal=causal),
            nn.LeakyReLU(0.2),
            CachedConv1d(dim, dim, 1, causal=causal),
        )
        self.shortcut = CachedConv1d(dim, dim, 1, causal=causal)
        self.align = DelayLine(self.block[2].delay)
        self._bias_sum = _PreparedWeight(torch.add)      # the 1x1 convs' biases, summed

    @property
    def delay(self) -> int:
        return self.block[2].delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # shortcut(align(x)) + conv1x1(lrelu(conv(lrelu(x)))), the layers called directly;
        # both 1x1 convs accumulate into one output (one bias, the sum of theirs)
        conv, conv1 = self.block[2], self.block[4]
        h = F.leaky_relu(conv.forward(F.leaky_relu(x, self.block[0].negative_slope)),
                         self.block[3].negative_slope, inplace=True)
        s = self.align.forward(x) if self.align.length else x
        b, t, c = h.shape
        w1, ws = conv1.weight[:, :, 0], self.shortcut.weight[:, :, 0]
        out = torch.addmm(self._bias_sum.get(conv1.bias, self.shortcut.bias), h.reshape(b * t, c), w1.t())
        return out.addmm_(s.reshape(b * t, c), ws.t()).view(b, t, -1)


class HarmonicSource(nn.Module):
    """f0 per frame ``Tensor[B x T]`` (Hz; 0 = unvoiced) -> time-major sines
    ``Tensor[B x T*hop x H]``: ``sin(k * phi[n])`` for k = 1..H, f0 held over each frame,
    zero where unvoiced or where ``k f0`` is above Nyquist.

    The phase is split into each frame's start (integrated over frames, wrapped to [0, 2 pi)
    and carried across calls in ``_phase``, so any chunking gives the same samples) plus the
    advance within the frame (at most ``2 pi f0 hop / sr`` rad, where float32 is exact to
    ~1e-5 rad). Frame starts are integrated in float64 where the device has it and in
    float32, each frame's advance wrapped first and the sum wrapped every ``BLOCK`` frames,
    where it does not (Apple's MPS): there the phase drifts from float64's by a few 1e-6 rad a
    frame (0.13 rad over ten minutes of frames of 50-2000 Hz: a frequency error of ~0.00004 Hz)."""

    state_attrs = (("_phase", 0),)
    is_stream_state = True
    BLOCK = 64

    def __init__(self, hop: int, sample_rate: int, harmonics: int):
        super().__init__()
        self.hop, self.sample_rate, self.harmonics = hop, sample_rate, harmonics
        self._phase: torch.Tensor | None = None

    def reset(self) -> None:
        self._phase = None

    @staticmethod
    def phase_dtype(device: torch.device) -> torch.dtype:
        return torch.float32 if device.type == "mps" else torch.float64

    def phase(self, f0: torch.Tensor, phase_dtype: torch.dtype | None = None) -> torch.Tensor:
        """f0 ``Tensor[B x T]`` (Hz) -> phase ``Tensor[B x T*hop]`` (rad, float32); advances the
        carried phase. ``phase_dtype`` overrides the integration dtype (tests)."""
        f = f0.float().clamp_min(0)                                                   # [B x T]
        return self._phase_of(f, phase_dtype).flatten(1)

    def _phase_of(self, f: torch.Tensor, phase_dtype: torch.dtype | None = None) -> torch.Tensor:
        """Clamped f0 ``Tensor[B x T]`` -> phase ``Tensor[B x T x hop]``; advances the carried phase."""
        two_pi = 2 * math.pi
        dt = phase_dtype or self.phase_dtype(f.device)
        advance = torch.remainder(f.to(dt) * (two_pi * self.hop / self.sample_rate), two_pi)
        start = self._phase
        if start is None or start.shape[0] != f.shape[0]:
            start = f.new_zeros(f.shape[0], dtype=dt)
        start = start.to(dt)
        blocks = []
        for i in range(0, f.shape[1], self.BLOCK):      # wrapped every BLOCK frames: float32 sums stay small
            ends = start[:, None] + torch.cumsum(advance[:, i:i + self.BLOCK], 1)
            blocks.append(torch.cat([start[:, None], ends[:, :-1]], 1))
            start = torch.remainder(ends[:, -1], two_pi)
        starts = torch.remainder(blocks[0] if len(blocks) == 1 else torch.cat(blocks, 1), two_pi)   # [B x T]
        keep_state(self, "_phase", start)
        within = f[..., None] * self._step(f.device)                                  # [B x T x hop]
        return starts.float()[..., None] + within

    def _step(self, device: torch.device) -> torch.Tensor:
        """``2 pi n / sr`` for n = 1..hop (float32), made once per device."""
        step = self.__dict__.get("_step_rad")
        if step is None or step.device != device:
            step = torch.arange(1, self.hop + 1, dtype=torch.float32, device=device) * (2 * math.pi / self.sample_rate)
            self.__dict__["_step_rad"] = step
        return step

    def forward(self, f0: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        f = f0.float().clamp_min(0)                                                   # [B x T]
        phase = self._phase_of(f)                                                     # [B x T x hop]
        k = self.__dict__.get("_k")
        if k is None or k.device != f.device:
            k = torch.arange(1, self.harmonics + 1, dtype=torch.float32, device=f.device)
            self.__dict__["_k"] = k
        fk = f[..., None] * k                                                         # [B x T x H]
        audible = ((fk > 0) & (fk < self.sample_rate / 2)).to(torch.float32)          # f0 is held over a frame
        b, t = f.shape
        out = torch.sin(phase[..., None] * k) * audible[:, :, None]                   # [B x T x hop x H]
        return out.view(b, t * self.hop, self.harmonics).to(dtype)


class MelGANVocoder(nn.Module):
    """The :class:`core.vocoders.Vocoder` registered as kind ``"melgan"``."""

    config_class = VocoderConfig

    @classmethod
    def check_config(cls, config: VocoderConfig, mel) -> None:
        """ValueError when ``config`` cannot play at the mel's (:class:`core.mel.MelConfig`)
        hop and sample rate; reads the config only (nothing is allocated)."""
        up = math.prod(config.ratios) * config.bands
        if up != mel.hop:
            raise ValueError(f"vocoder upsamples x{up} but the mel hop is {mel.hop}")
        if config.harmonics and config.sample_rate != mel.sample_rate:
            raise ValueError(f"vocoder excitation runs at {config.sample_rate} Hz but the mel at {mel.sample_rate} Hz")

    def __init__(self, config: VocoderConfig = VocoderConfig()):
        super().__init__()
        self.config = c = config
        if c.harmonics and c.bands > 1:
            raise ValueError("harmonic excitation needs a single-band vocoder")
        mult = 2 ** len(c.ratios)
        layers: list[nn.Module] = [nn.Identity(), CachedConv1d(c.n_mels, mult * c.ngf, 7, causal=c.causal)]
        for r in c.ratios:
            layers += [
                nn.LeakyReLU(0.2),
                CachedConvTranspose1d(mult * c.ngf, mult * c.ngf // 2, kernel_size=2 * r, stride=r,
                                      padding=r // 2 + r % 2, output_padding=r % 2, causal=c.causal),
            ]
            layers += [ResnetBlock(mult * c.ngf // 2, 3 ** j, c.causal) for j in range(c.n_residual_layers)]
            mult //= 2
        layers += [nn.LeakyReLU(0.2), nn.Identity(), CachedConv1d(c.ngf, c.bands, 7, causal=c.causal), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        # (index, layer) of the model without its nn.Identity placeholders, called in turn
        self._layer_list = [(i, m) for i, m in enumerate(self.model) if not isinstance(m, nn.Identity)]
        self.pqmf = PQMFSynthesis(c.bands) if c.bands > 1 else None
        self.hop = c.bands
        for r in c.ratios:
            self.hop *= r
        self.source = self.inject_at = None
        if c.harmonics:
            # after the last transposed conv (sample rate), before its residual blocks
            self.inject_at = max(i for i, m in enumerate(self.model) if isinstance(m, CachedConvTranspose1d))
            self.source = HarmonicSource(self.hop, c.sample_rate, c.harmonics)
            self.source_proj = nn.Linear(c.harmonics, c.ngf, bias=False)
            self.source_gate = nn.Linear(c.ngf, c.ngf)
            nn.init.normal_(self.source_proj.weight, 0.0, 0.1)
            nn.init.zeros_(self.source_gate.weight)
            nn.init.zeros_(self.source_gate.bias)
            self._gate_bias_1 = _PreparedWeight(lambda b: b + 1)     # the gate's bias plus 1
            # the stream at the injection point lags the reference by the layers before it
            self.source_align = DelayLine(self._delay_through(self.inject_at))

    def _delay_through(self, last: int) -> int:
        """Delay (output samples) of ``self.model[0..last]``."""
        total, rate = 0, self.hop  # rate = output samples per sample at the current layer
        for m in list(self.model)[:last + 1]:
            if isinstance(m, CachedConvTranspose1d):
                rate //= m.stride[0]
            d = getattr(m, "delay", 0)
            total += d * rate
        return total

    @property
    def delay(self) -> int:
        """Look-ahead in output samples: stream[n] == reference[n - delay]."""
        total = self._delay_through(len(self.model) - 1)
        if self.pqmf is not None:
            total += self.pqmf.delay
        return total

    @property
    def takes_f0(self) -> bool:
        """With harmonic excitation, ``forward`` uses its f0."""
        return self.source is not None

    def reset(self) -> None:
        reset_streams(self)

    def forward(self, mel: torch.Tensor, f0: torch.Tensor | None = None) -> torch.Tensor:
        """Next chunk: ``Tensor[B x n_mels x n]`` (and, with harmonics, f0 ``Tensor[B x n]``
        in Hz, 0 = unvoiced; None = all unvoiced) -> ``Tensor[B x n * hop]``."""
        x = mel.transpose(1, 2)
        y = x
        for i, m in self._layer_list:    # the Sequential's layers called directly (no per-layer dispatch)
            y = m.forward(y)
            if i == self.inject_at:
                if f0 is None:
                    f0 = mel.new_zeros(mel.shape[0], mel.shape[2])
                e = self.source_align.forward(self.source.forward(f0, mel.dtype))
                # y + P(e) * (1 + G(y)); the 1 folded into G's bias
                gate = F.linear(y, self.source_gate.weight, self._gate_bias_1.get(self.source_gate.bias))
                y = torch.addcmul(y, self.source_proj(e), gate)
        if self.pqmf is not None:
            y = self.pqmf.forward(y)
        return y[:, :, 0]


def fold_weight_norm(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Turns weight-norm pairs into plain weights: ``w = g * v / ||v||`` (norm over all dims
    but 0). Accepts the legacy keys (``X.weight_g``, ``X.weight_v``) and the
    parametrization keys (``X.parametrizations.weight.original0/original1``)."""
    out: dict[str, torch.Tensor] = {}
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in state_dict.items():
        for suffix, role in ((".weight_g", "g"), (".weight_v", "v"),
                             (".parametrizations.weight.original0", "g"),
                             (".parametrizations.weight.original1", "v")):
            if k.endswith(suffix):
                pairs.setdefault(k[: -len(suffix)], {})[role] = v
                break
        else:
            out[k] = v
    for prefix, p in pairs.items():
        if set(p) != {"g", "v"}:
            raise ValueError(f"weight norm of '{prefix}' is missing its {'g' if 'g' not in p else 'v'} part")
        g, v = p["g"].float(), p["v"].float()
        norm = v.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (v.dim() - 1)))
        out[prefix + ".weight"] = g * v / norm
    return out


def load_reference_state_dict(vocoder: MelGANVocoder, state_dict: dict[str, torch.Tensor]) -> None:
    """Loads a reference MelGAN generator checkpoint (e.g. the published LJ Speech one)."""
    sd = {k.removeprefix("module."): v for k, v in state_dict.items()}
    vocoder.load_state_dict(fold_weight_norm(sd), strict=True)
