"""Training the VQCPC token model on standardized log-mels, then the corpus's tokens and the
token statistics the player uses (autopilot transitions; attack/sustain/release tokens of
labelled notes)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .config import TrainConfig
from .data import AudioCorpus, batch_rng, mel_batch
from .runner import Dist, Run, pick_device, step_seed, wrap_ddp
from .vqcpc import VQCPC, VQCPCConfig, extract_tokens, token_loudness, token_statistics


def vqcpc_config(cfg: TrainConfig) -> VQCPCConfig:
    args = dict(cfg.model)
    if "enc_channels" in args:
        args["enc_channels"] = tuple(args["enc_channels"])
    return VQCPCConfig(**args)


def train_vqcpc(cfg: TrainConfig, corpus: AudioCorpus, runs_dir="runs", resume: bool = True,
                d: Dist = Dist(), progress: bool | None = None) -> Run:
    device = pick_device()
    run = Run(cfg, runs_dir, d, resume, progress)
    torch.manual_seed(cfg.seed)
    model = VQCPC(vqcpc_config(cfg)).to(device)
    o = cfg.optim
    opt = torch.optim.Adam(model.parameters(), lr=o["lr"], betas=tuple(o["betas"]))
    mean, std = corpus.normalization()
    start = 0
    state = run.load()
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = int(state["step"])
    md = wrap_ddp(model, d, device)
    run.bar(start, int(o["steps"]))
    for step in range(start, int(o["steps"])):
        torch.manual_seed(step_seed(cfg.seed, step, d.rank))    # exact resume: no RNG state to carry
        x, _, _ = mel_batch(corpus, int(o["batch"]), int(cfg.data["segment_frames"]),
                            batch_rng(cfg.seed, step, d.rank), mean, std)
        out = md(x.to(device))
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        losses = {k: float(v.detach()) for k, v in out.items()}
        n = step + 1
        run.step_done(n, losses, lambda: {"step": n, "model": model.state_dict(), "opt": opt.state_dict(),
                                          "mean": torch.from_numpy(mean), "std": torch.from_numpy(std),
                                          "config": cfg.to_dict()})
    run.close()
    run.model = model
    return run


def load_vqcpc(run_dir, device="cpu") -> tuple[VQCPC, torch.Tensor, torch.Tensor]:
    state = torch.load(Path(run_dir) / "checkpoint.pt", map_location="cpu", weights_only=True)
    model = VQCPC(vqcpc_config(TrainConfig.from_dict(state["config"])))
    model.load_state_dict(state["model"])
    return model.eval().to(device), state["mean"], state["std"]


def corpus_token_stats(model: VQCPC, corpus: AudioCorpus, mean: np.ndarray, std: np.ndarray) -> dict:
    """Tokens of every training file and their statistics (with note phases from labels,
    and each token's loudness and the default token: :func:`token_loudness`)."""
    seqs, notes, loud = [], [], []
    labelled = all(it.notes for it in corpus.train)
    for it in corpus.train:
        m = (corpus.mel_of(it) - mean) / std
        seqs.append(extract_tokens(model, torch.from_numpy(m.T.astype(np.float32))).numpy())
        notes.append(corpus.note_frames(it))
        loud.append(corpus.mel_of(it).mean(1)[:len(seqs[-1])])
    stats = token_statistics(seqs, model.config.n_codes, notes if labelled else None)
    stats.update(token_loudness(seqs, loud, model.config.n_codes))
    return stats
