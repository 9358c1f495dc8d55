"""VQCPC token model (Hadjeres & Crestel; as used by VQCPC-GAN, Nistal et al. 2021).

A frame-wise encoder (kernel-1 convolutions, so each frame is encoded on its own) maps the
standardized log-mel ``Tensor[B x n_mels x T]`` to ``Tensor[B x T x code_dim]``; a vector
quantizer snaps every frame to one of ``n_codes`` codebook vectors (straight-through
gradient, codebook + commitment losses). A GRU reads the quantized sequence and K linear
heads predict the code vector k = 1..K frames ahead; InfoNCE scores the true future frame
against negatives drawn from the SAME excerpt, so codes that help must describe how the
sound evolves (onset, sustain, decay) rather than what excerpt it is (timbre, pitch).

Choices beyond the paper, each one because the tiny-model tests collapsed without it:
He-initialised encoder with zero biases (PyTorch's default init leaves all frames pointing
the same way after four layers); unit-norm encoder outputs and codes (nearest code by
cosine, as in ViT-VQGAN), so InfoNCE cannot win by inflating norms; scores are cosine
similarity / temperature; the codebook is seeded k-means++-style from the first training
batch and dead codes (under one frame per batch on average) are re-seeded the same way;
the InfoNCE candidates (positive and negatives) are the quantized frames with the gradient
stopped, so the encoder learns through the context path (straight-through) and the VQ
losses: with gradient through the targets too, the quickest way out of a badly initialised
predictor was to merge all codes into one.

``token_statistics`` turns token sequences (and optional note timings) into what a
player needs: a transition matrix, a histogram, and attack / sustain / release tokens.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import distributed as dist
from torch import nn
from torch.nn import functional as F

from core.config import DictConfig
from core.tokens import frame_encoder

USAGE_DECAY = 0.8   # moving average of per-code usage; a code under 1 frame per batch restarts


@dataclass(frozen=True)
class VQCPCConfig(DictConfig):
    n_mels: int = 80
    enc_channels: tuple[int, ...] = (512, 512, 256)
    code_dim: int = 32
    n_codes: int = 16
    gru_hidden: int = 256
    gru_layers: int = 2
    context_dim: int = 512
    k_ahead: int = 5
    n_negatives: int = 16
    commitment: float = 0.25
    temperature: float = 0.3   # InfoNCE scores are cosine similarities / temperature


class VQCPC(nn.Module):
    """Encoder + vector quantizer + autoregressive context network + K-step predictors."""

    def __init__(self, config: VQCPCConfig = VQCPCConfig()):
        super().__init__()
        self.config = c = config
        self.encoder = frame_encoder(c.n_mels, c.enc_channels, c.code_dim)    # what a bundle carries
        for m in self.encoder:
            if isinstance(m, nn.Conv1d):   # He init, zero bias: frames stay distinct after 4 layers
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        bound = 1 / c.n_codes
        self.codebook = nn.Parameter(torch.empty(c.n_codes, c.code_dim).uniform_(-bound, bound))
        # 0 until the codebook has been set from encoder outputs (first training batch).
        self.register_buffer("codebook_ready", torch.zeros((), dtype=torch.bool))
        # Moving average of how many frames of a training batch each code wins.
        self.register_buffer("usage", torch.zeros(c.n_codes))
        self.gru = nn.GRU(c.code_dim, c.gru_hidden, num_layers=c.gru_layers, batch_first=True)
        self.context = nn.Linear(c.gru_hidden, c.context_dim)
        self.predictors = nn.ModuleList(nn.Linear(c.context_dim, c.code_dim)
                                        for _ in range(c.k_ahead))

    @torch.no_grad()
    def _restart(self, z: torch.Tensor, which: torch.Tensor) -> None:
        """Move the codes ``which`` (bool ``[n_codes]``) onto encoder outputs ``z: Tensor[N x
        code_dim]`` of the current batch, drawn one by one with probability proportional to the
        squared distance to the nearest code kept so far (k-means++ seeding)."""
        keep = [self.codebook[i] for i in range(self.codebook.shape[0]) if not bool(which[i])]
        if z.shape[0] > 4096:
            z = z[torch.randperm(z.shape[0], device=z.device)[:4096]]
        d2 = torch.full((z.shape[0],), math.inf, device=z.device)
        for c in keep:
            d2 = torch.minimum(d2, (z - c).pow(2).sum(1))
        for i in torch.nonzero(which).view(-1).tolist():
            if torch.isfinite(d2).all() and float(d2.sum()) > 0:
                j = int(torch.multinomial(d2 / d2.sum(), 1))
            else:
                j = int(torch.randint(0, z.shape[0], (1,)))
            self.codebook[i] = z[j]
            d2 = torch.minimum(d2, (z - z[j]).pow(2).sum(1))

    @torch.no_grad()
    def _maintain_codebook(self, z: torch.Tensor) -> None:
        """Training only, before quantizing ``z: Tensor[N x code_dim]``: set the whole codebook
        from the first batch's encoder outputs, later restart codes that won under one frame
        per batch on (moving) average."""
        n = self.config.n_codes
        if not bool(self.codebook_ready):
            dead = torch.ones(n, dtype=torch.bool, device=z.device)
            self.codebook_ready.fill_(True)
        else:
            dead = self.usage < 1.0
        if bool(dead.any()):
            self._restart(z, dead)
            self.usage[dead] = z.shape[0] / n
            # Under DDP the buffers (so the decision) come from rank 0 but each rank drew its
            # new codes from its own batch: take rank 0's so the replicas stay identical.
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                dist.broadcast(self.codebook.data, src=0)

    def encode(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Standardized log-mel ``Tensor[B x n_mels x T]`` ->
        (quantized ``Tensor[B x T x code_dim]`` with straight-through gradient,
        codes ``LongTensor[B x T]``, scalar vq loss = codebook + commitment * commitment loss)."""
        z = F.normalize(self.encoder(mel).transpose(1, 2), dim=-1)   # B x T x D, unit norm
        flat = z.reshape(-1, z.shape[-1])
        if self.training:
            self._maintain_codebook(flat.detach())
        cb = F.normalize(self.codebook, dim=-1)
        codes = (flat @ cb.t()).argmax(1).view(z.shape[:-1])         # nearest unit vector
        if self.training:
            counts = torch.bincount(codes.reshape(-1), minlength=cb.shape[0]).to(self.usage.dtype)
            self.usage.mul_(USAGE_DECAY).add_((1 - USAGE_DECAY) * counts)
        q = F.embedding(codes, cb)                                  # B x T x D
        codebook_loss = F.mse_loss(q, z.detach())
        commit_loss = F.mse_loss(z, q.detach())
        vq_loss = codebook_loss + self.config.commitment * commit_loss
        q_st = z + (q - z).detach()
        return q_st, codes, vq_loss

    def contexts(self, q: torch.Tensor) -> torch.Tensor:
        """Quantized ``Tensor[B x T x code_dim]`` -> causal ``Tensor[B x T x context_dim]``."""
        h, _ = self.gru(q * math.sqrt(q.shape[-1]))                 # unit variance per input
        return self.context(h)

    def forward(self, mel: torch.Tensor) -> dict[str, torch.Tensor]:
        """Losses on a batch of standardized log-mel ``Tensor[B x n_mels x T]`` (T >= 2).

        Returns scalars: "loss" (infonce + vq), "infonce" (mean over k of the cross-entropy
        of the positive among 1 + n_negatives candidates, nats), "vq", "accuracy" (fraction
        of predictions whose positive scores strictly above every negative that carries a
        different code; negatives with the positive's own code are the same vector and
        cannot be told apart, and predictions with no such negative are not counted) and
        "perplexity" (exp of the entropy of the batch's code usage, 1..n_codes).
        """
        c = self.config
        b, _, t = mel.shape
        if t < 2:
            raise ValueError(f"need at least 2 frames, got {t}")
        q, codes, vq_loss = self.encode(mel)
        ctx = self.contexts(q)
        target = q.detach()
        rows = torch.arange(b, device=mel.device)[:, None, None]
        losses, correct, counted = [], 0.0, 0.0
        for k in range(1, min(c.k_ahead, t - 1) + 1):
            pred = F.normalize(self.predictors[k - 1](ctx[:, :t - k]), dim=-1)  # B x (T-k) x D
            pos_t = torch.arange(k, t, device=mel.device)               # positive time steps
            # Negatives: other time steps of the same row (never the positive's own step).
            neg_t = torch.randint(0, t - 1, (b, t - k, c.n_negatives), device=mel.device)
            neg_t = neg_t + (neg_t >= pos_t[None, :, None]).long()
            # Candidates B x (T-k) x 1+N x D, the positive first.
            cand = torch.cat([target[:, k:, None, :], target[rows, neg_t]], 2)
            logits = (pred[:, :, None, :] * cand).sum(-1) / c.temperature       # B x (T-k) x 1+N
            labels = torch.zeros(b * (t - k), dtype=torch.long, device=mel.device)  # positive first
            losses.append(F.cross_entropy(logits.reshape(b * (t - k), -1), labels))
            with torch.no_grad():
                differs = codes[rows, neg_t] != codes[:, k:, None]     # B x (T-k) x N
                neg_best = logits[..., 1:].masked_fill(~differs, -math.inf).amax(-1)
                has = differs.any(-1)
                correct += float(((logits[..., 0] > neg_best) & has).sum())
                counted += float(has.sum())
        infonce = torch.stack(losses).mean()
        with torch.no_grad():
            usage = torch.bincount(codes.reshape(-1), minlength=c.n_codes).float()
            p = usage / usage.sum()
            perplexity = torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())
        return {
            "loss": infonce + vq_loss,
            "infonce": infonce,
            "vq": vq_loss,
            "accuracy": torch.tensor(correct / counted if counted else 0.0, device=mel.device),
            "perplexity": perplexity,
        }


def extract_tokens(model: VQCPC, mel: torch.Tensor) -> torch.Tensor:
    """Code index per frame: ``Tensor[n_mels x T]`` -> ``LongTensor[T]``, or
    ``Tensor[B x n_mels x T]`` -> ``LongTensor[B x T]`` (eval mode, no gradient)."""
    squeeze = mel.dim() == 2
    x = mel[None] if squeeze else mel
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            _, codes, _ = model.encode(x.to(model.codebook.dtype))
    finally:
        model.train(was_training)
    return codes[0] if squeeze else codes


def _mode(values: list[int], n_codes: int) -> int | None:
    """Most common value (smallest on ties), None for an empty list."""
    if not values:
        return None
    return int(np.argmax(np.bincount(np.asarray(values, dtype=np.int64), minlength=n_codes)))


def token_loudness(token_seqs: list[np.ndarray], loudness_seqs: list[np.ndarray], n_codes: int,
                   min_share: float = 0.02) -> dict:
    """How loud each token's frames are: "loudness" (``n_codes`` floats, the mean log10 mel
    of the frames a token was given to; unused tokens get the quietest value) and "default"
    (the loudest token among those given to at least ``min_share`` of all frames: the token
    a player starts on, so that a token-following model sounds before anyone turns a knob;
    some tokens stand for the silence between notes)."""
    total = np.zeros(n_codes)
    count = np.zeros(n_codes)
    for s, loud in zip(token_seqs, loudness_seqs, strict=True):
        s = np.asarray(s, np.int64).reshape(-1)
        loud = np.asarray(loud, np.float64).reshape(-1)
        if len(s) != len(loud):
            raise ValueError("one loudness value per token")
        np.add.at(total, s, loud)
        np.add.at(count, s, 1.0)
    if not count.sum():
        raise ValueError("no tokens")
    mean = np.where(count > 0, total / np.maximum(count, 1.0), np.inf)
    mean = np.where(np.isinf(mean), mean[count > 0].min(), mean)
    common = count >= min_share * count.sum()
    default = int(np.argmax(np.where(common, mean, -np.inf)))
    return {"loudness": mean.tolist(), "default": default}


def token_statistics(token_seqs: list[np.ndarray], n_codes: int,
                     notes: list[list[tuple[int, int]]] | None = None,
                     attack_frames: int = 4, release_frames: int = 8) -> dict:
    """Statistics of token sequences (each an int ``ndarray[T_i]`` of codes in [0, n_codes)).

    Returns plain lists / floats / ints (JSON-serializable):
    "transitions" (``n_codes x n_codes``, row ``a`` = distribution of the token following
    ``a``; rows never seen are uniform), "histogram" (``n_codes``, sums to 1).
    With ``notes`` (per sequence, (onset_frame, offset_frame) pairs; the note is held on
    frames ``onset <= t < offset``) also:
    "attack": most common token at each frame ``onset + j``, j < attack_frames (frames of
    the held note only); "sustain": tokens of the held part after the attack, most common
    first, up to 8, at least 1; "release": most common token at each frame ``offset + j``,
    j < release_frames, stopping at the sequence end or the next onset. Positions with no
    data repeat the previous position's token (the first falls back to the histogram's mode).
    Ties go to the smaller token id.
    """
    trans = np.zeros((n_codes, n_codes), dtype=np.float64)
    hist = np.zeros(n_codes, dtype=np.float64)
    seqs = [np.asarray(s, dtype=np.int64).reshape(-1) for s in token_seqs]
    for s in seqs:
        if s.size and (s.min() < 0 or s.max() >= n_codes):
            raise ValueError(f"tokens must lie in [0, {n_codes})")
        hist += np.bincount(s, minlength=n_codes)
        if s.size > 1:
            np.add.at(trans, (s[:-1], s[1:]), 1.0)
    row_sums = trans.sum(1, keepdims=True)
    trans = np.where(row_sums > 0, trans / np.maximum(row_sums, 1.0), 1.0 / n_codes)
    hist = hist / hist.sum() if hist.sum() > 0 else np.full(n_codes, 1.0 / n_codes)
    out: dict = {"transitions": trans.tolist(), "histogram": hist.tolist()}
    if notes is None:
        return out
    if len(notes) != len(seqs):
        raise ValueError("notes must give one list of (onset, offset) pairs per sequence")
    fallback = int(np.argmax(hist))
    attack: list[list[int]] = [[] for _ in range(attack_frames)]
    release: list[list[int]] = [[] for _ in range(release_frames)]
    sustain: list[int] = []
    for s, note_list in zip(seqs, notes, strict=True):
        ordered = sorted((int(a), int(b)) for a, b in note_list)
        for i, (on, off) in enumerate(ordered):
            held_end = min(off, s.size)
            for j in range(attack_frames):
                if on + j < held_end:
                    attack[j].append(int(s[on + j]))
            if on + attack_frames < held_end:
                sustain.extend(s[on + attack_frames:held_end].tolist())
            next_on = ordered[i + 1][0] if i + 1 < len(ordered) else s.size
            rel_end = min(off + release_frames, s.size, max(next_on, off))
            for j in range(rel_end - off):
                release[j].append(int(s[off + j]))

    def per_position(lists: list[list[int]]) -> list[int]:
        res, prev = [], fallback
        for vals in lists:
            m = _mode(vals, n_codes)
            prev = prev if m is None else m
            res.append(prev)
        return res

    if sustain:
        counts = np.bincount(np.asarray(sustain, dtype=np.int64), minlength=n_codes)
        order = sorted((i for i in range(n_codes) if counts[i] > 0), key=lambda i: (-counts[i], i))
        sustain_tokens = [int(i) for i in order[:8]]
    else:
        sustain_tokens = [fallback]
    out["attack"] = per_position(attack)
    out["sustain"] = sustain_tokens
    out["release"] = per_position(release)
    return out
