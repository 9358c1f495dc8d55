"""The synth's real-time step through compiled calls (:mod:`core.compiled`), on any device
without CUDA graphs (the CPU).

Seven kinds of call make a 1-frame step: the generator's inputs, each of its five levels
(the frame clock decides which run: level 0 every 16th frame, level 4 every frame) and the
vocoder chain (vocoder, its silence offset, mel matching). Each is compiled once per shape;
the frame clock, the held samples of each level and the per-voice mix stay in Python.

* **Fewer rows.** Graphs are compiled for the whole batch (one row per voice) and for the
  smaller row counts :meth:`CompiledSteps.prepare` is given (``fewer``, by default 1: one
  voice sounding, the drone or a single line, is the common case). A step of ``k``
  sounding rows runs the ``k``-row graphs, which gather those rows of every state, advance
  them and scatter them back into the whole state inside the graph (the rows are a graph
  input), so it costs about what ``k`` voices cost. A row count without graphs runs the
  whole batch's graphs: the silent rows are computed too and their states put back
  (``torch.where`` on the batch dimension); their outputs are not returned.
* **Prepared.** :meth:`CompiledSteps.prepare` compiles the graphs of ``frames``-frame steps
  at every phase of the frame clock, on the steady states of the full batch (after
  :meth:`core.synth.Synth.settle`), and leaves the state as it found it. A step it did not
  prepare, or one before the states exist again (after a reset), runs eagerly.

Compiled and eager steps give the same audio within 1e-5, in any mix and for any set of
sounding rows (``tests/test_compiled.py``).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import torch

from .compiled import CompiledCall, NotReady
from .notes import held_note
from .streaming import BatchSubset, set_state, stream_states

FEWER_ROWS = (1,)    # the smaller row counts prepared by default (each costs a compile at start)


class CompiledSteps:
    """:meth:`step` runs a :class:`core.synth.Synth` step through compiled calls; see the
    module docstring."""

    def __init__(self, synth):
        self.synth = synth
        g = synth.generator
        self.inputs = CompiledCall(g.inputs, [], "generator inputs")
        self.first = CompiledCall(g.first_level, [g.block0, g.head0], "generator level 0")
        self.levels = {level: CompiledCall(self._level_fn(level), [g.blocks[level - 1], g.heads[level - 1]],
                                           f"generator level {level}")
                       for level in range(1, g.config.n_levels + 1)}
        chain = [synth.vocoder, *synth.post_filters]
        self.voice = CompiledCall(synth.voice, chain, "vocoder chain")
        self.generator_calls = (self.inputs, self.first, self._next_level)
        self.models = [g] + chain
        self.states = [(m, attr, dim, plain) for model in self.models for m, attr, dim, plain in stream_states(model)]
        self.rows: int | None = None               # the batch the graphs are for
        self.frames: set[int] = set()
        self.narrowed: set[tuple[int, int]] = set()  # (rows, frames) with graphs of their own
        self._ranks: list[int | None] = []
        self._masks: dict[tuple[int, ...], list[torch.Tensor]] = {}
        self._indices: dict[tuple[int, ...], torch.Tensor] = {}

    def _level_fn(self, level: int):
        g = self.synth.generator
        return lambda body, head, into: g.next_level(level, body, head, into)

    def _next_level(self, level: int, body, head, into):
        return self.levels[level](body, head, into)

    @property
    def calls(self) -> list[CompiledCall]:
        return [self.inputs, self.first, *self.levels.values(), self.voice]

    @property
    def failed(self) -> str | None:
        """Why some call cannot be compiled (it then runs eagerly), or None."""
        return next((c.failed for c in self.calls if c.failed), None)

    def ready(self, rows: int, frames: int) -> bool:
        return rows == self.rows and frames in self.frames

    # -- preparing ----------------------------------------------------------------------

    def prepare(self, rows: int, frames: int = 1, fewer: tuple[int, ...] = FEWER_ROWS) -> float:
        """Compiles the graphs of ``frames``-frame steps of ``rows`` rows, and of each row
        count in ``fewer`` below ``rows`` (run on the first rows' states), at every phase of
        the frame clock; returns the seconds it took. The synth's state and clock are left as
        they were; it must be steady (settled with ``rows`` rows)."""
        s, g = self.synth, self.synth.generator
        saved, frame0 = self._save(), g.frame
        if g.frame < g.stride or any(v is not None and v.shape[dim] != rows
                                     for v, (_, _, dim, _) in zip(saved, self.states)):
            raise NotReady("prepare needs the settled state of every row")
        self._ranks = [None if v is None else v.dim() for v in saved]
        self._masks.clear()
        t0 = time.perf_counter()
        narrowed = sorted(k for k in set(fewer) if 0 < k < rows)
        for call in self.calls:
            call.preparing = True
        try:
            base = -(-frame0 // g.stride) * g.stride
            for k in [rows] + narrowed:
                inputs = self._default_inputs(k, frames)
                for phase in range(g.stride):
                    g.frame = base + phase
                    with torch.inference_mode(), self._narrowed(list(range(k)), rows):
                        s._compute(*inputs, calls=self)
                    self._restore(saved)
        finally:
            for call in self.calls:
                call.preparing = False
            self._restore(saved)
            g.frame = frame0
        self.rows = rows
        self.frames.add(frames)
        self.narrowed.update((k, frames) for k in narrowed)
        return time.perf_counter() - t0

    def _default_inputs(self, rows: int, frames: int) -> tuple:
        """(z, tokens, pitch, note) of ``rows`` rows at the generator's defaults."""
        s, cfg = self.synth, self.synth.generator.config
        z = torch.zeros(rows, cfg.z_dim, frames, dtype=s.dtype, device=s.device)
        tokens = torch.zeros(rows, frames, dtype=torch.long, device=s.device) if cfg.n_tokens else None
        pitch = torch.full((rows, frames), cfg.pitch_centre, device=s.device) if cfg.has_pitch else None
        note = torch.from_numpy(held_note((rows, frames))).to(s.device, s.dtype) if cfg.note_dim else None
        return z, tokens, pitch, note

    @contextmanager
    def _narrowed(self, rows: list[int], full: int) -> Iterator[None]:
        """Every call runs on the states' ``rows`` (:attr:`core.compiled.CompiledCall.rows`)
        inside, and the generator's held samples are narrowed to them meanwhile
        (:class:`core.streaming.BatchSubset`); every row when ``rows`` is every row."""
        idx = None
        if len(rows) < full:
            idx = self._indices.get(tuple(rows))
            if idx is None:
                idx = torch.tensor(rows, dtype=torch.long, device=self.synth.device)
                if len(self._indices) < 64:
                    self._indices[tuple(rows)] = idx
        if idx is None:
            yield
            return
        # the held samples of each level are the only states no call advances
        with BatchSubset(self.synth.generator.held, idx, full):
            for call in self.calls:
                call.rows = idx
            try:
                yield
            finally:
                for call in self.calls:
                    call.rows = None

    # -- the step -----------------------------------------------------------------------

    def _save(self) -> list[torch.Tensor | None]:
        return [getattr(m, attr) for m, attr, _, _ in self.states]

    def _restore(self, saved: list[torch.Tensor | None]) -> None:
        for (m, attr, _, plain), v in zip(self.states, saved):
            set_state(m, attr, plain, v)

    def _mask_views(self, rows: list[int]) -> list[torch.Tensor]:
        """Per state: True on the sounding rows, shaped to broadcast over that state."""
        key = tuple(rows)
        views = self._masks.get(key)
        if views is None:
            mask = torch.zeros(self.rows, dtype=torch.bool)
            mask[rows] = True
            mask = mask.to(self.synth.device)
            views = []
            for (_, _, dim, _), rank in zip(self.states, self._ranks):
                shape = [1] * (rank or 1)
                shape[dim] = self.rows
                views.append(None if rank is None else mask.view(shape))
            if len(self._masks) < 64:
                self._masks[key] = views
        return views

    def _full(self, rows: list[int], z, tokens, pitch, note):
        """The inputs of ``rows`` spread over every row; the other rows get the generator's
        defaults (zero noise, token 0, mid pitch, a long-held note)."""
        cfg, b = self.synth.generator.config, self.rows
        n = z.shape[2]
        idx = torch.tensor(rows, dtype=torch.long)
        zf = z.new_zeros(b, z.shape[1], n)
        zf[idx] = z
        tf = pf = nf = None
        if tokens is not None:
            tf = tokens.new_zeros(b, n)
            tf[idx] = tokens
        if pitch is not None:
            pf = pitch.new_full((b, n), cfg.pitch_centre)
            pf[idx] = pitch
        if note is not None:
            nf = torch.from_numpy(held_note((b, n))).to(note.device, note.dtype)
            nf[idx] = note
        return zf, tf, pf, nf

    def step(self, rows: list[int], z: torch.Tensor, tokens: torch.Tensor | None = None,
             pitch: torch.Tensor | None = None, note: torch.Tensor | None = None):
        """(audio ``Tensor[len(rows) x n*hop]``, mel ``Tensor[len(rows) x n_mels x n]``) of the
        sounding ``rows`` (inputs with ``len(rows)`` rows), or None: run the eager step
        (nothing has changed then)."""
        g = self.synth.generator
        saved, frame0 = self._save(), g.frame
        own = (len(rows), z.shape[2]) in self.narrowed
        every = len(rows) == self.rows or own
        if not every:
            z, tokens, pitch, note = self._full(rows, z, tokens, pitch, note)
        try:
            with self._narrowed(rows if own else list(range(self.rows)), self.rows):
                audio, mel = self.synth._compute(z, tokens, pitch, note, calls=self)
        except NotReady:
            self._restore(saved)
            g.frame = frame0
            return None
        if every:
            return audio, mel
        for (m, attr, _, plain), old, keep in zip(self.states, saved, self._mask_views(rows)):
            if old is None or keep is None:       # a state no layer keeps (a 1x1 conv's cache)
                continue
            new = torch.where(keep, getattr(m, attr), old)
            set_state(m, attr, plain, new)
        idx = torch.tensor(rows, dtype=torch.long, device=audio.device)
        return audio.index_select(0, idx), mel.index_select(0, idx)
