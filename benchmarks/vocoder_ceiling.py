"""What the vocoder measure allows: the multi-resolution STFT distance of ``main.py eval``
(``training.metrics.mr_stft_distance``) on eval's held-out clips, for resyntheses that are
given more than a vocoder has. Prints one JSON object.

* ``exact_magnitude_*``: the clip's own STFT magnitude (n_fft 1024, hop 256, framed as
  ``core.mel.LogMel`` frames) with a phase that is random, harmonic (from YIN's f0: each bin
  takes the phase of its nearest harmonic, run on from frame to frame), refined by RTISI-LA
  (a streaming Griffin-Lim: each new frame and the 3 before it get 4 iterations, earlier
  frames are fixed; Zhu et al. 2007) or by 60 offline Griffin-Lim iterations;
* ``mel_pinv_magnitude_rtisi``: the magnitude that the mel gives by the pseudo-inverse of
  the filterbank (what Griffin-Lim from the mel starts from), same phase as above;
* ``learned_magnitude_*`` (with ``--train-seconds`` > 0): a frame-rate network (mel and f0,
  4 frames of context and 2 of look-ahead -> 513 log magnitudes, with a harmonic comb of
  f0 in its output layer) trained on the corpus's training files for that long, then the
  same phases; ``*_logmag_err`` is its mean |log magnitude error| (floor 1e-5) on the
  held-out clips and on the first 2 s of 10 training files.

Usage: ``python -m benchmarks.vocoder_ceiling [--data data/fluidr3-corpus]
[--train-seconds 0] [--hidden 512] [--layers 6] [--compute auto]``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.mel import LogMel, MelConfig  # noqa: E402
from core.pitch import frame_f0  # noqa: E402
from training.evaluate import heldout_clips  # noqa: E402
from training.metrics import (frames_istft, frames_overlap_add, frames_stft, griffin_lim_iterations,  # noqa: E402
                              mr_stft_distance)
from training.pipeline import open_corpus  # noqa: E402

SR, N, HOP = 22050, 1024, 256
F = N // 2 + 1
MEL = MelConfig()                     # the STFT below is LogMel's framing at these sizes
assert (MEL.sample_rate, MEL.n_fft, MEL.hop, MEL.win) == (SR, N, HOP, N)
WIN = torch.hann_window(N, dtype=torch.float64)


def stft(x: np.ndarray) -> torch.Tensor:
    """``ndarray[L]`` -> complex ``Tensor[513 x T]`` framed as LogMel frames (float64)."""
    return frames_stft(torch.as_tensor(np.asarray(x), dtype=torch.float64), MEL)


def istft(spec: torch.Tensor, length: int) -> np.ndarray:
    """Inverse of :func:`stft` (weighted overlap-add): ``length`` float32 samples."""
    return frames_istft(spec, length, MEL).numpy().astype(np.float32)


def harmonic_phase(f0: np.ndarray, seed: int = 0) -> torch.Tensor:
    """Unit phasors ``Tensor[513 x T]``: each bin of a voiced frame takes the phase of its
    nearest harmonic k f0 (k phi at the frame's first sample, phi integrated from f0, plus
    the Hann window's linear phase (w_k - w_bin) N / 2); unvoiced frames get random phase."""
    t_count = len(f0)
    start = np.concatenate([[0.0], np.cumsum(2 * np.pi * f0 * HOP / SR)[:-1]])
    bins_hz = np.arange(F) * SR / N
    w_bin = 2 * np.pi * np.arange(F) / N
    rng = np.random.default_rng(seed)
    ph = np.empty((F, t_count))
    for t in range(t_count):
        if f0[t] <= 0:
            ph[:, t] = rng.uniform(0, 2 * np.pi, F)
            continue
        k = np.maximum(1, np.round(bins_hz / f0[t]))
        ph[:, t] = k * start[t] + (2 * np.pi * k * f0[t] / SR - w_bin) * N / 2
    return torch.from_numpy(np.exp(1j * ph))


def griffin_lim(mag: torch.Tensor, phase: torch.Tensor, length: int, iters: int) -> np.ndarray:
    """Plain Griffin-Lim (no momentum) from ``phase``."""
    y = griffin_lim_iterations(mag, lambda x: frames_stft(x, MEL), lambda sp: frames_istft(sp, length, MEL),
                               iters, phase=phase, momentum=0.0)
    return y.numpy().astype(np.float32)


def rtisi_la(mag: torch.Tensor, phase: torch.Tensor, length: int, look_ahead: int = 3, iters: int = 4) -> np.ndarray:
    """Streaming phase reconstruction: frame t enters with ``phase``; frames t-look_ahead..t
    get ``iters`` Griffin-Lim updates against the signal of all frames so far; earlier
    frames are final (a latency of ``look_ahead`` frames)."""
    spec = torch.zeros_like(phase)
    for t in range(mag.shape[1]):
        spec[:, t] = mag[:, t] * phase[:, t]
        lo = max(0, t - look_ahead)
        for _ in range(iters):
            a = max(0, lo - 3)
            y = frames_overlap_add(spec[:, a:t + 1], MEL)
            for j in range(lo, t + 1):
                fr = torch.fft.rfft(y[(j - a) * HOP:(j - a) * HOP + N] * WIN)
                spec[:, j] = mag[:, j] * fr / fr.abs().clamp_min(1e-16)
    return istft(spec, length)


class MagnitudeNet(nn.Module):
    """log10 mel ``[B x 80 x T]`` and f0 ``[B x T]`` (Hz, 0 unvoiced) -> log |STFT|
    ``[B x 513 x T]``: a conv over ``context + 1 + look_ahead`` frames, residual 1x1
    layers, and an output ``u + v cos(2 pi f/f0) + w cos(4 pi f/f0)`` per bin."""

    def __init__(self, hidden: int, layers: int, context: int = 4, look_ahead: int = 2):
        super().__init__()
        self.context, self.look_ahead = context, look_ahead
        self.inp = nn.Conv1d(82, hidden, context + look_ahead + 1)
        self.body = nn.ModuleList([nn.Sequential(nn.GELU(), nn.Conv1d(hidden, hidden, 1)) for _ in range(layers)])
        self.out = nn.Conv1d(hidden, 3 * F, 1)

    def forward(self, mel: torch.Tensor, f0: torch.Tensor) -> torch.Tensor:
        voiced = (f0 > 0).float()
        lf = torch.where(f0 > 0, torch.log2(f0.clamp_min(1) / 440), torch.zeros_like(f0))
        x = torch.nn.functional.pad(torch.cat([mel, lf[:, None], voiced[:, None]], 1), (self.context, self.look_ahead))
        h = self.inp(x)
        for layer in self.body:
            h = h + layer(h)
        o = self.out(torch.nn.functional.gelu(h)).view(mel.shape[0], 3, F, -1)
        ratio = (torch.arange(F, device=f0.device) * SR / N)[None, :, None] / f0.clamp_min(1.0)[:, None, :]
        comb = [torch.cos(2 * math.pi * m * ratio) * voiced[:, None, :] for m in (1, 2)]
        return (o[:, 0] + o[:, 1] * comb[0] + o[:, 2] * comb[1]).clamp(max=7.0)   # real |S| < e^6.3


def features(audio: np.ndarray, logmel: LogMel) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(|STFT| ``[513 x T]``, log10 mel ``[80 x T]``, f0 ``[T]``) of ``audio``, float32."""
    mag = stft(audio).abs().float()
    with torch.no_grad():
        mel = logmel(torch.from_numpy(np.asarray(audio, np.float32)))
    t = min(mag.shape[1], mel.shape[1])
    return mag[:, :t], mel[:, :t], torch.from_numpy(frame_f0(audio, SR, HOP, t))


def train_magnitude_net(train, seconds: float, hidden: int, layers: int, device: str, seed: int = 0,
                        batch: int = 64, frames: int = 64, lr: float = 5e-4) -> tuple[MagnitudeNet, int, float]:
    """Adam on |log error| (floor 1e-5) + spectral convergence, lr decayed linearly over
    ``seconds`` of wall time. Returns (model on the CPU, steps, last loss)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    mag_all = torch.cat([m for m, _, _ in train], 1).to(device)
    mel_all = torch.cat([m for _, m, _ in train], 1).to(device)
    f0_all = torch.cat([f for _, _, f in train]).to(device)
    bounds = np.cumsum([0] + [m.shape[1] for m, _, _ in train])
    starts = np.concatenate([np.arange(bounds[i], bounds[i + 1] - frames) for i in range(len(train))])
    offsets = torch.arange(frames, device=device)
    net = MagnitudeNet(hidden, layers).to(device)
    opt = torch.optim.Adam(net.parameters(), lr)
    t0, step, loss = time.time(), 0, torch.tensor(float("nan"))
    while time.time() - t0 < seconds:
        idx = torch.from_numpy(rng.choice(starts, batch)).to(device)[:, None] + offsets
        mag = mag_all[:, idx].permute(1, 0, 2)
        pred = net(mel_all[:, idx].permute(1, 0, 2), f0_all[idx])
        loss = (pred - torch.log(mag.clamp_min(1e-5))).abs().mean() \
            + torch.linalg.norm(torch.exp(pred) - mag) / torch.linalg.norm(mag)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        step += 1
        for g in opt.param_groups:
            g["lr"] = lr * max(0.01, 1 - (time.time() - t0) / seconds)
    return net.cpu().eval(), step, float(loss.detach())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT / "data" / "fluidr3-corpus"))
    ap.add_argument("--train-seconds", type=float, default=0.0)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--compute", default="auto")
    args = ap.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.compute == "auto" else args.compute
    corpus = open_corpus(args.data)
    logmel = LogMel(MelConfig())
    fb = logmel.fb.double()                                                  # 80 x 513
    pinv = torch.linalg.pinv(fb)
    net = None
    out: dict = {"benchmark": "vocoder_ceiling", "data": args.data, "torch": torch.__version__, "device": device}
    if args.train_seconds > 0:
        train = [features(it.audio.astype(np.float32), logmel) for it in corpus.train]
        net, steps, loss = train_magnitude_net(train, args.train_seconds, args.hidden, args.layers, device)
        out["learned"] = {"train_seconds": args.train_seconds, "steps": steps, "last_loss": loss,
                          "hidden": args.hidden, "layers": args.layers, "train_frames": sum(m.shape[1] for m, _, _ in train)}
        errs = []
        for it in corpus.train[:10]:
            mag, mel, f0 = features(it.audio[:44032].astype(np.float32), logmel)
            with torch.no_grad():
                pred = net(mel[None], f0[None])[0]
            errs.append(float((pred - torch.log(mag.clamp_min(1e-5))).abs().mean()))
        out["learned_magnitude_train_logmag_err"] = float(np.mean(errs))
    rows: dict[str, list[float]] = {}
    clips = heldout_clips(corpus, 2.0, 32)
    for _, clip in clips:
        spec = stft(clip)
        mag = spec.abs()
        n = len(clip)
        f0 = frame_f0(clip, SR, HOP, mag.shape[1])
        hp = harmonic_phase(f0)
        rand = torch.from_numpy(np.exp(2j * np.pi * np.random.default_rng(1).random(tuple(mag.shape))))
        mel_lin = fb @ mag
        cases = {
            "exact_magnitude_random_phase": lambda: istft(mag * rand, n),
            "exact_magnitude_harmonic_phase": lambda: istft(mag * hp, n),
            "exact_magnitude_rtisi": lambda: rtisi_la(mag, hp, n),
            "exact_magnitude_griffin_lim_60": lambda: griffin_lim(mag, hp, n, 60),
            "mel_pinv_magnitude_rtisi": lambda: rtisi_la((pinv @ mel_lin).clamp_min(0), hp, n),
        }
        if net is not None:
            m32, mel, f0t = features(clip, logmel)
            with torch.no_grad():
                pred = net(mel[None], f0t[None])[0]
            rows.setdefault("learned_magnitude_heldout_logmag_err", []).append(
                float((pred - torch.log(m32.clamp_min(1e-5))).abs().mean()))
            pm = torch.exp(pred).double()
            cases["learned_magnitude_rtisi"] = lambda: rtisi_la(pm, hp[:, :pm.shape[1]], n)
            cases["learned_magnitude_griffin_lim_60"] = lambda: griffin_lim(pm, hp[:, :pm.shape[1]], n, 60)
        for name, make in cases.items():
            rows.setdefault(name, []).append(mr_stft_distance(clip, make()))
    out["clips"] = len(clips)
    out.update({k: float(np.mean(v)) for k, v in rows.items()})
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
