"""The whole streaming chain: generator -> de-standardize -> (notes beyond the generator's
pitch range: transpose, :mod:`core.mel_transpose`) -> vocoder -> frame-rate notch
(:mod:`core.frame_notch`) -> mel matching -> pitch post-filter (:mod:`core.pitch_filter`).

``Synth.step(z, tokens, pitch)`` takes per-frame inputs for ``n`` frames and returns
``n * hop`` audio samples (and the ``n`` mel frames it vocoded). Output equals a single
whole-sequence call for any chunking; audio lags by :attr:`Synth.delay` samples (the
vocoder's look-ahead and mel matching's, :mod:`core.mel_match`; the generator is causal).
"""
from __future__ import annotations

import contextlib

import torch

from .bundle import Bundle
from .compiled import NotReady
from .compiled_step import FEWER_ROWS, CompiledSteps
from . import frame_notch
from .frame_notch import FrameRateNotch
from .inputs import FrameInputs, frame_inputs
from .latent import NoiseSource
from . import mel_match as matching
from .mel_match import mel_matcher
from .mel_transpose import MelTranspose, out_of_range_shift
from .pitch import midi_to_hz
from .pitch_filter import DEFAULT_STRENGTH, PitchFilter
from . import silence_gate
from .silence_gate import SilenceGate
from .silence_offset import silence_offset
from .step_graph import StepGraphs
from .streaming import BatchSubset
from .vocoders import Vocoder


PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16}
SETTLE_FRAMES = 96          # 1.1 s at 22050 / 256
SETTLE_SEED = 0x5EED
TRANSPOSE_OUT_OF_RANGE = True   # read by Synth(); benchmarks/midi_render_quality.py --no-transpose turns it off


class Synth:
    """``precision="bfloat16"`` halves the weight bytes read per step (about 2x faster on
    CPUs with AVX512-BF16 or AMX, and on GPUs); outputs stay float32. The streaming
    contract's 1e-5 equality is a float32 property.

    ``mel_match`` passes the vocoder's audio through :mod:`core.mel_match`, which gives each
    frame the mel the generator asked for: "full" (the default here and for offline renders)
    at 896 samples (40.6 ms at 22050 Hz) more latency, "low-latency" at 384 (17.4 ms),
    "zero-latency" (live play's default) at none, "off": the vocoder's audio as it is. What
    each costs in copy-synthesis quality: benchmarks/results/mel_match_modes.json
    (``main.py bench mel_match_modes``; docs/measurements.md).

    ``graphs``: run the steady-state step as CUDA graphs (:mod:`core.step_graph`); None
    (the default) means on a CUDA device only. True elsewhere runs the graphs' static-buffer
    step without recording it (for tests).

    A note beyond the generator's pitch range plays the nearest pitch it knows, moved along
    frequency to the note (:mod:`core.mel_transpose`), while :data:`TRANSPOSE_OUT_OF_RANGE`
    is on (when the Synth is made); off, the nearest pitch's mel plays as it is (the
    baseline of ``benchmarks/midi_render_quality.py --no-transpose``).

    The stream states and the generator's frame clock live on the bundle's modules: two
    Synths that play at once need a bundle each (``load_bundle`` twice, as a hot swap does;
    ``tests/test_bench_voices.py``)."""

    def __init__(self, bundle: Bundle, precision: str = "float32", mel_match: str = "full",
                 graphs: bool | None = None, pitch_filter: float = DEFAULT_STRENGTH):
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}")
        self.bundle = bundle
        self.dtype = PRECISIONS[precision]
        self.generator = bundle.generator.to(self.dtype)
        self.vocoder: Vocoder = bundle.vocoder.to(self.dtype)
        self._mean = bundle.mean[None, :, None]
        self._std = bundle.std[None, :, None]
        self.device = bundle.mean.device
        # what the vocoder repeats every hop, taken off before mel matching sets each band's
        # level (core/frame_notch.py; tests/test_frame_notch.py); core.frame_notch.RATE 0: none
        self.frame_notch = (FrameRateNotch(bundle.hop, frame_notch.RATE, lag=self.vocoder.delay,
                                           log_floor=bundle.mel.log_floor)
                            if frame_notch.RATE > 0 else None)
        self.mel_match = mel_matcher(mel_match, bundle.mel, self.vocoder.delay)
        if self.mel_match is not None:
            self.mel_match.to(self.device)
        # each voice's f0 tells mel matching which bands lie between its partials (cut there,
        # never lifted: core/mel_match.py; tests/test_mel_match.py); the chain has f0 when the
        # vocoder takes it (Synth._compute)
        self.match_f0 = (matching.CUT_ONLY_BETWEEN_PARTIALS and self.mel_match is not None
                         and self.vocoder.takes_f0)
        # samples by which audio after mel matching lags the frames that made it
        matched_lag = self.vocoder.delay + (self.mel_match.delay if self.mel_match else 0)
        self.pitch_filter = (PitchFilter(bundle.hop, bundle.sample_rate, strength=pitch_filter,
                                         lag=matched_lag)
                             if pitch_filter > 0 and self.vocoder.takes_f0 else None)
        # silence asked for plays as digital silence (core/silence_gate.py;
        # tests/test_silence_gate.py); core.silence_gate.ENABLED off: no gate
        self.silence_gate = (SilenceGate(bundle.hop, lag=matched_lag, log_floor=bundle.mel.log_floor)
                             if silence_gate.ENABLED else None)
        # what the vocoder adds to everything it plays: taken off, so silence asked for is
        # silence (core/silence_offset.py; tests/test_silence_offset.py)
        self.offset = silence_offset(self.vocoder, bundle.mel.n_mels, bundle.mel.log_floor, self.device, self.dtype)
        self.transpose = (MelTranspose(bundle.mel).to(self.device)
                          if TRANSPOSE_OUT_OF_RANGE and self.generator.config.has_pitch else None)
        self.use_graphs = self.device.type == "cuda" if graphs is None else graphs
        self.graphs: StepGraphs | None = None
        self.compiled: CompiledSteps | None = None      # prepare_compiled

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
        """Samples by which audio lags the frames that made it (vocoder and mel-matching look-ahead)."""
        matching = self.mel_match.delay if self.mel_match is not None else 0
        return self.vocoder.delay + matching + self.generator.delay * self.hop

    def reset(self) -> None:
        self.graphs = None
        self.generator.reset()
        self.vocoder.reset()
        for m in self.post_filters:
            m.reset()

    def settle(self, rows: int = 1, frames: int = SETTLE_FRAMES) -> None:
        """Reset, then run ``frames`` frames on ``rows`` rows and discard them: a fixed noise
        walk (seed ``SETTLE_SEED``, drift 0.05), the bundle's default token, mid-range pitch. A model started
        from its zero state settles audibly: the shipped default dipped 0.9 log10 in mel
        level from frame ~40 and jumped back with a click at frame ~70 (0.8 s); after 96
        settling frames its level stayed within 0.1. Deterministic, so an offline render
        that settles the same way is what the engine plays."""
        self.reset()
        if frames <= 0:
            return
        cfg = self.generator.config
        z = NoiseSource(cfg.z_dim, SETTLE_SEED, SETTLE_SEED + 1).next(frames, drift=0.05)
        self.step_inputs(frame_inputs(cfg, z, self.bundle.default_token, cfg.pitch_centre,
                                      rows=rows))

    @torch.inference_mode()
    def step_rows(self, rows: list[int], full_batch: int, z: torch.Tensor,
                  tokens: torch.Tensor | None = None, pitch: torch.Tensor | None = None,
                  note: torch.Tensor | None = None):
        """Like :meth:`step` for the batch rows ``rows`` of a ``full_batch``-row stream
        (inputs have ``len(rows)`` rows); the other rows' state stays as it is."""
        out = self._fast_step(rows, full_batch, z, tokens, pitch, note)
        if out is not None:
            return out
        if len(rows) == full_batch:
            return self._compute(z, tokens, pitch, note)
        idx = torch.tensor(rows, dtype=torch.long, device=self.device)
        with contextlib.ExitStack() as rows_only:
            for model in (self.generator, self.vocoder, *self.post_filters):
                rows_only.enter_context(BatchSubset(model, idx, full_batch))
            return self._compute(z, tokens, pitch, note)

    def step_inputs(self, inputs: FrameInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`step` on inputs built by :func:`core.inputs.frame_inputs`."""
        return self.step(inputs.z, inputs.tokens, inputs.pitch, inputs.note)

    @torch.inference_mode()
    def step(self, z: torch.Tensor, tokens: torch.Tensor | None = None,
             pitch: torch.Tensor | None = None, note: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``z: Tensor[B x z_dim x n]`` -> (audio ``Tensor[B x n*hop]``, standardized mel
        ``Tensor[B x n_mels x n]``). ``note``: ``Tensor[B x n x note_dim]`` for generators
        with the note condition (:mod:`core.notes`; default: a long-held note)."""
        b = z.shape[0]
        out = self._fast_step(list(range(b)), b, z, tokens, pitch, note)
        return out if out is not None else self._compute(z, tokens, pitch, note)

    def _fast_step(self, rows: list[int], full_batch: int, z, tokens, pitch, note):
        """The step through CUDA graphs (:attr:`graphs`) or compiled calls (:attr:`compiled`)
        when one of them is on and can run it, else None (the caller runs it eagerly)."""
        out = None
        if self.use_graphs:
            g = self.graphs
            if g is None or g.rows != full_batch or g.stale:
                g = self.graphs = StepGraphs(self, full_batch, record=self.device.type == "cuda")
            out = g.step(rows, z, tokens, pitch, note)
        c = self.compiled
        if out is None and c is not None and c.ready(full_batch, z.shape[2]):
            out = c.step(rows, z, tokens, pitch, note)
        return out

    def prepare_compiled(self, rows: int, frames: int = 1, fewer: tuple[int, ...] = FEWER_ROWS) -> float:
        """Compiles the ``frames``-frame step of ``rows`` rows, and of ``fewer`` sounding rows
        (:mod:`core.compiled_step`),
        from the settled state (:meth:`settle` with ``rows`` rows); later steps of that shape
        run compiled. Returns the seconds it took; raises when it cannot compile (the
        steps stay eager: :attr:`compiled` is None then)."""
        compiled = self.compiled if self.compiled is not None else CompiledSteps(self)
        took = compiled.prepare(rows, frames, fewer)
        if compiled.failed:
            self.compiled = None
            raise NotReady(compiled.failed)
        self.compiled = compiled
        return took

    @property
    def post_filters(self) -> list:
        """The stateful stages after the vocoder, in order: frame-rate notch, mel matching,
        pitch filter, silence gate (those on)."""
        return [m for m in (self.frame_notch, self.mel_match, self.pitch_filter, self.silence_gate)
                if m is not None]

    def voice(self, logmel: torch.Tensor, f0: torch.Tensor | None) -> tuple[torch.Tensor]:
        """The vocoder chain of a step: log10 mel ``Tensor[B x n_mels x n]`` (and f0 ``Tensor[B
        x n]``, Hz) -> (audio ``Tensor[B x n*hop]`` float32,): the vocoder less its silence
        offset, the frame-rate notch (before mel matching, which gives back the level of a
        partial the notch cut: docs/default-model.md "Frame-rate notch"), mel matching, then
        the pitch post-filter at f0 (after mel matching, which would lift the valleys it
        cuts back towards the generator's blurred mel), and last the silence gate, so that
        nothing before it rings into the silence asked for."""
        audio = self.vocoder(logmel.to(self.dtype), f0) - self.offset
        if self.frame_notch is not None:
            audio = self.frame_notch(audio, logmel)
        if self.mel_match is not None:
            audio = self.mel_match(audio, logmel, f0 if self.match_f0 else None)
        if self.pitch_filter is not None:
            audio = self.pitch_filter(audio, f0)
        if self.silence_gate is not None:
            audio = self.silence_gate(audio, logmel)
        return (audio.float(),)

    def _shift_beyond_range(self, pitch: torch.Tensor | None) -> torch.Tensor | None:
        """Semitones each frame's pitch lies beyond the generator's range (``Tensor[B x n]``),
        or None when nothing is to be moved. Off a GPU a step with every note in range skips
        the move (a CUDA step runs it always: the test would wait for the device, and a CUDA
        graph holds no branch)."""
        if self.transpose is None or pitch is None:
            return None
        cfg = self.generator.config
        shift = out_of_range_shift(pitch, cfg.pitch_min, cfg.pitch_max)
        if self.device.type != "cuda" and not bool(shift.any()):
            return None
        return shift

    def _compute(self, z: torch.Tensor, tokens: torch.Tensor | None = None,
                 pitch: torch.Tensor | None = None, note: torch.Tensor | None = None,
                 calls: CompiledSteps | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The step (:meth:`step`) on every row: eager, or through ``calls``."""
        if tokens is not None:
            tokens = tokens.to(self.device)
        if pitch is not None:
            pitch = pitch.to(self.device)
        if note is not None:
            note = note.to(self.device)
        mel = self.generator(z.to(self.device, self.dtype), tokens, pitch, note,
                             calls=calls.generator_calls if calls is not None else None).float()
        f0 = None
        if self.vocoder.takes_f0 and pitch is not None:   # the requested pitch excites it
            f0 = midi_to_hz(pitch.float())
        logmel = mel * self._std + self._mean
        shift = self._shift_beyond_range(pitch)
        if shift is not None:
            logmel = self.transpose(logmel, shift)
            # the mel returned (the window's display) is the one voiced; unchanged in range
            mel = torch.where((shift == 0)[:, None, :], mel, (logmel - self._mean) / self._std)
        audio, = (calls.voice if calls is not None else self.voice)(logmel, f0)
        return audio, mel
