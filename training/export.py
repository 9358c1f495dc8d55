"""Export: trained runs -> one bundle file the app plays."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from core.bundle import save_bundle
from core.mel import MelConfig

from .runner import read_log
from .train_generator import load_generator
from .train_vocoder import load_vocoder


def _last_metrics(run_dir: Path) -> dict:
    log = run_dir / "log.csv"
    if not log.exists():
        return {}
    rows = read_log(log)
    return rows[-1] if rows else {}


def export_bundle(out: str | Path, generator_run: str | Path, vocoder_run: str | Path,
                  name: str, token_stats: dict | None = None, data: str | None = None,
                  half: bool = True, extra: dict | None = None) -> Path:
    gen, mean, std = load_generator(generator_run)
    voc = load_vocoder(vocoder_run)
    gen_run, voc_run = Path(generator_run), Path(vocoder_run)
    provenance = {
        "trained": True, "data": data,
        "generator_run": gen_run.name, "vocoder_run": voc_run.name,
        "generator_config": json.loads((gen_run / "config.json").read_text()),
        "vocoder_config": json.loads((voc_run / "config.json").read_text()),
        "generator_last": _last_metrics(gen_run), "vocoder_last": _last_metrics(voc_run),
        **(extra or {}),
    }
    save_bundle(out, name=name, generator=gen, vocoder=voc, mel=MelConfig(), mean=torch.as_tensor(mean),
                std=torch.as_tensor(std), token_stats=token_stats, provenance=provenance, half=half)
    return Path(out)
