"""Training the streamable UNAGAN generator: BEGAN (gamma 1, lambda_k 0.01, k0 0) with
cycle regularization through the encoder E, on standardized log-mels; optional token
(from a trained VQCPC), pitch and note-clock (from note labels) conditions. The best
checkpoint by BEGAN's convergence measure L(x) + |gamma L(x) - L(G(z))| is kept as ``best.pt``.

Optional auxiliary losses: ``loss.pitch`` (a pitch classifier's cross-entropy on generated
frames against the requested pitch, AC-GAN style) and ``loss.envelope`` (L1 between the
coarse spectral envelopes, 8 bands, of a generated segment and the real segment whose
conditions it was given: BEGAN alone leaves the note condition unused, docs/history.md).

Noise is drawn as the player draws it: per-frame AR(1) walks on the prior with a random
drift per sequence, so training sees what the instrument will feed the model.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from core.generator import GeneratorConfig, StreamingUNAGAN, pitch_features

from .config import TrainConfig
from .data import AudioCorpus, batch_rng, mel_batch, note_batch
from .discriminators import BEGANDiscriminator, CycleEncoder, PitchClassifier
from .runner import Dist, Run, init_from, lr_at, pick_device, set_lr, step_seed, wrap_ddp

DRIFTS = (0.0, 0.01, 0.05, 0.2, 1.0)


def ar1_noise(batch: int, dim: int, frames: int, gen: torch.Generator) -> torch.Tensor:
    """``Tensor[B x dim x frames]``: AR(1) walks with N(0, I) marginals, drift per row."""
    drift = torch.tensor(DRIFTS)[torch.randint(len(DRIFTS), (batch,), generator=gen)]
    a = torch.sqrt(1 - drift ** 2)[:, None]
    eps = torch.randn(batch, dim, frames, generator=gen)
    out = torch.empty_like(eps)
    out[:, :, 0] = eps[:, :, 0]
    for t in range(1, frames):
        out[:, :, t] = a * out[:, :, t - 1] + drift[:, None] * eps[:, :, t]
    return out


def generator_config(cfg: TrainConfig) -> GeneratorConfig:
    keys = set(GeneratorConfig.__dataclass_fields__)
    return GeneratorConfig(**{k: v for k, v in cfg.model.items() if k in keys})


ENVELOPE_BANDS = 8


def band_envelope(mel: torch.Tensor, bands: int = ENVELOPE_BANDS) -> torch.Tensor:
    """Coarse spectral envelope: mel ``Tensor[B x n_mels x T]`` averaged over ``bands``
    equal groups of bins -> ``Tensor[B x bands x T]``."""
    b, m, t = mel.shape
    return mel[:, : m // bands * bands].reshape(b, bands, m // bands, t).mean(2)


def frame_change(mel: torch.Tensor) -> torch.Tensor:
    """Fine structure: mean absolute frame-to-frame change of each bin, mel
    ``Tensor[B x n_mels x T]`` -> ``Tensor[B x n_mels]`` (the eval's ``mel_change`` per bin)."""
    return (mel[:, :, 1:] - mel[:, :, :-1]).abs().mean(2)


def condition_features(gcfg: GeneratorConfig, tokens, pitch) -> torch.Tensor | None:
    """Per-frame condition channels ``Tensor[B x C x T]`` for the critic (or None)."""
    parts = []
    if gcfg.n_tokens:
        parts.append(F.one_hot(tokens, gcfg.n_tokens).float().transpose(1, 2))
    if gcfg.has_pitch:
        parts.append(pitch_features(pitch, gcfg.pitch_min, gcfg.pitch_max).transpose(1, 2))
    return torch.cat(parts, 1) if parts else None


def train_generator(cfg: TrainConfig, corpus: AudioCorpus, runs_dir="runs", resume: bool = True,
                    d: Dist = Dist(), progress: bool | None = None, tokenizer=None, base=None) -> Run:
    """``tokenizer``: callable(standardized mel ``[B x 80 x T]``) -> ``LongTensor[B x T]``
    (a trained VQCPC's :func:`extract_tokens`), needed when the model has tokens. ``base``:
    the :class:`training.generator_base.BundleBase` of ``optim.init_from=B.dwb`` (its
    normalisation and weights; ``cfg.model`` already filled from it)."""
    device = pick_device()
    run = Run(cfg, runs_dir, d, resume, progress)
    torch.manual_seed(cfg.seed)
    gcfg = generator_config(cfg)
    if gcfg.n_tokens and tokenizer is None:
        raise ValueError("a token-conditioned generator needs a trained VQCPC (data.vqcpc_run)")
    mean, std = (base.mean, base.std) if base is not None else corpus.normalization()
    G = StreamingUNAGAN(gcfg).to(device)
    width = int(cfg.model.get("critic_channels", 512 if gcfg.hidden >= 128 else 32))
    cond_dim = gcfg.n_tokens + gcfg.n_pitch
    D = BEGANDiscriminator(gcfg.n_mels, width, cond_dim, gcfg.note_dim).to(device)
    E = CycleEncoder(gcfg.n_mels, gcfg.z_dim, width, gcfg.n_levels).to(device)
    o, L = cfg.optim, cfg.loss
    w_pitch = float(L.get("pitch", 0.0)) if gcfg.has_pitch else 0.0
    n_classes = gcfg.pitch_max - gcfg.pitch_min + 1
    C = PitchClassifier(gcfg.n_mels, n_classes, min(width, 256)).to(device) if w_pitch > 0 else None
    opt_c = torch.optim.Adam(C.parameters(), lr=1e-3) if C is not None else None
    opt_g = torch.optim.Adam(list(G.parameters()) + list(E.parameters()), lr=o["lr"], betas=tuple(o["betas"]))
    opt_d = torch.optim.Adam(D.parameters(), lr=o["lr"], betas=tuple(o["betas"]))
    gamma, lambda_k, w_cyc = float(L.get("gamma", 1.0)), float(L.get("lambda_k", 0.01)), float(L.get("cycle", 1.0))
    w_env = float(L.get("envelope", 0.0))
    w_tex = float(L.get("texture", 0.0))
    warmup = int(L.get("critic_warmup", 0))     # steps that train the critic side alone
    k, start, best = 0.0, 0, float("inf")
    state = run.load()
    if state is not None:
        G.load_state_dict(state["G"])
        D.load_state_dict(state["D"])
        E.load_state_dict(state["E"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        if C is not None:
            C.load_state_dict(state["C"])
            opt_c.load_state_dict(state["opt_c"])
        k, start, best = float(state["k"]), int(state["step"]), float(state["best"])
    else:
        init_from(o, {"G": G, "D": D, "E": E, **({"C": C} if C is not None else {})},
                  from_bundle=(lambda p: base.generator_state(gcfg)) if base is not None else None)
    Gd, Dd, Ed = wrap_ddp(G, d, device), wrap_ddp(D, d, device), wrap_ddp(E, d, device)
    frames = int(cfg.data["segment_frames"])
    stride = G.stride
    frames = max(stride, frames // stride * stride)
    centre = gcfg.pitch_centre
    ema = None
    run.bar(start, int(o["steps"]))
    for step in range(start, int(o["steps"])):
        torch.manual_seed(step_seed(cfg.seed, step, d.rank))    # exact resume: no RNG state to carry
        set_lr(opt_g, lr_at(o, step))
        set_lr(opt_d, lr_at(o, step))
        rng = batch_rng(cfg.seed, step, d.rank)
        x, pitch, where = mel_batch(corpus, int(o["batch"]), frames, rng, mean, std)
        x = x.to(device)
        note = note_batch(corpus, where, frames).to(device) if gcfg.note_dim else None
        note_cf = note.transpose(1, 2) if note is not None else None     # channels first, for the critic
        labels = torch.where(torch.isnan(pitch), torch.full_like(pitch, -100),
                             (pitch.round() - gcfg.pitch_min).clamp(0, n_classes - 1)).long().to(device)
        pitch = torch.nan_to_num(pitch, nan=centre).to(device)
        tokens = tokenizer(x).to(device) if gcfg.n_tokens else None
        gen = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
        z = ar1_noise(x.shape[0], gcfg.z_dim, frames, gen).to(device)
        cond = condition_features(gcfg, tokens, pitch)
        # the critic warm-up (a fine-tune from a bundle: fresh critic, cycle encoder and pitch
        # classifier): they learn the generator as it is, which is run forwards only and stays put
        warming = step < warmup
        G.reset()
        with torch.set_grad_enabled(not warming):
            fake = Gd(z, tokens, pitch, note)
        # critic
        loss_real = (Dd(x, cond, note_cf) - x).abs().mean()
        loss_fake_d = (Dd(fake.detach(), cond, note_cf) - fake.detach()).abs().mean()
        loss_d = loss_real - k * loss_fake_d
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        if o.get("grad_clip"):
            torch.nn.utils.clip_grad_norm_(D.parameters(), o["grad_clip"])
        opt_d.step()
        # generator + encoder, with the cycle terms
        loss_fake = (Dd(fake, cond, note_cf) - fake).abs().mean()
        z0 = z[:, :, ::stride]
        cyc_z = (Ed(fake) - z0).abs().mean()
        if warming:
            cyc_x, loss_g = None, w_cyc * cyc_z
        else:
            G.reset()
            recon = Gd(Ed(x).repeat_interleave(stride, dim=2)[:, :, :frames], tokens, pitch, note)
            cyc_x = (recon - x).abs().mean()
            loss_g = loss_fake + w_cyc * (cyc_z + cyc_x)
        extra = {}
        if w_env > 0 and not warming:
            # the coarse envelope of a generated segment, made from random noise, should follow
            # the real one's: what its conditions (note clock, tokens, pitch) predict of it
            loss_env = (band_envelope(fake) - band_envelope(x)).abs().mean()
            loss_g = loss_g + w_env * loss_env
            extra["envelope"] = loss_env.item()
        if w_tex > 0 and not warming:
            # how much each bin moves from frame to frame should match the real segment's: a
            # BEGAN critic (an L1 autoencoder) lets the generator's frames be smoother than real
            loss_tex = (frame_change(fake) - frame_change(x)).abs().mean()
            loss_g = loss_g + w_tex * loss_tex
            extra["texture"] = loss_tex.item()
        mask = labels >= 0
        if C is not None and bool(mask.any()):
            # the classifier learns pitch from labelled real frames; the generator is asked
            # to make frames it classifies as the requested pitch (unlabelled frames ignored)
            c_real = C(x)
            loss_c = F.cross_entropy(c_real, labels, ignore_index=-100)
            opt_c.zero_grad(set_to_none=True)
            loss_c.backward()
            opt_c.step()
            c_fake = C(fake)
            loss_p = F.cross_entropy(c_fake, labels, ignore_index=-100)
            if not warming:
                loss_g = loss_g + w_pitch * loss_p
            with torch.no_grad():
                extra = {"pitch_c": loss_c.item(), "pitch_g": loss_p.item(),
                         "pitch_acc_real": (c_real.argmax(1) == labels)[mask].float().mean().item(),
                         "pitch_acc_fake": (c_fake.argmax(1) == labels)[mask].float().mean().item(), **extra}
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        if o.get("grad_clip"):
            torch.nn.utils.clip_grad_norm_(list(G.parameters()) + list(E.parameters()), o["grad_clip"])
        opt_g.step()
        G.reset()
        balance = gamma * loss_real.item() - loss_fake.item()
        k = min(max(k + lambda_k * balance, 0.0), 1.0)
        convergence = loss_real.item() + abs(balance)
        ema = convergence if ema is None else 0.95 * ema + 0.05 * convergence
        losses = {"d": loss_d.item(), "real": loss_real.item(), "fake": loss_fake.item(), "k": k,
                  "cycle_z": cyc_z.item(), "convergence": convergence, **extra}
        if not warming:
            losses["cycle_x"] = cyc_x.item()
        n = step + 1
        ckpt = {"step": n, "G": G.state_dict(), "D": D.state_dict(), "E": E.state_dict(),
                "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "k": k, "best": best,
                "mean": torch.from_numpy(mean), "std": torch.from_numpy(std), "config": cfg.to_dict()}
        if C is not None:
            ckpt.update({"C": C.state_dict(), "opt_c": opt_c.state_dict()})
        if n >= min(200, int(o["steps"])) and ema < best:
            best = ema
            ckpt["best"] = best
            run.save({"step": n, "G": G.state_dict(), "convergence": ema, "mean": ckpt["mean"],
                      "std": ckpt["std"], "config": cfg.to_dict()}, "best.pt")
        run.step_done(n, losses, lambda: ckpt)
        if d.main and n % int(cfg.log["sample_every"]) == 0:
            write_sample(run.dir / "samples" / f"step{n:07d}.wav", fake[0].detach().cpu().numpy(), mean, std,
                         corpus.mel_config)
    run.close()
    run.model = G
    return run


def write_sample(path: Path, mel_std, mean, std, mel_config) -> None:
    """A generated standardized mel ``[80 x T]`` as audio (Griffin-Lim: the generator trains
    without a vocoder; the vocoder trains beside it), so a user can listen to progress."""
    import numpy as np
    import soundfile as sf
    from .metrics import griffin_lim
    logmel = np.asarray(mel_std, np.float64) * std[:, None] + mean[:, None]
    audio = griffin_lim(logmel, mel_config, n_iter=32)
    sf.write(str(path), audio / max(1e-6, float(np.abs(audio).max())) * 0.5, mel_config.sample_rate)


def load_generator(run_dir, which: str = "best", device="cpu"):
    """(generator in eval mode, mean, std) from a run; ``which`` is "best" or "latest"."""
    p = Path(run_dir) / ("best.pt" if which == "best" else "checkpoint.pt")
    if not p.exists():
        p = Path(run_dir) / "checkpoint.pt"
    state = torch.load(p, map_location="cpu", weights_only=True)
    cfg = TrainConfig.from_dict(state["config"])
    G = StreamingUNAGAN(generator_config(cfg))
    G.load_state_dict(state["G"])
    return G.eval().to(device), state["mean"], state["std"]


