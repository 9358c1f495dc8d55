"""Real-time factor of the engine's model step with 1, 2 and 4 voices (one batch).

Prints JSON. RTF = compute time of ``BundlePlayer.render`` (sources, generator, vocoder,
envelopes, mix, resampling to 48 kHz) / audio time. ``--compute cpu cuda`` measures each
compute device (on a GPU the step includes copying the audio back, which waits for it).

    python -m benchmarks.bench_voices [--bundle models/default.dwb] [--seconds 5] [--compute cpu cuda]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from core.bundle import load_bundle
from core.compute import compute_device, describe
from core.mel_match import MODES
from realtime.params import ControlBus
from realtime.player import BundlePlayer
from realtime.voices import VoiceBank

ROOT = Path(__file__).resolve().parent.parent


def rtf(bundle_path: str, voices: int, frames: int, seconds: float, precision: str,
        compute: str = "cpu", mel_match: str = "full") -> dict:
    bundle = load_bundle(bundle_path, compute_device(compute))
    player = BundlePlayer(bundle, 48000, precision=precision, n_voices=voices, mel_match=mel_match)
    bank = VoiceBank(voices, bundle.sample_rate / bundle.hop)
    for i in range(voices):
        bank.note_on(48 + 5 * i, 100)         # every voice sounding
    bus = ControlBus()
    steps = int(seconds * bundle.sample_rate / bundle.hop / frames)
    times = []
    for i in range(steps + 5):
        snap = bus.snapshot(0.02)
        t0 = time.perf_counter()
        ctl = bank.render(frames, 60.0, 0.05, 0.01, 0.3)
        player.render(frames, snap, bank, ctl)
        player.take(len(player.pending))
        if i >= 5:
            times.append(time.perf_counter() - t0)
    step_s = frames * bundle.hop / bundle.sample_rate
    t = np.array(times)
    return {"voices": voices, "frames_per_step": frames, "precision": precision, "compute": compute,
            "mel_match": mel_match,
            "rtf": float(t.sum() / (len(t) * step_s)), "step_ms_p50": float(np.median(t) * 1e3),
            "step_ms_p99": float(np.percentile(t, 99) * 1e3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", default=str(ROOT / "models" / "default.dwb"))
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--voices", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--frames", type=int, nargs="+", default=[2, 4])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--precision", nargs="+", default=["float32"])
    ap.add_argument("--compute", nargs="+", default=["cpu"], help="compute devices to measure (cpu, cuda, ...)")
    ap.add_argument("--mel-match", nargs="+", default=["full"], choices=MODES,
                    help="mel matching modes to measure (core/mel_match.py)")
    a = ap.parse_args()
    runs = []
    for compute in a.compute:
        for threads in a.threads:
            torch.set_num_threads(threads)
            for precision in a.precision:
                for frames in a.frames:
                    for v in a.voices:
                        for mm in a.mel_match:
                            r = rtf(a.bundle, v, frames, a.seconds, precision, compute, mm)
                            r["threads"] = threads
                            runs.append(r)
    print(json.dumps({"benchmark": "voices_rtf", "bundle": a.bundle, "machine": describe(),
                      "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                      "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
