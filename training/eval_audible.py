"""``main.py eval``'s measures of audible defects (issue "sound"), on held-out labelled renders.

* **Copy synthesis** (:func:`eval_copy_synthesis`): held-out single notes, one every
  ``note_step`` semitones of each "notes" file (``main.py corpus`` writes them; MIDI 36-96
  for the model card), each cut as a clip (:func:`note_clip`: the note from 0.1 s before
  its onset to 0.3 s after its release, at most 1 s of it, faded over 10 ms and set
  between 0.3 s of digital silence), resynthesised by the bundle's vocoder on the clip's
  real mel with the bundle's mel matching ("full", :func:`core.resynth.resynthesize`) and
  by Griffin-Lim; CREPE read at 2 frames in the note (0.1 s after its onset and midway
  through what is kept of it) and 1 in the silence after it; :mod:`training.quality`'s
  measures, pooled for instruments in the training set, not in it, and all (log-mel L1
  and MR-STFT over the clip without its silence pads; periodicity RMSE over all three
  frames, the silence frame included, as CARGAN takes every frame).
* **Generated notes** (:func:`eval_generated_notes`): for each held-out instrument in the
  training set, the generator plays the C-major scale C3-C5 (MIDI 48-72, within its pitch
  range) at fixed pitch with the real notes' onsets, releases and tokens (the bundle's
  VQCPC encoder naming the real audio's frames); harmonic-to-noise ratio percentiles of
  the generated notes beside the real notes', and their pitch against the requested one.
* **MIDI renders** (:func:`eval_midi_render`): the later step, comparing ``render --midi``
  of held-out phrases with the real render of the same file; it runs when a renderer is
  given.

CREPE's top bin is 2005.5 Hz (MIDI 95.3): notes above MIDI 95 are left out of the pitch
frames (only their silence frame is read). MR-STFT, NDB/JSD stay in the other sections of ``eval`` as figures, not targets.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from core.bundle import Bundle
from core.mel import LogMel
from core.pitch import midi_to_hz
from core.pitch_filter import DEFAULT_STRENGTH
from core.resynth import resynthesize

from .metrics import griffin_lim, logmel_l1, mr_stft_distance
from .quality import (
    GROSS_CENTS,
    PitchComparison,
    PitchTrack,
    cents_between,
    frame_rate_buzz,
    harmonic_to_noise,
    percentiles,
    silence_level_db,
    track,
)

CREPE_TOP_MIDI = 95          # the last note below CREPE's top bin (2005.5 Hz)
PAD_S = 0.3                  # digital silence each side of a note clip
FADE_S = 0.01
PRE_S, POST_S, HOLD_S = 0.1, 0.3, 1.0     # clip: onset - PRE_S .. min(offset, onset + HOLD_S) + POST_S
SCALE_C3_C5 = [48, 50, 52, 53, 55, 57, 59, 60, 62, 64, 65, 67, 69, 71, 72]


@dataclass
class HeldOutFile:
    """A held-out labelled render: audio ``[L]`` (peak 0.95, the corpus's normalisation),
    its notes (``pitch``, ``onset``, ``offset`` seconds) and GM program."""
    path: str
    audio: np.ndarray
    notes: list[dict]
    program: int | None


def held_out_files(corpus) -> list[HeldOutFile]:
    """The labelled files of a :class:`training.data.AudioCorpus`'s held-out split (its
    validation split, or every file when it has none), with their program (from the labels,
    else None)."""
    out = []
    for it in corpus.val or corpus.train:
        if not it.notes:
            continue
        prog = it.notes[0].get("program")
        if prog is None:
            try:
                prog = json.loads(Path(it.path).with_suffix(".json").read_text()).get("program")
            except (OSError, ValueError):
                prog = None
        out.append(HeldOutFile(it.path, it.audio, sorted(it.notes, key=lambda n: n["onset"]), prog))
    return out


def groups_of(program: int | None, trained: set[int] | None) -> list[str]:
    """The groups a file counts in: "all", and "in_training_set" / "not_in_training_set"
    when the trained programs are known."""
    if trained is None or program is None:
        return ["all"]
    return ["all", "in_training_set" if program in trained else "not_in_training_set"]


def note_clip(audio: np.ndarray, sr: int, note: dict) -> tuple[np.ndarray, float, float]:
    """A note cut from its file as described in the module docstring: (clip ``[L]``, the
    onset and the end of the kept note in the clip, seconds)."""
    a = max(0, int((note["onset"] - PRE_S) * sr))
    end = min(note["offset"], note["onset"] + HOLD_S)
    b = min(len(audio), int((end + POST_S) * sr))
    x = audio[a:b].astype(np.float64).copy()
    f = min(int(FADE_S * sr), len(x) // 2)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(f) / f)
    x[:f] *= ramp
    x[len(x) - f:] *= ramp[::-1]
    pad = np.zeros(int(PAD_S * sr))
    return np.concatenate([pad, x, pad]).astype(np.float32), PAD_S + note["onset"] - a / sr, PAD_S + end - a / sr


@dataclass
class Pooled:
    """One estimator's measures, pooled over clips."""
    pitch: PitchComparison = field(default_factory=PitchComparison)
    hnr_ref: list = field(default_factory=list)
    hnr_est: list = field(default_factory=list)
    ptf_ref: list = field(default_factory=list)
    ptf_est: list = field(default_factory=list)
    buzz_ref: list = field(default_factory=list)
    buzz_est: list = field(default_factory=list)
    hnr_labels: list = field(default_factory=list)      # the labelled MIDI pitch of each HNR frame (NaN: none)
    silence: list = field(default_factory=list)
    silence_by_pitch: dict = field(default_factory=dict)      # labelled MIDI pitch -> [dB below peak]
    logmel_l1: list = field(default_factory=list)
    mrstft: list = field(default_factory=list)

    def add(self, sr: int, ref_audio: np.ndarray, est_audio: np.ndarray, ref: PitchTrack, est: PitchTrack,
            centres: np.ndarray, labels: np.ndarray, mel_config, sounding: slice = slice(None),
            clip_pitch: int | None = None) -> None:
        """One clip. ``sounding``: the part log-mel L1 and MR-STFT read (a note clip's
        digital-silence pads are left to the silence measure: in them the log terms of both
        compare the output's residue with the floor of their clamps)."""
        self.pitch.add(ref, est, labels)
        both = ref.voiced() & est.voiced()
        if both.any():
            hr, pr = harmonic_to_noise(ref_audio, sr, centres[both], ref.f0[both])
            he, pe = harmonic_to_noise(est_audio, sr, centres[both], est.f0[both])
            self.hnr_ref += hr.tolist()
            self.hnr_est += he.tolist()
            self.hnr_labels += np.asarray(labels, np.float64)[both].tolist()
            self.ptf_ref += pr.tolist()
            self.ptf_est += pe.tolist()
            hop = mel_config.hop
            self.buzz_ref += frame_rate_buzz(ref_audio, sr, hop, centres[both], ref.f0[both]).tolist()
            self.buzz_est += frame_rate_buzz(est_audio, sr, hop, centres[both], est.f0[both]).tolist()
        s = silence_level_db(ref_audio, est_audio)
        if s is not None:
            self.silence.append(s)
            if clip_pitch is not None:
                self.silence_by_pitch.setdefault(clip_pitch, []).append(s)
        self.logmel_l1.append(logmel_l1(ref_audio[sounding], est_audio[sounding], mel_config))
        self.mrstft.append(mr_stft_distance(ref_audio[sounding], est_audio[sounding]))

    def summary(self) -> dict:
        out = self.pitch.summary()
        hr, he = percentiles(self.hnr_ref), percentiles(self.hnr_est)
        out.update({"hnr_db_median": he["p50"], "hnr_db_p90": he["p90"],
                    "hnr_db_median_original": hr["p50"], "hnr_db_p90_original": hr["p90"],
                    "hnr_db_median_difference": None if he["p50"] is None else he["p50"] - hr["p50"],
                    "partial_to_floor_db_median": percentiles(self.ptf_est)["p50"],
                    "partial_to_floor_db_median_original": percentiles(self.ptf_ref)["p50"],
                    "frame_rate_buzz_db_median": percentiles(self.buzz_est)["p50"],
                    "frame_rate_buzz_db_median_original": percentiles(self.buzz_ref)["p50"],
                    "hnr_db_median_difference_by_range": self._hnr_by_range(),
                    "silence_db_below_peak_median": float(np.median(self.silence)) if self.silence else None,
                    "silence_db_below_peak_worst": float(np.min(self.silence)) if self.silence else None,
                    "silence_db_below_peak_by_pitch": {str(p): round(float(np.median(v)), 1)
                                                       for p, v in sorted(self.silence_by_pitch.items())},
                    "logmel_l1": float(np.mean(self.logmel_l1)) if self.logmel_l1 else None,
                    "mrstft": float(np.mean(self.mrstft)) if self.mrstft else None,
                    "clips": len(self.logmel_l1)})
        return out

    def _hnr_by_range(self) -> dict:
        """The output's median HNR less the original's (dB; NaN frames left out, as the overall
        figure leaves them) and the frame count over the frames labelled with a pitch in each
        of :data:`HNR_RANGES` (MIDI, inclusive)."""
        labels = np.asarray(self.hnr_labels, np.float64)
        est, ref = np.asarray(self.hnr_est, np.float64), np.asarray(self.hnr_ref, np.float64)
        out = {}
        for lo, hi in HNR_RANGES:
            m = (labels >= lo) & (labels <= hi)
            e, r = percentiles(est[m], (50,))["p50"], percentiles(ref[m], (50,))["p50"]
            out[f"{lo}-{hi}"] = {"frames": int(m.sum()),
                                 "median_difference_db": None if e is None or r is None else e - r}
        return out


HNR_RANGES = ((36, 47), (48, 59), (60, 71), (72, 84), (85, 96))   # MIDI: below, in and above the training range


def clip_frames(onset_s: float, end_s: float) -> tuple[np.ndarray, np.ndarray]:
    """CREPE frames of a note clip: (centres seconds ``[3]``, is-in-the-note ``bool[3]``)."""
    return (np.array([onset_s + 0.1, (onset_s + 0.1 + end_s) / 2, end_s + POST_S + PAD_S / 2]),
            np.array([True, True, False]))


ESTIMATORS = ("vocoder", "griffin_lim")


def copy_synthesize(bundle: Bundle, clip: np.ndarray, pitch_filter: float = DEFAULT_STRENGTH) -> dict[str, np.ndarray]:
    """The clip through each estimator of :data:`ESTIMATORS`: ``{name: ndarray[L]}``
    (``pitch_filter``: the vocoder chain's pitch post-filter, :mod:`core.pitch_filter`)."""
    with torch.no_grad():
        mel = LogMel(bundle.mel)(torch.from_numpy(clip)).numpy()
    return {"vocoder": resynthesize(bundle, clip, pitch_filter=pitch_filter),
            "griffin_lim": np.pad(griffin_lim(mel, bundle.mel), (0, len(clip)))[:len(clip)]}


def eval_copy_synthesis(bundle: Bundle, files: list[HeldOutFile], trained: set[int] | None,
                        note_step: int = 3, low: int = 36, high: int = 96, capacity: str = "full",
                        pitch_filter: float = DEFAULT_STRENGTH) -> dict:
    """Copy synthesis of held-out notes (module docstring): ``{group: {estimator: measures}}``
    with the measures of :meth:`Pooled.summary`, and the pitches analysed."""
    sr = bundle.sample_rate
    pooled: dict[str, dict[str, Pooled]] = {}
    pitches = []
    for f in files:
        if "notes" not in Path(f.path).stem:
            continue
        chosen = [n for n in f.notes if low <= n["pitch"] <= high and (n["pitch"] - low) % note_step == 0]
        for note in chosen:
            clip, onset, end = note_clip(f.audio, sr, note)
            centres, in_note = clip_frames(onset, end)
            pitched = note["pitch"] <= CREPE_TOP_MIDI
            if not pitched:          # above CREPE's range: only the silence frame is read
                centres, in_note = centres[~in_note], in_note[~in_note]
            labels = np.where(in_note, float(note["pitch"]), np.nan)
            ref = track(clip, sr, centres, capacity)
            pad = int(PAD_S * sr) // bundle.hop * bundle.hop
            sounding = slice(pad, pad + (len(clip) - 2 * pad) // bundle.hop * bundle.hop)
            pitches.append(int(note["pitch"]))
            for name, est_audio in copy_synthesize(bundle, clip, pitch_filter).items():
                est = track(est_audio, sr, centres, capacity)
                for g in groups_of(f.program, trained):
                    pooled.setdefault(g, {}).setdefault(name, Pooled()).add(
                        sr, clip, est_audio, ref, est, centres, labels, bundle.mel, sounding, int(note["pitch"]))
    out = {g: {name: p.summary() for name, p in by.items()} for g, by in pooled.items()}
    out["pitches"] = sorted(set(pitches))
    out["mel_match"] = "full"
    return out


def note_segments(f: HeldOutFile, sr: int, hop: int, pitches: list[int]) -> list[tuple[dict, int, int]]:
    """The file's notes at ``pitches`` (the first of each), with the mel-frame range kept
    for each (0.1 s before the onset to 0.25 s after the release, at most 1 s of the note)."""
    fr = sr / hop
    out, seen = [], set()
    for n in f.notes:
        if n["pitch"] in pitches and n["pitch"] not in seen:
            seen.add(n["pitch"])
            a = max(0, int((n["onset"] - PRE_S) * fr))
            b = min(len(f.audio) // hop, int((min(n["offset"], n["onset"] + HOLD_S) + 0.25) * fr))
            out.append((n, a, b))
    return out


@dataclass
class NoteScore:
    """Held-out notes played again by the generator: the score (pitch, note condition and
    tokens per mel frame, each None where the model lacks it), the requested pitch of each
    analysis frame, and the frames' centres in the generated and in the real audio (s)."""
    pitch: np.ndarray
    note: np.ndarray | None
    tokens: np.ndarray | None
    requested: np.ndarray
    generated_centres: np.ndarray
    real_centres: np.ndarray


def note_score(bundle: Bundle, corpus, f: HeldOutFile, pitches: list[int], frames_per_note: int = 3) -> NoteScore | None:
    """The file's notes at ``pitches`` (:func:`note_segments`) as one generator score: each
    note at its fixed pitch with the real note's onset, release and tokens (the bundle's
    VQCPC encoder naming the real frames); ``frames_per_note`` analysis frames spread over
    each note's sustain (0.1 s after the onset to the end of what is kept). None when the
    file has none of the pitches."""
    from core.tokens import tokens_of_audio

    cfg = bundle.generator.config
    sr, hop = bundle.sample_rate, bundle.hop
    segs = note_segments(f, sr, hop, pitches)
    if not segs:
        return None
    item = {it.path: it for it in corpus.val or corpus.train}[f.path]
    feats = corpus.frame_notes(item)
    toks = tokens_of_audio(bundle, f.audio[:len(feats) * hop]) if cfg.n_tokens and bundle.encoder else None
    gen_c, real_c, req = [], [], []
    start = 0
    for n, a, b in segs:
        t0, t1 = n["onset"] + 0.1, min(n["offset"], n["onset"] + HOLD_S) - 0.02
        ts = t0 + (np.arange(frames_per_note) + 0.5) / frames_per_note * max(t1 - t0, 0.0)
        real_c += ts.tolist()
        gen_c += (ts + (start - a) * hop / sr).tolist()
        req += [float(n["pitch"])] * frames_per_note
        start += b - a
    return NoteScore(np.concatenate([np.full(b - a, float(n["pitch"]), np.float32) for n, a, b in segs]),
                     np.concatenate([feats[a:b] for _, a, b in segs]) if cfg.note_dim else None,
                     np.concatenate([toks[a:b] for _, a, b in segs]) if toks is not None else None,
                     np.array(req), np.array(gen_c), np.array(real_c))


def play_score(bundle: Bundle, score: NoteScore, seed: int, mel_match: str = "full",
               pitch_filter: float = DEFAULT_STRENGTH) -> np.ndarray:
    """The generator and vocoder playing ``score`` (:func:`training.evaluate.generate`);
    ``pitch_filter``: the pitch post-filter's strength (:mod:`core.pitch_filter`; 0: off)."""
    from .evaluate import generate

    audio, _ = generate(bundle, len(score.pitch), seed, pitch=score.pitch, note=score.note, tokens=score.tokens,
                        mel_match=mel_match, pitch_filter=pitch_filter)
    return audio


def hnr_of(audio: np.ndarray, sr: int, centres: np.ndarray, capacity: str = "full"
           ) -> tuple[np.ndarray, np.ndarray, PitchTrack]:
    """HNR and partial-to-floor (dB) on the signal's own voiced frames among ``centres``,
    partials from its own CREPE f0: ``(hnr [V], partial_to_floor [V], track)``."""
    t = track(audio, sr, centres, capacity)
    v = t.voiced()
    h, p = harmonic_to_noise(audio, sr, centres[v], t.f0[v])
    return h, p, t


def eval_generated_notes(bundle: Bundle, corpus, files: list[HeldOutFile], trained: set[int] | None,
                         seeds: tuple[int, ...] = (0,), capacity: str = "full",
                         pitch_filter: float = DEFAULT_STRENGTH) -> dict:
    """Generated sustained notes against the real notes of the same instruments (module
    docstring): per program and pooled, HNR median / p90 and partial-to-floor median of
    generated and real notes (3 CREPE frames in each note's sustain, each signal's own
    voiced frames and f0), and the generated notes' pitch against the requested one."""
    cfg = bundle.generator.config
    if not cfg.has_pitch:
        return {"skipped": "the generator takes no pitch"}
    sr = bundle.sample_rate
    scale = [p for p in SCALE_C3_C5 if cfg.pitch_min <= p <= cfg.pitch_max]
    rows: dict[str, dict[str, list]] = {}
    for f in files:
        if "notes" not in Path(f.path).stem or (trained is not None and f.program not in trained):
            continue
        score = note_score(bundle, corpus, f, scale)
        if score is None:
            continue
        row = rows.setdefault(str(f.program), {k: [] for k in ("hnr_gen", "hnr_real", "ptf_gen", "ptf_real", "cents")})
        h, p, _ = hnr_of(f.audio, sr, score.real_centres, capacity)
        row["hnr_real"] += h.tolist()
        row["ptf_real"] += p.tolist()
        for seed in seeds:
            h, p, gen = hnr_of(play_score(bundle, score, seed, pitch_filter=pitch_filter), sr,
                               score.generated_centres, capacity)
            v = gen.voiced()
            row["hnr_gen"] += h.tolist()
            row["ptf_gen"] += p.tolist()
            row["cents"] += cents_between(gen.f0[v], midi_to_hz(score.requested[v])).tolist()

    def summary(r: dict) -> dict:
        g, re_ = percentiles(r["hnr_gen"]), percentiles(r["hnr_real"])
        c = np.abs(np.asarray(r["cents"]))
        return {"hnr_db_median_generated": g["p50"], "hnr_db_p90_generated": g["p90"],
                "hnr_db_median_real": re_["p50"], "hnr_db_p90_real": re_["p90"],
                "partial_to_floor_db_median_generated": percentiles(r["ptf_gen"])["p50"],
                "partial_to_floor_db_median_real": percentiles(r["ptf_real"])["p50"],
                "frames_generated_voiced": int(np.isfinite(r["hnr_gen"]).sum()),
                "frames_real_voiced": int(np.isfinite(r["hnr_real"]).sum()),
                "median_abs_cents_vs_requested": float(np.median(c)) if len(c) else None,
                "gross_pitch_error_rate_vs_requested": float((c > GROSS_CENTS).mean()) if len(c) else None}

    if not rows:
        return {"skipped": "no held-out notes file of an instrument in the training set"}
    pooled = {k: [v for r in rows.values() for v in r[k]] for k in next(iter(rows.values()))}
    return {"pitches": scale, "seeds": list(seeds), "all": summary(pooled),
            "per_program": {p: summary(r) for p, r in rows.items()}}


MidiRenderer = Callable[[str], np.ndarray]   # MIDI file path -> audio [L] at the bundle's rate


def scored_pitch(notes: list[dict], centres_s: np.ndarray) -> np.ndarray:
    """The labelled MIDI pitch at each frame centre (seconds) where exactly one note of
    ``notes`` (``pitch``, ``onset``, ``offset`` seconds) is held, NaN elsewhere
    ``float64[N]``."""
    t = np.asarray(centres_s, dtype=np.float64)[:, None]
    out = np.full(len(t), np.nan)
    if not notes:
        return out
    on = np.array([n["onset"] for n in notes])[None, :]
    off = np.array([n["offset"] for n in notes])[None, :]
    held = (t >= on) & (t < off)
    pitch = np.array([float(n["pitch"]) for n in notes])
    one = held.sum(1) == 1
    out[one] = pitch[held[one].argmax(1)]
    return out


def eval_midi_render(bundle: Bundle, files: list[HeldOutFile], trained: set[int] | None,
                     render: MidiRenderer | None, capacity: str = "full", frame_step: int = 4) -> dict:
    """``render --midi`` of held-out phrases against the real render of the same score
    (issue "sound": gross pitch errors on at most 2 % of frames voiced in both, V/UV F1 >=
    0.9, HNR within 2 dB of the real notes at the median and 90th percentile). The MIDI file
    is rebuilt from each phrase's labels (:func:`training.corpus.write_midi`). Every
    ``frame_step``-th mel frame of the phrase is read (CREPE "full" is slow on a CPU).
    Without a renderer: ``{"skipped": ...}``."""
    if render is None:
        return {"skipped": "no MIDI renderer given (realtime.offline.render_midi)"}
    import tempfile

    from .corpus import write_midi

    sr, hop = bundle.sample_rate, bundle.hop
    pooled: dict[str, Pooled] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            if "phrase" not in Path(f.path).stem or f.program is None or (trained is not None and f.program not in trained):
                continue
            mid = str(Path(tmp) / (Path(f.path).stem + ".mid"))
            write_midi(Path(mid), f.notes, f.program)
            y = np.asarray(render(mid), np.float32)
            n = min(len(y), len(f.audio))
            ref_audio, est_audio = f.audio[:n], np.pad(y[:n], (0, n - len(y[:n])))
            centres = (np.arange(0, n // hop, frame_step) + 0.5) * hop / sr
            ref, est = track(ref_audio, sr, centres, capacity), track(est_audio, sr, centres, capacity)
            for g in groups_of(f.program, trained):
                pooled.setdefault(g, Pooled()).add(sr, ref_audio, est_audio, ref, est, centres,
                                                  scored_pitch(f.notes, centres), bundle.mel)
    return {g: p.summary() for g, p in pooled.items()} or {"skipped": "no held-out phrase of a trained instrument"}


def eval_audible(bundle: Bundle, corpus, trained: set[int] | None, note_step: int = 3,
                 seeds: tuple[int, ...] = (0,), capacity: str = "full",
                 midi_render: MidiRenderer | None = None, pitch_filter: float = DEFAULT_STRENGTH) -> dict:
    """The three parts of the module docstring as one JSON object; ``pitch_filter``: the
    strength copy synthesis and the generated notes play with (``midi_render`` brings its own)."""
    files = held_out_files(corpus)
    out = {"held_out_files": [Path(f.path).name for f in files], "crepe": capacity,
           "trained_programs": None if trained is None else sorted(trained),
           "copy_synthesis": eval_copy_synthesis(bundle, files, trained, note_step, capacity=capacity,
                                                 pitch_filter=pitch_filter),
           "generated_notes": eval_generated_notes(bundle, corpus, files, trained, seeds, capacity, pitch_filter)}
    out["midi_render"] = eval_midi_render(bundle, files, trained, midi_render, capacity)
    return out
