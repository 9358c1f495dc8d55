"""Real-time factor of the engine step with the effects rack's reverb and delay in, against the same step with every effect bypassed: 4 voices, 1 frame a step, in one run.

RTF = wall time of one whole engine step (``Engine._step``: events, snapshot, voices,
generator, vocoder, mel matching, resampling to 48 kHz, gain, the rack, the limiter, the ring
write, the taps) / the audio time it makes (one model frame, 11.6 ms). The two conditions
alternate in blocks of ``--block`` steps (so a change in the machine's load falls on both);
the step after each switch (the rack's fade and reset) is left out. ``rack_ms`` is the rack's
own share (``EngineRack.process``). No device and no engine thread: the steps run here, one
torch thread, as the engine runs them. The load average before and after goes into the JSON
(the machine may be shared).

    python -m benchmarks.bench_rack [--seconds 5] [--voices 4] [--frames 1] [--block 50]
        [--out benchmarks/results/rack.json]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import emit
from core.bundle import load_bundle
from core.compute import describe
from realtime.engine import Engine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RACK_ON = {"fx_reverb_bypass": 0.0, "fx_reverb_mix": 0.3, "fx_reverb_rt60": 2.5,
           "fx_delay_bypass": 0.0, "fx_delay_mix": 0.3, "fx_delay_ms": 350.0, "fx_delay_feedback": 0.4}
RACK_OFF = {"fx_reverb_bypass": 1.0, "fx_delay_bypass": 1.0}
WARMUP_STEPS = 16


def _summary(step_s: float, times: list[float], rack: list[float]) -> dict:
    t, r = np.array(times), np.array(rack)
    return {"steps": len(t), "rtf": float(t.sum() / (len(t) * step_s)),
            "step_ms_mean": float(t.mean() * 1e3), "step_ms_p50": float(np.median(t) * 1e3),
            "step_ms_p99": float(np.percentile(t, 99) * 1e3),
            "rack_ms_mean": float(r.mean() * 1e3), "rack_ms_p99": float(np.percentile(r, 99) * 1e3),
            "rack_share_of_step": float(r.sum() / t.sum())}


def measure(bundle_path: str, voices: int, frames: int, seconds: float, block: int,
            mel_match: str = "zero-latency") -> dict:
    engine = Engine(load_bundle(bundle_path), 48000, frames_per_step=frames, voices=voices, threads=1,
                    mel_match=mel_match)
    for i in range(voices):
        engine.voices.note_on(48 + 5 * i, 100)          # every voice sounding
    rack_time = [0.0]
    process = engine.rack.process

    def timed(block_, values):
        t0 = time.perf_counter()
        out = process(block_, values)
        rack_time[0] = time.perf_counter() - t0
        return out
    engine.rack.process = timed

    def step() -> float:
        t0 = time.perf_counter()
        engine._step()
        dt = time.perf_counter() - t0
        engine.ring.drop(engine.ring.available())
        return dt

    for _ in range(WARMUP_STEPS):
        step()
    per_condition = max(1, int(seconds / engine.step_s))
    runs = {"off": ([], []), "on": ([], [])}
    load_before = os.getloadavg()[0]
    while min(len(times) for times, _ in runs.values()) < per_condition:
        for name, values in (("off", RACK_OFF), ("on", RACK_ON)):
            for k, v in values.items():
                engine.bus.jump(k, v)
            step()                               # the switch: fade and reset, left out
            times, rack = runs[name]
            for _ in range(block):
                times.append(step())
                rack.append(rack_time[0])
    result = {name: _summary(engine.step_s, times, rack) for name, (times, rack) in runs.items()}
    result["rtf_on_over_off"] = result["on"]["rtf"] / result["off"]["rtf"]
    result.update({"voices": voices, "frames_per_step": frames, "step_s": engine.step_s,
                   "mel_match": engine.mel_match, "precision": engine.precision, "device_rate": engine.out_rate,
                   "rack_on": RACK_ON, "nan_events": engine.nan_events,
                   "loadavg_1min_before": load_before, "loadavg_1min_after": os.getloadavg()[0]})
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", default=str(ROOT / "models" / "default.dwb"))
    ap.add_argument("--seconds", type=float, default=5.0, help="audio seconds per condition")
    ap.add_argument("--voices", type=int, default=4)
    ap.add_argument("--frames", type=int, default=1)
    ap.add_argument("--block", type=int, default=50, help="steps per condition before switching")
    ap.add_argument("--mel-match", default="zero-latency", help="mel matching mode (live play's default)")
    ap.add_argument("--out", default=str(RESULTS / "rack.json"), help="JSON file to write ('-': none)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    r = measure(a.bundle, a.voices, a.frames, a.seconds, a.block, a.mel_match)
    result = {"benchmark": "rack_rtf", "bundle": os.path.relpath(a.bundle, ROOT), "machine": describe(),
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "command": " ".join(["python -m benchmarks.bench_rack"] + sys.argv[1:]), **r}
    print(f"rack off: rtf {r['off']['rtf']:.3f}  p99 {r['off']['step_ms_p99']:.2f} ms | "
          f"reverb + delay on: rtf {r['on']['rtf']:.3f}  p99 {r['on']['step_ms_p99']:.2f} ms, "
          f"rack {r['on']['rack_ms_mean']:.3f} ms a step | load {r['loadavg_1min_after']:.2f}", file=sys.stderr)
    emit(result, None if a.out == "-" else a.out)


if __name__ == "__main__":
    main()
