"""Voices: which notes sound, at what pitch and level, frame by frame.

A :class:`VoiceBank` of N voices drives a batch of N generator/vocoder streams. With no
note played (``gate`` off) voice 0 drones at the ``pitch`` parameter and the others are
silent. A note-on switches the gate on: each voice then follows its own note with an
attack/sustain/release envelope (sustain level = velocity), and pitch glides. When every
voice is busy, the oldest is stolen. N = 1 is monophonic with legato: a new note while
another is held glides there without a new attack; releasing it returns to the held one.

Each voice also keeps the clock of its note (frames since its note-on and since its
release) for generators with the note condition (:mod:`core.notes`); the drone is a note
held for ever.

Owned by the engine thread (MIDI events are applied there).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from core.notes import note_features


class VoiceControls(NamedTuple):
    """One step's per-voice, per-frame controls, each ``ndarray[n_voices x n]``."""
    pitch: np.ndarray        # MIDI note (fractional while gliding)
    level: np.ndarray        # envelope, 0..1
    stage: np.ndarray        # VoiceBank.STAGES code
    since: np.ndarray        # frames since the stage began
    held: np.ndarray         # 1 while the voice's key is down (the drone: always)
    onset_age: np.ndarray    # frames since the voice's note-on (inf: none, or the drone)
    release_age: np.ndarray  # frames since its release (0 while held, inf: never)

    def note_features(self) -> np.ndarray:
        """The note condition ``ndarray[n_voices x n x NOTE_DIM]`` (:mod:`core.notes`)."""
        return note_features(self.held, self.onset_age, self.release_age)


class Voice:
    def __init__(self, start_pitch: float):
        self.note: int | None = None
        self.velocity = 0.0
        self.level = 0.0
        self.stage = "idle"          # idle | attack | sustain | release
        self.pitch = float(start_pitch)
        self.age = 0                 # note-on counter value when (re)started, for stealing
        self.frames_in_stage = 0
        self.onset_age = np.inf      # frames since the latest note-on (attack)
        self.release_age = np.inf    # frames since the latest release


class VoiceBank:
    def __init__(self, n_voices: int, frame_rate: float, start_pitch: float = 60.0):
        if n_voices < 1:
            raise ValueError("need at least one voice")
        self.voices = [Voice(start_pitch) for _ in range(n_voices)]
        self.frame_rate = frame_rate
        self.gated = False
        self.held: list[tuple[int, float]] = []      # mono: notes held, oldest first
        self._counter = 0
        self.bend = 0.0                               # semitones

    @property
    def n(self) -> int:
        return len(self.voices)

    def note_on(self, note: int, velocity: int) -> int:
        """Returns the voice index that plays the note."""
        self.gated = True
        vel = max(1, min(127, velocity)) / 127.0
        self._counter += 1
        if self.n == 1:
            v = self.voices[0]
            self.held = [h for h in self.held if h[0] != note] + [(note, vel)]
            legato = v.stage in ("attack", "sustain")
            v.note, v.velocity = note, vel
            if not legato:
                v.stage, v.frames_in_stage, v.onset_age = "attack", 0, 0.0
            return 0
        for i, v in enumerate(self.voices):          # the same note again: retrigger its voice
            if v.note == note and v.stage != "idle":
                break
        else:
            free = [i for i, v in enumerate(self.voices) if v.stage in ("idle",)]
            releasing = [i for i, v in enumerate(self.voices) if v.stage == "release"]
            if free:
                i = free[0]
            elif releasing:
                i = min(releasing, key=lambda k: self.voices[k].level)
            else:
                i = min(range(self.n), key=lambda k: self.voices[k].age)   # steal the oldest
        v = self.voices[i]
        if v.stage == "idle":
            v.pitch = float(note)                    # a fresh voice starts on its note
        v.note, v.velocity, v.age = note, vel, self._counter
        v.stage, v.frames_in_stage, v.onset_age = "attack", 0, 0.0
        return i

    def note_off(self, note: int) -> None:
        if self.n == 1:
            self.held = [h for h in self.held if h[0] != note]
            v = self.voices[0]
            if v.note == note:
                if self.held:                        # legato back to the last held note
                    v.note, v.velocity = self.held[-1]
                else:
                    v.stage, v.frames_in_stage, v.release_age = "release", 0, 0.0
            return
        for v in self.voices:
            if v.note == note and v.stage in ("attack", "sustain"):
                v.stage, v.frames_in_stage, v.release_age = "release", 0, 0.0

    def all_off(self) -> None:
        self.held.clear()
        for v in self.voices:
            if v.stage in ("attack", "sustain"):
                v.stage, v.frames_in_stage, v.release_age = "release", 0, 0.0

    def silence(self) -> None:
        """Panic: every voice idle at once."""
        self.held.clear()
        for v in self.voices:
            v.stage, v.level, v.note = "idle", 0.0, None
            v.onset_age = v.release_age = np.inf

    STAGES = {"idle": 0, "attack": 1, "sustain": 2, "release": 3}

    def render(self, n: int, pitch_param: float, glide_s: float, attack_s: float,
               release_s: float) -> VoiceControls:
        """The next ``n`` frames' :class:`VoiceControls`."""
        pitch = np.empty((self.n, n), np.float32)
        level = np.zeros((self.n, n), np.float32)
        stage = np.zeros((self.n, n), np.int8)
        since = np.zeros((self.n, n), np.int32)
        held = np.zeros((self.n, n), np.float32)
        onset_age = np.full((self.n, n), np.inf)
        release_age = np.full((self.n, n), np.inf)
        g = float(np.exp(-1.0 / (glide_s * self.frame_rate))) if glide_s > 0 else 0.0
        att_step = 1.0 / max(1.0, attack_s * self.frame_rate)
        rel = float(np.exp(-1.0 / max(1e-3, release_s * self.frame_rate / 5.0)))  # ~-43 dB at release_s
        for i, v in enumerate(self.voices):
            if not self.gated:
                target = pitch_param + self.bend
            else:
                target = (v.note if v.note is not None else v.pitch) + self.bend
            for t in range(n):
                v.pitch = target + (v.pitch - target) * g
                pitch[i, t] = v.pitch
                if not self.gated:
                    v.level = 1.0 if i == 0 else 0.0
                elif v.stage == "attack":
                    v.level = min(v.velocity, v.level + att_step * v.velocity)
                    if v.level >= v.velocity:
                        v.stage, v.frames_in_stage = "sustain", 0
                elif v.stage == "sustain":
                    v.level += (v.velocity - v.level) * 0.2
                elif v.stage == "release":
                    v.level *= rel
                    if v.level < 1e-4:
                        v.level, v.stage, v.note = 0.0, "idle", None
                stage[i, t] = self.STAGES[v.stage]
                since[i, t] = v.frames_in_stage
                v.frames_in_stage += 1
                level[i, t] = v.level
                if not self.gated:
                    held[i, t] = 1.0 if i == 0 else 0.0            # the drone: held for ever
                else:
                    held[i, t] = 1.0 if v.stage in ("attack", "sustain") else 0.0
                    onset_age[i, t] = v.onset_age
                    release_age[i, t] = 0.0 if held[i, t] else v.release_age
                    v.onset_age += 1
                    v.release_age += 1
        return VoiceControls(pitch, level, stage, since, held, onset_age, release_age)
