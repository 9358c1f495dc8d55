"""The building blocks of ``benchmarks/vocoder_ceiling.py``, on synthetic tones whose answer
is known: its STFT inverts exactly, the harmonic phase rebuilds a steady harmonic tone
from its exact magnitude, and the streaming phase refinement (RTISI-LA) improves on its
starting phase."""
import numpy as np
import pytest
import torch

from benchmarks.vocoder_ceiling import SR, harmonic_phase, istft, rtisi_la, stft
from training.metrics import mr_stft_distance


def tone(f0: float, seconds: float = 1.0, partials: int = 6) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return sum(0.3 / k * np.sin(2 * np.pi * k * f0 * t + 0.7 * k) for k in range(1, partials + 1)).astype(np.float32)


def test_the_stft_and_its_inverse_give_back_the_signal():
    x = np.random.default_rng(0).normal(0, 0.1, 9000).astype(np.float32)
    assert np.abs(istft(stft(x), len(x)) - x).max() < 1e-6


def strong_bin_errors_db(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """|dB| differences of ``y``'s STFT magnitude from ``x``'s on the bins within 30 dB of
    their frame's peak (edge frames left out): the partials, not the floor between them
    (a synthetic tone's floor is near float32's, where any leakage costs a lot of log)."""
    mx, my = stft(x).abs()[:, 4:-4], stft(y).abs()[:, 4:-4]
    strong = 20 * np.log10(mx / mx.max(0, keepdim=True).values) > -30
    return np.abs(20 * np.log10(my / mx).numpy()[strong.numpy()])


@pytest.mark.parametrize("f0", [110.0, 220.0, 523.25])
def test_phase_from_the_harmonics_and_its_refinement_rebuild_a_steady_tone(f0):
    x = tone(f0)
    mag = stft(x).abs()
    hp = harmonic_phase(np.full(mag.shape[1], f0))
    rand = torch.from_numpy(np.exp(2j * np.pi * np.random.default_rng(1).random(tuple(mag.shape))))
    ys = {"random": istft(mag * rand, len(x)), "harmonic": istft(mag * hp, len(x)), "rtisi": rtisi_la(mag, hp, len(x))}
    err = {k: strong_bin_errors_db(x, y) for k, y in ys.items()}
    dist = {k: mr_stft_distance(x, y) for k, y in ys.items()}
    print(f0, {k: (round(float(np.median(e)), 3), round(float(np.quantile(e, 0.95)), 3)) for k, e in err.items()}, dist)
    assert np.median(err["random"]) > 3.0                  # frames that do not agree interfere
    for k in ("harmonic", "rtisi"):                        # frames that agree add up to the partials
        assert np.median(err[k]) < 0.1 and np.quantile(err[k], 0.95) < 0.5
    assert dist["harmonic"] < dist["random"] and dist["rtisi"] <= dist["harmonic"] + 1e-3
