"""The synth's steady-state step as a CUDA graph: one launch instead of hundreds of kernels.

On a GPU a real-time step is hundreds of tiny kernels, each paid in launch latency (an
H100 took about 10 ms a step whatever the voice count: benchmarks/results/gpu_h100.json).
:class:`StepGraphs` records the step of a :class:`core.synth.Synth` once and replays it. What the recording needs:

* **Static memory.** Every stream state tensor (each module's ``state_attrs``) becomes a
  buffer of its own that the step reads and, at its end, writes the advanced state back
  into in place; inputs are copied into static input buffers before a replay and outputs
  read from static output buffers after it.
* **Every row, masked.** The step computes all rows of the batch; rows that do not sound
  keep their state (the write-back takes the old value where the row's mask is off), as
  :class:`core.streaming.BatchSubset` leaves them. Their outputs are not returned.
* **One recording per control flow.** The generator's frame clock decides which levels run
  (:class:`core.generator.StreamingUNAGAN`), so a step is recorded per (frames, frame clock
  phase, conditions given); the clock itself (a Python int) is advanced after a replay.
* **A steady state.** A step is recorded only once every state it touches exists (16
  frames after a reset); a step that would create or reshape a state, a reset, or a failed
  recording falls back to the eager step.

``record=False`` runs the same static-buffer step without recording it (any device): the
rules above checked on a CPU (``tests/test_step_speed_paths.py``), where the graphs
themselves are tested on a GPU only.
"""
from __future__ import annotations

from typing import Callable

import torch

from .notes import held_note
from .streaming import set_state, stream_states


class NotSteady(RuntimeError):
    """The step would create or reshape a stream state: run it eagerly."""


class StepGraphs:
    """Recorded steps of ``synth`` for a batch of ``rows`` rows (see the module docstring).

    ``step(rows, z, tokens, pitch, note)`` runs the step for the sounding ``rows`` (inputs
    with ``len(rows)`` rows) and returns their (audio, mel), or None when it cannot (then
    the caller runs the eager step; after :attr:`stale` it must also drop this object, whose
    buffers no longer hold the state)."""

    def __init__(self, synth, rows: int, record: bool = True):
        self.synth, self.rows, self.record = synth, rows, record
        self.device = synth.device
        self.models = [synth.generator, synth.vocoder, *synth.post_filters]
        self.states: list[tuple] | None = None       # (module, attr, dim, plain) of each state in use
        self.absent: list[tuple] = []                # (module, attr, plain) of the states not in use
        self.buffers: list[torch.Tensor] = []
        self.stale = False
        self.replays = 0                             # steps run through this object
        self.steps: dict[tuple, Callable[[], None]] = {}
        self.io: dict[tuple, dict[str, torch.Tensor]] = {}
        self.pool = torch.cuda.graph_pool_handle() if record else None
        self.failed: str | None = None               # why recording was given up, if it was
        self.mask = torch.zeros(rows, dtype=torch.bool, device=self.device)

    # -- static buffers -----------------------------------------------------------------

    def _adopt_states(self) -> bool:
        """Moves every existing state into a buffer of its own (once); False while some
        state still has another batch size."""
        if self.states is not None:
            return True
        found, absent = [], []
        for model in self.models:
            for m, attr, dim, plain in stream_states(model):
                t = getattr(m, attr)
                if t is None:
                    absent.append((m, attr, plain))
                    continue
                if t.shape[dim] != self.rows:
                    return False
                found.append((m, attr, dim, plain))
        self.buffers = []
        for m, attr, dim, plain in found:
            buf = getattr(m, attr).clone(memory_format=torch.contiguous_format)
            self.buffers.append(buf)
            set_state(m, attr, plain, buf)
        self.states, self.absent = found, absent
        return True

    def _restore(self) -> None:
        """Every state attribute back to its buffer (or None), after a recording or a step
        that could not run."""
        for (m, attr, dim, plain), buf in zip(self.states, self.buffers):
            set_state(m, attr, plain, buf)
        for m, attr, plain in self.absent:
            set_state(m, attr, plain, None)

    def _io(self, key: tuple) -> dict[str, torch.Tensor]:
        """Static inputs and outputs of the step ``key`` = (frames, phase, pitch given?): z,
        the generator's conditions (tokens, pitch, note) and the outputs. A condition not
        given in a step holds the generator's own default: token 0, a long-held note."""
        io = self.io.get(key)
        if io is None:
            n, _, has_pitch = key
            s, g = self.synth, self.synth.generator.config
            b, dev = self.rows, self.device
            io = {"z": torch.zeros(b, g.z_dim, n, dtype=s.dtype, device=dev),
                  "audio": torch.zeros(b, n * s.hop, device=dev),
                  "mel": torch.zeros(b, g.n_mels, n, device=dev)}
            if g.n_tokens:
                io["tokens"] = torch.zeros(b, n, dtype=torch.long, device=dev)
            if has_pitch:                    # (the vocoder takes it as f0 even without the condition)
                io["pitch"] = torch.full((b, n), g.pitch_centre, device=dev)
            if g.note_dim:
                io["note"] = torch.from_numpy(held_note((b, n))).to(dev, s.dtype)
                io["held_note"] = io["note"].clone()
            self.io[key] = io
        return io

    def _fill(self, io: dict[str, torch.Tensor], rows: list[int], idx: torch.Tensor | None,
              z, tokens, pitch, note) -> None:
        """The step's inputs into the static inputs (rows ``rows``; ``idx``: them on the
        device, None when they are every row), defaults where not given."""
        every = idx is None
        given = {"z": z, "tokens": tokens, "pitch": pitch, "note": note}
        for name, value in given.items():
            buf = io.get(name)
            if buf is None:
                continue
            if value is None:                    # the generator's default (pitch None is in the key)
                buf.zero_() if name == "tokens" else buf.copy_(io["held_note"])
                continue
            value = value.to(self.device, buf.dtype, non_blocking=True)
            buf.copy_(value) if every else buf.index_copy_(0, idx, value)
        mask = torch.zeros(self.rows, dtype=torch.bool)
        mask[rows] = True
        self.mask.copy_(mask, non_blocking=True)

    def _static_step(self, io: dict[str, torch.Tensor]) -> None:
        """The step on the static inputs; advanced states written back into their buffers
        where the row sounds; outputs into the static outputs. Raises :class:`NotSteady`
        (before writing anything) when a state would appear or change its shape."""
        audio, mel = self.synth._compute(io["z"], io.get("tokens"), io.get("pitch"), io.get("note"))
        new = [getattr(m, attr) for m, attr, _, _ in self.states]
        for (m, attr, _, _), t, buf in zip(self.states, new, self.buffers):
            if t is None or t.shape != buf.shape or t.dtype != buf.dtype:
                raise NotSteady(f"{type(m).__name__}.{attr}")
        for m, attr, _ in self.absent:
            if getattr(m, attr) is not None:
                raise NotSteady(f"{type(m).__name__}.{attr} appears")
        for (m, attr, dim, plain), t, buf in zip(self.states, new, self.buffers):
            shape = [1] * buf.dim()
            shape[dim] = self.rows
            buf.copy_(torch.where(self.mask.view(shape), t, buf))
            set_state(m, attr, plain, buf)
        io["audio"].copy_(audio)
        io["mel"].copy_(mel)

    def _new_step(self, key: tuple) -> Callable[[], None]:
        io = self._io(key)
        if not self.record:
            return lambda: self._static_step(io)
        gen = self.synth.generator
        frame0, mask = gen.frame, self.mask.clone()
        self.mask.zero_()                 # warm-up and recording leave every state as it is
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        try:
            with torch.cuda.stream(side):  # warm-up on the recording stream (library workspaces)
                self._static_step(io)
                gen.frame = frame0
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool, stream=side):
                self._static_step(io)
        finally:
            gen.frame = frame0
            self.mask.copy_(mask)
            self._restore()
        return graph.replay

    # -- the step -----------------------------------------------------------------------

    def step(self, rows: list[int], z: torch.Tensor, tokens: torch.Tensor | None = None,
             pitch: torch.Tensor | None = None, note: torch.Tensor | None = None):
        """(audio ``Tensor[len(rows) x n*hop]``, mel ``Tensor[len(rows) x n_mels x n]``) of the
        sounding ``rows``, or None: run the eager step."""
        if self.failed is not None:
            return None
        gen = self.synth.generator
        n = z.shape[2]
        if gen.frame < gen.stride or not self._adopt_states():
            return None
        key = (n, gen.frame % gen.stride, pitch is not None)
        io = self._io(key)
        every = len(rows) == self.rows
        idx = None if every else torch.tensor(rows, dtype=torch.long, device=self.device)
        self._fill(io, rows, idx, z, tokens, pitch, note)
        run = self.steps.get(key)
        frame0 = gen.frame
        try:
            if run is None:
                run = self.steps[key] = self._new_step(key)
            run()
        except NotSteady:
            self._restore()
            gen.frame = frame0
            self.stale = True
            return None
        except Exception as e:               # a step the device cannot record: eager from now on
            self._restore()
            gen.frame = frame0
            self.failed = f"{type(e).__name__}: {e}"
            return None
        gen.frame = frame0 + n
        self.replays += 1
        audio, mel = io["audio"], io["mel"]
        if every:
            return audio.clone(), mel.clone()
        return audio.index_select(0, idx), mel.index_select(0, idx)
