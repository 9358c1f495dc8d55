"""One bundle playing: its Synth and the sources that feed it, producing device-rate audio.

Owned by the engine thread alone (the loader thread builds it, then hands it over).
"""
from __future__ import annotations

import numpy as np
import soxr
import torch

from core.bundle import Bundle
from core.latent import NoiseSource
from core.limiter import is_runaway
from core.synth import Synth

from .params import Snapshot
from .sources import PitchSource, TokenSource


def resampler_delay(in_rate: int, out_rate: int, chunk: int = 512) -> float:
    """Output samples a soxr stream holds back, on average, when fed ``chunk`` samples at a
    time (measured over 3 s after 1 s of warm-up; soxr works in internal blocks, so the
    holdback swings around this mean, between about 5 and 42 ms for 22050 -> 48000 Hz)."""
    s = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality="HQ")
    got, deficits = 0, []
    n_chunks = 4 * in_rate // chunk
    for i in range(1, n_chunks + 1):
        got += len(s.resample_chunk(np.zeros(chunk, np.float32)))
        if i > n_chunks // 4:
            deficits.append(i * chunk * out_rate / in_rate - got)
    return float(np.mean(deficits))


class BundlePlayer:
    def __init__(self, bundle: Bundle, out_rate: int, seed_a: int = 0, seed_b: int = 1,
                 precision: str = "float32", batch: int = 1):
        self.bundle = bundle
        self.synth = Synth(bundle, precision)
        self.out_rate = out_rate
        self.name = bundle.name
        cfg = bundle.generator.config
        self.cfg = cfg
        self.noise = NoiseSource(cfg.z_dim, seed_a, seed_b)
        self.tokens = TokenSource(cfg.n_tokens, bundle.token_stats, seed=seed_a) if cfg.n_tokens else None
        self.pitch = PitchSource(bundle.sample_rate / bundle.hop)
        self.resampler = self._new_resampler()
        self.pending = np.zeros(0, np.float32)     # resampled audio not yet handed out
        self.nan_events = 0
        self._delay_s: float | None = None
        self.last_mel: np.ndarray | None = None    # [n x n_mels] standardized, for taps
        self.last_tokens: np.ndarray | None = None
        self.last_pitch: np.ndarray | None = None
        self.synth.reset()

    def _new_resampler(self):
        if self.bundle.sample_rate == self.out_rate:
            return None
        return soxr.ResampleStream(self.bundle.sample_rate, self.out_rate, 1, dtype="float32", quality="HQ")

    @property
    def delay_s(self) -> float:
        """Model look-ahead plus what the resampler holds back, seconds."""
        if self._delay_s is None:
            d = self.synth.delay / self.bundle.sample_rate
            if self.resampler is not None:
                d += resampler_delay(self.bundle.sample_rate, self.out_rate) / self.out_rate
            self._delay_s = d
        return self._delay_s

    def reset(self) -> None:
        """Panic: model state, resampler and anything pending."""
        self.synth.reset()
        self.resampler = self._new_resampler()
        self.pending = np.zeros(0, np.float32)

    def render(self, n: int, snap: Snapshot) -> None:
        """Runs ``n`` frames; appends device-rate audio to :attr:`pending`."""
        v = snap.values
        if int(v["seed_a"]) != self.noise.a.seed:
            self.noise.reseed("a", int(v["seed_a"]))
        if int(v["seed_b"]) != self.noise.b.seed:
            self.noise.reseed("b", int(v["seed_b"]))
        z = self.noise.next(n, v["morph"], v["drift"], v["temperature"], v["freeze"] >= 0.5)
        z_t = torch.from_numpy(np.ascontiguousarray(z.T))[None]
        tok_t = pitch_t = None
        if self.tokens is not None:
            self.last_tokens = self.tokens.next(n, int(v["token_mode"]), int(v["token"]), v["token_rate"])
            tok_t = torch.from_numpy(self.last_tokens)[None]
        if self.cfg.has_pitch:
            self.last_pitch = self.pitch.next(n, v["pitch"], v["glide"])
            pitch_t = torch.from_numpy(self.last_pitch)[None]
        audio, mel = self.synth.step(z_t, tok_t, pitch_t)
        block = audio[0].numpy()
        if is_runaway(block):
            # NaN/Inf or a runaway level: silence for this block and a fresh state
            self.nan_events += 1
            block = np.zeros_like(block)
            self.synth.reset()
            self.last_mel = None
        else:
            self.last_mel = mel[0].T.numpy()
        if self.resampler is not None:
            block = self.resampler.resample_chunk(block)
        self.pending = np.concatenate((self.pending, block)) if len(self.pending) else block

    def take(self, n: int) -> np.ndarray:
        out, self.pending = self.pending[:n], self.pending[n:]
        return out
