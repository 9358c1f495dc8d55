"""The vocoder's offset in silence, measured once and taken off its output.

A vocoder's last convolution has a bias and its training loss (spectral magnitudes) never
sees 0 Hz, so where it is asked for silence (a mel at the floor, f0 0) its output can sit
at a constant offset: the default bundle's vocoder plays about -1.3e-4 (-78 dBFS) there,
more than its hum (docs/default-model.md, "Audible defects"). The offset is measured on the
vocoder itself (:func:`silence_offset`) and subtracted from everything it plays
(:class:`core.synth.Synth`, :func:`core.resynth.resynthesize`), so silence asked for is
silence. A high-pass (DC blocker) would not do: notes carry real content near 0 Hz (a low
pad's mean over a note), whose removal rings on into the silence after the note.
"""
from __future__ import annotations

import torch

SETTLE_FRAMES = 48      # frames of floor mel before the offset is read (the stream has settled)
READ_FRAMES = 32        # frames it is averaged over


@torch.inference_mode()
def silence_offset(vocoder, n_mels: int, log_floor: float, device: torch.device,
                   dtype: torch.dtype = torch.float32) -> float:
    """The mean output of ``vocoder`` (a :class:`core.vocoders.Vocoder`) for a steady mel at
    the floor (``log10(log_floor)`` in every band; unvoiced), after :data:`SETTLE_FRAMES`
    frames: the constant it adds to everything it plays. Resets the vocoder before and after."""
    frames = SETTLE_FRAMES + READ_FRAMES
    mel = torch.full((1, n_mels, frames), float(torch.log10(torch.tensor(log_floor))), device=device, dtype=dtype)
    f0 = torch.zeros(1, frames, device=device) if vocoder.takes_f0 else None
    vocoder.reset()
    audio = vocoder(mel, f0).float()
    vocoder.reset()
    read = audio[0, audio.shape[1] * SETTLE_FRAMES // frames:]
    return float(read.mean())
