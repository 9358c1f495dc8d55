"""Voices: which notes sound, at what pitch and level, frame by frame.

A :class:`VoiceBank` of N voices drives a batch of N generator/vocoder streams. With no
note played (``gate`` off) voice 0 drones at the ``pitch`` parameter and the others are
silent. A note-on switches the gate on: each voice then follows its own note with an
attack/sustain/release envelope (sustain level = velocity), and pitch glides. When every
voice is busy, the oldest is stolen. N = 1 is monophonic with legato: a new note while
another is held glides there without a new attack; releasing it returns to the held one.

Owned by the engine thread (MIDI events are applied there).
"""
from __future__ import annotations

import numpy as np


class Voice:
    def __init__(self, start_pitch: float):
        self.note: int | None = None
        self.velocity = 0.0
        self.level = 0.0
        self.stage = "idle"          # idle | attack | sustain | release
        self.pitch = float(start_pitch)
        self.age = 0                 # note-on counter value when (re)started, for stealing
        self.frames_in_stage = 0


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
                v.stage, v.frames_in_stage = "attack", 0
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
        v.stage, v.frames_in_stage = "attack", 0
        return i

    def note_off(self, note: int) -> None:
        if self.n == 1:
            self.held = [h for h in self.held if h[0] != note]
            v = self.voices[0]
            if v.note == note:
                if self.held:                        # legato back to the last held note
                    v.note, v.velocity = self.held[-1]
                else:
                    v.stage, v.frames_in_stage = "release", 0
            return
        for v in self.voices:
            if v.note == note and v.stage in ("attack", "sustain"):
                v.stage, v.frames_in_stage = "release", 0

    def all_off(self) -> None:
        self.held.clear()
        for v in self.voices:
            if v.stage in ("attack", "sustain"):
                v.stage, v.frames_in_stage = "release", 0

    def silence(self) -> None:
        """Panic: every voice idle at once."""
        self.held.clear()
        for v in self.voices:
            v.stage, v.level, v.note = "idle", 0.0, None

    STAGES = {"idle": 0, "attack": 1, "sustain": 2, "release": 3}

    def render(self, n: int, pitch_param: float, glide_s: float, attack_s: float,
               release_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-frame pitch (MIDI), level (0..1), stage code (see STAGES) and frames since
        the stage began, each ``ndarray[n_voices x n]``."""
        pitch = np.empty((self.n, n), np.float32)
        level = np.zeros((self.n, n), np.float32)
        stage = np.zeros((self.n, n), np.int8)
        since = np.zeros((self.n, n), np.int32)
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
        return pitch, level, stage, since
