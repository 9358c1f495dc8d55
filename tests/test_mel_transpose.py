"""Notes beyond the generator's pitch range (core/mel_transpose.py): the mel moved along
frequency, per frame, unchanged inside the range."""
import numpy as np
import pytest
import torch

from core.mel import LogMel, MelConfig
from core.mel_transpose import MelTranspose, band_centres, band_edges, out_of_range_shift, shift_map

MEL = MelConfig()
SR = MEL.sample_rate


def sine_logmel(hz: float, seconds: float = 0.5) -> torch.Tensor:
    t = np.arange(int(seconds * SR)) / SR
    x = torch.tensor(0.5 * np.sin(2 * np.pi * hz * t), dtype=torch.float32)[None]
    return LogMel(MEL)(x)           # [1 x 80 x T], log10


def peak_hz(logmel: torch.Tensor) -> float:
    """The frequency of the loudest band, interpolated on the band centres by a parabola."""
    v = logmel[0].mean(1).numpy().astype(np.float64)
    k = int(np.argmax(v))
    c = band_centres(MEL)
    if 0 < k < len(v) - 1:
        d = 0.5 * (v[k - 1] - v[k + 1]) / (v[k - 1] - 2 * v[k] + v[k + 1])
        return float(np.interp(k + d, np.arange(len(c)), c))
    return float(c[k])


def test_no_shift_passes_every_value_unchanged():
    x = torch.randn(3, 80, 17) - 2
    out = MelTranspose(MEL)(x, torch.zeros(3, 17))
    assert torch.equal(out, x)


@pytest.mark.parametrize("hz,semitones", [(2000.0, -12), (1500.0, -7), (600.0, 12), (3000.0, 5)])
def test_a_sine_moves_by_the_interval(hz, semitones):
    """The mel of a sine, moved by ``semitones``, peaks where the moved sine's own mel peaks
    (within a sixth of a tone, the bands being 40-400 Hz wide here)."""
    x = sine_logmel(hz)
    moved = MelTranspose(MEL)(x, torch.full((1, x.shape[2]), float(semitones)))
    want = peak_hz(sine_logmel(hz * 2 ** (semitones / 12)))
    got = peak_hz(moved)
    assert abs(12 * np.log2(got / want)) < 1 / 3, (got, want)


def line_level_db(logmel: torch.Tensor) -> float:
    """A spectral line's amplitude from the mel of its middle frame, wherever the line sits:
    the sum of the bands' magnitudes weighted by their half widths (their unit triangles sum
    to 1 at every frequency), in dB."""
    e = band_edges(MEL)
    v = logmel[0, :, logmel.shape[2] // 2].double().numpy()
    return float(20 * np.log10(np.sum(10 ** v * (e[2:] - e[:-2]) / 2)))


def test_an_octave_down_empties_the_top_half():
    """Lines moved an octave down leave nothing in the bands that only the upper half of the
    spectrum fed: those read the log floor."""
    x = sine_logmel(3000.0)
    moved = MelTranspose(MEL)(x, torch.full((1, x.shape[2]), -12.0))
    e = band_edges(MEL)
    empty = e[:-2] > e[-1] / 2 * (1 + 1e-9)
    assert torch.all(moved[0, empty] == np.float32(np.log10(MEL.log_floor)))


@pytest.mark.parametrize("hz,semitones", [(3000.0, -12), (500.0, 12), (1200.0, 19), (8000.0, -24),
                                          (200.0, 12), (440.0, -12), (2000.0, 7)])
def test_a_moved_sine_keeps_its_level(hz, semitones):
    """A sine's moved mel reads the level of the moved sine's own mel (within 1 dB), in the
    linear bands below 1 kHz and the logarithmic ones above, up and down."""
    x = sine_logmel(hz)
    moved = MelTranspose(MEL)(x, torch.full((1, x.shape[2]), float(semitones)))
    want = line_level_db(sine_logmel(hz * 2 ** (semitones / 12)))
    assert abs(line_level_db(moved) - want) < 1.0, (line_level_db(moved), want)


def test_fractional_shifts_blend_the_neighbouring_maps():
    t0, t1 = shift_map(MEL, -3), shift_map(MEL, -2)
    np.testing.assert_allclose(shift_map(MEL, 0), np.eye(80), atol=1e-12)
    x = torch.randn(1, 80, 1) - 2
    got = MelTranspose(MEL)(x, torch.full((1, 1), -2.25))[0, :, 0].double().numpy()
    above = 10 ** x[0, :, 0].double().numpy() - MEL.log_floor
    want = np.log10((0.25 * t0 + 0.75 * t1) @ np.clip(above, 0, None) + MEL.log_floor)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_silence_stays_silent():
    x = torch.full((1, 80, 4), float(np.log10(MEL.log_floor)))
    out = MelTranspose(MEL)(x, torch.tensor([[-12.0, -3.5, 7.0, 40.0]]))
    torch.testing.assert_close(out, x, atol=1e-6, rtol=0)


@pytest.mark.parametrize("chunk", [1, 2, 7, 64])
def test_chunked_equals_whole(chunk):
    torch.manual_seed(0)
    x = torch.randn(2, 80, 130) - 2
    shift = torch.tensor(np.random.default_rng(1).uniform(-14, 14, (2, 130)), dtype=torch.float32)
    shift[:, ::5] = 0
    t = MelTranspose(MEL)
    whole = t(x, shift)
    parts = torch.cat([t(x[:, :, i:i + chunk], shift[:, i:i + chunk]) for i in range(0, 130, chunk)], 2)
    torch.testing.assert_close(parts, whole, atol=1e-6, rtol=0)


def test_the_shift_is_the_distance_outside_the_range():
    p = torch.tensor([[36.0, 47.5, 48.0, 60.0, 84.0, 90.25, 127.0]])
    np.testing.assert_allclose(out_of_range_shift(p, 48, 84).numpy(), [[-12, -0.5, 0, 0, 0, 6.25, 43]])
