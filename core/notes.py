"""The note condition: where each frame sits in the life of its note.

A performer's note has a shape (attack, decay, sustain, release) that pitch and timbre
tokens do not carry. A generator with ``note_dim = NOTE_DIM`` is told, per frame:

* ``held``: 1 while a key is down, 0 after its release (and before any note);
* the age of the latest note-on, as ``exp(-age / tau)`` for ``ONSET_TAUS`` (frames): the
  attack (tau 4 frames, 46 ms), the decay (40, 0.46 s) and the slow fade (200, 2.3 s)
  of a held note;
* the age of the latest release, as ``exp(-age / RELEASE_TAU)`` while no key is down.

Ages are in frames (22050 / 256 = 86.1 frames per second for the default mel); ``inf``
means "never" (long ago), which gives 0. While a key is down its onset age stops at
``HELD_AGE_MAX`` (96 frames, 1.1 s): the default corpus's notes last 0.25-1.5 s, so a
note held longer (or the instrument's drone, :func:`held_note`) stays in its sustain as
the model learnt it, instead of moving to ages it never saw. Training reads the ages from
note labels (:func:`note_clock`); the player from its voices.
"""
from __future__ import annotations

import numpy as np

ONSET_TAUS = (4.0, 40.0, 200.0)
RELEASE_TAU = 8.0
HELD_AGE_MAX = 96.0
NOTE_DIM = 2 + len(ONSET_TAUS)


def note_features(held: np.ndarray, onset_age: np.ndarray, release_age: np.ndarray) -> np.ndarray:
    """``held``, ``onset_age``, ``release_age``: ``ndarray[... x n]`` (ages in frames, inf:
    never) -> ``ndarray[... x n x NOTE_DIM]`` float32."""
    held = np.asarray(held, np.float32)
    on = np.asarray(onset_age, np.float64)
    on = np.where(held > 0, np.minimum(on, HELD_AGE_MAX), on)
    off = np.asarray(release_age, np.float64)
    parts = [held] + [np.exp(-on / tau) for tau in ONSET_TAUS]
    parts.append((1.0 - held) * np.exp(-off / RELEASE_TAU))
    return np.stack(parts, -1).astype(np.float32)


def held_note(shape: tuple[int, ...]) -> np.ndarray:
    """The features of a note held for ever (its sustain): ``ndarray[*shape x NOTE_DIM]``."""
    return np.broadcast_to(HELD_NOTE, (*shape, NOTE_DIM)).copy()


HELD_NOTE = note_features(np.ones(1), np.full(1, np.inf), np.zeros(1))[0]


def note_clock(notes: list[tuple[int, int]], frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(held, onset_age, release_age), each ``ndarray[frames]``, from notes given as
    (onset frame, offset frame) pairs. ``held`` is 1 while any note is down; the onset age
    counts from the latest onset; the release age from the latest offset once no note is
    down (0 while one is)."""
    held = np.zeros(frames, np.float32)
    onset = np.full(frames, -np.inf)
    offset = np.full(frames, -np.inf)
    for a, b in sorted(notes):
        a, b = max(int(a), 0), max(int(b), int(a) + 1)
        if a >= frames:
            continue
        held[a:min(b, frames)] = 1.0
        onset[a] = a
        if b < frames:
            offset[b] = max(offset[b], b)
    t = np.arange(frames)
    last_on = np.maximum.accumulate(onset)
    last_off = np.maximum.accumulate(offset)
    onset_age = t - last_on                       # inf before the first onset
    release_age = np.where(held > 0, 0.0, t - last_off)
    return held, onset_age, release_age
