"""Where held notes lose their harmonic-to-noise ratio: HNR at each stage of the path.

Stages, on the same held notes (C3-C5's C-major triad tones by default: MIDI 48 52 55 60
64 67 72) of each instrument in the training set, cut from held-out "notes" renders as ``main.py eval`` cuts them
(:func:`training.eval_audible.note_clip`, :func:`training.eval_audible.note_score`):

* ``real``: the original audio;
* ``real_mel_vocoder``: the real mel -> the vocoder, without mel matching;
* ``real_mel_vocoder_mel_match``: the same with the bundle's mel matching ("full");
* ``real_mel_vocoder_mel_match_pitch_filter``: the same, then the pitch post-filter
  (:mod:`core.pitch_filter`, its default strength, at the f0 copy synthesis tracks);
* ``generated_vocoder``: the generator plays the notes, one score per file as ``eval``
  plays its scale (:func:`training.eval_audible.note_score`: each note at fixed pitch with
  the real note's onset, release and tokens) -> the vocoder, without mel matching;
* ``generated_vocoder_mel_match``: the same with mel matching;
* ``generated_vocoder_mel_match_pitch_filter``: the same, then the pitch post-filter at the
  requested pitch (what the instrument plays);
* ``generated_alone_vocoder_mel_match``: each note a score of its own, played by a generator
  just settled (the first note after the instrument starts), with mel matching;
  ``..._pitch_filter``: and the pitch post-filter.

Every stage without ``pitch_filter`` in its name runs with the filter off.

HNR (:func:`training.quality.harmonic_to_noise`) on 3 CREPE frames in each note's sustain,
each signal's own voiced frames and f0; median and 90th percentile per stage, per program and
pooled, and the partial-to-floor median.

Usage: ``python -m benchmarks.hnr_stages --data /tmp/h19corpus --trained-programs 40 0 73 89
[--pitches 48 52 55 60 64 67 72] [--seeds 0 1] [--crepe full] [--json benchmarks/results/hnr_stages.json]``
(the held-out corpus: ``main.py corpus /tmp/h19corpus --programs 40 0 73 89 11 24 56 68
--low 36 --high 96 --phrases 2 --seed 19``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import core.frame_notch  # noqa: E402
from core.bundle import load_bundle  # noqa: E402
from core.resynth import resynthesize  # noqa: E402
from training.data import AudioCorpus  # noqa: E402
from training.eval_audible import held_out_files, hnr_of, note_clip, note_score, play_score  # noqa: E402
from training.quality import percentiles  # noqa: E402

from benchmarks import emit  # noqa: E402

STAGES = ("real", "real_mel_vocoder", "real_mel_vocoder_mel_match", "real_mel_vocoder_mel_match_pitch_filter",
          "generated_vocoder", "generated_vocoder_mel_match", "generated_vocoder_mel_match_pitch_filter",
          "generated_alone_vocoder_mel_match", "generated_alone_vocoder_mel_match_pitch_filter")


def stage_audio(bundle, corpus, f, pitches: list[int], seeds) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """``{stage: [(audio, analysis centres s), ...]}`` for the notes of file ``f`` at
    ``pitches``: the real stages one clip per note, the generated ones one score of all the
    notes per seed (as ``eval`` plays its scale)."""
    score = note_score(bundle, corpus, f, pitches)
    if score is None:
        return {}
    out = {s: [] for s in STAGES}
    done = set()
    for note in f.notes:
        if note["pitch"] not in pitches or note["pitch"] in done:
            continue
        done.add(note["pitch"])
        clip, onset, _ = note_clip(f.audio, bundle.sample_rate, note)
        centres = score.real_centres[score.requested == note["pitch"]] + onset - note["onset"]   # clip time
        out["real"].append((clip, centres))
        out["real_mel_vocoder"].append((resynthesize(bundle, clip, mel_match="off", pitch_filter=0), centres))
        out["real_mel_vocoder_mel_match"].append((resynthesize(bundle, clip, mel_match="full", pitch_filter=0), centres))
        out["real_mel_vocoder_mel_match_pitch_filter"].append((resynthesize(bundle, clip, mel_match="full"), centres))
        alone = note_score(bundle, corpus, f, [note["pitch"]])
        for seed in seeds:
            out["generated_alone_vocoder_mel_match"].append((play_score(bundle, alone, seed, pitch_filter=0),
                                                             alone.generated_centres))
            out["generated_alone_vocoder_mel_match_pitch_filter"].append((play_score(bundle, alone, seed),
                                                                          alone.generated_centres))
    for seed in seeds:
        out["generated_vocoder"].append((play_score(bundle, score, seed, mel_match="off", pitch_filter=0),
                                         score.generated_centres))
        out["generated_vocoder_mel_match"].append((play_score(bundle, score, seed, mel_match="full", pitch_filter=0),
                                                   score.generated_centres))
        out["generated_vocoder_mel_match_pitch_filter"].append((play_score(bundle, score, seed, mel_match="full"),
                                                                score.generated_centres))
    return out


def summary(hnr: list, ptf: list) -> dict:
    p = percentiles(hnr)
    return {"hnr_db_median": p["p50"], "hnr_db_p90": p["p90"], "partial_to_floor_db_median": percentiles(ptf)["p50"],
            "frames": int(np.isfinite(hnr).sum())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", default=str(ROOT / "models" / "default.dwb"))
    ap.add_argument("--data", required=True, help="held-out labelled renders (every file held out)")
    ap.add_argument("--trained-programs", type=int, nargs="+", required=True)
    ap.add_argument("--pitches", type=int, nargs="+", default=[48, 52, 55, 60, 64, 67, 72])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--crepe", choices=["full", "tiny"], default="full")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--frame-notch", type=float, default=core.frame_notch.DEFAULT_RATE,
                    help="the frame-rate notch's rate every stage after the vocoder plays with (core/frame_notch.py; "
                         "0: off, as before it existed)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    core.frame_notch.RATE = a.frame_notch
    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    bundle = load_bundle(a.bundle, "cpu")
    corpus = AudioCorpus(a.data, val_fraction=0.0)
    sr = bundle.sample_rate
    rows: dict[str, dict[str, tuple[list, list]]] = {}
    for f in held_out_files(corpus):
        if "notes" not in Path(f.path).stem or f.program not in set(a.trained_programs):
            continue
        for stage, items in stage_audio(bundle, corpus, f, a.pitches, a.seeds).items():
            for audio, centres in items:
                h, p, _ = hnr_of(audio, sr, centres, a.crepe)
                for key in (str(f.program), "all"):
                    hs, ps = rows.setdefault(key, {}).setdefault(stage, ([], []))
                    hs += h.tolist()
                    ps += p.tolist()
    result = {"bundle": bundle.path, "data": a.data, "frame_notch": a.frame_notch, "pitches": a.pitches, "seeds": a.seeds, "crepe": a.crepe,
              "stages": list(STAGES),
              "all": {s: summary(*rows["all"][s]) for s in STAGES if s in rows.get("all", {})},
              "per_program": {k: {s: summary(*v[s]) for s in STAGES if s in v} for k, v in rows.items() if k != "all"},
              "seconds": round(time.perf_counter() - t0, 1)}
    emit(result, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
