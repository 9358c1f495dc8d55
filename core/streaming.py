"""Streamable layers: cached convolutions, overlap-add transposed convolutions, delay lines.

Layout: these layers work on **time-major** tensors ``Tensor[B x T x C]`` (time, then
channels), so that every convolution is one ``F.linear`` over a window of frames. On a CPU
with the few frames of a real-time step this is several times faster than ``conv1d`` on
``[B x C x T]`` (the weights are read once per call, in the order BLAS likes best).
Weights keep the shapes of ``nn.Conv1d`` / ``nn.ConvTranspose1d``, so state dicts match.

Every layer follows the streaming contract of DESIGN.md:

* ``forward(x)`` consumes the next chunk ``Tensor[B x T x C]`` and returns the next chunk
  of output (``T`` frames, or ``T * stride`` for a transposed convolution). State carries
  across calls, so any chunking of a sequence gives the output of one whole call.
* ``reset()`` forgets the state; the next call starts from zeros, exactly as the left
  padding of a whole-sequence pass.
* ``delay`` is how many output samples (at the layer's output rate) the streamed output
  lags the centred, non-causal reference layer: ``stream[n] == reference[n - delay]``.
  A causal layer (``causal=True``) is its own reference and reports 0.
"""
from __future__ import annotations

import weakref
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F


class _PreparedWeight:
    """Caches a re-laid-out copy of one or more weights (or a tuple of such copies) for
    inference; recomputes it when a weight changes (in-place updates bump ``_version``;
    ``.to()`` moves it) or when autograd needs the graph."""

    def __init__(self, fn: Callable[..., torch.Tensor | tuple[torch.Tensor, ...]]):
        self.fn = fn
        self.key = None
        self.value = None

    def get(self, *ws: torch.Tensor):
        if torch.is_grad_enabled() and any(w.requires_grad for w in ws):
            return self.fn(*ws)
        key = [(w.data_ptr(), w._version, w.dtype, w.device) for w in ws]
        if key != self.key:
            with torch.no_grad():
                value = self.fn(*ws)
                self.value = (tuple(v.contiguous() for v in value) if isinstance(value, tuple)
                              else value.contiguous())
            self.key = key
        return self.value


def keep_state(module: nn.Module, name: str, value: torch.Tensor | None) -> None:
    """Sets a stream-state attribute (never a parameter, buffer or submodule) without
    ``nn.Module.__setattr__``'s bookkeeping: a real-time step writes dozens of them."""
    object.__setattr__(module, name, value)


_RAMPS: dict = {}


def frame_ramp(hop: int, device: torch.device) -> torch.Tensor:
    """``1/hop .. 1`` across a frame of ``hop`` samples, ``Tensor[hop]`` float32, made once per
    device: a sample's place in its frame, for controls that move linearly from one frame's
    value to the next (core/frame_notch.py, core/silence_gate.py)."""
    key = (hop, device)
    r = _RAMPS.get(key)
    if r is None:
        r = _RAMPS[key] = torch.arange(1, hop + 1, dtype=torch.float32, device=device) / hop
    return r


def set_state(module: nn.Module, name: str, plain: bool, value: torch.Tensor | None) -> None:
    """Sets a stream state listed by :func:`stream_states`: :func:`keep_state` for a
    ``plain`` attribute, ``setattr`` for a buffer or parameter."""
    keep_state(module, name, value) if plain else setattr(module, name, value)


class CachedConv1d(nn.Conv1d):
    """Conv1d with no padding that keeps the last ``dilation * (kernel - 1)`` input frames.

    Input and output ``Tensor[B x T x C]``. Non-causal (default): stands for a centred conv
    with ``padding = dilation*(k-1)/2``, delayed by that many frames. Causal: stands for a
    conv left-padded with zeros.
    """

    state_attrs = (("_cache", 0),)

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 dilation: int = 1, groups: int = 1, bias: bool = True, causal: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride=1, padding=0,
                         dilation=dilation, groups=groups, bias=bias)
        self.cache_len = dilation * (kernel_size - 1)
        if not causal and self.cache_len % 2:
            raise ValueError("a centred conv needs dilation*(kernel-1) even")
        self.causal = causal
        self._cache: torch.Tensor | None = None
        g, k = groups, kernel_size
        cout, cin_g = out_channels, in_channels // groups
        # [Cout, Cin/g, k] -> [g, Cout/g, k * Cin/g]: row o, column (j, c) holds weight[o, c, j]
        self._matrix = _PreparedWeight(
            lambda w: w.view(g, cout // g, cin_g, k).transpose(2, 3).reshape(g, cout // g, k * cin_g))

    @property
    def delay(self) -> int:
        return 0 if self.causal else self.cache_len // 2

    def reset(self) -> None:
        self._cache = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, d, g = self.kernel_size[0], self.dilation[0], self.groups
        if k == 1 and g == 1:
            return F.linear(x, self.weight.view(self.out_channels, -1), self.bias)
        b, t, c, cl = x.shape[0], x.shape[1], x.shape[2], self.cache_len
        if cl:
            cache = self._cache
            if cache is None or cache.shape[0] != b:
                cache = x.new_zeros(b, cl, c)
            if t == 1 and d == 1:   # one frame: its window is the cache and the frame, end to end
                cols = torch.cat((cache.reshape(b, 1, cl * c), x), dim=2)             # [B, 1, k*C]
                keep_state(self, "_cache", cols[:, :, c:].view(b, cl, c))
                return self._conv_cols(cols)
            x = torch.cat((cache, x), dim=1)
            keep_state(self, "_cache", x[:, t:])
        # cols[b, t, j*C + c] = x[b, t + j*d, c]: whole rows copied, no gather
        return self._conv_cols(torch.cat([x[:, j * d:j * d + t] for j in range(k)], dim=2) if k > 1 else x)

    def _conv_cols(self, cols: torch.Tensor) -> torch.Tensor:
        """The convolution of its windows ``cols: Tensor[B x T x k*C]`` (tap-major)."""
        w = self._matrix.get(self.weight)
        g = self.groups
        if g == 1:
            return F.linear(cols, w[0], self.bias)
        b, t, k = cols.shape[0], cols.shape[1], self.kernel_size[0]
        cin_g = self.in_channels // g
        cols = cols.view(b * t, k, g, cin_g).permute(2, 0, 1, 3).reshape(g, b * t, k * cin_g)
        out = torch.bmm(cols, w.transpose(1, 2))                                   # [g, B*T, Cout/g]
        out = out.transpose(0, 1).reshape(b, t, self.out_channels)
        return out + self.bias if self.bias is not None else out


class CachedConvTranspose1d(nn.ConvTranspose1d):
    """Transposed conv (stride r, kernel K a multiple of r) streamed by overlap-add.

    Input ``Tensor[B x T x Cin]``, output ``Tensor[B x T*r x Cout]``. Each input frame
    finalises ``r`` output samples; the last ``K - r`` samples of the uncropped output are
    carried to the next call. The reference layer crops ``padding`` samples at the start,
    so the stream lags it by ``padding`` samples (non-causal) or is taken as is (causal).
    """

    state_attrs = (("_tail", 0),)

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int = 0, output_padding: int = 0, causal: bool = False):
        if kernel_size % stride:
            raise ValueError("kernel_size must be a multiple of stride")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=padding, output_padding=output_padding)
        self.causal = causal
        self.blocks = kernel_size // stride
        self._tail: torch.Tensor | None = None
        k, cout = kernel_size, out_channels
        # [Cin, Cout, K] -> [K*Cout, Cin]: row (k, o) holds weight[:, o, k]
        self._matrix = _PreparedWeight(lambda w: w.permute(2, 1, 0).reshape(k * cout, -1))

    @property
    def delay(self) -> int:
        return 0 if self.causal else self.padding[0]

    def reset(self) -> None:
        self._tail = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        r, m, cout = self.stride[0], self.blocks, self.out_channels
        p = F.linear(x, self._matrix.get(self.weight))
        tail = self._tail if self._tail is not None and self._tail.shape[0] == b else None
        if m == 2:   # y[i] = p0[i] + p1[i-1] (the carried tail before the first): one cat, one add
            p = p.view(b, t, 2, r * cout)
            if tail is None:
                tail = x.new_zeros(b, 1, r * cout)
            q = torch.cat((tail, p[:, :, 1]), 1)
            keep_state(self, "_tail", q[:, t:])
            y = (p[:, :, 0] + q[:, :t]).view(b, t * r, cout)
        else:
            p = p.view(b, t, m, r, cout)
            y = p[:, :, 0]
            if m > 1:
                y = torch.cat((y, x.new_zeros(b, m - 1, r, cout)), 1)
                for i in range(1, m):
                    y[:, i:i + t] += p[:, :, i]
                if tail is not None:
                    y[:, :m - 1] += tail.view(b, m - 1, r, cout)
                keep_state(self, "_tail", y[:, t:].reshape(b, m - 1, r * cout))
                y = y[:, :t]
            y = y.reshape(b, t * r, cout)
        return y + self.bias if self.bias is not None else y


class DelayLine(nn.Module):
    """Delays a stream ``Tensor[B x T x C]`` by ``length`` frames (zeros first)."""

    state_attrs = (("_cache", 0),)

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
            cache = x.new_zeros(x.shape[0], self.length, x.shape[2])
        xc = torch.cat((cache, x), dim=1)
        keep_state(self, "_cache", xc[:, xc.shape[1] - self.length:])
        return xc[:, :x.shape[1]]


def reset_streams(module: nn.Module) -> None:
    """Calls ``reset()`` on every streaming submodule below ``module``."""
    for m in module.modules():
        if m is not module and (isinstance(m, (CachedConv1d, CachedConvTranspose1d, DelayLine))
                                or getattr(m, "is_stream_state", False)):
            m.reset()


class BatchSubset:
    """Runs a streaming model on some rows of its batch only (polyphony: only the voices that
    sound). ``with BatchSubset(model, idx, full_batch):`` narrows every state tensor to the rows
    ``idx`` (a LongTensor), and on exit writes the advanced rows back into the full state;
    the other rows keep their state untouched. Every stateful module declares its state
    tensors in ``state_attrs`` as (attribute, batch dimension).

    Rows that form one run (``[1, 2, 3]``) are narrowed as views, others gathered; the full
    state is never written in place (it may share memory with what a step returned), a new
    one is made on exit (``tests/test_batch_subset.py``)."""

    def __init__(self, model: nn.Module, idx: torch.Tensor, full_batch: int):
        self.model, self.idx, self.full_batch = model, idx, full_batch
        self.saved: list = []
        rows = idx.tolist()
        self._run = (rows[0], len(rows)) if rows and rows == list(range(rows[0], rows[0] + len(rows))) else None

    def __enter__(self) -> "BatchSubset":
        run, idx = self._run, self.idx
        for m, attr, dim, plain in stream_states(self.model):
            full = getattr(m, attr)
            self.saved.append((m, attr, dim, plain, full))
            if full is not None:
                sub = full.narrow(dim, run[0], run[1]) if run is not None else full.index_select(dim, idx)
                set_state(m, attr, plain, sub)
        return self

    def __exit__(self, *exc) -> None:
        for m, attr, dim, plain, full in self.saved:
            sub = getattr(m, attr)
            if sub is None:
                new = full
            else:
                if full is None:
                    shape = list(sub.shape)
                    shape[dim] = self.full_batch
                    full = sub.new_zeros(shape)
                new = full.index_copy(dim, self.idx, sub)
            set_state(m, attr, plain, new)


_STREAM_STATES: "weakref.WeakKeyDictionary[nn.Module, list]" = weakref.WeakKeyDictionary()


def stream_states(model: nn.Module) -> list[tuple[nn.Module, str, int, bool]]:
    """(module, attribute, batch dimension, plain) of every state tensor below ``model``
    (each module's ``state_attrs``), listed once per model; ``plain``: an ordinary attribute
    (not a buffer or parameter), which :func:`keep_state` may set."""
    found = _STREAM_STATES.get(model)
    if found is None:
        found = [(m, attr, dim, attr not in m._buffers and attr not in m._parameters)
                 for m in model.modules() for attr, dim in getattr(m, "state_attrs", ())]
        _STREAM_STATES[model] = found
    return found
