"""Real-time factor of the engine's model step: 1, 2 and 4 voices at 1, 2 and 4 frames per step.

RTF = wall time of one engine step (``VoiceBank.render`` and ``BundlePlayer.render``:
sources, generator, vocoder, mel matching, envelopes, mix, resampling to 48 kHz) / the
audio time it makes (``frames * 256 / 22050`` s: 11.6 ms a frame); ``rtf_cpu`` the same
with the thread's CPU time (what the step costs when other processes share the cores).
Every voice sounds (one batch of ``voices`` rows) unless ``--sounding K`` lets only K of
them sound (the others idle, as between notes). One torch thread by default, as the engine
runs. Step kinds: ``eager``, ``compiled`` (the product's: graphs for every voice and for one
sounding voice) and ``compiled-every-row`` (graphs for every voice only: a step with fewer
sounding voices runs the whole batch).

Prints a table to stderr and the JSON to stdout, and writes the JSON to ``--out``
(``benchmarks/results/voices.json``). The JSON carries the load average before and after
each run (the machine may be shared), and, under ``"before"``, the runs of ``--before``
(``benchmarks/results/voices_before.json`` when it exists: the same benchmark on an older
engine, for comparison). ``--compute cpu cuda`` measures each compute device (on a GPU the
step includes copying the audio back, which waits for it).

    python -m benchmarks.bench_voices [--voices 1 2 4] [--frames 1 2 4] [--threads 1]
        [--mel-match zero-latency low-latency full off] [--seconds 3] [--compute cpu] [--sounding K]
        [--step eager compiled compiled-every-row] [--pitch-filter 0.6 0] [--frame-notch 0.2 0]
        [--silence-gate on off] [--between-partials cut-only matched] [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import emit, python_loop_ns
from core.bundle import load_bundle
from core.compute import compute_device, describe
from core.compiled_step import FEWER_ROWS
from core.mel_match import MODES
import core.frame_notch
import core.mel_match
import core.silence_gate
from core.pitch_filter import DEFAULT_STRENGTH
from realtime.params import ControlBus
from realtime.player import BundlePlayer
from realtime.voices import VoiceBank

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
WARMUP_STEPS = 8


def build_players(bundle_path: str, kinds: list[tuple], voices: int, frames: int, precision: str,
                  compute: str, mel_match: str, sounding: int) -> tuple[list[BundlePlayer], list[VoiceBank]]:
    """One player and voice bank (``sounding`` notes held) per entry of ``kinds`` ((step kind,
    pitch filter strength, notch rate, silence gate, cut only between partials)).

    Each player loads its own bundle: a Synth's stream states and frame clock live on the
    bundle's modules, so players sharing one would step one generator in turn, the first of
    each round taking the even frames, where more of its levels run
    (tests/test_bench_voices.py)."""
    players, banks = [], []
    before = core.frame_notch.RATE, core.silence_gate.ENABLED, core.mel_match.CUT_ONLY_BETWEEN_PARTIALS
    for kind, pf, fn, sg, co in kinds:
        compiled = kind.startswith("compiled")
        core.frame_notch.RATE = fn                  # all read when the player's Synth is made
        core.silence_gate.ENABLED = sg
        core.mel_match.CUT_ONLY_BETWEEN_PARTIALS = co
        bundle = load_bundle(bundle_path, compute_device(compute))
        try:
            player = BundlePlayer(bundle, 48000, precision=precision, n_voices=voices, mel_match=mel_match,
                                  compile_frames=frames if compiled else None,
                                  compile_fewer=() if kind == "compiled-every-row" else FEWER_ROWS, pitch_filter=pf)
        finally:
            core.frame_notch.RATE, core.silence_gate.ENABLED, core.mel_match.CUT_ONLY_BETWEEN_PARTIALS = before
        if compiled and player.step_path != "compiled":
            raise SystemExit(f"cannot measure the compiled step: {player.step_path}")
        bank = VoiceBank(voices, bundle.sample_rate / bundle.hop)
        for i in range(sounding):
            bank.note_on(48 + 5 * i, 100)         # held for the whole run
        players.append(player)
        banks.append(bank)
    return players, banks


def rtf(bundle_path: str, voices: int, frames: int, seconds: float, precision: str,
        compute: str = "cpu", mel_match: str = "full", steps: tuple[str, ...] = ("eager",),
        sounding: int | None = None, pitch_filters: tuple[float, ...] = (DEFAULT_STRENGTH,),
        frame_notches: tuple[float, ...] = (core.frame_notch.DEFAULT_RATE,),
        silence_gates: tuple[bool, ...] = (True,), cut_only: tuple[bool, ...] = (True,)) -> list[dict]:
    """One run per entry of ``steps`` ("eager", "compiled", "compiled-every-row":
    core/compiled_step.py, compiled before timing): ``voices`` voices, ``sounding`` of them
    sounding (default all), ``frames`` frames a step, for ``seconds`` of audio; each of
    those once per pitch post-filter strength of ``pitch_filters`` and frame-rate notch rate
    of ``frame_notches`` (0: off; core/frame_notch.py) and silence gate setting of
    ``silence_gates`` (core/silence_gate.py) and mel matching's rule between partials of
    ``cut_only`` (core/mel_match.py). The players
    step in turn, one step each, so the shared host's drifting speed weighs on every one
    alike."""
    sounding = voices if sounding is None else min(sounding, voices)
    kinds = [(kind, pf, fn, sg, co) for kind in steps for pf in pitch_filters for fn in frame_notches
             for sg in silence_gates for co in cut_only]
    players, banks = build_players(bundle_path, kinds, voices, frames, precision, compute, mel_match, sounding)
    bundle = players[0].synth.bundle
    bus = ControlBus()
    n_steps = max(1, int(seconds * bundle.sample_rate / bundle.hop / frames))
    load_before = os.getloadavg()[0]
    times = [[] for _ in kinds]
    cpu = [[] for _ in kinds]
    for i in range(n_steps + WARMUP_STEPS):
        for k, (player, bank) in enumerate(zip(players, banks)):
            snap = bus.snapshot(0.02)
            t0, c0 = time.perf_counter(), time.thread_time()
            ctl = bank.render(frames, 60.0, 0.05, 0.01, 0.3)
            player.render(frames, snap, bank, ctl)
            player.take(len(player.pending))
            if i >= WARMUP_STEPS:
                times[k].append(time.perf_counter() - t0)
                cpu[k].append(time.thread_time() - c0)
    step_s = frames * bundle.hop / bundle.sample_rate
    load_after = os.getloadavg()[0]
    runs = []
    for (kind, pf, fn, sg, co), player, ts, cs in zip(kinds, players, times, cpu):
        t = np.array(ts)
        runs.append({"voices": voices, "sounding": sounding, "frames_per_step": frames, "precision": precision,
                     "compute": compute, "mel_match": mel_match, "pitch_filter": pf, "frame_notch": fn, "silence_gate": sg, "cut_only_between_partials": co, "step": kind if player.step_path == "compiled"
                     else player.step_path, "compile_s": player.compile_s,
                     "steps": len(t),
                     "rtf": float(t.sum() / (len(t) * step_s)), "rtf_cpu": float(np.sum(cs) / (len(t) * step_s)),
                     "step_ms_mean": float(t.mean() * 1e3),
                     "step_ms_p50": float(np.median(t) * 1e3), "step_ms_p99": float(np.percentile(t, 99) * 1e3),
                     "loadavg_1min_before": load_before, "loadavg_1min_after": load_after})
    return runs


def _table(runs: list[dict]) -> str:
    lines = [f"{'step':18s} {'mel match':12s} {'pf':>4s} {'fn':>4s} {'gate':>4s} {'cut':>4s} {'thr':>3s} {'voices':>6s} {'sound':>5s} {'frames':>6s} {'rtf':>6s} {'cpu':>6s} {'p50 ms':>7s} "
             f"{'p99 ms':>7s} {'load':>5s}"]
    for r in runs:
        lines.append(f"{r.get('step', 'eager')[:18]:18s} {r['mel_match']:12s} {r.get('pitch_filter', 0):4.2f} {r.get('frame_notch', 0):4.2f} {'on' if r.get('silence_gate', True) else 'off':>4s} {'on' if r.get('cut_only_between_partials', True) else 'off':>4s} {r['threads']:3d} {r['voices']:6d} "
                     f"{r.get('sounding', r['voices']):5d} {r['frames_per_step']:6d} "
                     f"{r['rtf']:6.3f} {r['rtf_cpu']:6.3f} {r['step_ms_p50']:7.2f} {r['step_ms_p99']:7.2f} "
                     f"{r['loadavg_1min_after']:5.2f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", default=str(ROOT / "models" / "default.dwb"))
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--voices", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--frames", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--precision", nargs="+", default=["float32"])
    ap.add_argument("--compute", nargs="+", default=["cpu"], help="compute devices to measure (cpu, cuda, ...)")
    ap.add_argument("--mel-match", nargs="+", default=["zero-latency", "low-latency", "full"], choices=MODES,
                    help="mel matching modes to measure (core/mel_match.py)")
    ap.add_argument("--step", nargs="+", default=["eager", "compiled"],
                    choices=["eager", "compiled", "compiled-every-row"],
                    help="the eager step and the compiled ones (core/compiled_step.py), stepped in turn")
    ap.add_argument("--sounding", type=int, default=None, help="voices sounding (default: every voice)")
    ap.add_argument("--pitch-filter", type=float, nargs="+", default=[DEFAULT_STRENGTH],
                    help="pitch post-filter strengths to measure side by side (0: off; core/pitch_filter.py)")
    ap.add_argument("--frame-notch", type=float, nargs="+", default=[core.frame_notch.DEFAULT_RATE],
                    help="frame-rate notch rates to measure side by side (0: off; core/frame_notch.py)")
    ap.add_argument("--silence-gate", nargs="+", default=["on"], choices=["on", "off"],
                    help="silence gate settings to measure side by side (core/silence_gate.py)")
    ap.add_argument("--between-partials", nargs="+", default=["cut-only"], choices=["cut-only", "matched"],
                    help="mel matching's rule for bands between a voice's partials (core/mel_match.py)")
    ap.add_argument("--out", default=str(RESULTS / "voices.json"), help="JSON file to write ('-': none)")
    ap.add_argument("--before", default=str(RESULTS / "voices_before.json"),
                    help="an earlier result whose runs go under 'before' ('-' or missing: none)")
    a = ap.parse_args()
    runs = []
    loop_before = python_loop_ns()
    for compute in a.compute:
        for threads in a.threads:
            torch.set_num_threads(threads)
            for precision in a.precision:
                for mm in a.mel_match:
                    for frames in a.frames:
                        for v in a.voices:
                            for r in rtf(a.bundle, v, frames, a.seconds, precision, compute, mm, tuple(a.step),
                                         a.sounding, tuple(a.pitch_filter), tuple(a.frame_notch),
                                         tuple(g == "on" for g in a.silence_gate),
                                         tuple(b == "cut-only" for b in a.between_partials)):
                                r["threads"] = threads
                                runs.append(r)
    result = {"benchmark": "voices_rtf", "bundle": os.path.relpath(a.bundle, ROOT), "machine": describe(),
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "seconds": a.seconds, "command": " ".join(["python -m benchmarks.bench_voices"] + sys.argv[1:]),
              "python_loop_ns": {"before": round(loop_before, 1), "after": round(python_loop_ns(), 1)},
              "runs": runs}
    before = Path(a.before) if a.before != "-" else None
    if before is not None and before.exists() and before.resolve() != Path(a.out).resolve():
        result["before"] = json.loads(before.read_text())
    print(_table(runs), file=sys.stderr)
    emit(result, None if a.out == "-" else a.out)


if __name__ == "__main__":
    main()
