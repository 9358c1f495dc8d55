"""``render --midi`` of held-out phrases against the real render of the same score.

Each held-out phrase of an instrument in the training set (its labels rebuilt into a MIDI
file) is played through the bundle offline (:func:`realtime.offline.render_midi`: the
engine's own step loop, 4 voices, the bundle's default token and settings) and compared
with FluidSynth's render of the same file by :func:`training.eval_audible.eval_midi_render`:
gross pitch errors and V/UV F1 on CREPE frames, harmonic-to-noise ratio percentiles of each
signal's own voiced frames (issue "sound"'s targets: GPE <= 2 %, F1 >= 0.9, HNR within 2 dB
at the median and the 90th percentile).

Usage: ``python -m benchmarks.midi_render_quality --data DIR --trained-programs 40 0 73 89
[--crepe full] [--frame-step 4] [--pitch-filter S] [--frame-notch A] [--mel-match MODE] [--match-between-partials] [--json benchmarks/results/midi_render_quality.json]``. Held-out
phrases inside the default model's pitch range (MIDI 48-84): ``main.py corpus /tmp/h19in
--programs 40 0 73 89 --low 48 --high 84 --step 12 --phrases 2 --seed 23``; over MIDI 36-96:
the corpus of ``hnr_stages.py``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import emit  # noqa: E402
import core.frame_notch  # noqa: E402
import core.mel_match  # noqa: E402
import core.synth  # noqa: E402
from core.bundle import load_bundle  # noqa: E402
from core.pitch_filter import DEFAULT_STRENGTH  # noqa: E402
from realtime.offline import render_midi  # noqa: E402
from training.data import AudioCorpus  # noqa: E402
from training.eval_audible import eval_midi_render, held_out_files  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default=str(ROOT / "models" / "default.dwb"))
    ap.add_argument("--data", required=True, help="a folder of labelled renders, every file held out")
    ap.add_argument("--trained-programs", type=int, nargs="+", required=True)
    ap.add_argument("--crepe", choices=["full", "tiny"], default="full")
    ap.add_argument("--frame-step", type=int, default=4, help="read every N-th mel frame")
    ap.add_argument("--no-transpose", action="store_true",
                    help="notes beyond the generator's pitch range play the nearest pitch's mel unmoved (the baseline)")
    ap.add_argument("--pitch-filter", type=float, default=DEFAULT_STRENGTH,
                    help="the pitch post-filter's strength, 0 (off) .. 1 (core/pitch_filter.py)")
    ap.add_argument("--match-between-partials", action="store_true",
                    help="lift bands between a voice's partials too (the baseline; core/mel_match.py)")
    ap.add_argument("--frame-notch", type=float, default=core.frame_notch.DEFAULT_RATE,
                    help="the frame-rate notch's rate, 0 (off) .. 1 (core/frame_notch.py)")
    ap.add_argument("--mel-match", default="full", choices=["full", "low-latency", "zero-latency", "off"],
                    help="the renders' mel matching (core/mel_match.py): full, as render --midi; zero-latency, as live play")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    core.synth.TRANSPOSE_OUT_OF_RANGE = not a.no_transpose
    core.frame_notch.RATE = a.frame_notch
    core.mel_match.CUT_ONLY_BETWEEN_PARTIALS = not a.match_between_partials
    torch.set_num_threads(1)
    bundle = load_bundle(a.bundle)
    files = held_out_files(AudioCorpus(a.data, val_fraction=0.0))
    t0 = time.perf_counter()
    result = eval_midi_render(bundle, files, set(a.trained_programs), lambda path: render_midi(bundle, path, pitch_filter=a.pitch_filter,
                                                                                         mel_match=a.mel_match)[0],
                              a.crepe, a.frame_step)
    emit({"benchmark": "midi_render_quality", "bundle": a.bundle, "data": a.data, "crepe": a.crepe,
          "frame_step": a.frame_step,
          "transpose_out_of_range": not a.no_transpose, "pitch_filter": a.pitch_filter, "frame_notch": a.frame_notch, "mel_match": a.mel_match,
          "cut_only_between_partials": not a.match_between_partials, "phrases": sorted(Path(f.path).name for f in files if "phrase" in f.path),
          "seconds": round(time.perf_counter() - t0, 1), "load_average": os.getloadavg(), **result}, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
