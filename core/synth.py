"""The whole streaming chain: generator -> de-standardize -> vocoder.

``Synth.step(z, tokens, pitch)`` takes per-frame inputs for ``n`` frames and returns
``n * hop`` audio samples (and the ``n`` mel frames it vocoded). Output equals a single
whole-sequence call for any chunking; audio lags by :attr:`Synth.delay` samples (the
vocoder's look-ahead; the generator is causal).
"""
from __future__ import annotations

import torch

from .bundle import Bundle
from .streaming import BatchSubset


PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class Synth:
    """``precision="bfloat16"`` halves the weight bytes read per step (about 2x faster on
    CPUs with AVX512-BF16 or AMX, and on GPUs); outputs stay float32. The streaming
    contract's 1e-5 equality is a float32 property."""

    def __init__(self, bundle: Bundle, precision: str = "float32"):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}")
        self.bundle = bundle
        self.dtype = PRECISIONS[precision]
        self.generator = bundle.generator.to(self.dtype)
        self.vocoder = bundle.vocoder.to(self.dtype)
        self._mean = bundle.mean[None, :, None]
        self._std = bundle.std[None, :, None]
        self.device = bundle.mean.device

    @property
    def sample_rate(self) -> int:
        return self.bundle.sample_rate

    @property
    def hop(self) -> int:
        return self.bundle.hop

    @property
    def z_dim(self) -> int:
        return self.generator.config.z_dim

    @property
    def delay(self) -> int:
        """Samples by which audio lags the frames that made it (vocoder look-ahead)."""
        return self.vocoder.delay + self.generator.delay * self.hop

    def reset(self) -> None:
        self.generator.reset()
        self.vocoder.reset()

    @torch.inference_mode()
    def step_rows(self, rows: list[int], full_batch: int, z: torch.Tensor,
                  tokens: torch.Tensor | None = None, pitch: torch.Tensor | None = None):
        """Like :meth:`step` for the batch rows ``rows`` of a ``full_batch``-row stream
        (inputs have ``len(rows)`` rows); the other rows' state stays as it is."""
        if len(rows) == full_batch:
            return self.step(z, tokens, pitch)
        idx = torch.tensor(rows, dtype=torch.long, device=self.device)
        with BatchSubset(self.generator, idx, full_batch), BatchSubset(self.vocoder, idx, full_batch):
            return self.step(z, tokens, pitch)

    @torch.inference_mode()
    def step(self, z: torch.Tensor, tokens: torch.Tensor | None = None,
             pitch: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``z: Tensor[B x z_dim x n]`` -> (audio ``Tensor[B x n*hop]``, standardized mel
        ``Tensor[B x n_mels x n]``)."""
        if tokens is not None:
            tokens = tokens.to(self.device)
        if pitch is not None:
            pitch = pitch.to(self.device)
        mel = self.generator(z.to(self.device, self.dtype), tokens, pitch).float()
        f0 = None
        if self.vocoder.source is not None and pitch is not None:   # the requested pitch excites it
            f0 = 440.0 * 2.0 ** ((pitch.float() - 69.0) / 12.0)
        audio = self.vocoder((mel * self._std + self._mean).to(self.dtype), f0)
        return audio.float(), mel
