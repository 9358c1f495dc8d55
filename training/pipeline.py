"""``main.py train``: one stage from a configuration, or the whole recipe
(VQCPC tokens -> vocoder -> generator -> bundle) on a folder of audio."""
from __future__ import annotations

import json
import sys
from pathlib import Path


import torch

from .config import TrainConfig, load_config
from .data import AudioCorpus
from .export import export_bundle
from .runner import pick_device, setup_distributed
from .train_generator import train_generator
from .train_vocoder import train_vocoder
from .train_vqcpc import corpus_token_stats, load_vqcpc, train_vqcpc


def open_corpus(data: str, cfg: TrainConfig | None = None) -> AudioCorpus:
    frac = float(cfg.data.get("val_fraction", 0.1)) if cfg else 0.1
    corpus = AudioCorpus(data, val_fraction=frac)
    if corpus.skipped:
        print(f"warning: skipped {len(corpus.skipped)} unreadable file(s) in '{data}'", file=sys.stderr)
    return corpus


def make_tokenizer(vqcpc_run: str | Path):
    from .vqcpc import extract_tokens
    model, _, _ = load_vqcpc(vqcpc_run)
    return lambda mel: extract_tokens(model, mel.cpu())


def generator_base(cfg: TrainConfig):
    """(``cfg`` with the model's shape filled from the bundle, the bundle's
    :class:`BundleBase`) for a generator warm-started from a bundle; else (``cfg``, None)."""
    from .generator_base import BundleBase, fill_model_config, is_bundle_base

    if cfg.stage != "generator" or not is_bundle_base(cfg.optim):
        return cfg, None
    base = BundleBase(cfg.optim["init_from"])
    filled = TrainConfig.from_dict({**cfg.to_dict(), "model": fill_model_config(cfg.model, base.config)})
    return filled, base


def run_stage(cfg: TrainConfig, corpus: AudioCorpus, runs_dir: str, resume: bool = True,
              progress: bool | None = None):
    cfg, base = generator_base(cfg)
    d = setup_distributed(pick_device())
    if cfg.stage == "vocoder":
        run = train_vocoder(cfg, corpus, runs_dir, resume, d, progress)
    elif cfg.stage == "vqcpc":
        run = train_vqcpc(cfg, corpus, runs_dir, resume, d, progress)
    else:
        if base is not None:
            tok = base.tokenizer
        else:
            tok = make_tokenizer(cfg.data["vqcpc_run"]) if cfg.model.get("n_tokens") else None
        run = train_generator(cfg, corpus, runs_dir, resume, d, progress, tokenizer=tok, base=base)
    if d.world > 1:        # record that every rank ended with the same weights
        import torch.distributed as dist
        sums = [float(p.detach().double().sum()) for p in run.model.parameters()]
        gathered = [None] * d.world
        dist.all_gather_object(gathered, sums)
        if d.main:
            (run.dir / "ranks.json").write_text(json.dumps({"world": d.world, "param_sums": gathered}))
        dist.barrier()
        dist.destroy_process_group()
    return run


def pitch_range(corpus: AudioCorpus) -> tuple[int, int] | None:
    pitches = [n["pitch"] for it in corpus.train for n in (it.notes or [])]
    return (int(min(pitches)), int(max(pitches))) if pitches else None


def train_all(data: str, out: str, runs_dir: str = "runs", vqcpc: str = "vqcpc", vocoder: str = "vocoder-stft",
              generator: str = "generator-began", overrides: dict[str, list[str]] | None = None,
              resume: bool = True, progress: bool | None = None, name: str | None = None,
              parallel: bool = False, vocoder_data: str | None = None) -> Path:
    """The whole recipe; returns the bundle path. ``parallel``: the vocoder trains in a second
    process (one torch thread each) while the tokens and the generator train here.
    ``vocoder_data``: the vocoder trains on this folder instead (a vocoder needs no labels or
    tokens, so any audio of the kind helps; it must not hold ``data``'s held-out files, which
    ``eval`` measures it on)."""
    overrides = overrides or {}
    corpus = open_corpus(data)
    vcfg = load_config(vocoder, overrides.get("vocoder"))
    vdata = vocoder_data or data
    vcorpus = open_corpus(vdata, vcfg) if vocoder_data else corpus
    if vocoder_data:
        held_out = {Path(it.path).resolve() for it in corpus.val}
        shared = [str(Path(it.path)) for it in vcorpus.train if Path(it.path).resolve() in held_out]
        if shared:
            raise ValueError(f"--vocoder-data '{vocoder_data}' holds files that '{data}' holds out for eval: "
                             f"{', '.join(shared[:3])}")
    side = None
    if parallel:
        import subprocess
        torch.set_num_threads(1)
        cmd = [sys.executable, str(Path(__file__).resolve().parent.parent / "main.py"), "train", vocoder,
               "--data", str(vdata), "--runs", str(runs_dir)] + [a for o in overrides.get("vocoder", []) for a in ("--set", o)]
        if not resume:
            cmd.append("--no-resume")
        side = subprocess.Popen(cmd, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    qcfg = load_config(vqcpc, overrides.get("vqcpc"))
    qrun = train_vqcpc(qcfg, corpus, runs_dir, resume, progress=progress)
    model, mean, std = load_vqcpc(qrun.dir)
    stats = corpus_token_stats(model, corpus, mean.numpy(), std.numpy())
    (qrun.dir / "token_stats.json").write_text(json.dumps(stats))
    if side is None:
        vrun = train_vocoder(vcfg, vcorpus, runs_dir, resume, progress=progress)
    gov = [f"model.n_tokens={model.config.n_codes}", f"data.vqcpc_run={json.dumps(str(qrun.dir))}"]
    pr = pitch_range(corpus)
    if pr is not None:
        gov += [f"model.pitch_min={pr[0]}", f"model.pitch_max={pr[1]}"]
    gcfg = load_config(generator, gov + list(overrides.get("generator", [])))
    grun = train_generator(gcfg, corpus, runs_dir, resume, progress=progress, tokenizer=make_tokenizer(qrun.dir))
    if side is not None:
        if side.wait() != 0:
            raise RuntimeError(f"the vocoder training process failed (exit {side.returncode})")
        vrun = train_vocoder(vcfg, vcorpus, runs_dir, resume=True, progress=progress)   # finished: loads only
    return export_bundle(out, grun.dir, vrun.dir, name or f"{Path(data).name} ({grun.cfg.run_name})",
                         token_stats=stats, data=str(data), vqcpc_run=qrun.dir,
                         extra={"vqcpc_run": qrun.dir.name, "corpus_seconds": corpus.seconds,
                                "corpus_files": len(corpus.train) + len(corpus.val),
                                "skipped_files": len(corpus.skipped),
                                **({"vocoder_data": str(vocoder_data), "vocoder_corpus_seconds": vcorpus.seconds,
                                    "vocoder_corpus_files": len(vcorpus.train) + len(vcorpus.val)}
                                   if vocoder_data else {})})


