"""A generator fine-tuned from a bundle's (``train generator-finetune``, ``optim.init_from=B.dwb``).

A bundle holds the generator, its normalisation and the token encoder its tokens came from,
but no critic: the critic, the cycle encoder and the pitch classifier start fresh (and
``loss.critic_warmup`` steps train them alone before the generator moves). Three things
come from the bundle so that the fine-tune starts exactly where the bundle's model is:

* the model's shape (:func:`fill_model_config`: every generator field the configuration
  does not set), so the preset need not know the bundle's sizes;
* the normalisation (``mean``, ``std``) and the tokenizer (the bundle's token encoder):
  the tokens the generator was trained on name standardized frames of that normalisation;
* the weights, with the pitch condition widened where the new range is wider
  (:func:`widen_pitch`): a new semitone below the old range starts as the old lowest one,
  one above as the old highest one, which is what the old model played there (its pitch
  condition clamps). ``tests/test_generator_base.py::test_widened_pitch_starts_as_the_clamped_model``.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from core.generator import GeneratorConfig

# the generator's weights whose input dimension (dim 1) is the per-frame feature vector
# [z | token one-hot | pitch soft one-hot] (core.generator.StreamingUNAGAN.features)
FEATURE_INPUT_WEIGHTS = ("block0.conv_in.weight", "inject.")
SHAPE_FIELDS = ("z_dim", "n_mels", "hidden", "n_levels", "groups", "n_tokens", "note_dim")


def is_bundle_base(optim: dict) -> bool:
    src = optim.get("init_from")
    return bool(src) and Path(str(src)).suffix == ".dwb"


def fill_model_config(model: dict, base_config: GeneratorConfig) -> dict:
    """``model`` with every generator field it lacks taken from the bundle's generator; a
    shape field it sets differently (anything but the pitch range) is an error."""
    base = asdict(base_config)
    out = {**{k: v for k, v in base.items() if k not in model}, **model}
    for k in SHAPE_FIELDS:
        if out[k] != base[k]:
            raise ValueError(f"optim.init_from: the bundle's generator has {k}={base[k]}, the configuration {out[k]}; "
                             "a fine-tune keeps the bundle's shape (only pitch_min/pitch_max may change)")
    if (out["pitch_min"] == out["pitch_max"]) != (base["pitch_min"] == base["pitch_max"]):
        raise ValueError("optim.init_from: a fine-tune keeps the bundle's pitch condition on or off")
    return out


def widen_pitch(state: dict[str, torch.Tensor], old: GeneratorConfig, new: GeneratorConfig) -> dict[str, torch.Tensor]:
    """The generator ``state`` of pitch range ``old`` for the range ``new`` (which must hold
    it): each feature-input weight's pitch columns are rebuilt, a semitone of the new range
    taking the column of the nearest semitone of the old one."""
    if (old.pitch_min, old.pitch_max) == (new.pitch_min, new.pitch_max):
        return state
    if not (new.pitch_min <= old.pitch_min and old.pitch_max <= new.pitch_max):
        raise ValueError(f"optim.init_from: the pitch range may only widen (bundle {old.pitch_min}-{old.pitch_max}, "
                         f"configuration {new.pitch_min}-{new.pitch_max})")
    lo = old.z_dim + old.n_tokens
    semis = torch.arange(new.pitch_min, new.pitch_max + 1)
    source = lo + (semis.clamp(old.pitch_min, old.pitch_max) - old.pitch_min)
    columns = torch.cat([torch.arange(lo), source, torch.arange(lo + old.n_pitch, old.feature_dim)])
    out = dict(state)
    for name, w in state.items():
        if name.startswith(FEATURE_INPUT_WEIGHTS) and name.endswith("weight") and w.shape[1] == old.feature_dim:
            out[name] = w.index_select(1, columns).clone()
    return out


class BundleBase:
    """What a fine-tune takes from ``path``: ``config`` (its generator's), ``mean``/``std``
    (``ndarray[n_mels]``, log10), ``tokenizer`` (standardized mel ``Tensor[B x n_mels x T]``
    -> ``LongTensor[B x T]``, or None) and ``generator_state(new_config)``."""

    def __init__(self, path: str | Path):
        from core.bundle import load_bundle

        b = load_bundle(path)
        self.config: GeneratorConfig = b.generator.config
        self.mean, self.std = b.mean.numpy().copy(), b.std.numpy().copy()
        self._state = {k: v.float() for k, v in b.generator.state_dict().items()}
        enc = b.encoder
        self.tokenizer = (lambda mel: enc(mel.cpu())) if enc is not None else None

    def generator_state(self, new: GeneratorConfig) -> dict:
        return {"G": widen_pitch(self._state, self.config, new)}
