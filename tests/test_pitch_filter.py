"""The pitch post-filter (core/pitch_filter.py): periodic signals pass, noise between the
partials falls by the closed form, nothing is heard before it is played, and any chunking
gives the samples of one whole call."""
import math

import numpy as np
import pytest
import torch

from core.pitch_filter import PitchFilter
from tests.conftest import run_in_frames
from training.quality import harmonic_to_noise

SR, HOP = 22050, 256


def harmonic_tone(f0: float, n: int, sr: int = SR) -> np.ndarray:
    """Partials 1..(0.45 sr / f0) at 1/k amplitude, peak about 0.3."""
    t = np.arange(n) / sr
    k_max = int(0.45 * sr / f0)
    return 0.1 * sum(np.sin(2 * np.pi * k * f0 * t + k) / k for k in range(1, k_max + 1))


def run(pf: PitchFilter, x: np.ndarray, f0: np.ndarray, chunk_frames: int | list[int] = 0) -> np.ndarray:
    """``x [B x n*hop]``, ``f0 [B x n]`` through ``pf`` in chunks of ``chunk_frames`` frames
    (a list: those sizes in turn; 0: one call)."""
    return run_in_frames(pf, x, f0, chunk_frames, HOP)


def awkward_f0(frames: int, seed: int = 0) -> np.ndarray:
    """Three rows of f0 that hit every branch: unvoiced frames, f0 below the filter's range
    (30 Hz) and above it (3000 Hz), note jumps, and a bend."""
    rng = np.random.default_rng(seed)
    jumps = rng.choice([0.0, 65.4, 110.0, 220.0, 441.3, 1975.0, 30.0, 3000.0], size=(2, frames))
    bend = 220.0 * 2 ** (np.sin(np.arange(frames) / 5.0) / 6)
    return np.concatenate([jumps, bend[None]]).astype(np.float32)


@pytest.mark.parametrize("lag", [0, 896])
@pytest.mark.parametrize("chunks", [1, 3, 7, "random"])
def test_chunked_equals_whole(chunks, lag):
    frames = 60
    f0 = awkward_f0(frames)
    x = np.random.default_rng(1).standard_normal((3, frames * HOP)).astype(np.float32)
    whole = run(PitchFilter(HOP, SR, lag=lag), x, f0)
    sizes = (list(np.random.default_rng(2).integers(1, 9, size=frames)) if chunks == "random" else chunks)
    chunked = run(PitchFilter(HOP, SR, lag=lag), x, f0, sizes)
    np.testing.assert_array_equal(chunked, whole)


@pytest.mark.parametrize("f0", [65.4, 130.8, 261.6, 523.3, 1046.5, 1975.5])
def test_a_signal_periodic_at_f0_passes_unchanged(f0):
    n = 48 * HOP
    x = harmonic_tone(f0, n)
    y = run(PitchFilter(HOP, SR, strength=1.0), x[None], np.full((1, 48), f0))[0]
    settled = slice(8 * HOP, None)            # the comb needs one period of past
    err = y[settled] - x[settled]
    # the 16-tap interpolator's error grows towards Nyquist (this tone has partials up to
    # 0.45 sr): -38 dB at 1975.5 Hz, whose 5th partial is at 0.448 sr; under -48 dB below 1 kHz
    assert 20 * np.log10(np.std(err) / np.std(x[settled])) < -35
    assert abs(20 * np.log10(np.std(y[settled]) / np.std(x[settled]))) < 0.05


@pytest.mark.parametrize("strength", [0.3, 0.6, 1.0])
def test_white_noise_falls_by_the_closed_form(strength):
    pf = PitchFilter(HOP, SR, strength=strength)
    x = np.random.default_rng(3).standard_normal((1, 400 * HOP)).astype(np.float32)
    # a whole period (120 samples): a fractional one reads the noise through the interpolator,
    # which passes a little less than all of its band (-3.17 dB instead of -3.01 at strength 1)
    y = run(pf, x, np.full((1, 400), SR / 120))[0]
    measured = 10 * np.log10(np.mean(y[HOP:] ** 2) / np.mean(x[0, HOP:] ** 2))
    closed = 10 * math.log10((1 - strength / 2) ** 2 + (strength / 2) ** 2)
    assert pf.noise_gain_db() == pytest.approx(closed)
    assert measured == pytest.approx(closed, abs=0.1)


def test_noise_between_the_partials_falls_and_the_partials_stay():
    f0, n = 261.6, 64 * HOP
    tone = harmonic_tone(f0, n)
    x = tone + 0.01 * np.random.default_rng(4).standard_normal(n)
    y = run(PitchFilter(HOP, SR), x[None], np.full((1, 64), f0))[0]
    centres = np.arange(16, 60) * HOP / SR
    before, _ = harmonic_to_noise(x, SR, centres, np.full(len(centres), f0))
    after, _ = harmonic_to_noise(y, SR, centres, np.full(len(centres), f0))
    # halfway between partials the default comb's gain is 1 - 0.6: the median inter-partial
    # bin, which the ratio's noise is read from, falls by more than white noise's 2.4 dB
    assert np.median(after) - np.median(before) > 3.0
    tone_out = run(PitchFilter(HOP, SR), tone[None], np.full((1, 64), f0))[0]
    assert abs(20 * np.log10(np.std(tone_out[HOP * 8:]) / np.std(tone[HOP * 8:]))) < 0.05


def test_unvoiced_frames_and_strength_zero_pass_bit_for_bit():
    x = np.random.default_rng(5).standard_normal((2, 20 * HOP)).astype(np.float32)
    f0 = np.zeros((2, 20), np.float32)
    np.testing.assert_array_equal(run(PitchFilter(HOP, SR), x, f0), x)
    np.testing.assert_array_equal(run(PitchFilter(HOP, SR, strength=0.0), x, np.full((2, 20), 220.0)), x)
    assert torch.equal(PitchFilter(HOP, SR)(torch.from_numpy(x), None), torch.from_numpy(x))


def test_nothing_is_heard_before_it_is_played():
    """Causal: changing the input from sample m on leaves every output sample before m as it was."""
    f0 = awkward_f0(30, seed=6)
    x = np.random.default_rng(7).standard_normal((3, 30 * HOP)).astype(np.float32)
    m = 17 * HOP + 100
    later = x.copy()
    later[:, m:] = np.random.default_rng(8).standard_normal((3, 30 * HOP - m))
    a, b = run(PitchFilter(HOP, SR), x, f0), run(PitchFilter(HOP, SR), later, f0)
    np.testing.assert_array_equal(a[:, :m], b[:, :m])
    assert not np.array_equal(a[:, m:], b[:, m:])


def test_a_note_change_glides_without_a_click():
    """A tone that jumps a fifth at a frame start (phase continuous), with f0 jumping there too:
    the output's largest sample-to-sample step near the jump is no larger than elsewhere in
    the note (a jumped tap would add a step; 1.05: the crossfade's own ripple)."""
    n1, n2 = 24, 24
    f1, f2 = 220.0, 330.0
    f = np.concatenate([np.full(n1 * HOP, f1), np.full(n2 * HOP, f2)])
    x = 0.3 * np.sin(2 * np.pi * np.cumsum(f) / SR)
    y = run(PitchFilter(HOP, SR, strength=1.0), x[None], np.concatenate([np.full(n1, f1), np.full(n2, f2)])[None])[0]
    step = np.abs(np.diff(y))
    near = step[(n1 - 1) * HOP:(n1 + 2) * HOP].max()
    steady = step[(n1 + 4) * HOP:].max()
    assert near <= 1.05 * max(steady, step[4 * HOP:(n1 - 1) * HOP].max())


def test_the_lag_moves_the_controls_with_the_audio():
    """With ``lag`` L, the filter on audio delayed by L samples gives the unlagged output delayed by L."""
    lag = 896
    f0 = awkward_f0(40, seed=9)
    x = np.random.default_rng(10).standard_normal((3, 40 * HOP)).astype(np.float32)
    plain = run(PitchFilter(HOP, SR), x, f0)
    delayed = np.concatenate([np.zeros((3, lag), np.float32), x[:, :-lag]], 1)
    lagged = run(PitchFilter(HOP, SR, lag=lag), delayed, f0)
    np.testing.assert_allclose(lagged[:, lag:], plain[:, :-lag], atol=1e-6)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="strength"):
        PitchFilter(HOP, SR, strength=1.5)
    with pytest.raises(ValueError, match="weights"):
        PitchFilter(HOP, SR, weights=(1.0,))
    with pytest.raises(ValueError, match="lag"):
        PitchFilter(HOP, SR, lag=-1)


def test_the_command_line_and_the_settings_default_to_the_filter_s_strength():
    import main
    from core.pitch_filter import DEFAULT_STRENGTH
    from realtime.settings import Settings
    assert main.PITCH_FILTER_DEFAULT == DEFAULT_STRENGTH == Settings(bundle="b.dwb").pitch_filter


def test_the_synth_combs_what_it_plays_at_the_requested_pitch(tmp_path):
    """Synth with the filter = Synth without it, then the filter at the requested pitch's f0,
    lagged by the synth's delay (the vocoder's look-ahead and mel matching's)."""
    from core.bundle import load_bundle, save_bundle
    from core.inputs import frame_inputs
    from core.latent import NoiseSource
    from core.mel import MelConfig
    from core.pitch import midi_to_hz
    from core.synth import Synth
    from tests.conftest import small_models
    gen, voc = small_models(harmonics=4, seed=2)
    torch.nn.init.normal_(voc.source_gate.weight, 0.0, 0.1)
    path = tmp_path / "h.dwb"
    save_bundle(path, name="h", generator=gen, vocoder=voc, mel=MelConfig(), mean=torch.zeros(80), std=torch.ones(80))
    cfg = gen.config
    pitch = np.repeat([[52.0, 59.0, 71.0]], 10, axis=1).T.reshape(1, -1)          # 30 frames, 3 notes
    x = frame_inputs(cfg, NoiseSource(cfg.z_dim, 4, 5).next(30, drift=0.05), 1, pitch)
    outs = {}
    for strength in (0.0, 0.6):
        s = Synth(load_bundle(path), mel_match="full", pitch_filter=strength)
        s.reset()
        outs[strength] = s.step_inputs(x)[0]
        delay = s.delay
    assert delay > 0
    expected = PitchFilter(HOP, SR, strength=0.6, lag=delay)(outs[0.0], midi_to_hz(torch.as_tensor(pitch)))
    torch.testing.assert_close(outs[0.6], expected, atol=1e-5, rtol=0)
    assert (outs[0.6] - outs[0.0]).abs().max() > 1e-3


def test_a_strength_outside_0_to_1_is_a_one_line_error(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    p = subprocess.run([sys.executable, str(root / "main.py"), "render", str(tmp_path / "o.wav"),
                        "--pitch-filter", "1.5"], capture_output=True, text=True)
    assert p.returncode == 2
    assert "--pitch-filter: '1.5' must be within [0, 1]" in p.stderr
    assert not (tmp_path / "o.wav").exists()


def test_a_row_of_zero_state_reads_in_range_and_plays_unfiltered():
    """BatchSubset fills a row it never stepped with zeros: period 0, strength 0. Such a row
    must play its audio unchanged, not read outside its history."""
    pf = PitchFilter(HOP, SR, lag=300)
    run(pf, np.zeros((1, 2 * HOP), np.float32), np.full((1, 2), 220.0))
    for name in ("_history", "_period", "_gain", "_lagged"):
        setattr(pf, name, torch.zeros_like(getattr(pf, name)))
    x = np.random.default_rng(11).standard_normal((1, HOP)).astype(np.float32)
    np.testing.assert_array_equal(run(pf, x, np.zeros((1, 1), np.float32)), x)
