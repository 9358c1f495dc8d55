"""One step's per-frame model inputs, built in one place from per-frame numpy arrays.

The player (:class:`realtime.player.BundlePlayer`), offline rendering
(:func:`core.render.render`), evaluation (:func:`training.evaluate.generate`) and the
settling pre-roll (:meth:`core.synth.Synth.settle`) all build the generator's inputs with
:func:`frame_inputs`, so the same per-frame values become the same tensors everywhere
(``tests/test_engine_jack.py`` compares the engine with ``render`` sample for sample).

Rules: one noise walk ``z`` is shared by every row; tokens are taken modulo ``n_tokens``
and given only to token models; pitch (MIDI) only to models with the pitch condition; the
note condition only to models with ``note_dim`` > 0. A condition left as None is the
generator's own default (token 0, mid-range pitch, a long-held note).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .generator import GeneratorConfig


@dataclass(frozen=True)
class FrameInputs:
    """The generator's inputs for ``B`` rows (voices) and ``n`` frames."""

    z: torch.Tensor                        # Tensor[B x z_dim x n]
    tokens: torch.Tensor | None = None     # LongTensor[B x n], in [0, n_tokens)
    pitch: torch.Tensor | None = None      # Tensor[B x n], MIDI note numbers (float32)
    note: torch.Tensor | None = None       # Tensor[B x n x note_dim] (core.notes)

    @property
    def rows(self) -> int:
        return self.z.shape[0]

    @property
    def frames(self) -> int:
        return self.z.shape[2]

    def select(self, rows: Sequence[int]) -> "FrameInputs":
        """The inputs of the batch rows ``rows`` only (the voices that sound); all of them, in
        order: these inputs themselves."""
        rows = list(rows)
        if rows == list(range(self.rows)):
            return self
        r = torch.as_tensor(rows, dtype=torch.long)
        pick = lambda t: None if t is None else t[r]          # noqa: E731
        return FrameInputs(self.z[r], pick(self.tokens), pick(self.pitch), pick(self.note))


def _per_row(values, rows: int, n: int, dtype: np.dtype) -> torch.Tensor:
    """A scalar (held), ``ndarray[n]`` (the same for every row) or ``ndarray[rows x n]``
    -> ``Tensor[rows x n]``."""
    a = np.asarray(values, dtype=dtype)
    if a.ndim == 0:
        return torch.from_numpy(np.full((rows, n), a, dtype=dtype))
    if a.ndim == 1:
        a = a[None]
    if a.shape[1] != n or a.shape[0] not in (1, rows):
        raise ValueError(f"per-frame values of shape {a.shape} for {rows} row(s) of {n} frames")
    return torch.from_numpy(np.array(np.broadcast_to(a, (rows, n))))      # a copy the caller cannot change


def frame_inputs(config: GeneratorConfig, z: np.ndarray, tokens=None, pitch=None,
                 note: np.ndarray | None = None, rows: int = 1) -> FrameInputs:
    """:class:`FrameInputs` for ``rows`` rows from per-frame numpy arrays.

    ``z``: ``ndarray[n x z_dim]`` (:meth:`core.latent.NoiseSource.next`), shared by all rows.
    ``tokens``: a held token, ``ndarray[n]`` or ``ndarray[rows x n]`` (ints, taken modulo
    ``n_tokens``), or None. ``pitch``: a held MIDI note, ``ndarray[n]`` or
    ``ndarray[rows x n]``, or None. ``note``: ``ndarray[n x note_dim]`` or
    ``ndarray[rows x n x note_dim]`` (:func:`core.notes.note_features`), or None.
    A condition the model does not have is dropped (None)."""
    z = np.asarray(z, dtype=np.float32)
    if z.ndim != 2 or z.shape[1] != config.z_dim:
        raise ValueError(f"z must be ndarray[n x {config.z_dim}], got shape {z.shape}")
    n = z.shape[0]
    z_t = torch.from_numpy(np.ascontiguousarray(z.T))[None]
    if rows != 1:
        z_t = z_t.expand(rows, -1, -1)
    tok_t = pitch_t = note_t = None
    if config.n_tokens and tokens is not None:
        tok_t = _per_row(np.asarray(tokens, dtype=np.int64) % config.n_tokens, rows, n, np.int64)
    if config.has_pitch and pitch is not None:
        pitch_t = _per_row(pitch, rows, n, np.float32)
    if config.note_dim and note is not None:
        a = np.asarray(note, dtype=np.float32)
        if a.ndim == 2:
            a = a[None]
        if a.shape[1:] != (n, config.note_dim) or a.shape[0] not in (1, rows):
            raise ValueError(f"note features of shape {a.shape} for {rows} row(s) of {n} frames "
                             f"of {config.note_dim} features")
        note_t = torch.from_numpy(np.array(np.broadcast_to(a, (rows, n, config.note_dim))))
    return FrameInputs(z_t, tok_t, pitch_t, note_t)
