"""Copy synthesis: audio -> MelGAN log-mel -> vocoder (-> frame-rate notch) (-> mel matching)
(-> pitch post-filter) (-> silence gate) (no generator), the chain of :class:`core.synth.Synth`."""
from __future__ import annotations

import math

import numpy as np
import torch

from . import frame_notch
from .bundle import Bundle
from .frame_notch import FrameRateNotch
from .mel import LogMel
from .mel_match import mel_matcher
from .pitch import frame_f0
from .pitch_filter import DEFAULT_STRENGTH, PitchFilter
from . import silence_gate
from .silence_gate import SilenceGate
from .silence_offset import silence_offset


@torch.inference_mode()
def resynthesize(bundle: Bundle, audio: np.ndarray, chunk_frames: int = 0,
                 mel_match: str = "full", pitch_filter: float = DEFAULT_STRENGTH) -> np.ndarray:
    """Mono ``ndarray[L]`` at the bundle's rate -> vocoded ``ndarray[L]``, aligned for the
    vocoder's look-ahead. ``chunk_frames`` > 0 streams the mel in chunks of that many frames.
    ``mel_match``: "full", "low-latency" or "off", as :class:`core.synth.Synth` plays.
    ``pitch_filter``: the post-filter's strength (:mod:`core.pitch_filter`) at the f0 tracked
    from the input; 0: off. A vocoder without f0 input plays unfiltered, as in Synth."""
    voc, hop = bundle.vocoder, bundle.hop
    n = len(audio)
    matcher = mel_matcher(mel_match, bundle.mel, voc.delay)
    if matcher is not None:
        matcher.to(bundle.mean.device)
    delay = voc.delay + (matcher.delay if matcher is not None else 0)
    total = math.ceil((n + delay) / hop) * hop
    x = torch.zeros(total)
    x[:n] = torch.from_numpy(np.asarray(audio, dtype=np.float32))
    mel = LogMel(bundle.mel).to(bundle.mean.device)(x.to(bundle.mean.device))[None]
    f0 = None
    if voc.takes_f0:       # harmonic excitation: f0 tracked from the input (YIN, at its fundamental)
        f0 = frame_f0(x.numpy(), bundle.sample_rate, hop, mel.shape[2], fill=True, refine=True)
        f0 = torch.from_numpy(f0)[None].to(mel.device)
    # the vocoder's offset in silence taken off, as Synth plays (core/silence_offset.py)
    offset = silence_offset(voc, bundle.mel.n_mels, bundle.mel.log_floor, mel.device)
    comb = (PitchFilter(hop, bundle.sample_rate, strength=pitch_filter, lag=delay)
            if f0 is not None and pitch_filter > 0 else None)
    notch = (FrameRateNotch(hop, frame_notch.RATE, lag=voc.delay, log_floor=bundle.mel.log_floor)
             if frame_notch.RATE > 0 else None)
    gate = (SilenceGate(hop, lag=delay, log_floor=bundle.mel.log_floor) if silence_gate.ENABLED else None)
    k = chunk_frames if chunk_frames > 0 else mel.shape[2]
    chunks = []
    for i in range(0, mel.shape[2], k):
        f0_chunk = None if f0 is None else f0[:, i:i + k]
        y = voc(mel[:, :, i:i + k], f0_chunk)
        y = y - offset
        if notch is not None:
            y = notch(y, mel[:, :, i:i + k])
        if matcher is not None:
            # no f0: a real mel is no blur between partials, so every band is matched
            # (cutting only there: copy synthesis's log-mel L1 0.182 -> 0.229; core/mel_match.py)
            y = matcher(y, mel[:, :, i:i + k])
        if comb is not None:
            y = comb(y, f0_chunk)
        chunks.append(y if gate is None else gate(y, mel[:, :, i:i + k]))
    out = torch.cat(chunks, 1)
    voc.reset()
    return out[0, delay:delay + n].float().cpu().numpy()
