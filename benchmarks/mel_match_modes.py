"""What each mel-matching mode costs in quality and in compute: held-out copy synthesis
(log-mel L1, multi-resolution STFT distance) and generated audio (log-mel L1 of the played
audio against the mel the generator asked for), with Griffin-Lim beside, and the compute
time of one 1-frame step for 4 rows in float64 and float32.

Modes: ``off``, ``zero-latency`` (delay 0), ``causal-110`` (the zero-latency design with 110
samples, 5 ms, of delay; not a mode of ``--mel-match``), ``low-latency`` (384 samples) and
``full`` (896) at the default bundle's causal vocoder. The vocoder runs once per clip and
every mode filters its output, as :class:`core.synth.Synth` and :func:`core.resynth.resynthesize`
do (the script checks that it gives resynthesize's output for the first clip).

Held-out audio: a corpus rendered with ``main.py corpus DIR --programs 40 0 73 89 --phrases 2``;
its files byte-identical to the default bundle's training corpus (``--programs 40 0 73 89
--low 48 --high 84 --phrases 4``: p040-phrase0/1; p040-notes was its held-out file) are left
out by ``--exclude``. Clips of ``--seconds`` are taken in turn from every file (clips quieter
than 1e-3 RMS skipped), as ``main.py eval`` takes them. Generated audio plays those files'
score (pitch, onsets and releases, their tokens) from the settled generator.

Usage: ``python -m benchmarks.mel_match_modes --data /tmp/h7corpus [--clips 24] [--seconds 2]
[--generated-seconds 20] [--json benchmarks/results/mel_match_modes.json]``.
"""
from __future__ import annotations

import argparse
import math
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import frame_notch, silence_gate  # noqa: E402
from core.bundle import load_bundle  # noqa: E402
from core.frame_notch import FrameRateNotch  # noqa: E402
from core.inputs import frame_inputs  # noqa: E402
from core.latent import NoiseSource  # noqa: E402
from core.mel import LogMel  # noqa: E402
from core.mel_match import CausalMelMatch, mel_matcher  # noqa: E402
from core.pitch import frame_f0  # noqa: E402
from core.resynth import resynthesize  # noqa: E402
from core.silence_gate import SilenceGate  # noqa: E402
from core.silence_offset import silence_offset  # noqa: E402
from core.synth import Synth  # noqa: E402
from training.data import AudioCorpus  # noqa: E402
from training.evaluate import SOUNDING, held_out_score  # noqa: E402
from training.metrics import griffin_lim, logmel_l1, mr_stft_distance  # noqa: E402

from benchmarks import emit

MODES = ("off", "zero-latency", "causal-110", "low-latency", "full")


def make_matcher(mode: str, bundle, audio_delay: int):
    """The filter of ``mode`` (None for off); "causal-110": zero-latency with 110 samples of delay."""
    if mode == "causal-110":
        return CausalMelMatch(bundle.mel, audio_delay, output_delay=110)
    return mel_matcher(mode, bundle.mel, audio_delay)


def clips_of(items, hop: int, rate: int, seconds: float, max_clips: int) -> list[tuple[str, np.ndarray]]:
    """Up to ``max_clips`` (file name, clip) pairs, clip 1 of each file, then clip 2, ..."""
    n = int(seconds * rate) // hop * hop
    per_file = [[(Path(it.path).name, it.audio[s:s + n]) for s in range(0, len(it.audio) - n + 1, n)
                 if np.sqrt(np.mean(it.audio[s:s + n] ** 2)) > 1e-3] for it in items]
    out = []
    for round_ in range(max(map(len, per_file), default=0)):
        out += [segs[round_] for segs in per_file if round_ < len(segs)]
    return out[:max_clips]


@torch.inference_mode()
def copy_synthesis(bundle, clips) -> dict:
    """Per mode: mean log-mel L1 and MR-STFT of the clips' copy synthesis (the chain of
    :func:`core.resynth.resynthesize` without the pitch post-filter: the vocoder less its
    offset in silence, the frame-rate notch, the mode's mel matching, the silence gate);
    Griffin-Lim beside."""
    voc, hop, lm = bundle.vocoder, bundle.hop, LogMel(bundle.mel)
    offset = silence_offset(voc, bundle.mel.n_mels, bundle.mel.log_floor, bundle.mean.device)
    rows = {m: [] for m in MODES + ("griffin_lim",)}
    for i, (_, clip) in enumerate(clips):
        n = len(clip)
        runs = {}                         # padded length -> (mel, vocoder audio)
        for mode in MODES:
            mm = make_matcher(mode, bundle, voc.delay)
            d = voc.delay + (0 if mm is None else mm.delay)
            total = math.ceil((n + d) / hop) * hop                 # as resynthesize pads
            if total not in runs:
                x = torch.zeros(total)
                x[:n] = torch.from_numpy(clip)
                mel = lm(x)[None]
                f0 = (torch.from_numpy(frame_f0(x.numpy(), bundle.sample_rate, hop, mel.shape[2], fill=True, refine=True))[None]
                      if voc.takes_f0 else None)
                voc.reset()
                raw = voc(mel, f0) - offset
                if frame_notch.RATE > 0:
                    raw = FrameRateNotch(hop, frame_notch.RATE, lag=voc.delay, log_floor=bundle.mel.log_floor)(raw, mel)
                runs[total] = (mel, raw)
                voc.reset()
            mel, raw = runs[total]
            y = raw if mm is None else mm(raw, mel)
            if silence_gate.ENABLED:
                y = SilenceGate(hop, lag=d, log_floor=bundle.mel.log_floor)(y, mel)
            y = y[0, d:d + n].numpy()
            if i == 0 and mode != "causal-110":   # the same as the project's copy synthesis
                np.testing.assert_allclose(y, resynthesize(bundle, clip, mel_match=mode, pitch_filter=0), atol=1e-4)
            rows[mode].append((logmel_l1(clip, y, bundle.mel), mr_stft_distance(clip, y)))
        gl = griffin_lim(lm(torch.from_numpy(clip)).numpy(), bundle.mel)[:n]
        rows["griffin_lim"].append((logmel_l1(clip, gl, bundle.mel), mr_stft_distance(clip, gl)))
    return {m: {"logmel_l1": float(np.mean([r[0] for r in rs])), "mrstft": float(np.mean([r[1] for r in rs]))}
            for m, rs in rows.items()}


@torch.inference_mode()
def generated(bundle, corpus, seconds: float, seed: int = 0, chunk: int = 64) -> dict:
    """The generator plays the held-out score; the vocoder's audio goes through each mode.
    Per mode: mean log-mel L1 of the played audio against the requested mel, over all
    frames and over sounding ones (requested mean log10 mel above ``SOUNDING``)."""
    frames = int(seconds * bundle.sample_rate / bundle.hop)
    pitch, note, tokens = held_out_score(bundle, corpus, frames)
    synth = Synth(bundle, mel_match="off")
    synth.settle()
    cfg = bundle.generator.config
    noise = NoiseSource(cfg.z_dim, seed, seed + 1)
    raw, req = [], []
    for s in range(0, frames, chunk):
        k = min(chunk, frames - s)
        inputs = frame_inputs(cfg, noise.next(k, drift=0.05), None if tokens is None else tokens[s:s + k],
                              float(cfg.pitch_centre) if pitch is None else pitch[s:s + k],
                              None if note is None else note[s:s + k])
        a, m = synth.step_inputs(inputs)
        raw.append(a)
        req.append(m * bundle.std[None, :, None] + bundle.mean[None, :, None])
    raw, req = torch.cat(raw, 1), torch.cat(req, 2)                  # 1 x frames*hop, 1 x mels x frames
    lm = LogMel(bundle.mel)
    sounding = req[0].mean(0) > SOUNDING
    out = {"frames": frames, "sounding_fraction": float(sounding.float().mean())}
    voc_delay = bundle.vocoder.delay

    scored = slice(0, frames - 8)         # the same frames for every mode: not the last 896 samples

    def score(audio: torch.Tensor) -> dict:
        err = (lm(audio)[:, scored] - req[0][:, scored]).abs()
        return {"logmel_l1": float(err.mean()), "logmel_l1_sounding": float(err[:, sounding[scored]].mean())}
    for mode in MODES:
        mm = make_matcher(mode, bundle, voc_delay)
        y = raw if mm is None else torch.cat([mm(raw[:, s * bundle.hop:(s + chunk) * bundle.hop], req[:, :, s:s + chunk])
                                              for s in range(0, frames, chunk)], 1)
        d = voc_delay + (0 if mm is None else mm.delay)
        out[mode] = score(torch.cat((y[0, d:], torch.zeros(d))))
    out["griffin_lim"] = score(torch.from_numpy(griffin_lim(req[0].numpy(), bundle.mel)))
    return out


@torch.inference_mode()
def step_times(bundle, rows: int = 4, steps: int = 200, repeats: int = 5) -> dict:
    """Per mode and dtype: the median and the least over ``repeats`` of the mean time of a
    1-frame step (``rows`` rows, one thread), in microseconds (the least is the machine's
    figure where other processes share its cores); and float32's (the default's) largest
    difference from float64 over the run, relative to the output's peak."""
    torch.manual_seed(0)
    hop = bundle.hop
    audio = 0.1 * torch.randn(rows, steps * hop)
    mel = LogMel(bundle.mel)(0.1 * torch.randn(rows, steps * hop))
    out = {}
    for mode in MODES[1:]:
        res, outputs = {}, {}
        for dtype in (torch.float64, torch.float32):
            mm = make_matcher(mode, bundle, bundle.vocoder.delay)
            mm._working_dtype = lambda a, dtype=dtype: dtype
            times = []
            for _ in range(repeats):
                mm.reset()
                ys = []
                t0 = time.perf_counter()
                for s in range(steps):
                    ys.append(mm(audio[:, s * hop:(s + 1) * hop], mel[:, :, s:s + 1]))
                times.append((time.perf_counter() - t0) / steps)
            outputs[dtype] = torch.cat(ys, 1)
            name = str(dtype).replace("torch.", "")
            res[name + "_us_median"] = float(np.median(times) * 1e6)
            res[name + "_us_min"] = float(np.min(times) * 1e6)
        ref = outputs[torch.float64]
        res["float32_max_diff_relative_to_peak"] = float((outputs[torch.float32] - ref).abs().max() / ref.abs().max())
        out[mode] = res
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default=str(ROOT / "models" / "default.dwb"))
    ap.add_argument("--data", required=True, help="held-out corpus folder")
    ap.add_argument("--exclude", nargs="*", default=["p040-phrase"],
                    help="leave out files whose name contains one of these (in the bundle's training set)")
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--generated-seconds", type=float, default=20.0)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    bundle = load_bundle(a.bundle)
    corpus = AudioCorpus(a.data, bundle.mel)
    held = [it for it in sorted(corpus.train + corpus.val, key=lambda it: it.path)
            if not any(e in Path(it.path).name for e in a.exclude)]
    corpus.val = held                     # held_out_score plays the held-out files' score
    clips = clips_of(held, bundle.hop, bundle.sample_rate, a.seconds, a.clips)
    t0 = time.time()
    result = {"command": "python -m benchmarks.mel_match_modes " + " ".join(sys.argv[1:]),
              "bundle": a.bundle, "data": a.data, "files": [Path(it.path).name for it in held],
              "clips": len(clips), "clip_seconds": a.seconds,
              "delay_samples": {m: (0 if make_matcher(m, bundle, bundle.vocoder.delay) is None
                                    else make_matcher(m, bundle, bundle.vocoder.delay).delay) for m in MODES},
              "copy_synthesis": copy_synthesis(bundle, clips)}
    result["generated"] = generated(bundle, corpus, a.generated_seconds)
    result["step_time_1_frame_4_rows"] = step_times(bundle)
    result["machine"] = {"platform": platform.platform(), "processor": platform.processor(),
                         "torch": torch.__version__, "threads": torch.get_num_threads()}
    result["wall_seconds"] = time.time() - t0
    emit(result, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
