"""One configuration system for every training run.

A run is a :class:`TrainConfig`: which stage (``vqcpc``, ``vocoder``, ``generator``), the
model arguments of that stage, data, optimisation, losses and logging. Named presets give
the recipes (paper settings and tiny ones for tests); a JSON file or ``key=value``
overrides (dotted for nested: ``model.hidden=256``) change any field. The run's name is the
stage plus a hash of the whole configuration, so the same configuration resumes the same run.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

STAGES = ("vqcpc", "vocoder", "generator")


@dataclass
class TrainConfig:
    stage: str
    model: dict = field(default_factory=dict)      # arguments of the stage's model config
    data: dict = field(default_factory=lambda: {"sample_rate": 22050, "val_fraction": 0.1,
                                                "segment_samples": 8192, "segment_frames": 128})
    optim: dict = field(default_factory=lambda: {"lr": 1e-4, "betas": [0.5, 0.9], "batch": 16,
                                                 "steps": 1000, "grad_clip": 0.0})
    loss: dict = field(default_factory=dict)
    log: dict = field(default_factory=lambda: {"every": 10, "checkpoint_every": 200, "sample_every": 500})
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        if d.get("stage") not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, not {d.get('stage')!r}")
        known = {"stage", "model", "data", "optim", "loss", "log", "seed"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown configuration keys {sorted(unknown)}")
        base = cls(stage=d["stage"])
        for k in ("model", "data", "optim", "loss", "log"):
            merged = dict(getattr(base, k))
            merged.update(d.get(k, {}))
            setattr(base, k, merged)
        base.seed = int(d.get("seed", 0))
        return base

    def digest(self) -> str:
        """Hash of everything but the step count and logging: training longer, or logging
        differently, continues the same run."""
        d = self.to_dict()
        d["optim"] = {k: v for k, v in d["optim"].items() if k != "steps"}
        d.pop("log")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:8]

    @property
    def run_name(self) -> str:
        return f"{self.stage}-{self.digest()}"


def _preset(stage: str, **sections) -> dict:
    d = {"stage": stage}
    d.update(sections)
    return d


PRESETS: dict[str, dict] = {
    # MelGAN as in the paper: multi-scale discriminator, hinge, feature matching x10.
    "vocoder-melgan": _preset("vocoder", model={"ngf": 32},
                              optim={"lr": 1e-4, "betas": [0.5, 0.9], "batch": 16, "steps": 400000},
                              loss={"stft": 0.0, "gan": 1.0, "feature_matching": 10.0, "gan_start": 0}),
    # The CPU-friendly recipe: multi-resolution STFT loss alone first, then the GAN on top.
    # (lr 1e-3 during the STFT-only warm-up, as multi-band MelGAN's recipe; docs/history.md for 1e-4)
    "vocoder-stft": _preset("vocoder", model={"ngf": 32, "causal": True},
                            optim={"lr": 1e-3, "betas": [0.5, 0.9], "batch": 4, "steps": 20000},
                            data={"segment_samples": 8192},
                            loss={"stft": 1.0, "stft_eps": 1e-5, "gan": 1.0, "feature_matching": 10.0,
                                  "gan_start": 15000}),
    # Fine-tuning a vocoder of the default's shape (ngf 16, causal, 8 harmonics) from a bundle,
    # STFT + mel loss, no GAN: add optim.init_from=B.dwb and train with --base B --out O.
    # (the runs on a 24-program corpus in docs/default-model.md: these settings, optim.steps=10000)
    "vocoder-finetune": _preset("vocoder", model={"ngf": 16, "causal": True, "harmonics": 8},
                                optim={"lr": 1e-4, "lr_end": 5e-6, "betas": [0.5, 0.9], "batch": 4, "steps": 4000},
                                data={"segment_samples": 8192},
                                loss={"stft": 1.0, "stft_eps": 1e-5, "mel": 1.0, "gan": 1.0, "feature_matching": 10.0,
                                      "gan_start": 1000000}),
    # Multi-band MelGAN (Yang et al. 2020): 4 PQMF bands, upsampling x64 per band, full- and
    # sub-band STFT losses (0.5 each) first, then the GAN: the fast option to train and to run.
    "vocoder-mb": _preset("vocoder", model={"ngf": 32, "bands": 4, "ratios": [8, 4, 2], "n_residual_layers": 4,
                                            "causal": True},
                          optim={"lr": 1e-3, "betas": [0.5, 0.9], "batch": 4, "steps": 20000},
                          data={"segment_samples": 8192},
                          loss={"stft": 0.5, "subband_stft": 0.5, "stft_eps": 1e-5, "gan": 1.0,
                                "feature_matching": 10.0, "gan_start": 15000}),
    # UNAGAN hierarchical generator with BEGAN and cycle regularization.
    "generator-began": _preset("generator", model={"hidden": 512},
                               optim={"lr": 1e-4, "betas": [0.5, 0.999], "batch": 5, "steps": 100000, "grad_clip": 3.0},
                               data={"segment_frames": 256},
                               loss={"gamma": 1.0, "lambda_k": 0.01, "cycle": 1.0, "pitch": 0.5}),
    # Fine-tuning a bundle's generator on new audio (optim.init_from=B.dwb, train with --base B
    # --out O): the model's shape, normalisation and tokens come from B (training/generator_base.py);
    # model.pitch_min/pitch_max may widen its pitch range. Fresh critic: 300 steps train it alone.
    "generator-finetune": _preset("generator", model={"critic_channels": 256},
                                  optim={"lr": 5e-5, "lr_end": 1e-5, "betas": [0.5, 0.999], "batch": 5, "steps": 4000,
                                         "grad_clip": 3.0},
                                  data={"segment_frames": 128},
                                  loss={"gamma": 1.0, "lambda_k": 0.01, "cycle": 1.0, "pitch": 0.5, "envelope": 1.0,
                                        "texture": 1.0, "critic_warmup": 300}),
    "vqcpc": _preset("vqcpc", model={}, optim={"lr": 2e-4, "betas": [0.9, 0.999], "batch": 8, "steps": 5000},
                     data={"segment_frames": 128}),
}
# Tiny versions of every recipe: the suite builds each and takes a step.
for _name, _p in list(PRESETS.items()):
    tiny = copy.deepcopy(_p)
    tiny.setdefault("optim", {}).update({"batch": 2, "steps": 3})
    tiny.setdefault("log", {}).update({"every": 1, "checkpoint_every": 2, "sample_every": 1000})
    tiny.setdefault("data", {}).update({"segment_samples": 2048, "segment_frames": 32})
    if tiny["stage"] == "vocoder":
        tiny["model"].update({"ngf": 4})
        if tiny["loss"].get("gan_start"):
            tiny["loss"]["gan_start"] = 2
    elif tiny["stage"] == "generator":
        tiny["model"].update({"hidden": 16})
    else:
        tiny["model"].update({"enc_channels": [16, 16, 8], "code_dim": 4, "n_codes": 4, "gru_hidden": 8,
                              "context_dim": 8, "k_ahead": 2, "n_negatives": 4})
    PRESETS[_name + "-tiny"] = tiny


def _coerce(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def load_config(spec: str, overrides: list[str] | None = None) -> TrainConfig:
    """``spec``: a preset name or a JSON file; ``overrides``: ``section.key=value`` strings."""
    if spec in PRESETS:
        d = copy.deepcopy(PRESETS[spec])
    else:
        p = Path(spec)
        if not p.is_file():
            raise ValueError(f"no preset or config file {spec!r}; presets: {sorted(PRESETS)}")
        try:
            d = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"config file '{p}' is not valid JSON: {e}") from None
    for o in overrides or []:
        if "=" not in o:
            raise ValueError(f"override {o!r} is not key=value")
        key, value = o.split("=", 1)
        parts = key.split(".")
        target = d
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = _coerce(value)
    return TrainConfig.from_dict(d)
