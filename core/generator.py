"""UNAGAN's hierarchical generator (Liu et al. 2020), made streamable.

Reference (ciaua/unagan): GBlocks of [Conv1d(k3) -> GroupNorm(4) -> LeakyReLU -> RCBlock ->
Conv1d(k3)], where RCBlock is a bidirectional GRU plus a grouped conv. Noise enters once at
1/16 of the frame rate; four levels each upsample x2 (nearest), add a GBlock's output to
the body and a head conv's output to the running mel. That model cannot stream (backward
GRU, random initial state, GroupNorm over time). This one can:

* unidirectional GRUs whose state carries across calls, zero initial state;
* causal cached convolutions (delay 0);
* GroupNorm over channel groups of each frame separately (never over time);
* a frame clock: level ``l`` (stride ``16 / 2**l`` frames) produces its sample ``i`` when
  frame ``i * stride`` is generated, and its children reuse it by nearest upsampling, so
  chunk boundaries need not align with the strides;
* noise and conditions enter at every level (level ``l`` sees them at its own rate), so a
  token or pitch change acts on the very next frame, not the next 16-frame step.

Inputs per frame: noise ``z: Tensor[B x z_dim x n]``, optional ``tokens: LongTensor[B x n]``
(code indices), ``pitch: Tensor[B x n]`` (MIDI note numbers, fractional for glides) and
``note: Tensor[B x n x note_dim]`` (the note condition of :mod:`core.notes`: held, onset
and release ages; it enters through its own zero-initialised projections, so a model
warm-started from one without it begins exactly where that one was).
Output: standardized log-mel ``Tensor[B x n_mels x n]`` (de-standardize before vocoding).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .config import DictConfig
from .notes import held_note
from .streaming import CachedConv1d, reset_streams


@dataclass(frozen=True)
class GeneratorConfig(DictConfig):
    z_dim: int = 20
    n_mels: int = 80
    hidden: int = 512
    n_levels: int = 4
    groups: int = 4
    n_tokens: int = 0          # 0: no token condition
    pitch_min: int = 0         # pitch_min == pitch_max == 0: no pitch condition
    pitch_max: int = 0
    note_dim: int = 0          # 0: no note condition; else core.notes.NOTE_DIM

    @property
    def has_pitch(self) -> bool:
        return self.pitch_max > self.pitch_min

    @property
    def n_pitch(self) -> int:
        return self.pitch_max - self.pitch_min + 1 if self.has_pitch else 0

    @property
    def feature_dim(self) -> int:
        return self.z_dim + self.n_tokens + self.n_pitch


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm of each frame on its own: ``Tensor[B x T x C]``, statistics over C/groups."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        xg = x.view(b, t, self.num_groups, c // self.num_groups)
        var, mean = torch.var_mean(xg, -1, unbiased=False, keepdim=True)
        xn = ((xg - mean) * torch.rsqrt(var + self.eps)).view(b, t, c)
        return torch.addcmul(self.bias, xn, self.weight)


class RCBlock(nn.Module):
    """``x + gru(x) + lrelu(norm(grouped_conv(gru(x))))`` with the GRU state carried."""

    is_stream_state = True
    state_attrs = (("_h", 1),)

    def __init__(self, dim: int, groups: int):
        super().__init__()
        self.gru = nn.GRU(dim, dim, batch_first=True)
        self.conv = CachedConv1d(dim, dim, 3, groups=groups, causal=True)
        self.norm = FrameGroupNorm(groups, dim)
        self._h: torch.Tensor | None = None

    def reset(self) -> None:
        self._h = None

    def _apply(self, fn, recurse: bool = True):
        # ``.to(device)`` / ``.to(dtype)`` leave the GRU's weights in separate tensors; on CUDA
        # cuDNN then re-packs them on every call (and warns, "not part of single contiguous
        # chunk of memory"). They are packed once here (a no-op on the CPU). cuDNN runs a
        # bfloat16 GRU but torch cannot pack one, so on CUDA the GRU stays in float32 when the
        # rest is cast to bfloat16 (measured on an H100: the unpacked bfloat16 GRU made the
        # bfloat16 engine step slower than float32's).
        out = super()._apply(fn, recurse)
        w = self.gru.weight_ih_l0
        if w.is_cuda and w.dtype == torch.bfloat16:
            self.gru.float()
        self.gru.flatten_parameters()
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self._h if self._h is not None and self._h.shape[1] == x.shape[0] else None
        gru_dtype = self.gru.weight_ih_l0.dtype
        g, self._h = self.gru(x.to(gru_dtype), None if h is None else h.to(gru_dtype))
        g = g.to(x.dtype)
        return x + g + F.leaky_relu(self.norm(self.conv(g)), 0.2)


class GBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden: int, groups: int):
        super().__init__()
        self.conv_in = CachedConv1d(in_dim, hidden, 3, causal=True)
        self.norm = FrameGroupNorm(groups, hidden)
        self.rc = RCBlock(hidden, groups)
        self.conv_out = CachedConv1d(hidden, out_dim, 3, causal=True)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv_in(x)
        if extra is not None:
            h = h + extra
        h = F.leaky_relu(self.norm(h), 0.2)
        return self.conv_out(self.rc(h))


class _Held(nn.Module):
    """The last sample each level produced (body and head), for nearest upsampling."""

    is_stream_state = True
    state_attrs = (("body", 0), ("head", 0))

    def __init__(self):
        super().__init__()
        self.body: torch.Tensor | None = None
        self.head: torch.Tensor | None = None

    def reset(self) -> None:
        self.body = self.head = None


class StreamingUNAGAN(nn.Module):
    delay = 0  # causal everywhere

    def __init__(self, config: GeneratorConfig = GeneratorConfig()):
        super().__init__()
        self.config = c = config
        self.stride = 2 ** c.n_levels
        self.block0 = GBlock(c.feature_dim, c.hidden, c.hidden, c.groups)
        self.head0 = CachedConv1d(c.hidden, c.n_mels, 3, causal=True)
        self.inject = nn.ModuleList(nn.Linear(c.feature_dim, c.hidden) for _ in range(c.n_levels))
        self.blocks = nn.ModuleList(GBlock(c.hidden, c.hidden, c.hidden, c.groups) for _ in range(c.n_levels))
        self.heads = nn.ModuleList(CachedConv1d(c.hidden, c.n_mels, 3, causal=True) for _ in range(c.n_levels))
        self.held = nn.ModuleList(_Held() for _ in range(c.n_levels + 1))
        if c.note_dim:
            self.note_in = nn.ModuleList(nn.Linear(c.note_dim, c.hidden) for _ in range(c.n_levels + 1))
            for lin in self.note_in:
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)
        self.frame = 0

    def reset(self) -> None:
        reset_streams(self)
        self.frame = 0

    def features(self, z: torch.Tensor, tokens: torch.Tensor | None = None,
                 pitch: torch.Tensor | None = None) -> torch.Tensor:
        """Per-frame input ``Tensor[B x n x feature_dim]`` from ``z: Tensor[B x z_dim x n]``:
        z, one-hot token, soft one-hot pitch."""
        c = self.config
        b, _, n = z.shape
        parts = [z.transpose(1, 2)]
        if c.n_tokens:
            if tokens is None:
                tokens = torch.zeros(b, n, dtype=torch.long, device=z.device)
            parts.append(F.one_hot(tokens.clamp(0, c.n_tokens - 1), c.n_tokens).to(z.dtype))
        if c.has_pitch:
            if pitch is None:
                pitch = torch.full((b, n), (c.pitch_min + c.pitch_max) / 2, device=z.device)
            parts.append(pitch_features(pitch, c.pitch_min, c.pitch_max).to(z.dtype))
        return torch.cat(parts, 2) if len(parts) > 1 else parts[0]

    def forward(self, z: torch.Tensor, tokens: torch.Tensor | None = None,
                pitch: torch.Tensor | None = None, note: torch.Tensor | None = None) -> torch.Tensor:
        """Next ``n`` frames: ``z: Tensor[B x z_dim x n]`` -> mel ``Tensor[B x n_mels x n]``.
        ``note``: ``Tensor[B x n x note_dim]`` (default: a long-held note)."""
        t0, n = self.frame, z.shape[2]
        if n == 0:
            return z.new_zeros(z.shape[0], self.config.n_mels, 0)
        feat = self.features(z, tokens, pitch)
        if self.config.note_dim:
            if note is None:
                note = torch.from_numpy(held_note((z.shape[0], n))).to(z.device, z.dtype)
            note = note.to(z.dtype)
        parent = None  # (body, head, index of their first sample) of the level above
        for level in range(self.config.n_levels + 1):
            s = self.stride >> level                   # frames per sample at this level
            first, last = -(-t0 // s), -(-(t0 + n) // s)   # new sample indices [first, last)
            held = self.held[level]
            if last == first:                          # nothing new: children reuse the held one
                parent = (held.body, held.head, first - 1)
                continue
            f = feat[:, first * s - t0::s]
            extra = self.note_in[level](note[:, first * s - t0::s]) if self.config.note_dim else None
            if level == 0:
                body = self.block0(f, extra)
                head = self.head0(body)
            else:
                pbody, phead, pbase = parent
                idx = torch.arange(first, last, device=z.device) // 2 - pbase   # nearest x2
                body, head = pbody.index_select(1, idx), phead.index_select(1, idx)
                h = body + self.inject[level - 1](f)
                body = body + self.blocks[level - 1](h if extra is None else h + extra)
                head = head + self.heads[level - 1](body)
            if held.body is not None:
                parent = (torch.cat((held.body, body), 1), torch.cat((held.head, head), 1), first - 1)
            else:
                parent = (body, head, first)
            held.body, held.head = body[:, -1:], head[:, -1:]
        self.frame = t0 + n
        return head.transpose(1, 2)


def pitch_features(pitch: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """MIDI pitch ``Tensor[B x n]`` -> soft one-hot ``Tensor[B x n x (hi-lo+1)]``: a
    fractional pitch splits its weight linearly between the two nearest semitones."""
    p = (pitch.float().clamp(lo, hi) - lo)
    k = torch.arange(hi - lo + 1, device=pitch.device, dtype=torch.float32)
    return torch.clamp(1 - (p[:, :, None] - k).abs(), min=0)
