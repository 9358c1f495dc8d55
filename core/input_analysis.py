"""Live input analysis: device-rate audio in, one token and one pitch per model frame out.

The chain (all streaming; any chunking gives the frames of one whole call,
tests/test_live_input.py):

1. :class:`~core.resample.LowDelayResampler` from the input device's rate to the model's;
2. :class:`~core.stream_mel.StreamingLogMel`: the bundle's log-mel, frame for frame as
   :class:`~core.mel.LogMel` gives it offline;
3. the bundle's token encoder (:class:`~core.tokens.TokenEncoder`) on the standardized
   frame. It is frame-wise (1x1 convolutions, no context, no look-ahead), so streamed it
   names each frame as :func:`~core.tokens.tokens_of_audio` names it offline;
4. optionally :class:`~core.stream_pitch.StreamingYin` on the model-rate audio: MIDI pitch
   and a voiced flag per frame (YIN frame ``i`` centred on sample ``i * hop``, as
   :func:`core.pitch.frame_f0` labels training audio).

Delay: frame ``i``'s mel window spans model-rate samples ``[i*hop - pad, i*hop + hop + pad)``
(``pad = (n_fft - hop) / 2``); it comes out once its last sample has arrived, ``n_fft / 2``
samples after the window's centre (512 samples, 23.2 ms at the MelGAN sizes), plus the
resampler's holdback (:attr:`InputAnalyzer.delay_s`). The encoder adds none. The frames
that the offline analysis pads at the end (the last ``ceil(pad / hop)`` = 2) do not exist
in a stream; every other frame matches.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .pitch import yin_pitch
from .resample import LowDelayResampler
from .stream_mel import StreamingLogMel
from .stream_pitch import StreamingYin, hz_to_midi
from .tokens import tokens_of_audio


@dataclass
class InputFrames:
    """Analysed frames, each ``ndarray[k]``: ``tokens`` int64 (-1 where the bundle has no
    token encoder), ``midi`` float64 MIDI pitch (nan where unvoiced or not tracked),
    ``voiced`` bool."""
    tokens: np.ndarray
    midi: np.ndarray
    voiced: np.ndarray

    def __len__(self) -> int:
        return len(self.tokens)


def no_frames() -> InputFrames:
    return InputFrames(np.zeros(0, np.int64), np.zeros(0), np.zeros(0, bool))


class InputAnalyzer:
    """``process(x: ndarray[n] float32 at in_rate) -> InputFrames`` of the frames ``x``
    completes. ``bundle``: a :class:`core.bundle.Bundle` (its mel, normalization and
    token encoder, if it has one); ``pitch``: run the pitch tracker."""

    def __init__(self, bundle, in_rate: int, pitch: bool = True):
        self.bundle = bundle
        self.in_rate = int(in_rate)
        self.sample_rate, self.hop = bundle.sample_rate, bundle.hop
        self.device = bundle.mean.device
        self.resampler = LowDelayResampler(self.in_rate, self.sample_rate)
        self.mel = StreamingLogMel(bundle.mel, self.device)
        self.encoder = bundle.encoder
        self._mean, self._std = bundle.mean[:, None], bundle.std[:, None]
        self.yin = StreamingYin(self.sample_rate, self.hop, frame=bundle.mel.n_fft) if pitch else None
        self._pending_midi = np.zeros(0)     # YIN frames come out before the mel's (less look-ahead)
        self._pending_voiced = np.zeros(0, bool)

    @property
    def delay_s(self) -> float:
        """From the centre of a frame's mel window to its token, seconds (plus the resampler's
        holdback)."""
        return self.bundle.mel.n_fft / 2 / self.sample_rate + self.resampler.holdback_s

    def reset(self) -> None:
        self.resampler.reset()
        self.mel.reset()
        if self.yin is not None:
            self.yin.reset()
        self._pending_midi, self._pending_voiced = np.zeros(0), np.zeros(0, bool)

    @torch.no_grad()
    def process(self, x: np.ndarray) -> InputFrames:
        y = self.resampler.process(np.asarray(x, np.float32))
        mel = self.mel.process(y)                                           # [n_mels x k]
        k = mel.shape[1]
        if self.encoder is not None and k:
            std = (mel - self._mean) / self._std
            tokens = self.encoder(std[None])[0].cpu().numpy().astype(np.int64)
        else:
            tokens = np.full(k, -1, np.int64)
        if self.yin is None:
            return InputFrames(tokens, np.full(k, np.nan), np.zeros(k, bool))
        f0, voiced = self.yin.process(y)
        midi = np.concatenate((self._pending_midi, hz_to_midi(f0)))
        voi = np.concatenate((self._pending_voiced, voiced))
        self._pending_midi, self._pending_voiced = midi[k:], voi[k:]
        return InputFrames(tokens, midi[:k], voi[:k])


def analyse_offline(bundle, audio: np.ndarray, in_rate: int) -> InputFrames:
    """The offline reference of :class:`InputAnalyzer`: the whole ``audio`` (``ndarray[L]``
    at ``in_rate``) resampled in one call, its tokens by :func:`~core.tokens.tokens_of_audio`
    (empty without an encoder), its pitch by :func:`~core.pitch.yin_pitch`; one entry per
    offline frame (``L' // hop`` of the model-rate length ``L'``)."""
    y = LowDelayResampler(int(in_rate), bundle.sample_rate).process(np.asarray(audio, np.float32))
    n = len(y) // bundle.hop
    tokens = tokens_of_audio(bundle, y) if bundle.encoder is not None else np.full(n, -1, np.int64)
    f0, voiced = yin_pitch(y, bundle.sample_rate, hop=bundle.hop, frame=bundle.mel.n_fft)
    return InputFrames(tokens[:n], hz_to_midi(f0)[:n], voiced[:n])
