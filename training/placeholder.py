"""The placeholder default bundle: UNTRAINED weights made by this project's own code.

It exists so that the app has something to load before a trained model ships; it sounds
like shaped noise, not like an instrument. Deterministic: the same seed writes the same file.

    python -m training.placeholder models/default.dwb
"""
from __future__ import annotations

import argparse

import torch

from core.bundle import save_bundle
from core.generator import GeneratorConfig, StreamingUNAGAN
from core.mel import MelConfig
from core.vocoder import MelGANVocoder, VocoderConfig, init_weights


def make_placeholder(path: str, seed: int = 0, hidden: int = 128) -> None:
    torch.manual_seed(seed)
    gen = StreamingUNAGAN(GeneratorConfig(hidden=hidden, n_tokens=16, pitch_min=36, pitch_max=96))
    voc = MelGANVocoder(VocoderConfig(causal=True))   # no look-ahead: lowest latency
    init_weights(voc)
    mel = MelConfig()
    # Typical log10-mel level of music at MelGAN's scale, flat across bins: a guess, not data.
    mean = torch.full((mel.n_mels,), -2.5)
    std = torch.full((mel.n_mels,), 1.0)
    save_bundle(path, name="placeholder (untrained)", generator=gen, vocoder=voc, mel=mel,
                mean=mean, std=std, half=True,
                provenance={"trained": False, "note": "random initial weights; see training/placeholder.py",
                            "seed": seed})


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    make_placeholder(a.out, a.seed)
