"""The frame-rate notch (core/frame_notch.py): what repeats every hop fades by the closed
form, anything else passes within the ripple, any chunking gives the samples of one whole
call, and the synth's vocoder chain plays it before mel matching."""
import math

import numpy as np
import pytest
import torch

from core.frame_notch import DEFAULT_RATE, FrameRateNotch
from tests.conftest import run_in_frames

SR, HOP = 22050, 256


def run(notch: FrameRateNotch, x: np.ndarray, chunks: int | list[int] = 0,
        mel: np.ndarray | None = None) -> np.ndarray:
    """``x [B x n*hop]`` (and the mel ``[B x n_mels x n]``) through ``notch`` in chunks of
    ``chunks`` hops (a list: those sizes in turn; 0: one call)."""
    # no mel given: a loud one held still (every frame trusted but a stream's first)
    mt = np.full((x.shape[0], 80, x.shape[1] // HOP), -1.0) if mel is None else mel
    return run_in_frames(notch, x, mt, chunks, HOP)


def moving_mel(frames: int, seed: int = 0) -> np.ndarray:
    """Three rows of log10 mel ``[3 x 80 x frames]`` that hold still, drift, and jump (every
    trust from 0 to 1)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(-5, -1, (3, 80, 1))
    steps = rng.choice([0.0, 0.05, 0.3, 0.7, 2.0], size=(3, 1, frames))
    return (base + np.cumsum(steps * rng.choice([-1, 1], size=(3, 80, frames)), 2)).astype(np.float32)


@pytest.mark.parametrize("with_mel,lag", [(False, 0), (True, 0), (True, 1425)])
@pytest.mark.parametrize("chunks", [1, 2, 7, "random"])
def test_chunked_equals_whole(chunks, with_mel, lag):
    x = np.random.default_rng(1).standard_normal((3, 50 * HOP)).astype(np.float32)
    mel = moving_mel(50) if with_mel else None
    whole = run(FrameRateNotch(HOP, lag=lag), x, mel=mel)
    sizes = list(np.random.default_rng(2).integers(1, 9, size=50)) if chunks == "random" else chunks
    np.testing.assert_array_equal(run(FrameRateNotch(HOP, lag=lag), x, sizes, mel), whole)


def test_trust_follows_the_mel_s_change():
    from core.frame_notch import MOVED_FLUX, STEADY_FLUX
    notch = FrameRateNotch(HOP)
    steps = [0.0, 0.0, STEADY_FLUX, (STEADY_FLUX + MOVED_FLUX) / 2, MOVED_FLUX, 3.0]
    mel = torch.as_tensor(np.cumsum(steps)[None, None, :] * np.ones((1, 80, 1)) - 2.0, dtype=torch.float32)
    np.testing.assert_allclose(notch.trust(mel)[0].numpy(), [0.0, 1.0, 1.0, 0.5, 0.0, 0.0], atol=1e-5)
    # the next call goes on from the last frame: a steady frame
    assert float(notch.trust(mel[:, :, -1:])[0, 0]) == 1.0


def test_a_sound_that_stops_does_not_ring_into_the_silence_after_it():
    """A tone held on a steady mel, then digital silence on the floor mel: where the mel is
    held loud throughout the running mean rings on at -a, fading 2 dB a hop; with the mel
    that went to the floor the hop after the tone's last is silent."""
    t = np.arange(60 * HOP) / SR
    x = np.sin(2 * np.pi * 440.0 * t) * (t < 40 * HOP / SR)
    mel = np.where(np.arange(60) < 40, -1.0, -5.0)[None, None, :] * np.ones((1, 80, 1))
    blind = run(FrameRateNotch(HOP), x[None])[0]
    seeing = run(FrameRateNotch(HOP), x[None], mel=mel)[0]
    np.testing.assert_array_equal(seeing[:40 * HOP], blind[:40 * HOP])       # held: the same notch
    assert np.abs(blind[45 * HOP:]).max() > 1e-3                              # it rings
    assert not seeing[41 * HOP:].any()                                         # silent from the next hop
    # and inside the frame where the mel moved, what is taken off fades out: no step
    taken = (x[None] - seeing[None])[0, 30 * HOP:42 * HOP]
    assert np.abs(taken).max() > 1e-3
    assert np.abs(np.diff(taken)).max() < 0.2 * np.abs(taken).max()


@pytest.mark.parametrize("rate", [0.1, DEFAULT_RATE, 0.5])
def test_a_waveform_repeated_every_hop_fades_by_the_closed_form(rate):
    block = np.random.default_rng(3).standard_normal(HOP)
    x = np.tile(block, 30)[None]
    y = run(FrameRateNotch(HOP, rate), x).reshape(30, HOP)
    # block k comes out as (1 - a)^k times the block: the first passes whole
    expected = (1 - rate) ** np.arange(30)
    np.testing.assert_allclose(np.sqrt((y ** 2).mean(1) / (block ** 2).mean()), expected, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("offset", [0.5, 0.25, 0.1, 0.03])
def test_a_sine_between_the_lines_passes_at_the_response_s_gain(offset):
    """A sine ``offset`` frame rates past a multiple of the frame rate: after the notch
    settles, its level is the closed form's ``gain_db`` within 0.05 dB."""
    notch = FrameRateNotch(HOP)
    f = (7 + offset) * SR / HOP
    t = np.arange(400 * HOP) / SR
    y = run(notch, np.sin(2 * np.pi * f * t)[None])[0]
    tail = y[200 * HOP:]
    gain = 10 * math.log10((tail ** 2).mean() / 0.5)
    assert abs(gain - notch.gain_db(offset)) < 0.05
    assert notch.gain_db(0.5) == pytest.approx(20 * math.log10(2 / (2 - DEFAULT_RATE)))


def test_dc_and_the_frame_rate_s_lines_are_gone_and_the_rest_stays():
    """Lines at the frame rate's multiples on a harmonic tone between them: the lines fall
    by 40 dB and more, the tone within the ripple."""
    t = np.arange(300 * HOP) / SR
    fr = SR / HOP
    lines = 0.05 + sum(0.02 * np.cos(2 * np.pi * m * fr * t + m) for m in range(1, 40))
    tone = sum(0.1 / k * np.sin(2 * np.pi * k * 131.0 * t) for k in range(1, 20))
    y = run(FrameRateNotch(HOP), (tone + lines)[None])[0]
    tail = slice(150 * HOP, None)
    residue = y[tail] - run(FrameRateNotch(HOP), tone[None])[0][tail]
    assert 10 * np.log10((residue ** 2).mean() / (lines[tail] ** 2).mean()) < -40
    level = 10 * np.log10((y[tail] ** 2).mean() / (tone[tail] ** 2).mean())
    assert abs(level) < 0.9


def test_bad_rates_and_lags_are_refused():
    for rate in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="rate"):
            FrameRateNotch(HOP, rate)
    with pytest.raises(ValueError, match="lag"):
        FrameRateNotch(HOP, lag=-1)


@pytest.mark.parametrize("delay", [100, 256, 1425])
def test_a_delayed_stream_is_notched_as_the_undelayed_one_delayed(delay):
    """Audio that lags its mel frames by ``delay`` samples (a vocoder's look-ahead) comes out
    as the undelayed audio's output, delayed: each frame's trust lands on the samples it made,
    whether or not the lag is a whole number of hops."""
    frames = 40
    x = np.random.default_rng(4).standard_normal((3, frames * HOP)).astype(np.float32)
    mel = moving_mel(frames, seed=5)
    undelayed = run(FrameRateNotch(HOP), x, mel=mel)
    delayed = np.concatenate([np.zeros((3, delay), np.float32), x], 1)[:, :frames * HOP]
    out = run(FrameRateNotch(HOP, lag=delay), delayed, [3] * 14, mel)
    np.testing.assert_allclose(out[:, delay:], undelayed[:, :frames * HOP - delay], atol=1e-6)


def test_the_synth_takes_out_what_its_vocoder_repeats(tmp_path, monkeypatch):
    """A vocoder without excitation plays a steady mel as a waveform that repeats every hop
    (docs/default-model.md "Frame-rate buzz"): through the synth's chain that waveform fades;
    with the notch off (core.frame_notch.RATE 0) it stays."""
    from core import frame_notch
    from core.bundle import load_bundle, save_bundle
    from core.mel import MelConfig
    from core.synth import Synth
    from tests.conftest import small_models

    gen, voc = small_models()
    path = tmp_path / "b.dwb"
    save_bundle(path, name="t", generator=gen, vocoder=voc, mel=MelConfig(),
                mean=torch.linspace(-4, -1, 80), std=torch.full((80,), 1.5), provenance={})
    bundle = load_bundle(path)
    logmel = torch.linspace(-3, -1, 80)[None, :, None].expand(1, 80, 60).contiguous()     # log10 mel, held

    def last_blocks(rate: float) -> np.ndarray:
        monkeypatch.setattr(frame_notch, "RATE", rate)
        synth = Synth(bundle, mel_match="off", pitch_filter=0.0)
        assert (synth.frame_notch is not None) == (rate > 0)
        assert synth.post_filters[:-1] == ([synth.frame_notch] if rate > 0 else [])
        assert synth.post_filters[-1] is synth.silence_gate
        with torch.inference_mode():
            audio, = synth.voice(logmel, None)
        return audio[0, 50 * HOP:].numpy()

    off, on = last_blocks(0.0), last_blocks(DEFAULT_RATE)
    assert np.sqrt((off ** 2).mean()) > 1e-3
    np.testing.assert_allclose(off[:HOP], off[-HOP:], atol=1e-5)      # it does repeat every hop
    assert 20 * np.log10(np.sqrt((on ** 2).mean() / (off ** 2).mean())) < -30


def test_the_command_line_defaults_to_the_notch_s_rate_and_sets_it(tmp_path, monkeypatch):
    """``--frame-notch`` on play, gui, render and resynth; ``render --frame-notch 0`` plays
    what the vocoder repeats, the default takes it out (a small random bundle)."""
    import main
    from core import frame_notch
    from tests.conftest import small_models
    from core.bundle import save_bundle
    from core.mel import MelConfig
    import soundfile as sf
    assert main.FRAME_NOTCH_DEFAULT == DEFAULT_RATE
    monkeypatch.setattr(frame_notch, "RATE", DEFAULT_RATE)       # main() sets it for the process
    gen, voc = small_models()
    path = tmp_path / "b.dwb"
    save_bundle(path, name="t", generator=gen, vocoder=voc, mel=MelConfig(),
                mean=torch.linspace(-4, -1, 80), std=torch.full((80,), 1.5), provenance={})
    outs = {}
    for rate in ("0", "0.2"):
        out = tmp_path / f"o{rate}.wav"
        assert main.main(["render", str(out), "--seconds", "1", "--bundle", str(path), "--frame-notch", rate]) == 0
        assert frame_notch.RATE == float(rate)
        outs[rate] = sf.read(str(out))[0]
    # the buzz of a random vocoder is most of its sound
    assert np.sqrt((outs["0.2"] ** 2).mean()) < 0.7 * np.sqrt((outs["0"] ** 2).mean())
    for command in ("play", "gui", "resynth"):
        assert "--frame-notch" in main.build_parser()._subparsers._group_actions[0].choices[command].format_help()


def test_a_rate_outside_0_to_1_is_a_one_line_error(tmp_path):
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    p = subprocess.run([sys.executable, str(root / "main.py"), "render", str(tmp_path / "o.wav"), "--seconds", "1",
                        "--frame-notch", "2"], capture_output=True, text=True)
    assert p.returncode == 2
    assert "--frame-notch: '2' must be within [0, 1]" in p.stderr
    assert not (tmp_path / "o.wav").exists()


def test_the_engine_s_stats_say_which_notch_it_plays(small_bundle, monkeypatch):
    from core import frame_notch
    from core.bundle import load_bundle
    from realtime.engine import Engine
    for rate in (DEFAULT_RATE, 0.0):
        monkeypatch.setattr(frame_notch, "RATE", rate)
        engine = Engine(load_bundle(small_bundle), 48000, threads=1)
        assert engine.stats()["frame_notch"] == rate


def test_eval_s_copy_synthesis_plays_at_the_strength_it_is_given(monkeypatch):
    """``main.py eval --pitch-filter S`` reaches the vocoder chain of copy synthesis
    (training/eval_audible.py; the command line and the JSON: tests/test_training.py)."""
    from types import SimpleNamespace

    import training.eval_audible as audible
    from core.mel import MelConfig
    seen = []

    def resynth(bundle, clip, mel_match="full", pitch_filter=None):
        seen.append(pitch_filter)
        return np.zeros_like(clip)

    monkeypatch.setattr(audible, "resynthesize", resynth)
    out = audible.copy_synthesize(SimpleNamespace(mel=MelConfig()), np.zeros(4096, np.float32), 0.3)
    assert seen == [0.3] and set(out) == {"vocoder", "griffin_lim"}


def test_a_row_of_zero_state_is_a_fresh_row():
    """BatchSubset gives a row it never stepped zeros in every state; with a lag longer than a
    hop that row must play as a notch made for it alone."""
    x = np.random.default_rng(6).standard_normal((1, 20 * HOP)).astype(np.float32)
    mel = moving_mel(20, seed=7)[:1]
    fresh = run(FrameRateNotch(HOP, lag=1425), x, mel=mel)
    zeroed = FrameRateNotch(HOP, lag=1425)
    zeroed._mean, zeroed._last_mel = torch.zeros(1, HOP), torch.zeros(1, 80)
    zeroed._lagged = torch.zeros(1, 1425, 2)
    np.testing.assert_allclose(run(zeroed, x, mel=mel), fresh, atol=1e-6)
