"""The silence gate (core/silence_gate.py): silence asked for plays as digital silence, the
gate moves linearly across one frame, changes nothing near the input's sound, and any
chunking gives the samples of one whole call."""
from pathlib import Path

import numpy as np
import pytest
import torch

from core.silence_gate import SilenceGate
from tests.conftest import run_in_frames

HOP = 256
FLOOR = -5.0          # log10 of the mel's floor (1e-5)
DEFAULT = Path(__file__).resolve().parent.parent / "models" / "default.dwb"


def run(gate: SilenceGate, x: np.ndarray, mel: np.ndarray, chunks: int | list[int] = 0) -> np.ndarray:
    """``x [B x n*hop]`` and its mel ``[B x 80 x n]`` through ``gate`` in chunks of ``chunks``
    frames (a list: those sizes in turn; 0: one call)."""
    return run_in_frames(gate, x, mel, chunks, HOP)


def mel_of(sounding: list[int]) -> np.ndarray:
    """A mel ``[1 x 80 x n]``: a loud frame (-1 in every band) where ``sounding`` has 1, the
    floor where it has 0."""
    s = np.asarray(sounding, np.float32)[None, None, :]
    return (FLOOR + (FLOOR * -1 - 1) * s * np.ones((1, 80, 1), np.float32)).astype(np.float32)


def gaps_mel(rows: int, frames: int, seed: int) -> np.ndarray:
    """Rows of mel that sound and fall silent at random, some frames just above the
    silence threshold (0.99 over the floor) and some just on it (1.0: silence)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(-4, -1, (rows, 80, frames))
    silent = rng.random((rows, 1, frames)) < 0.4
    edge = rng.choice([FLOOR, FLOOR + 0.5, FLOOR + 1.0], size=(rows, 1, frames))
    mel = np.where(silent, edge * np.ones((1, 80, 1)), base)
    near = rng.random((rows, 1, frames)) < 0.1
    mel[:, :1] = np.where(near[:, :1], FLOOR + 1.01, mel[:, :1])      # one band just above: sounds
    return mel.astype(np.float32)


@pytest.mark.parametrize("lag", [0, 100, 1425])
@pytest.mark.parametrize("chunks", [1, 2, 7, "random"])
def test_chunked_equals_whole(chunks, lag):
    x = np.random.default_rng(1).standard_normal((3, 60 * HOP)).astype(np.float32)
    mel = gaps_mel(3, 60, seed=2)
    whole = run(SilenceGate(HOP, lag=lag), x, mel)
    sizes = list(np.random.default_rng(3).integers(1, 9, size=60)) if chunks == "random" else chunks
    np.testing.assert_array_equal(run(SilenceGate(HOP, lag=lag), x, mel, sizes), whole)


def test_the_gain_ramps_across_one_frame_and_is_exactly_0_or_1_elsewhere():
    """Sound, silence, sound: the frame asking for silence ramps the gain from 1 to 0 (1/hop ..
    1 of the way), the silent frame after it is exactly 0, the first sounding frame ramps back
    up and the rest pass bit for bit."""
    x = np.ones((1, 8 * HOP), np.float32)
    gain = run(SilenceGate(HOP), x, mel_of([1, 1, 0, 0, 0, 1, 1, 1]))[0].reshape(8, HOP)
    r = np.arange(1, HOP + 1) / HOP
    np.testing.assert_array_equal(gain[:2], 1.0)
    np.testing.assert_allclose(gain[2], 1 - r, atol=1e-7)
    np.testing.assert_array_equal(gain[3:5], 0.0)
    np.testing.assert_allclose(gain[5], r, atol=1e-7)
    np.testing.assert_array_equal(gain[6:], 1.0)


def test_the_threshold_is_every_band_within_20_db_of_the_floor():
    from core.mel import SILENCE_ABOVE_FLOOR, asks_for_silence
    mel = np.full((1, 80, 3), FLOOR + SILENCE_ABOVE_FLOOR, np.float32)
    mel[0, 40, 1] += 0.01       # one band above: the frame sounds
    mel[0, :, 2] = FLOOR
    assert asks_for_silence(torch.as_tensor(mel), 1e-5)[0].tolist() == [True, False, True]


@pytest.mark.parametrize("lag", [100, 256, 1425])
def test_a_lagged_stream_is_gated_as_the_unlagged_one_delayed(lag):
    """Audio that lags its frames by ``lag`` samples gets the gain the unlagged audio gets,
    ``lag`` samples later."""
    rng = np.random.default_rng(4)
    frames = 40
    x = rng.standard_normal((1, frames * HOP)).astype(np.float32)
    mel = gaps_mel(1, frames, seed=5)
    unlagged = run(SilenceGate(HOP), np.ones_like(x), mel)
    delayed = np.concatenate([np.zeros((1, lag), np.float32), x[:, :x.shape[1] - lag]], 1)
    lagged = run(SilenceGate(HOP, lag=lag), delayed, mel)
    np.testing.assert_allclose(lagged[:, lag:], (x * unlagged)[:, :x.shape[1] - lag], atol=1e-7)


@pytest.mark.parametrize("first", [0, 1])
def test_a_stream_starts_where_its_first_frame_asks(first):
    """No ramp from a state the stream never had: one that starts in silence is closed from
    its first sample (the lag's samples too), one that starts with sound open."""
    x = np.ones((1, 4 * HOP), np.float32)
    out = run(SilenceGate(HOP, lag=300), x, mel_of([first] * 4))
    np.testing.assert_array_equal(out, float(first))


def test_a_row_of_zero_state_is_a_fresh_row():
    """BatchSubset gives a row it never stepped zeros in every state: it plays as a gate made
    for it alone."""
    x = np.random.default_rng(6).standard_normal((1, 20 * HOP)).astype(np.float32)
    for first in (0, 1):
        mel = mel_of([first] * 3 + [1, 0, 0, 1, 1, 0, 1] * 2 + [0, 1, 1])
        fresh = run(SilenceGate(HOP, lag=1425), x, mel)
        zeroed = SilenceGate(HOP, lag=1425)
        zeroed._started, zeroed._closed, zeroed._lagged = torch.zeros(1), torch.zeros(1), torch.zeros(1, 1425)
        np.testing.assert_array_equal(run(zeroed, x, mel), fresh)


def test_a_negative_lag_is_refused():
    with pytest.raises(ValueError, match="lag"):
        SilenceGate(HOP, lag=-1)


def quiet_tone(peak: float, midi: float = 84.0) -> np.ndarray:
    from tests.test_silence_offset import tone_between_silences
    return tone_between_silences(midi=midi) * (peak / 0.25)


@pytest.mark.parametrize("mel_match", ["full", "zero-latency"])
def test_copy_synthesis_plays_digital_silence_and_changes_nothing_near_the_sound(mel_match, monkeypatch):
    """The default bundle resynthesising a quiet tone (-32 dBFS sample peak; the vibraphone's
    quiet high notes peak near -40 dBFS in a 256-sample block) between 0.3 s of digital silence: without the gate the silence plays about 62 dB
    below the tone (``training.quality.silence_level_db``; the mel's floor, not a hum), with
    it the silence is digital silence (the measure's own floor, 200 dB less the peak's
    level), and no sample within 128 of the input's sound changes."""
    from core import silence_gate
    from core.bundle import load_bundle
    from core.resynth import resynthesize
    from training.quality import silence_level_db
    bundle = load_bundle(DEFAULT)
    clip = quiet_tone(0.026)
    outs = {}
    for on in (False, True):
        monkeypatch.setattr(silence_gate, "ENABLED", on)
        outs[on] = resynthesize(bundle, clip, mel_match=mel_match)
    assert 50.0 < silence_level_db(clip, outs[False]) < 70.0
    assert silence_level_db(clip, outs[True]) > 140.0
    near_sound = np.convolve(np.abs(clip) > 0, np.ones(257), mode="same") > 0
    np.testing.assert_array_equal(outs[True][near_sound], outs[False][near_sound])
    # and the pads away from the tone are zeros, every sample
    pad = int(0.3 * 22050) - 1024
    assert not outs[True][:pad].any() and not outs[True][-pad:].any()


def test_the_synth_plays_silence_asked_for_as_digital_silence(tmp_path, monkeypatch):
    """A loud mel, then the floor: through the synth's chain (mel matching and the pitch
    filter on, a harmonic vocoder) the floor's frames play zeros once the gate has closed,
    one frame after the lag; without the gate they do not."""
    from core import silence_gate
    from core.bundle import load_bundle, save_bundle
    from core.mel import MelConfig
    from core.synth import Synth
    from tests.conftest import small_models
    gen, voc = small_models(harmonics=8)
    path = tmp_path / "b.dwb"
    save_bundle(path, name="t", generator=gen, vocoder=voc, mel=MelConfig(),
                mean=torch.linspace(-4, -1, 80), std=torch.full((80,), 1.5), provenance={})
    bundle = load_bundle(path)
    logmel = torch.cat([torch.full((1, 80, 20), -1.0), torch.full((1, 80, 30), FLOOR)], 2)
    f0 = torch.cat([torch.full((1, 20), 220.0), torch.zeros(1, 30)], 1)
    tails = {}
    for on in (False, True):
        monkeypatch.setattr(silence_gate, "ENABLED", on)
        synth = Synth(bundle, mel_match="zero-latency")
        with torch.inference_mode():
            audio, = synth.voice(logmel, f0)
        lag = synth.vocoder.delay + synth.mel_match.delay
        assert (synth.silence_gate is not None) == on
        tails[on] = audio[0, 21 * HOP + lag:].numpy()
        assert np.abs(audio[0, :19 * HOP].numpy()).max() > 1e-3
    assert np.abs(tails[False]).max() > 0 and not tails[True].any()


def test_the_engine_s_stats_say_whether_it_gates(small_bundle, monkeypatch):
    from core import silence_gate
    from core.bundle import load_bundle
    from realtime.engine import Engine
    for on in (True, False):
        monkeypatch.setattr(silence_gate, "ENABLED", on)
        assert Engine(load_bundle(small_bundle), 48000, threads=1).stats()["silence_gate"] is on
