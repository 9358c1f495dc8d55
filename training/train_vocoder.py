"""MelGAN vocoder training: multi-resolution STFT loss (auraloss) with an STFT-only warm-up,
then the paper's multi-scale discriminator with hinge loss and feature matching. Vocoders
with harmonic excitation (``model.harmonics``) get the YIN f0 of each segment. Multi-band
vocoders (``model.bands`` > 1) add multi-band MelGAN's sub-band STFT loss
(``loss.subband_stft``) on the PQMF analysis of output and target. ``loss.mel`` (default 0)
adds that weight times the log10-mel L1 of output against target (HiFi-GAN's mel loss).
``loss.mel_match`` (0..1, or false / true = 0 / 1; default 0) is the share of the STFT and
mel losses taken on the output after mel matching (:mod:`core.mel_match`, as the player
plays it), the rest on the raw output: at 1 the vocoder is trained only for the structure
inside each mel band (the bands' energies are the filter's). The sub-band and GAN losses
see the matched output when the share is 1, else the raw one."""
from __future__ import annotations

import copy

import auraloss
import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from core.mel_match import MelMatch
from core.pitch import frame_f0
from core.pqmf import analysis
from core.vocoder import MelGANVocoder
from core.vocoders import build_vocoder as build_vocoder_kind

from .config import TrainConfig
from .data import AudioCorpus, batch_rng, vocoder_batch
from .discriminators import MultiScaleDiscriminator
from .runner import Dist, Run, init_from, lr_at, pick_device, set_lr, step_seed, wrap_ddp


def add_weight_norm(model: torch.nn.Module) -> torch.nn.Module:
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
            weight_norm(m)
    return model


def fold(model: torch.nn.Module) -> torch.nn.Module:
    """Removes the weight-norm parametrizations, leaving plain weights (for bundles)."""
    for m in model.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
    return model


VOCODER_KIND = "melgan"     # the losses and the critic here are MelGAN's (core.vocoders names the kinds)


def build_vocoder(cfg: TrainConfig) -> MelGANVocoder:
    args = dict(cfg.model)
    args.pop("ndf", None)
    voc = build_vocoder_kind(VOCODER_KIND, args)
    # PyTorch's default init, as the reference effectively trains with (its N(0, 0.02)
    # init writes to the weight-norm product, which is recomputed). N(0, 0.02) on the
    # weights themselves shrank the signal layer by layer and training stalled near silence.
    return add_weight_norm(voc)


STFT_RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))   # (FFT, hop, window), samples


def stft_loss_fn(eps: float = 1e-5, resolutions=STFT_RESOLUTIONS) -> torch.nn.Module:
    """Spectral convergence + log-magnitude L1 at each (FFT size, hop, window length) of
    ``resolutions`` (``loss.stft_resolutions``; default Parallel WaveGAN's three). ``eps``
    floors the magnitudes before the log: at auraloss's default 1e-8, the digital silence
    between rendered notes made any output there so costly that the model learned silence.
    The longest default window (1200 samples, 54 ms at 22050 Hz) cannot separate the partials
    of notes below about MIDI 50 (a Hann main lobe of 4 bins is 73 Hz wide there), so it
    cannot see the noise between them; a (4096, 480, 4096) resolution does
    (``tests/test_training.py::test_stft_resolutions_come_from_the_config``)."""
    res = [tuple(int(v) for v in r) for r in resolutions]
    if not res or any(len(r) != 3 or min(r) <= 0 or r[2] > r[0] for r in res):
        raise ValueError(f"loss.stft_resolutions: a list of [fft, hop, window] with window <= fft, got {resolutions}")
    return auraloss.freq.MultiResolutionSTFTLoss(fft_sizes=[r[0] for r in res], hop_sizes=[r[1] for r in res],
                                                 win_lengths=[r[2] for r in res], eps=eps)


def vocoder_checkpoint_of_bundle(path) -> dict:
    """A bundle's vocoder as training holds it: ``{"G": state_dict}`` with weight norm put
    back on its folded convolutions (so it plays exactly as the bundle's), for
    ``optim.init_from=BUNDLE.dwb``: fine-tuning the shipped default on new audio."""
    from core.bundle import load_bundle
    bundle = load_bundle(path)
    if bundle.vocoder_kind != VOCODER_KIND:
        raise ValueError(f"optim.init_from: '{path}' has a {bundle.vocoder_kind} vocoder; this stage trains "
                         f"{VOCODER_KIND}")
    voc = add_weight_norm(copy.deepcopy(bundle.vocoder).float())
    return {"G": voc.state_dict()}


def subband_stft_loss_fn(eps: float = 1e-5) -> torch.nn.Module:
    """Multi-band MelGAN's sub-band resolutions (FFT 384/683/171, hop 30/60/10)."""
    return auraloss.freq.MultiResolutionSTFTLoss(fft_sizes=[384, 683, 171], hop_sizes=[30, 60, 10],
                                                 win_lengths=[150, 300, 60], eps=eps)


def train_vocoder(cfg: TrainConfig, corpus: AudioCorpus, runs_dir="runs", resume: bool = True,
                  d: Dist = Dist(), progress: bool | None = None) -> Run:
    device = pick_device()
    run = Run(cfg, runs_dir, d, resume, progress)
    torch.manual_seed(cfg.seed)
    G = build_vocoder(cfg).to(device)
    D = MultiScaleDiscriminator(int(cfg.model.get("ndf", 16 if G.config.ngf >= 16 else 4))).to(device)
    o = cfg.optim
    opt_g = torch.optim.Adam(G.parameters(), lr=o["lr"], betas=tuple(o["betas"]))
    opt_d = torch.optim.Adam(D.parameters(), lr=o["lr"], betas=tuple(o["betas"]))
    start = 0
    state = run.load()
    if state is not None:
        G.load_state_dict(state["G"])
        D.load_state_dict(state["D"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        start = int(state["step"])
    else:
        init_from(o, {"G": G, "D": D}, from_bundle=vocoder_checkpoint_of_bundle)
    Gd, Dd = wrap_ddp(G, d, device), wrap_ddp(D, d, device)
    stft = stft_loss_fn(float(cfg.loss.get("stft_eps", 1e-5)),
                        cfg.loss.get("stft_resolutions", STFT_RESOLUTIONS)).to(device)
    L = cfg.loss
    bands = G.config.bands
    w_sub = float(L.get("subband_stft", 0.0)) if bands > 1 else 0.0
    sub_stft = subband_stft_loss_fn(float(L.get("stft_eps", 1e-5))).to(device) if w_sub > 0 else None
    w_stft, w_gan, w_fm = float(L.get("stft", 1.0)), float(L.get("gan", 1.0)), float(L.get("feature_matching", 10.0))
    gan_start = int(L.get("gan_start", 0))
    w_mel = float(L.get("mel", 0.0))
    w_match = float(L.get("mel_match", 0.0))
    if not 0.0 <= w_match <= 1.0:
        raise ValueError(f"loss.mel_match must be between 0 and 1, got {w_match}")
    matcher = MelMatch(corpus.mel_config, G.delay).to(device) if w_match > 0 else None
    seg = int(cfg.data["segment_samples"])
    # a copy on the training device: the corpus's own stays on the CPU, where batches are made
    # (moving it moved its window, and the next batch's analysis failed on a GPU)
    logmel = copy.deepcopy(corpus._logmel).to(device)
    run.bar(start, int(o["steps"]))
    for step in range(start, int(o["steps"])):
        torch.manual_seed(step_seed(cfg.seed, step, d.rank))    # exact resume: no RNG state to carry
        set_lr(opt_g, lr_at(o, step))
        set_lr(opt_d, lr_at(o, step))
        audio, mel = vocoder_batch(corpus, int(o["batch"]), seg, batch_rng(cfg.seed, step, d.rank))
        f0 = None
        if G.config.harmonics:
            f0 = torch.from_numpy(np.stack([frame_f0(a, corpus.sample_rate, G.hop, mel.shape[2])
                                            for a in audio.numpy()])).to(device)
        audio, mel = audio.to(device), mel.to(device)
        G.reset()
        raw = Gd(mel, f0)
        G.reset()
        # (share, output, target): each stream lags the reference by its look-ahead
        pairs = [] if w_match >= 1 else [(1.0 - w_match, raw[:, G.delay:], audio[:, :audio.shape[1] - G.delay])]
        if matcher is not None:
            lag = G.delay + matcher.delay
            pairs.append((w_match, matcher(raw, mel)[:, lag:], audio[:, :audio.shape[1] - lag]))
            matcher.reset()
        _, fake, real = pairs[0] if w_match < 1 else pairs[-1]
        losses = {}
        use_gan = w_gan > 0 and step >= gan_start
        if use_gan:
            d_real, d_fake = Dd(real), Dd(fake.detach())
            loss_d = sum(F.relu(1 - r[-1]).mean() + F.relu(1 + f[-1]).mean() for r, f in zip(d_real, d_fake))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            losses["d"] = loss_d.item()
        loss_g = torch.zeros((), device=device)
        if w_stft > 0:
            ls = sum(w * stft(f[:, None], r[:, None]) for w, f, r in pairs)
            loss_g = loss_g + w_stft * ls
            losses["stft"] = ls.item()
        if w_sub > 0:
            fb, rb = analysis(fake, bands), analysis(real, bands)
            lsub = sub_stft(fb.flatten(0, 1)[:, None], rb.flatten(0, 1)[:, None])
            loss_g = loss_g + w_sub * lsub
            losses["subband_stft"] = lsub.item()
        if use_gan:
            d_fake = Dd(fake)
            with torch.no_grad():
                d_real = Dd(real)
            adv = sum(-f[-1].mean() for f in d_fake)
            fm = sum(F.l1_loss(ff, rf) for fs, rs in zip(d_fake, d_real) for ff, rf in zip(fs[:-1], rs[:-1]))
            fm = fm / (len(d_fake) * (len(d_fake[0]) - 1))
            loss_g = loss_g + w_gan * adv + w_fm * fm
            losses["adv"], losses["fm"] = adv.item(), fm.item()
        with torch.set_grad_enabled(w_mel > 0):    # a loss with loss.mel > 0, else only logged
            lmel = sum(w * F.l1_loss(_logmel_like(f, logmel), _logmel_like(r, logmel)) for w, f, r in pairs)
        if w_mel > 0:
            loss_g = loss_g + w_mel * lmel
        losses["mel_l1"] = lmel.item()
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        if o.get("grad_clip"):
            torch.nn.utils.clip_grad_norm_(G.parameters(), o["grad_clip"])
        opt_g.step()
        losses["g"] = loss_g.item()
        n = step + 1
        run.step_done(n, losses, lambda: {"step": n, "G": G.state_dict(), "D": D.state_dict(),
                                          "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                                          "config": cfg.to_dict()})
        if d.main and n % int(cfg.log["sample_every"]) == 0:
            sf.write(run.dir / "samples" / f"step{n:07d}.wav", fake[0].detach().cpu().numpy(), corpus.sample_rate)
    run.close()
    run.model = G
    return run


def _logmel_like(audio: torch.Tensor, logmel: torch.nn.Module) -> torch.Tensor:
    n = audio.shape[1] // 256 * 256
    return logmel(audio[:, :n])


def load_vocoder(run_dir, device="cpu") -> MelGANVocoder:
    """The trained vocoder of a run, weight norm folded, in eval mode."""
    from pathlib import Path
    state = torch.load(Path(run_dir) / "checkpoint.pt", map_location="cpu", weights_only=True)
    cfg = TrainConfig.from_dict(state["config"])
    G = build_vocoder(cfg)
    G.load_state_dict(state["G"])
    return fold(G).eval().to(device)
