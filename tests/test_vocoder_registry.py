"""The vocoder registry (core/vocoders.py): a kind registered here, in the test module only,
builds, streams chunked == whole, round-trips through a bundle and plays in ``render``;
the shipped default (a version-1 bundle) still loads as MelGAN."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn

from core.bundle import META_KEY, BundleError, load_bundle, read_metadata, save_bundle
from core.config import DictConfig
from core.mel import MelConfig
from core.render import render
from core.synth import Synth
from core.vocoder import MelGANVocoder
from core.vocoders import (UnknownVocoderKind, Vocoder, build_vocoder, register_vocoder, vocoder_class,
                           vocoder_kind, vocoder_kinds)
from tests.conftest import random_chunking, small_models

KIND = "test-sine-conv"
FRAMES = 300


@dataclass(frozen=True)
class SineConvConfig(DictConfig):
    n_mels: int = 80
    hop: int = 256
    kernel: int = 3                  # frames the causal conv sees
    delay: int = 37                  # samples the output is held back (a stand-in for look-ahead)
    sample_rate: int = 22050


class SineConvVocoder(nn.Module):
    """A tiny streaming vocoder: a causal conv over mel frames gives each frame's ``hop``
    samples; a sine at f0 (phase carried across calls) is added; the sum is delayed by
    ``delay`` samples. Its state is three tensors, listed in ``state_attrs``."""

    config_class = SineConvConfig
    state_attrs = (("_cache", 0), ("_tail", 0), ("_phase", 0))

    @classmethod
    def check_config(cls, config: SineConvConfig, mel: MelConfig) -> None:
        if config.hop != mel.hop:
            raise ValueError(f"the sine-conv vocoder's hop {config.hop} is not the mel hop {mel.hop}")

    def __init__(self, config: SineConvConfig = SineConvConfig()):
        super().__init__()
        self.config = c = config
        self.hop, self.delay, self.takes_f0 = c.hop, c.delay, True
        self.conv = nn.Conv1d(c.n_mels, c.hop, c.kernel)
        self.reset()

    def reset(self) -> None:
        self._cache = self._tail = self._phase = None

    def forward(self, logmel: torch.Tensor, f0: torch.Tensor | None = None) -> torch.Tensor:
        b, _, n = logmel.shape
        c = self.config
        cache = self._cache if self._cache is not None else logmel.new_zeros(b, c.n_mels, c.kernel - 1)
        x = torch.cat((cache, logmel), 2)
        self._cache = x[:, :, n:]
        audio = 0.5 * torch.tanh(self.conv(x)).transpose(1, 2).reshape(b, n * c.hop)
        if f0 is not None:
            step = f0.double().repeat_interleave(c.hop, 1) * (2 * math.pi / c.sample_rate)
            start = self._phase if self._phase is not None else step.new_zeros(b)
            phase = start[:, None] + torch.cumsum(step, 1) - step
            self._phase = torch.remainder(phase[:, -1] + step[:, -1], 2 * math.pi)
            audio = audio + 0.2 * torch.sin(phase).to(audio.dtype)
        tail = self._tail if self._tail is not None else audio.new_zeros(b, c.delay)
        y = torch.cat((tail, audio), 1)
        self._tail = y[:, n * c.hop:]
        return y[:, :n * c.hop]


register_vocoder(KIND, SineConvVocoder)


def _sine_conv(seed: int = 0, **kw) -> SineConvVocoder:
    torch.manual_seed(seed)
    return build_vocoder(KIND, SineConvConfig(**kw)).eval()


def _inputs(frames: int = FRAMES, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mel = torch.randn(2, 80, frames, generator=g) - 3
    f0 = torch.rand(2, frames, generator=g) * 400 + 80
    f0[:, frames // 3:frames // 2] = 0                     # an unvoiced stretch
    return mel, f0


def _stream(voc, mel, f0, sizes) -> torch.Tensor:
    voc.reset()
    out, i = [], 0
    with torch.no_grad():
        for n in sizes:
            out.append(voc(mel[:, :, i:i + n], f0[:, i:i + n]))
            i += n
    return torch.cat(out, 1)


def _small_bundle(path, vocoder) -> None:
    gen, _ = small_models()
    save_bundle(path, name="sine-conv", generator=gen, vocoder=vocoder, mel=MelConfig(),
                mean=torch.linspace(-4, -1, 80), std=torch.full((80,), 1.5))


def test_the_registry_knows_melgan_and_names_the_known_kinds_for_an_unknown_one():
    assert vocoder_class("melgan") is MelGANVocoder and {"melgan", KIND} <= set(vocoder_kinds())
    assert vocoder_kind(MelGANVocoder()) == "melgan" and isinstance(MelGANVocoder(), Vocoder)
    with pytest.raises(UnknownVocoderKind, match="unknown vocoder kind 'theremin'.*melgan"):
        vocoder_class("theremin")
    with pytest.raises(UnknownVocoderKind, match="not a registered vocoder kind"):
        vocoder_kind(nn.Linear(2, 2))
    register_vocoder(KIND, SineConvVocoder)                              # again: a no-op
    with pytest.raises(ValueError, match="already registered to SineConvVocoder"):
        register_vocoder(KIND, MelGANVocoder)
    with pytest.raises(ValueError, match="already registered as vocoder kind 'melgan'"):
        register_vocoder("melgan-again", MelGANVocoder)
    with pytest.raises(TypeError, match="not a torch.nn.Module"):
        register_vocoder("not-a-module", dict)
    with pytest.raises(TypeError, match="config_class"):
        register_vocoder("no-config", nn.Linear)
    assert "melgan-again" not in vocoder_kinds() and "no-config" not in vocoder_kinds()


def test_a_new_kind_builds_from_a_dict_and_streams_chunked_as_whole():
    voc = _sine_conv()
    assert isinstance(voc, Vocoder) and voc.hop == 256 and voc.delay == 37 and voc.takes_f0
    torch.manual_seed(0)
    assert build_vocoder(KIND, {"kernel": 3}).config == voc.config
    mel, f0 = _inputs()
    whole = _stream(voc, mel, f0, [FRAMES])
    assert whole.shape == (2, FRAMES * 256) and torch.all(whole[:, :37] == 0) and whole[:, 37:].abs().max() > 0.1
    rng = np.random.default_rng(3)
    sizes = {f"k{k}": [k] * (FRAMES // k) + ([FRAMES % k] if FRAMES % k else []) for k in (1, 7, 256)}
    sizes.update({f"random{i}": random_chunking(FRAMES, rng, 40) for i in range(3)})
    for name, s in sizes.items():
        torch.testing.assert_close(_stream(voc, mel, f0, s), whole, atol=1e-5, rtol=0, msg=name)


def test_a_new_kind_round_trips_through_a_bundle(tmp_path):
    voc = _sine_conv(seed=4)
    path = tmp_path / "sine.dwb"
    _small_bundle(path, voc)
    assert read_metadata(path)["vocoder_kind"] == KIND and read_metadata(path)["format_version"] == 2
    b = load_bundle(path)
    assert type(b.vocoder) is SineConvVocoder and b.vocoder_kind == KIND and b.vocoder.config == voc.config
    assert not b.vocoder.training and b.hop == 256
    for k, v in voc.state_dict().items():
        assert torch.equal(b.vocoder.state_dict()[k], v)
    mel, f0 = _inputs(40)
    torch.testing.assert_close(_stream(b.vocoder, mel, f0, [7] * 5 + [5]), _stream(voc, mel, f0, [40]),
                               atol=1e-5, rtol=0)
    # the kind's own check_config refuses a header it cannot play, before building anything
    from safetensors import safe_open
    from safetensors.torch import save_file
    with safe_open(str(path), framework="pt") as f:
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, json.loads(f.metadata()[META_KEY])
    bad = tmp_path / "hop.dwb"
    save_file(tensors, str(bad), metadata={META_KEY: json.dumps({**meta, "vocoder": dict(meta["vocoder"], hop=128)})})
    with pytest.raises(BundleError, match="hop.dwb.*hop 128 is not the mel hop 256"):
        load_bundle(bad)


def test_a_bundle_refuses_an_unregistered_vocoder_and_writes_nothing(tmp_path):
    class Unregistered(SineConvVocoder):
        pass

    with pytest.raises(UnknownVocoderKind, match="Unregistered"):
        _small_bundle(tmp_path / "u.dwb", Unregistered())
    assert not list(tmp_path.iterdir())


def test_a_new_kind_plays_in_render_and_in_polyphony(tmp_path):
    path = tmp_path / "sine.dwb"
    _small_bundle(path, _sine_conv(seed=5))
    b = load_bundle(path)
    whole = render(b, 0.6, seed=2, pitch=[50.0, 57.0, 62.0])
    assert whole.shape == (round(0.6 * 22050),) and np.isfinite(whole).all() and np.abs(whole).max() > 0.05
    for k in (1, 7):
        np.testing.assert_allclose(render(b, 0.6, seed=2, pitch=[50.0, 57.0, 62.0], chunk_frames=k), whole, atol=1e-5)
    # render aligns for the kind's delay: the same weights without it give the same samples
    undelayed = tmp_path / "undelayed.dwb"
    _small_bundle(undelayed, _sine_conv(seed=5, delay=0))
    np.testing.assert_allclose(render(b, 0.6, seed=2, pitch=55.0, mel_match="off"),
                               render(load_bundle(undelayed), 0.6, seed=2, pitch=55.0, mel_match="off"), atol=1e-5)
    # polyphony: a step on one row of two leaves the other row's state as it was
    synth, z = Synth(b), torch.randn(2, 20, 6)
    tok, pit = torch.ones(2, 6, dtype=torch.long), torch.tensor([[50.0] * 6, [62.0] * 6])
    synth.reset()
    full, _ = synth.step(z, tok, pit)
    synth.reset()
    one, _ = synth.step_rows([1], 2, z[1:], tok[1:], pit[1:])
    torch.testing.assert_close(one[0], full[1], atol=1e-5, rtol=0)
    assert synth.vocoder._tail.shape[0] == 2 and torch.all(synth.vocoder._tail[0] == 0)


def test_the_shipped_default_is_a_version_1_bundle_that_loads_as_melgan(tmp_path):
    """models/default.dwb as shipped (version 1, no vocoder_kind) loads as MelGAN and plays
    the samples a version-2 copy of it plays."""
    from main import DEFAULT_BUNDLE
    from safetensors import safe_open
    with safe_open(str(DEFAULT_BUNDLE), framework="pt") as f:
        raw = json.loads(f.metadata()[META_KEY])
    assert raw["format_version"] == 1 and "vocoder_kind" not in raw
    b = load_bundle(DEFAULT_BUNDLE)
    assert type(b.vocoder) is MelGANVocoder and b.vocoder_kind == "melgan"
    v2 = tmp_path / "default_v2.dwb"
    save_bundle(v2, name=b.name, generator=b.generator, vocoder=b.vocoder, mel=b.mel, mean=b.mean, std=b.std,
                token_stats=b.token_stats, provenance=b.provenance, encoder=b.encoder)
    assert read_metadata(v2)["format_version"] == 2 and read_metadata(v2)["vocoder_kind"] == "melgan"
    np.testing.assert_array_equal(render(load_bundle(v2), 0.5, seed=3, pitch=[55.0, 60.0]),
                                  render(b, 0.5, seed=3, pitch=[55.0, 60.0]))
