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

Non-causal (default, reference-compatible): the output for any chunking equals the
reference output delayed by :attr:`MelGANVocoder.delay` samples (1425 at paper sizes:
64.6 ms of look-ahead), except near the very start where the reference reflect-pads and
the stream sees zeros. Causal (``causal=True``): no look-ahead, for models trained so.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .pqmf import PQMFSynthesis
from .streaming import CachedConv1d, CachedConvTranspose1d, DelayLine, reset_streams


@dataclass(frozen=True)
class VocoderConfig:
    n_mels: int = 80
    ngf: int = 32
    n_residual_layers: int = 3
    ratios: tuple[int, ...] = (8, 8, 2, 2)
    causal: bool = False
    bands: int = 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ratios"] = list(self.ratios)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "VocoderConfig":
        d = dict(d)
        if "ratios" in d:
            d["ratios"] = tuple(int(r) for r in d["ratios"])
        return cls(**d)


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

    @property
    def delay(self) -> int:
        return self.block[2].delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(self.align(x)) + self.block(x)


class MelGANVocoder(nn.Module):
    def __init__(self, config: VocoderConfig = VocoderConfig()):
        super().__init__()
        self.config = c = config
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
        self.pqmf = PQMFSynthesis(c.bands) if c.bands > 1 else None
        self.hop = c.bands
        for r in c.ratios:
            self.hop *= r

    @property
    def delay(self) -> int:
        """Look-ahead in output samples: stream[n] == reference[n - delay]."""
        total, rate = 0, self.hop  # rate = output samples per sample at the current layer
        for m in self.model:
            if isinstance(m, CachedConvTranspose1d):
                rate //= m.stride[0]
            d = getattr(m, "delay", 0)
            total += d * rate
        if self.pqmf is not None:
            total += self.pqmf.delay
        return total

    def reset(self) -> None:
        reset_streams(self)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """Next chunk: ``Tensor[B x n_mels x n]`` -> ``Tensor[B x n * hop]``."""
        y = self.model(mel.transpose(1, 2))
        if self.pqmf is not None:
            y = self.pqmf(y)
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
