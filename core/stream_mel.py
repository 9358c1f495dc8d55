"""Streaming log-mel: :class:`core.mel.LogMel` of a stream, frame for frame, as audio arrives.

``LogMel`` pads the signal by ``pad = (n_fft - hop) / 2`` samples (reflect) on each side
and cuts frame ``i`` from padded samples ``[i * hop, i * hop + n_fft)``, i.e. from input
samples ``[i * hop - pad, i * hop + hop + pad)``. A stream has no end, so the stream gives
every frame whose window lies within the audio so far: frame ``i`` once input sample
``(i + 1) * hop + pad - 1`` has arrived (the look-ahead, :attr:`StreamingLogMel.lookahead`:
384 samples, 17.4 ms at the MelGAN sizes, past its hop). The start's reflect padding needs
the first ``pad + 1`` samples, so nothing comes out before they have arrived. For audio of
``L`` samples the stream's frames are the first ``(L - hop - pad) // hop + 1`` frames of the
offline ``LogMel`` of the same audio (the rest reach into the end padding); any chunking
gives the same frames (tests/test_live_input.py).
"""
from __future__ import annotations

import numpy as np
import torch

from .mel import LogMel, MelConfig


class StreamingLogMel:
    """Mono audio chunks ``ndarray[n]`` (float32, the mel's rate) -> the log10 mel frames
    completed by each chunk, ``Tensor[n_mels x k]`` (``k`` may be 0)."""

    def __init__(self, config: MelConfig = MelConfig(), device: torch.device | str = "cpu"):
        self.config = c = config
        self.mel = LogMel(config).to(device)
        self.device = torch.device(device)
        self.pad = (c.n_fft - c.hop) // 2
        self.reset()

    @property
    def lookahead(self) -> int:
        """Samples past a frame's hop block that must arrive before the frame comes out."""
        return self.pad

    def reset(self) -> None:
        self._buf = np.zeros(0, np.float32)     # padded samples from the next frame's start on
        self._started = False
        self.frames_out = 0

    def process(self, x: np.ndarray) -> torch.Tensor:
        c = self.config
        buf = np.concatenate((self._buf, np.asarray(x, np.float32).reshape(-1)))
        if not self._started:
            if len(buf) <= self.pad:
                self._buf = buf
                return torch.zeros(c.n_mels, 0, device=self.device)
            buf = np.concatenate((buf[1:self.pad + 1][::-1], buf))      # LogMel's reflect padding
            self._started = True
        k = 0 if len(buf) < c.n_fft else (len(buf) - c.n_fft) // c.hop + 1
        self._buf = buf[k * c.hop:]
        if k == 0:
            return torch.zeros(c.n_mels, 0, device=self.device)
        self.frames_out += k
        x = torch.from_numpy(np.ascontiguousarray(buf[:c.n_fft + (k - 1) * c.hop])).to(self.device)
        return self.mel.of_padded(x)
