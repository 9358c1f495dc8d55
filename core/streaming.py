"""Streamable layers: cached convolutions, overlap-add transposed convolutions, delay lines.

Every layer here follows one contract (the streaming contract of DESIGN.md):

* ``forward(x)`` consumes the next chunk ``Tensor[B x C x T]`` and returns the next chunk
  of output (``T`` samples, or ``T * stride`` for a transposed convolution). State carries
  across calls, so any chunking of a sequence yields the same output as one call on the
  whole sequence.
* ``reset()`` forgets the state; the next call starts from zeros, exactly as the left
  padding of a whole-sequence pass.
* ``delay`` is how many output samples (at the layer's output rate) the streamed output
  lags the centred, non-causal reference layer: ``stream[n] == reference[n - delay]``.
  A causal layer (``causal=True``) is its own reference and reports 0.

The layers subclass the plain torch layers, so their state-dict keys are ``weight`` and
``bias`` and reference checkpoints load after weight norm is folded into ``weight``.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class CachedConv1d(nn.Conv1d):
    """Conv1d with no padding that keeps the last ``dilation * (kernel - 1)`` input samples.

    Non-causal (default): stands for a centred conv with ``padding = dilation*(k-1)/2``,
    delayed by that many samples. Causal: stands for a conv left-padded with zeros.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 dilation: int = 1, groups: int = 1, bias: bool = True, causal: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride=1, padding=0,
                         dilation=dilation, groups=groups, bias=bias)
        self.cache_len = dilation * (kernel_size - 1)
        if not causal and self.cache_len % 2:
            raise ValueError("a centred conv needs dilation*(kernel-1) even")
        self.causal = causal
        self._cache: torch.Tensor | None = None

    @property
    def delay(self) -> int:
        return 0 if self.causal else self.cache_len // 2

    def reset(self) -> None:
        self._cache = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cache_len == 0:
            return F.conv1d(x, self.weight, self.bias, 1, 0, 1, self.groups)
        cache = self._cache
        if cache is None or cache.shape[0] != x.shape[0]:
            cache = x.new_zeros(x.shape[0], x.shape[1], self.cache_len)
        xc = torch.cat((cache, x), dim=2)
        self._cache = xc[:, :, xc.shape[2] - self.cache_len:]
        return F.conv1d(xc, self.weight, self.bias, 1, 0, self.dilation, self.groups)


class CachedConvTranspose1d(nn.ConvTranspose1d):
    """Transposed conv (stride r, kernel K >= r) streamed by overlap-add.

    Each input sample finalises ``r`` output samples; the last ``K - r`` samples of the
    uncropped output are carried to the next call. The reference layer crops ``padding``
    samples at the start, so the streamed output lags it by ``padding`` samples
    (non-causal) or is taken as is (causal, delay 0).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int = 0, output_padding: int = 0, causal: bool = False):
        if kernel_size < stride:
            raise ValueError("kernel_size must be >= stride")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=padding, output_padding=output_padding)
        self.causal = causal
        self.tail_len = kernel_size - stride
        self._tail: torch.Tensor | None = None

    @property
    def delay(self) -> int:
        return 0 if self.causal else self.padding[0]

    def reset(self) -> None:
        self._tail = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r = self.stride[0]
        n = x.shape[2] * r
        y = F.conv_transpose1d(x, self.weight, None, stride=r)   # [B, C, n + tail_len]
        if self.tail_len:
            if self._tail is not None and self._tail.shape[0] == x.shape[0]:
                y[:, :, :self.tail_len] += self._tail
            self._tail = y[:, :, n:]
        out = y[:, :, :n]
        if self.bias is not None:
            out = out + self.bias[None, :, None]
        return out


class DelayLine(nn.Module):
    """Delays a stream by ``length`` samples (zeros first). Aligns parallel branches."""

    def __init__(self, length: int):
        super().__init__()
        self.length = length
        self._cache: torch.Tensor | None = None

    @property
    def delay(self) -> int:
        return self.length

    def reset(self) -> None:
        self._cache = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.length == 0:
            return x
        cache = self._cache
        if cache is None or cache.shape[0] != x.shape[0]:
            cache = x.new_zeros(x.shape[0], x.shape[1], self.length)
        xc = torch.cat((cache, x), dim=2)
        self._cache = xc[:, :, xc.shape[2] - self.length:]
        return xc[:, :, :x.shape[2]]


def reset_streams(module: nn.Module) -> None:
    """Calls ``reset()`` on every streaming submodule (and the module itself)."""
    for m in module.modules():
        if m is not module and hasattr(m, "reset") and callable(m.reset):
            if isinstance(m, (CachedConv1d, CachedConvTranspose1d, DelayLine)) or \
                    getattr(m, "is_stream_state", False):
                m.reset()
