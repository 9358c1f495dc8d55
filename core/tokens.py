"""Tokens of audio: the part of a trained VQCPC that names each frame (its encoder and
codebook; the context network and predictors only serve training).

A bundle may carry one (``encoder.*`` weights, ``encoder`` in its header), so the
instrument can play a reference file's tokens and ``eval`` can give a model the tokens of
held-out audio, as training gave it the tokens of the training audio.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .config import DictConfig


@dataclass(frozen=True)
class TokenEncoderConfig(DictConfig):
    n_mels: int = 80
    channels: tuple[int, ...] = (512, 512, 256)
    code_dim: int = 32
    n_codes: int = 16


def frame_encoder(n_mels: int, channels: tuple[int, ...], code_dim: int) -> nn.Sequential:
    """VQCPC's per-frame encoder: 1x1 convolutions ``n_mels -> *channels -> code_dim`` with
    ReLU between, ``Tensor[B x n_mels x T] -> Tensor[B x code_dim x T]``."""
    chans = [n_mels, *channels, code_dim]
    layers: list[nn.Module] = []
    for i in range(len(chans) - 1):
        layers.append(nn.Conv1d(chans[i], chans[i + 1], 1))
        if i < len(chans) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class TokenEncoder(nn.Module):
    """Standardized log-mel ``Tensor[B x n_mels x T]`` -> codes ``LongTensor[B x T]``: 1x1
    convolutions (ReLU between), unit-normalised, nearest unit-normalised codebook entry by
    cosine. Frame by frame (no context), so it streams trivially. Parameter names are those
    of :class:`training.vqcpc.VQCPC` (``encoder.*``, ``codebook``)."""

    def __init__(self, config: TokenEncoderConfig = TokenEncoderConfig()):
        super().__init__()
        self.config = c = config
        self.encoder = frame_encoder(c.n_mels, c.channels, c.code_dim)
        self.codebook = nn.Parameter(torch.zeros(c.n_codes, c.code_dim))

    @torch.no_grad()
    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        z = F.normalize(self.encoder(mel.to(self.codebook.dtype)).transpose(1, 2), dim=-1)   # B x T x D
        return (z @ F.normalize(self.codebook, dim=-1).t()).argmax(-1)


def tokens_of_audio(bundle, audio: np.ndarray) -> np.ndarray:
    """Mono ``ndarray[L]`` at the bundle's rate -> its tokens, ``int64 ndarray[frames]`` (one
    per mel frame, as training named the training audio). Raises ``ValueError`` when the
    bundle carries no token encoder or the audio is shorter than one frame."""
    from .mel import LogMel

    if bundle.encoder is None:
        raise ValueError(f"bundle '{bundle.path}' carries no token encoder (exported before tokens "
                         "were kept with the model); re-export it from its runs")
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    if x.numel() < bundle.hop:
        raise ValueError("the reference audio is shorter than one frame")
    dev = bundle.mean.device
    mel = LogMel(bundle.mel).to(dev)(x.to(dev))                                   # [n_mels x T], log10
    std = (mel - bundle.mean[:, None]) / bundle.std[:, None]
    return bundle.encoder(std[None])[0].cpu().numpy().astype(np.int64)
