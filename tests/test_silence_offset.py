"""The vocoder's offset in silence is measured and taken off: silence asked for is silence
(core/silence_offset.py), in copy synthesis and in what the instrument plays."""
from pathlib import Path

import numpy as np
import pytest
import torch

from core.bundle import load_bundle, save_bundle
from core.mel import MelConfig
from core.resynth import resynthesize
from core.silence_offset import silence_offset
from core.synth import Synth
from tests.conftest import small_models

DEFAULT = Path(__file__).resolve().parent.parent / "models" / "default.dwb"
SR = 22050


def biased_vocoder(bias: float):
    """A small vocoder whose last convolution adds ``bias`` before the output tanh."""
    _, voc = small_models()
    last = [m for m in voc.modules() if isinstance(m, torch.nn.Conv1d)][-1]
    with torch.no_grad():
        last.bias.fill_(bias)
    return voc


def test_the_offset_is_what_the_vocoder_plays_for_a_floor_mel():
    voc = biased_vocoder(0.05)
    offset = silence_offset(voc, 80, 1e-5, torch.device("cpu"))
    with torch.no_grad():
        voc.reset()
        steady = voc(torch.full((1, 80, 200), -5.0))[0, 100 * 256:]
    assert offset == pytest.approx(float(steady.mean()), abs=2e-4)
    assert abs(offset) > 0.01                         # the bias shows (tanh of ~0.05 plus the rest)
    unbiased = silence_offset(biased_vocoder(0.0), 80, 1e-5, torch.device("cpu"))
    assert abs(offset - unbiased) == pytest.approx(np.tanh(0.05), rel=0.5)


def tone_between_silences(midi: float = 57.0, seconds: float = 0.8, pad_s: float = 0.3) -> np.ndarray:
    """A harmonic tone at -12 dBFS peak, 10 ms fades, between ``pad_s`` of digital silence."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 440 * 2 ** ((midi - 69) / 12)
    tone = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
    fade = np.minimum(1, np.minimum(t, t[::-1]) / 0.01)
    tone = 0.25 * tone * fade / np.abs(tone).max()
    pad = np.zeros(int(pad_s * SR))
    return np.concatenate((pad, tone, pad)).astype(np.float32)


def level_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2) + 1e-30))


@pytest.mark.parametrize("mel_match", ["full", "zero-latency", "off"])
def test_copy_synthesis_of_silence_is_silent(mel_match, monkeypatch):
    """The default bundle's vocoder, its offset not taken off, plays 56-66 dB below a tone's
    level where the tone's clip is digital silence (the offset: -1e-4 to -2e-4); taken off,
    the pads before and after the note are at least 75 dB below it (what is left is the
    vocoder's hum, which mel matching cuts further) and carry no offset. Read without the
    silence gate, which zeroes those pads (tests/test_silence_gate.py) and would hide the
    offset from this test."""
    from core import silence_gate
    monkeypatch.setattr(silence_gate, "ENABLED", False)
    bundle = load_bundle(DEFAULT)
    clip = tone_between_silences()
    out = resynthesize(bundle, clip, mel_match=mel_match)
    level = level_db(clip[int(0.4 * SR):int(0.9 * SR)])
    for pad in (out[int(0.05 * SR):int(0.25 * SR)], out[int(1.25 * SR):int(1.38 * SR)]):
        assert level - level_db(pad) >= 75.0
        assert abs(float(pad.mean())) < 1e-5


def test_the_instrument_takes_the_offset_off_what_it_plays(tmp_path):
    """Synth subtracts the measured offset from every vocoder block (the streaming contract
    is unchanged: the subtraction is the same constant for every chunking), then notches the
    frame rate (core/frame_notch.py)."""
    from core.frame_notch import FrameRateNotch
    gen, _ = small_models()
    path = tmp_path / "biased.dwb"
    save_bundle(path, name="biased", generator=gen, vocoder=biased_vocoder(0.05), mel=MelConfig(),
                mean=torch.linspace(-4, -1, 80), std=torch.full((80,), 1.5), provenance={"test": True})
    bundle = load_bundle(path)
    synth = Synth(bundle, mel_match="off")
    expected = silence_offset(bundle.vocoder, 80, 1e-5, torch.device("cpu"))
    assert synth.offset == pytest.approx(expected) and abs(expected) > 0.01
    z = torch.randn(1, gen.config.z_dim, 8)
    toks = torch.zeros(1, 8, dtype=torch.long)
    pitch = torch.full((1, 8), 60.0)
    synth.reset()
    audio, _ = synth.step(z, toks, pitch)
    bundle.generator.reset()
    bundle.vocoder.reset()
    with torch.no_grad():
        mel = bundle.generator(z, toks, pitch)
        logmel = mel * bundle.std[None, :, None] + bundle.mean[None, :, None]
        ref = FrameRateNotch(bundle.hop, lag=bundle.vocoder.delay)(bundle.vocoder(logmel) - expected, logmel)
    np.testing.assert_allclose(audio.numpy(), ref.numpy(), atol=1e-6)
