"""Offline rendering: the streaming chain run for a fixed duration, in chunks of K frames
(K = 0: the whole sequence in one call). Every K gives the same samples."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .bundle import Bundle
from .inputs import frame_inputs
from .latent import NoiseSource
from .notes import note_clock, note_features
from .pitch_filter import DEFAULT_STRENGTH
from .synth import Synth


def render(bundle: Bundle, seconds: float, seed: int = 0, seed_b: int | None = None,
           chunk_frames: int = 0, morph: float = 0.0, drift: float = 0.05,
           temperature: float = 1.0, token: int | None = None, pitch: float | Sequence[float] | None = None,
           morph_to: float | None = None, settle: bool = True, tokens: np.ndarray | None = None,
           mel_match: str = "full", pitch_filter: float = DEFAULT_STRENGTH) -> np.ndarray:
    """Audio ``ndarray[round(seconds * sample_rate)]`` float32, aligned for the vocoder's
    look-ahead (the first sample is the first frame's sound).

    ``pitch``: one MIDI note, or several played one after another in equal parts of the
    duration (a scale); ``morph_to``: sweep the morph linearly from ``morph`` to it over the
    duration. Both are set per frame, so every chunking still gives the same samples.
    ``token``: held throughout; None: the bundle's default token (as the player starts), else 0.
    ``tokens``: one per frame instead, looped (e.g. a reference file's, :mod:`core.tokens`).
    Models with the note condition hear one note as the drone (held for ever) and several
    as notes struck one after another, each held until the next (:mod:`core.notes`).
    ``settle``: start from a settled state, as the instrument does (:meth:`Synth.settle`).
    ``mel_match``: "full", "low-latency" or "off", as the instrument plays (:mod:`core.mel_match`).
    ``pitch_filter``: the pitch post-filter's strength (:mod:`core.pitch_filter`; 0: off)."""
    synth = Synth(bundle, mel_match=mel_match, pitch_filter=pitch_filter)
    if settle:
        synth.settle()
    else:
        synth.reset()
    cfg = bundle.generator.config
    n_out = int(round(seconds * synth.sample_rate))
    delay = synth.delay
    n_frames = math.ceil((n_out + delay) / synth.hop)
    noise = NoiseSource(cfg.z_dim, seed, seed + 1 if seed_b is None else seed_b)
    if pitch is None:
        pitch = cfg.pitch_centre
    notes = np.atleast_1d(np.asarray(pitch, dtype=np.float64))
    if notes.size == 0:
        raise ValueError("pitch: give at least one note")
    sound_frames = max(1, math.ceil(n_out / synth.hop))
    frame_pitch = notes[np.minimum(np.arange(n_frames) * len(notes) // sound_frames, len(notes) - 1)]
    frame_morph = (np.full(n_frames, morph) if morph_to is None else
                   morph + (morph_to - morph) * np.minimum(np.arange(n_frames) / max(sound_frames - 1, 1), 1.0))
    frame_note = None
    if cfg.note_dim and len(notes) > 1:
        starts = [math.ceil(i * sound_frames / len(notes)) for i in range(len(notes))] + [n_frames]
        frame_note = note_features(*note_clock(list(zip(starts[:-1], starts[1:])), n_frames))
    if token is None:
        token = bundle.default_token
    token = int(np.clip(token, 0, max(cfg.n_tokens - 1, 0)))     # as the player's hold mode clips it
    k = chunk_frames if chunk_frames > 0 else n_frames
    pieces = []
    for start in range(0, n_frames, k):
        n = min(k, n_frames - start)
        z = noise.next(n, frame_morph[start:start + n], drift, temperature)
        if not cfg.n_tokens or tokens is None:
            toks = token
        else:
            toks = np.asarray(tokens, np.int64)[np.arange(start, start + n) % len(tokens)]
        note = frame_note[start:start + n] if frame_note is not None else None
        audio, _ = synth.step_inputs(frame_inputs(cfg, z, toks, frame_pitch[start:start + n], note))
        pieces.append(audio[0].float().cpu().numpy())
    return np.concatenate(pieces)[delay:delay + n_out].astype(np.float32)
