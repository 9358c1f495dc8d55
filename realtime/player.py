"""One bundle playing: its Synth and the sources that feed it, producing device-rate audio.

A step has two halves: :meth:`BundlePlayer.prepare` (the noise, token and envelope sources,
frame by frame; which voices sound) and :meth:`BundlePlayer.synthesize` (the model over the
prepared steps). The engine runs both for each step (:meth:`BundlePlayer.render`); the
offline MIDI renderer (:mod:`realtime.offline`) prepares 1-frame steps one by one and
synthesizes runs of them at once.

Owned by the engine thread alone (the loader thread builds it, then hands it over).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from core.bundle import Bundle
from core.compiled import NotReady, compiler_available, use_cache_dir
from core.compiled_step import FEWER_ROWS
from core.inputs import FrameInputs, frame_inputs
from core.latent import NoiseSource
from core.limiter import is_runaway
from core.pitch_filter import DEFAULT_STRENGTH
from core.resample import LowDelayResampler
from core.synth import Synth

from .params import ControlBus, Snapshot
from .sources import TokenSource
from .voices import VoiceBank


@dataclass(frozen=True)
class StepWork:
    """One step, prepared (:meth:`BundlePlayer.prepare`): what the model still has to run."""
    frames: int                     # n
    rows: list[int]                 # the voices computed (those that sound)
    inputs: FrameInputs | None      # their inputs, ``len(rows)`` rows; None: no row sounds
    env: np.ndarray                 # ndarray[n_voices x n*hop]: each voice's gain per sample
    loudest: int                    # index into ``rows`` of the loudest voice at the last frame


def join_frames(parts: list[FrameInputs]) -> FrameInputs:
    """Inputs of consecutive steps (the same rows) as one run of frames."""
    cat = lambda ts, dim: None if ts[0] is None else torch.cat(ts, dim)        # noqa: E731
    return FrameInputs(cat([p.z for p in parts], 2), cat([p.tokens for p in parts], 1),
                       cat([p.pitch for p in parts], 1), cat([p.note for p in parts], 1))


class BundlePlayer:
    def __init__(self, bundle: Bundle, out_rate: int, seed_a: int = 0, seed_b: int = 1,
                 precision: str = "float32", n_voices: int = 1, mel_match: str = "full",
                 compile_frames: int | None = None, compile_fewer: tuple[int, ...] = FEWER_ROWS,
                 pitch_filter: float = DEFAULT_STRENGTH):
        """``compile_frames``: compile the synth's steps of that many frames
        (:mod:`core.compiled_step`) after settling, for every voice and for ``compile_fewer``
        sounding voices; :attr:`step_path` says how it went. ``pitch_filter``: the pitch
        post-filter's strength (:mod:`core.pitch_filter`; 0: off)."""
        self.bundle = bundle
        self.synth = Synth(bundle, precision, mel_match, pitch_filter=pitch_filter)
        self.out_rate = out_rate
        self.name = bundle.name
        cfg = bundle.generator.config
        self.cfg = cfg
        self._seeds = (seed_a, seed_b)
        self.noise, self.tokens = self._new_sources()
        self.n_voices = n_voices
        self.frame_rate = bundle.sample_rate / bundle.hop
        self._env_delay = np.zeros((n_voices, self.synth.delay), np.float32)   # aligns levels with audio
        self._last_level = np.zeros(n_voices, np.float32)
        self.resampler = self._new_resampler()
        self.pending = np.zeros(0, np.float32)     # resampled audio not yet handed out
        self.nan_events = 0
        self._delay_s: float | None = None
        self.last_mel: np.ndarray | None = None    # [n x n_mels] standardized, for taps
        self.last_tokens: np.ndarray | None = None
        self.last_pitch: np.ndarray | None = None
        self.compile_s = 0.0
        self.synth.settle(n_voices)     # on the constructing thread (the loader, for hot swaps)
        self.step_path = "eager"        # or "compiled", or "eager (why compiling failed)"
        self._compile_fewer = compile_fewer
        if compile_frames:
            self._compile(compile_frames, compile_fewer)

    def step_cost(self, frames: int, seconds: float = 1.0) -> float:
        """The real-time factor of ``frames``-frame steps with every voice sounding: thread
        CPU seconds per second of audio made, over ``seconds`` of audio (after 4 unmeasured
        steps). A compiled player compiles that step first. Afterwards the player is as just
        built (:meth:`restart`), so what it plays next does not depend on the measurement
        (``tests/test_step_size.py``)."""
        compiled = self.synth.compiled
        if self.step_path == "compiled" and compiled is not None and frames not in compiled.frames:
            self._compile(frames, self._compile_fewer)
        bank = VoiceBank(self.n_voices, self.frame_rate)
        for i in range(self.n_voices):
            bank.note_on(48 + 5 * i, 100)
        snap = ControlBus().snapshot(0.0)
        steps = max(1, int(round(seconds * self.frame_rate / frames)))
        took = 0.0
        for i in range(steps + 4):
            t0 = time.thread_time()
            self.render(frames, snap, bank, bank.render(frames, 60.0, 0.05, 0.01, 0.3))
            self.pending = self.pending[:0]
            if i >= 4:
                took += time.thread_time() - t0
        self.restart()
        return took / (steps * frames / self.frame_rate)

    def restart(self) -> None:
        """Back to the state the constructor left: model state settled again, the noise and
        token sources at their seeds, nothing pending (the compiled graphs are kept)."""
        self.reset()
        self.synth.settle(self.n_voices)
        old = self.tokens
        self.noise, self.tokens = self._new_sources()
        if old is not None:         # what the user gave it stays
            self.tokens.sequence, self.tokens.reference = old.sequence, old.reference
        self.nan_events = 0
        self.last_mel = self.last_tokens = self.last_pitch = None

    def _new_sources(self) -> tuple[NoiseSource, TokenSource | None]:
        """The noise and token sources at their seeds."""
        cfg, (seed_a, seed_b) = self.cfg, self._seeds
        tokens = TokenSource(cfg.n_tokens, self.bundle.token_stats, seed=seed_a) if cfg.n_tokens else None
        return NoiseSource(cfg.z_dim, seed_a, seed_b), tokens

    def _compile(self, frames: int, fewer: tuple[int, ...]) -> None:
        missing = compiler_available()
        if missing is not None:
            self.step_path = f"eager ({missing})"
            return
        use_cache_dir()
        try:
            took = self.synth.prepare_compiled(self.n_voices, frames, fewer)
        except NotReady as e:
            self.step_path = f"eager (compiling failed: {e})"
            return
        self.step_path = "compiled"
        self.compile_s += took          # every step size compiled (realtime/step_size.py may add one)

    def _new_resampler(self):
        if self.bundle.sample_rate == self.out_rate:
            return None
        # a minimum-phase polyphase FIR: holdback <= 2 ms, images and aliases >= 70 dB down
        # (core/resample.py; tests/test_resample.py)
        return LowDelayResampler(self.bundle.sample_rate, self.out_rate)

    @property
    def delay_s(self) -> float:
        """Model look-ahead plus what the resampler holds back, seconds."""
        if self._delay_s is None:
            d = self.synth.delay / self.bundle.sample_rate
            if self.resampler is not None:
                d += self.resampler.holdback_s
            self._delay_s = d
        return self._delay_s

    def reset(self) -> None:
        """Panic: model state, resampler and anything pending."""
        self.synth.reset()
        if self.resampler is not None:
            self.resampler.reset()
        self.pending = np.zeros(0, np.float32)
        self._env_delay[:] = 0
        self._last_level[:] = 0

    def _note_tokens(self, base: np.ndarray, stage: np.ndarray, since: np.ndarray,
                     voices: VoiceBank, token_base: int) -> np.ndarray:
        """Token models in note mode: each voice's note picks a token; with token statistics,
        attack tokens after the note-on, sustain tokens looped while held, release after."""
        out = np.repeat(base[None], voices.n, 0)
        stats = self.bundle.token_stats or {}
        phases = {1: stats.get("attack"), 2: stats.get("sustain"), 3: stats.get("release")}
        for i, v in enumerate(voices.voices):
            if v.note is None:
                continue
            own = (v.note - token_base) % self.cfg.n_tokens
            for t in range(out.shape[1]):
                seq = phases.get(int(stage[i, t]))
                if seq:
                    out[i, t] = int(seq[since[i, t] % len(seq)]) % self.cfg.n_tokens
                else:
                    out[i, t] = own
        return out

    def render(self, n: int, snap: Snapshot, voices: VoiceBank, controls) -> None:
        """Runs ``n`` frames for every voice; appends their device-rate mix to :attr:`pending`.
        ``controls``: ``voices.render(...)`` for this step (:class:`VoiceControls`)."""
        block, = self.synthesize([self.prepare(n, snap, voices, controls)])
        self.pending = np.concatenate((self.pending, block)) if len(self.pending) else block

    def prepare(self, n: int, snap: Snapshot, voices: VoiceBank, controls) -> StepWork:
        """The control half of :meth:`render`: advances the noise and token sources and the
        envelope by ``n`` frames and returns the model's inputs for them; the model has not
        run yet (:meth:`synthesize` runs it)."""
        v = snap.values
        if int(v["seed_a"]) != self.noise.a.seed:
            self.noise.reseed("a", int(v["seed_a"]))
        if int(v["seed_b"]) != self.noise.b.seed:
            self.noise.reseed("b", int(v["seed_b"]))
        pitch, level, stage, since = controls.pitch, controls.level, controls.stage, controls.since
        b = self.n_voices
        z = self.noise.next(n, v["morph"], v["drift"], v["temperature"], v["freeze"] >= 0.5)
        toks = None
        if self.tokens is not None:
            base = self.tokens.next(n, int(v["token_mode"]), int(v["token"]), v["token_rate"])
            if voices.gated and int(v["note_mode"]) == 1:
                toks = self._note_tokens(base, stage, since, voices, int(v["token_base"]))
            else:
                toks = np.repeat(base[None], b, 0)
            self.last_tokens = toks[int(np.argmax(level[:, -1]))]
        if self.cfg.has_pitch:
            self.last_pitch = pitch[int(np.argmax(level[:, -1]))]
        note = controls.note_features() if self.cfg.note_dim else None
        inputs = frame_inputs(self.cfg, z, toks, pitch, note, rows=b)
        env = self._envelope(level, n * self.bundle.hop)
        # only the voices that sound (or still have delayed envelope to play) are computed
        rows = [i for i in range(b) if env[i].any() or level[i].any()] if b > 1 else [0]
        if not rows:
            return StepWork(n, rows, None, env, 0)
        return StepWork(n, rows, inputs.select(rows), env, int(np.argmax(level[rows, -1])))

    def synthesize(self, steps: list[StepWork]) -> list[np.ndarray]:
        """The model half of :meth:`render`: each prepared step's device-rate mix, in order.
        Consecutive steps that compute the same rows run through the model in one call, so a
        run of 1-frame steps advances every row's state as the steps one by one would
        (``tests/test_render_midi.py`` chunks them); a step whose rows differ starts a new call."""
        blocks: list[np.ndarray] = []
        start = 0
        while start < len(steps):
            end = start + 1
            while end < len(steps) and steps[end].rows == steps[start].rows:
                end += 1
            blocks += self._synthesize_run(steps[start:end])
            start = end
        return blocks

    def _synthesize_run(self, steps: list[StepWork]) -> list[np.ndarray]:
        """:meth:`synthesize` for steps that share their rows. After a runaway step the state
        is fresh, and the steps after it run again from there, as they would have one by one."""
        rows = steps[0].rows
        hop = self.bundle.hop
        audio = mel = None
        if rows:
            x = steps[0].inputs if len(steps) == 1 else join_frames([s.inputs for s in steps])
            audio, mel = self.synth.step_rows(rows, self.n_voices, x.z, x.tokens, x.pitch, x.note)
            audio = audio.cpu().numpy()                                # [len(rows) x frames*hop]
        blocks = []
        at = 0
        for k, s in enumerate(steps):
            if rows:
                voice_audio = audio if len(steps) == 1 else audio[:, at * hop:(at + s.frames) * hop]
                block = (voice_audio * s.env[rows]).sum(0)
            else:
                block = np.zeros(s.frames * hop, np.float32)
            if is_runaway(block):
                # NaN/Inf or a runaway level: silence for this block and a fresh state
                self.nan_events += 1
                self.synth.reset()
                self.last_mel = None
                blocks.append(self._to_device(np.zeros_like(block)))
                return blocks + (self._synthesize_run(steps[k + 1:]) if k + 1 < len(steps) else [])
            if mel is not None:
                self.last_mel = mel[s.loudest, :, at:at + s.frames].T.cpu().numpy()
            blocks.append(self._to_device(block))
            at += s.frames
        return blocks

    def _to_device(self, block: np.ndarray) -> np.ndarray:
        """Model-rate ``ndarray[samples]`` -> the device rate."""
        return self.resampler.process(block) if self.resampler is not None else block

    def _envelope(self, level: np.ndarray, samples: int) -> np.ndarray:
        """Per-frame levels -> per-sample gains ``[B x samples]`` (linear ramps between frame
        ends), delayed by the model's look-ahead so they line up with the audio."""
        b, n = level.shape
        hop = samples // n
        knots = np.concatenate((self._last_level[:, None], level), 1)              # [B x n+1]
        frac = (np.arange(1, hop + 1, dtype=np.float32) / hop)[None, None, :]
        ramp = knots[:, :-1, None] + (knots[:, 1:] - knots[:, :-1])[:, :, None] * frac
        env = ramp.reshape(b, samples)
        self._last_level = level[:, -1].copy()
        d = self._env_delay.shape[1]
        if d:
            full = np.concatenate((self._env_delay, env), 1)
            env, self._env_delay = full[:, :samples], full[:, samples:].copy()
        return env

    def take(self, n: int) -> np.ndarray:
        out, self.pending = self.pending[:n], self.pending[n:]
        return out
