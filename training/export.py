"""Export: trained runs -> one bundle file the app plays."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from core.bundle import save_bundle
from core.mel import MelConfig
from core.tokens import TokenEncoder, TokenEncoderConfig

from .runner import read_log
from .train_generator import load_generator
from .train_vocoder import load_vocoder


def _last_metrics(run_dir: Path) -> dict:
    log = run_dir / "log.csv"
    if not log.exists():
        return {}
    rows = read_log(log)
    return rows[-1] if rows else {}


def token_encoder(vqcpc_run: str | Path) -> TokenEncoder:
    """The encoder and codebook of a trained VQCPC run, as a bundle carries them."""
    from .train_vqcpc import load_vqcpc

    model, _, _ = load_vqcpc(vqcpc_run)
    c = model.config
    enc = TokenEncoder(TokenEncoderConfig(c.n_mels, tuple(c.enc_channels), c.code_dim, c.n_codes))
    state = {k: v for k, v in model.state_dict().items() if k.startswith("encoder.") or k == "codebook"}
    enc.load_state_dict(state)
    return enc.eval()


def export_bundle(out: str | Path, generator_run: str | Path, vocoder_run: str | Path,
                  name: str, token_stats: dict | None = None, data: str | None = None,
                  half: bool = True, extra: dict | None = None, vqcpc_run: str | Path | None = None) -> Path:
    """``vqcpc_run``: the run whose tokens the generator was trained on; its encoder goes in
    the bundle (reference-file tokens in the instrument, held-out tokens in ``eval``)."""
    gen, mean, std = load_generator(generator_run)
    voc = load_vocoder(vocoder_run)
    enc = token_encoder(vqcpc_run) if vqcpc_run is not None and gen.config.n_tokens else None
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
                std=torch.as_tensor(std), token_stats=token_stats, provenance=provenance, half=half,
                encoder=enc)
    return Path(out)


def _base_precision(base: str | Path) -> bool:
    """Whether the bundle ``base`` stores its generator in float16."""
    from safetensors import safe_open

    with safe_open(str(base), framework="pt") as f:
        return any(f.get_slice(k).get_dtype() == "F16" for k in f.keys() if k.startswith("generator."))


def _with_model(b, base: str | Path, out: str | Path, name: str | None, part: str, run: Path, **model) -> Path:
    """``b``, the loaded bundle ``base``, with ``model`` (``generator=`` or ``vocoder=``) in place
    of its own, stored at the base's precision; the provenance keeps the base's and names the
    new ``part``'s run, configuration and last logged losses."""
    parts = {"generator": b.generator, "vocoder": b.vocoder, **model}
    provenance = {**b.provenance, f"{part}_base": Path(base).name, f"{part}_run": run.name,
                  f"{part}_config": json.loads((run / "config.json").read_text()),
                  f"{part}_last": _last_metrics(run)}
    save_bundle(out, name=name or b.name, mel=b.mel, mean=b.mean, std=b.std, token_stats=b.token_stats,
                provenance=provenance, half=_base_precision(base), encoder=b.encoder, **parts)
    return Path(out)


def with_vocoder(base: str | Path, vocoder_run: str | Path, out: str | Path, name: str | None = None) -> Path:
    """The bundle ``base`` with the vocoder of ``vocoder_run`` in place of its own: the same
    generator, normalisation, tokens and token encoder (``train VOCODER --base B --out O``,
    e.g. the default's vocoder fine-tuned on new audio)."""
    from core.bundle import load_bundle

    return _with_model(load_bundle(base), base, out, name, "vocoder", Path(vocoder_run),
                       vocoder=load_vocoder(vocoder_run))


def with_generator(base: str | Path, generator_run: str | Path, out: str | Path, name: str | None = None) -> Path:
    """The bundle ``base`` with the generator of ``generator_run`` (its best checkpoint) in
    place of its own: the same vocoder, token encoder and token statistics (``train
    generator-finetune --base B --out O``). The run must have trained on the base's
    normalisation (a fine-tune from ``optim.init_from=B`` does); else ``ValueError``."""
    from core.bundle import load_bundle

    b = load_bundle(base)
    gen, mean, std = load_generator(generator_run)
    if not (torch.allclose(torch.as_tensor(mean), b.mean) and torch.allclose(torch.as_tensor(std), b.std)):
        raise ValueError(f"'{generator_run}' trained on another normalisation than '{base}' (fine-tune it with "
                         f"optim.init_from={base})")
    if gen.config.n_tokens != b.generator.config.n_tokens:
        raise ValueError(f"'{generator_run}' takes {gen.config.n_tokens} tokens, '{base}' names {b.generator.config.n_tokens}")
    return _with_model(b, base, out, name, "generator", Path(generator_run), generator=gen)
