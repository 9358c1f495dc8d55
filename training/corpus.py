"""A sampled-instrument corpus rendered from a SoundFont with FluidSynth, with labels.

For each General MIDI program: single notes over a pitch range (several velocities and
lengths) and short random-walk phrases, written as MIDI files (mido), rendered by the
``fluidsynth`` command to WAV at the model rate, and labelled: ``NAME.json`` beside each
``NAME.wav`` lists every note's pitch, onset and offset (seconds), velocity and program.

    python main.py corpus OUT_DIR [--programs 40 0 73 89] [--low 48 --high 84] [--phrases 6]
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np

DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
TICKS = 480          # per beat; at 120 bpm one beat is 0.5 s
SECONDS_PER_TICK = 0.5 / TICKS
TAIL_S = 1.5         # silence after the last note, for the release


class CorpusError(Exception):
    pass


def _notes_single(low: int, high: int, step: int, rng: np.random.Generator) -> list[dict]:
    notes, t = [], 0.25
    for pitch in range(low, high + 1, step):
        dur = float(rng.choice([0.4, 0.8, 1.5]))
        vel = int(rng.choice([60, 90, 115]))
        notes.append({"pitch": pitch, "onset": t, "offset": t + dur, "velocity": vel})
        t += dur + 0.35
    return notes


def _notes_phrase(low: int, high: int, length: int, rng: np.random.Generator) -> list[dict]:
    scale = np.array([0, 2, 4, 5, 7, 9, 11])
    notes, t = [], 0.25
    degree = int(rng.integers(0, 7))
    octave = int(rng.integers(low // 12, max(low // 12 + 1, high // 12)))
    for _ in range(length):
        degree += int(rng.choice([-2, -1, 1, 1, 2]))
        pitch = int(np.clip(12 * (octave + degree // 7) + scale[degree % 7], low, high))
        dur = float(rng.choice([0.25, 0.25, 0.5, 0.75]))
        gap = float(rng.choice([0.0, 0.0, 0.05, 0.25]))
        notes.append({"pitch": pitch, "onset": t, "offset": t + dur, "velocity": int(rng.integers(55, 120))})
        t += dur + gap
    return notes


def write_midi(path: Path, notes: list[dict], program: int) -> None:
    import mido
    mid = mido.MidiFile(ticks_per_beat=TICKS)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=500000, time=0))
    track.append(mido.Message("program_change", program=program, channel=0, time=0))
    events = []
    for n in notes:
        events.append((round(n["onset"] / SECONDS_PER_TICK), 1, n["pitch"], n["velocity"]))
        events.append((round(n["offset"] / SECONDS_PER_TICK), 0, n["pitch"], 0))
    now = 0
    for tick, on, pitch, vel in sorted(events):
        kind = "note_on" if on else "note_off"
        track.append(mido.Message(kind, note=pitch, velocity=vel, channel=0, time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=round(TAIL_S / SECONDS_PER_TICK)))
    mid.save(str(path))


def render_file(midi: Path, wav: Path, soundfont: str, sample_rate: int) -> None:
    r = subprocess.run(["fluidsynth", "-ni", "-g", "0.8", "-r", str(sample_rate), "-F", str(wav),
                        soundfont, str(midi)], capture_output=True, text=True, timeout=300)
    if r.returncode != 0 or not wav.exists():
        raise CorpusError(f"fluidsynth failed on '{midi}': {r.stderr.strip()[-300:]}")


def render_corpus(out_dir: str | Path, programs: list[int], low: int = 48, high: int = 84,
                  step: int = 1, phrases: int = 4, phrase_length: int = 24, seed: int = 0,
                  sample_rate: int = 22050, soundfont: str = DEFAULT_SOUNDFONT) -> list[Path]:
    """Renders the corpus: per clip a WAV, its note labels (.json) and its score (.mid).
    Returns the WAV paths."""
    if shutil.which("fluidsynth") is None:
        raise CorpusError("the fluidsynth command is missing (apt-get install fluidsynth)")
    if not Path(soundfont).is_file():
        raise CorpusError(f"no SoundFont at '{soundfont}' (apt-get install fluid-soundfont-gm)")
    if not 0 <= low <= high <= 127:
        raise CorpusError("pitch range must satisfy 0 <= low <= high <= 127")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    wavs = []
    for program in programs:
        if not 0 <= program <= 127:
            raise CorpusError(f"program {program} is not a General MIDI program (0..127)")
        sets = [("notes", _notes_single(low, high, step, rng))]
        sets += [(f"phrase{i}", _notes_phrase(low, high, phrase_length, rng)) for i in range(phrases)]
        for name, notes in sets:
            stem = out / f"p{program:03d}-{name}"
            write_midi(stem.with_suffix(".mid"), notes, program)
            render_file(stem.with_suffix(".mid"), stem.with_suffix(".wav"), soundfont, sample_rate)
            labels = {"program": program, "sample_rate": sample_rate,
                      "notes": [dict(n, program=program) for n in notes]}
            stem.with_suffix(".json").write_text(json.dumps(labels, indent=1))
            # the score stays beside its render: `render --midi` plays it through a model, and
            # eval compares that with this render (the dataset reads audio extensions only)
            wavs.append(stem.with_suffix(".wav"))
    return wavs
