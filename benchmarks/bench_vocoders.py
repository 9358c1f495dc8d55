"""Real-time factor of the vocoder variants alone, streamed in 4-frame steps.

Prints one JSON object. RTF = compute time / audio time. Untrained weights (speed does not
depend on the values). Variants: the paper MelGAN (ngf 32, non-causal and causal), the
shipped default's shape (ngf 16, causal, harmonic excitation), and the multi-band option
(4 PQMF bands, ngf 32, ratios 8,4,2, 4 residual layers).

    python -m benchmarks.bench_vocoders [--seconds 6] [--threads 1] [--chunk 4]
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from core.vocoder import VocoderConfig
from core.vocoders import Vocoder, build_vocoder

VARIANTS = {         # kind "melgan" of the registry (core.vocoders)
    "melgan_paper": VocoderConfig(ngf=32),
    "melgan_paper_causal": VocoderConfig(ngf=32, causal=True),
    "default_ngf16_causal_harmonic8": VocoderConfig(ngf=16, causal=True, harmonics=8),
    "default_shape_without_harmonics": VocoderConfig(ngf=16, causal=True),
    "multiband_ngf32_causal": VocoderConfig(ngf=32, bands=4, ratios=(8, 4, 2), n_residual_layers=4, causal=True),
}


def stream_time(voc: Vocoder, frames: int, chunk: int, repeats: int) -> float:
    mel = torch.randn(1, 80, frames) - 3
    f0 = torch.full((1, frames), 220.0)
    times = []
    for _ in range(repeats):
        voc.reset()
        t0 = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, frames, chunk):
                voc(mel[:, :, i:i + chunk], f0[:, i:i + chunk] if voc.takes_f0 else None)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    frames = int(a.seconds * 22050 / 256)
    audio_s = frames * 256 / 22050
    out = {"benchmark": "vocoder_variants_rtf", "torch": torch.__version__,
           "machine": platform.processor() or platform.machine(), "threads": a.threads,
           "chunk_frames": a.chunk, "audio_seconds": audio_s, "variants": {}}
    for name, cfg in VARIANTS.items():
        voc = build_vocoder("melgan", cfg).eval()
        stream_time(voc, 16, a.chunk, 1)        # warm-up
        t = stream_time(voc, frames, a.chunk, a.repeats)
        out["variants"][name] = {"params": sum(p.numel() for p in voc.parameters()), "delay_samples": voc.delay,
                                 "rtf": t / audio_s}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
