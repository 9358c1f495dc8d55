"""Real-time factor of the streaming chain (generator + vocoder), offline and streamed.

Prints one JSON object. RTF = compute time / audio time (lower is faster; < 1 is real time).
Overhead = streaming time / offline (whole-sequence) time for the same frames.
Paper sizes by default (generator hidden 512, vocoder ngf 32), untrained weights (speed
does not depend on the values).

    python -m benchmarks.bench_streaming [--seconds 6] [--threads 1 2] [--chunks 1 4 16]
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from core.generator import GeneratorConfig, StreamingUNAGAN
from core.vocoder import VocoderConfig
from core.vocoders import build_vocoder


def _time(fn, repeats: int) -> float:
    best = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t0)
    return float(np.median(best))


def measure(gen, voc, frames: int, chunk: int, repeats: int) -> tuple[float, list[float]]:
    dtype = next(gen.parameters()).dtype
    z = torch.randn(1, gen.config.z_dim, frames, dtype=dtype)
    step_times: list[float] = []

    def run():
        gen.reset()
        voc.reset()
        step_times.clear()
        k = chunk or frames
        with torch.inference_mode():
            for i in range(0, frames, k):
                t0 = time.perf_counter()
                voc(gen(z[:, :, i:i + k]))
                step_times.append(time.perf_counter() - t0)

    return _time(run, repeats), list(step_times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--chunks", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--ngf", type=int, default=32)
    ap.add_argument("--precision", nargs="+", default=["float32", "bfloat16"])
    a = ap.parse_args()
    torch.manual_seed(0)
    gen = StreamingUNAGAN(GeneratorConfig(hidden=a.hidden)).eval()
    voc = build_vocoder("melgan", VocoderConfig(ngf=a.ngf)).eval()
    sr, hop = 22050, voc.hop
    frames = int(a.seconds * sr / hop)
    audio_s = frames * hop / sr
    result = {"benchmark": "streaming_rtf", "torch": torch.__version__, "machine": platform.processor() or platform.machine(),
              "generator_params": sum(p.numel() for p in gen.parameters()),
              "vocoder_params": sum(p.numel() for p in voc.parameters()),
              "audio_seconds": audio_s, "vocoder_delay_samples": voc.delay, "runs": []}
    for precision, threads in [(p, t) for p in a.precision for t in a.threads]:
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[precision]
        gen.to(dtype)
        voc.to(dtype)
        torch.set_num_threads(threads)
        measure(gen, voc, 32, 4, 1)  # warm-up
        offline, _ = measure(gen, voc, frames, 0, a.repeats)
        row = {"precision": precision, "threads": threads, "offline_rtf": offline / audio_s, "streaming": []}
        for chunk in a.chunks:
            t, steps = measure(gen, voc, frames, chunk, a.repeats)
            ms = np.array(steps) * 1e3
            row["streaming"].append({
                "chunk_frames": chunk, "chunk_ms": chunk * hop / sr * 1e3, "rtf": t / audio_s,
                "overhead": t / offline, "step_ms_mean": float(ms.mean()), "step_ms_p99": float(np.percentile(ms, 99)),
            })
        result["runs"].append(row)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
