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
from .streaming import CachedConv1d, _PreparedWeight, keep_state, reset_streams


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
    def pitch_centre(self) -> float:
        """The MIDI pitch a step plays when it is given none: the middle of the range."""
        return (self.pitch_min + self.pitch_max) / 2

    @property
    def n_pitch(self) -> int:
        return self.pitch_max - self.pitch_min + 1 if self.has_pitch else 0

    @property
    def feature_dim(self) -> int:
        return self.z_dim + self.n_tokens + self.n_pitch


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm of each frame on its own: ``Tensor[B x T x C]``, statistics over C/groups."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # torch's group norm of B*T samples of C channels: one fused op (a real-time step
        # normalizes ~8 frames of a few rows); statistics as var_mean's to float rounding
        b, t, c = x.shape
        return F.group_norm(x.reshape(b * t, c), self.num_groups, self.weight, self.bias, self.eps).view(b, t, c)


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
        # rest is cast to bfloat16 (an unpacked bfloat16 GRU makes the bfloat16 engine step
        # slower than float32's on an H100: benchmarks/results/gpu_h100_gru_packing.json).
        out = super()._apply(fn, recurse)
        w = self.gru.weight_ih_l0
        if w.is_cuda and w.dtype == torch.bfloat16:
            self.gru.float()
        self.gru.flatten_parameters()
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self._h if self._h is not None and self._h.shape[1] == x.shape[0] else None
        gru = self.gru
        w_ih = gru.weight_ih_l0
        gru_dtype = w_ih.dtype
        if x.shape[1] == 1 and x.device.type == "cpu":
            # one frame: the GRU's cell alone (the same arithmetic as nn.GRU on the CPU,
            # without its sequence machinery; tests/test_generator.py: chunk size 1 == whole)
            hx = h[0].to(gru_dtype) if h is not None else x.new_zeros(x.shape[0], gru.hidden_size, dtype=gru_dtype)
            hn = torch.gru_cell(x[:, 0].to(gru_dtype), hx, w_ih, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)
            g = hn[:, None]
            keep_state(self, "_h", hn[None])
        else:
            g, h = gru(x.to(gru_dtype), None if h is None else h.to(gru_dtype))
            keep_state(self, "_h", h)
        g = g.to(x.dtype)
        return x + g + F.leaky_relu(self.norm.forward(self.conv.forward(g)), 0.2, inplace=True)


class GBlock(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden: int, groups: int):
        super().__init__()
        self.conv_in = CachedConv1d(in_dim, hidden, 3, causal=True)
        self.norm = FrameGroupNorm(groups, hidden)
        self.rc = RCBlock(hidden, groups)
        self.conv_out = CachedConv1d(hidden, out_dim, 3, causal=True)

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        # submodules' forward called directly: a real-time step runs ~10 GBlocks a frame
        h = self.conv_in.forward(x)
        if extra is not None:
            h = h + extra
        h = F.leaky_relu(self.norm.forward(h), 0.2, inplace=True)
        return self.conv_out.forward(self.rc.forward(h))


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
        self._stacked = _PreparedWeight(self._stack)      # :meth:`_projection`'s weights
        self._constants: dict[tuple, torch.Tensor] = {}   # :meth:`_constant`'s tensors

    def reset(self) -> None:
        reset_streams(self)
        self.frame = 0

    def features(self, z: torch.Tensor, tokens: torch.Tensor | None = None,
                 pitch: torch.Tensor | None = None, note: torch.Tensor | None = None) -> torch.Tensor:
        """Per-frame input ``Tensor[B x n x feature_dim]`` from ``z: Tensor[B x z_dim x n]``:
        z, one-hot token, soft one-hot pitch; with ``note`` (``Tensor[B x n x note_dim]``)
        its features follow (``Tensor[B x n x feature_dim + note_dim]``)."""
        c = self.config
        b, _, n = z.shape
        parts = [z.transpose(1, 2)]
        if c.n_tokens:
            if tokens is None:
                tokens = torch.zeros(b, n, dtype=torch.long, device=z.device)
            # one-hot rows of an identity matrix (exactly F.one_hot's values, without its range check)
            parts.append(F.embedding(tokens.clamp(0, c.n_tokens - 1), self._constant("eye", z)))
        if c.has_pitch:
            if pitch is None:
                pitch = torch.full((b, n), c.pitch_centre, device=z.device)
            parts.append(_soft_one_hot(pitch, c.pitch_min, self._constant("semitones", z)).to(z.dtype))
        if note is not None:
            parts.append(note.to(z.dtype))
        return torch.cat(parts, 2) if len(parts) > 1 else parts[0]

    def _constant(self, name: str, like: torch.Tensor) -> torch.Tensor:
        """Made once per device and dtype: "eye" (``n_tokens`` one-hot rows), "semitones"
        (``0 .. pitch_max - pitch_min``, float32)."""
        key = (name, like.device, like.dtype)
        consts = self._constants
        if key not in consts:
            c = self.config
            consts[key] = (torch.eye(c.n_tokens, dtype=like.dtype, device=like.device) if name == "eye" else
                           torch.arange(c.n_pitch, device=like.device, dtype=torch.float32))
        return consts[key]

    def forward(self, z: torch.Tensor, tokens: torch.Tensor | None = None,
                pitch: torch.Tensor | None = None, note: torch.Tensor | None = None,
                calls: tuple | None = None) -> torch.Tensor:
        """Next ``n`` frames: ``z: Tensor[B x z_dim x n]`` -> mel ``Tensor[B x n_mels x n]``.
        ``note``: ``Tensor[B x n x note_dim]`` (default: a long-held note). ``calls``: three
        callables with the signatures of :meth:`inputs`, :meth:`first_level` and
        :meth:`next_level`, run in their place (compiled ones: :mod:`core.compiled`); the frame
        clock and the held samples stay here."""
        t0, n = self.frame, z.shape[2]
        c = self.config
        if n == 0:
            return z.new_zeros(z.shape[0], c.n_mels, 0)
        if c.note_dim and note is None:
            note = torch.from_numpy(held_note((z.shape[0], n))).to(z.device, z.dtype)
        inputs, first_level, next_level = calls if calls is not None else (self.inputs, self.first_level, self.next_level)
        feat, proj = inputs(z, tokens, pitch, note if c.note_dim else None)
        hid = c.hidden
        parent = None  # (body, head, index of their first sample) of the level above
        for level in range(c.n_levels + 1):
            s = self.stride >> level                   # frames per sample at this level
            first, last = -(-t0 // s), -(-(t0 + n) // s)   # new sample indices [first, last)
            held = self.held[level]
            if last == first:                          # nothing new: children reuse the held one
                parent = (held.body, held.head, first - 1)
                continue
            rows = slice(first * s - t0, None, s)      # the frames of the new samples
            into = proj[:, rows, level * hid:(level + 1) * hid]
            if level == 0:
                body, head = first_level(feat[:, rows], into if c.note_dim else None)
            else:
                pbody, phead, pbase = parent
                body, head = next_level(level, _nearest_x2(pbody, first, last, pbase),
                                        _nearest_x2(phead, first, last, pbase), into)
            # the next level's new samples read this level's from index (its first) // 2
            child_first = -(-t0 // (s >> 1)) if s > 1 else last
            if held.body is not None and child_first // 2 < first:
                parent = (torch.cat((held.body, body), 1), torch.cat((held.head, head), 1), first - 1)
            else:
                parent = (body, head, first)
            keep_state(held, "body", body[:, -1:])
            keep_state(held, "head", head[:, -1:])
        self.frame = t0 + n
        return head.transpose(1, 2)

    def inputs(self, z: torch.Tensor, tokens: torch.Tensor | None, pitch: torch.Tensor | None,
               note: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(features ``Tensor[B x n x feature_dim]``, what enters each level from them
        ``Tensor[B x n x (n_levels + 1)*H]``): one linear for all levels and frames (level l
        reads its own columns, :meth:`_projection`)."""
        feat = self.features(z, tokens, pitch, note)
        proj = F.linear(feat, *self._projection())
        return feat[..., :self.config.feature_dim], proj

    def first_level(self, x: torch.Tensor, into: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Level 0's new samples: features ``Tensor[B x m x feature_dim]`` (and the note's
        projection ``Tensor[B x m x H]``) -> (body ``Tensor[B x m x H]``, head ``Tensor[B x m x n_mels]``)."""
        body = self.block0.forward(x, into)
        return body, self.head0.forward(body)

    def next_level(self, level: int, body: torch.Tensor, head: torch.Tensor,
                   into: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Level ``level`` >= 1's new samples from its parent's, upsampled (body ``Tensor[B x m
        x H]``, head ``Tensor[B x m x n_mels]``) and the inputs' projection ``into``."""
        body = body + self.blocks[level - 1].forward(body + into)
        return body, head + self.heads[level - 1].forward(body)

    def _projection(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight ``[(n_levels + 1)*H x (feature_dim + note_dim)]``, bias) of the inputs'
        projection into every level, stacked: level 0 gets ``note_in[0](note)`` (zeros without
        the note condition: nothing is added there), level l > 0 ``inject[l-1](features) +
        note_in[l](note)``. Cached for inference."""
        params = [p for m in (*self.inject, *(self.note_in if self.config.note_dim else ())) for p in (m.weight, m.bias)]
        return self._stacked.get(*params)

    def _stack(self, *params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c, w, b = self.config, params[0::2], params[1::2]
        w_inject, w_note = w[:c.n_levels], w[c.n_levels:]
        b_inject, b_note = b[:c.n_levels], b[c.n_levels:]
        if not w_note:      # no note condition: level 0 gets nothing, its rows are zeros
            w_note = [w[0].new_zeros(c.hidden, 0)] * (c.n_levels + 1)
            b_note = [torch.zeros_like(b[0])] * (c.n_levels + 1)
        weight = torch.cat([torch.cat((w[0].new_zeros(c.hidden, c.feature_dim), w_note[0]), 1)] +
                           [torch.cat((w_inject[i], w_note[i + 1]), 1) for i in range(c.n_levels)])
        bias = torch.cat([b_note[0]] + [b_inject[i] + b_note[i + 1] for i in range(c.n_levels)])
        return weight, bias


def _nearest_x2(x: torch.Tensor, first: int, last: int, base: int) -> torch.Tensor:
    """Samples ``[first, last)`` of the x2 nearest upsampling of ``x: Tensor[B x L x C]``,
    whose sample 0 is index ``base`` of the coarser level: ``x[:, i // 2 - base]``."""
    if last - first == 1:
        i = first // 2 - base
        return x[:, i:i + 1]
    idx = torch.arange(first, last, device=x.device) // 2 - base
    return x.index_select(1, idx)


def pitch_features(pitch: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """MIDI pitch ``Tensor[B x n]`` -> soft one-hot ``Tensor[B x n x (hi-lo+1)]``: a
    fractional pitch splits its weight linearly between the two nearest semitones."""
    return _soft_one_hot(pitch, lo, torch.arange(hi - lo + 1, device=pitch.device, dtype=torch.float32))


def _soft_one_hot(pitch: torch.Tensor, lo: int, semitones: torch.Tensor) -> torch.Tensor:
    """:func:`pitch_features` with its ``semitones = 0 .. hi-lo`` (float32) given."""
    p = (pitch.float().clamp(lo, lo + semitones.shape[0] - 1) - lo)
    return torch.clamp(1 - (p[:, :, None] - semitones).abs(), min=0)
