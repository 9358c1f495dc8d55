"""Fine-tuning a bundle's generator (training/generator_base.py): the widened pitch condition
starts as the old model's clamp, the fine-tune keeps the bundle's shape, normalisation and
tokens, the critic warm-up leaves the generator untouched, and --base writes a bundle."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.bundle import load_bundle, save_bundle
from core.generator import GeneratorConfig, StreamingUNAGAN
from core.mel import MelConfig
from core.tokens import TokenEncoder, TokenEncoderConfig
from training.generator_base import fill_model_config, widen_pitch

from conftest import small_models

ROOT = Path(__file__).resolve().parent.parent


def _play(gen, pitch, frames=40, seed=3):
    torch.manual_seed(seed)
    z = torch.randn(2, gen.config.z_dim, frames)
    tokens = torch.randint(0, gen.config.n_tokens, (2, frames))
    gen.reset()
    with torch.no_grad():
        return gen(z, tokens, torch.full((2, frames), float(pitch)))


def test_widened_pitch_starts_as_the_clamped_model():
    old, _ = small_models(pitch=(55, 67))
    wide_cfg = GeneratorConfig(**{**old.config.to_dict(), "pitch_min": 48, "pitch_max": 74})
    wide = StreamingUNAGAN(wide_cfg).eval()
    wide.load_state_dict(widen_pitch(old.state_dict(), old.config, wide_cfg))
    for p in (48, 50, 55, 58.5, 61, 67, 70, 74):
        same = min(max(p, 55), 67)          # what the old model's condition clamps p to
        assert torch.allclose(_play(wide, p), _play(old, same), atol=1e-5), p
    # and the new semitones are separate columns, free to learn their own notes
    w = wide.inject[0].weight
    lo = wide_cfg.z_dim + wide_cfg.n_tokens
    assert w.shape[1] == wide_cfg.feature_dim and torch.equal(w[:, lo], w[:, lo + 7])
    assert not torch.equal(w[:, lo + 7], w[:, lo + 8])


def test_a_fine_tune_keeps_the_bundles_shape_and_may_only_widen():
    base = GeneratorConfig(hidden=32, n_tokens=4, pitch_min=55, pitch_max=67)
    filled = fill_model_config({"critic_channels": 16, "pitch_min": 50}, base)
    assert filled["hidden"] == 32 and filled["n_tokens"] == 4 and filled["pitch_min"] == 50
    assert filled["pitch_max"] == 67 and filled["critic_channels"] == 16
    with pytest.raises(ValueError, match="hidden=32"):
        fill_model_config({"hidden": 64}, base)
    narrow = GeneratorConfig(hidden=32, n_tokens=4, pitch_min=57, pitch_max=67)
    with pytest.raises(ValueError, match="only widen"):
        widen_pitch(StreamingUNAGAN(base).state_dict(), base, narrow)


@pytest.fixture
def token_bundle(tmp_path):
    gen, voc = small_models(n_tokens=4, pitch=(55, 67), hidden=16)   # the tiny preset's size
    torch.manual_seed(9)
    enc = TokenEncoder(TokenEncoderConfig(channels=(24, 16), code_dim=8, n_codes=4))
    for p in enc.parameters():
        torch.nn.init.normal_(p, 0.0, 0.5)
    path = tmp_path / "base.dwb"
    save_bundle(path, name="base", generator=gen, vocoder=voc, mel=MelConfig(), mean=torch.linspace(-4, -2, 80),
                std=torch.full((80,), 1.3), encoder=enc, token_stats={"default": 2})
    return path


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="needs fluidsynth")
def test_generator_finetune_from_a_bundle_writes_a_bundle_with_the_new_generator(token_bundle, tmp_path):
    from training.corpus import render_corpus

    data = tmp_path / "corpus"
    render_corpus(data, [40], low=52, high=70, step=3, phrases=1, phrase_length=8, seed=2)
    out = tmp_path / "wide.dwb"
    # 3 steps, all of them critic warm-up: the generator must come out as the widened base
    cmd = [sys.executable, str(ROOT / "main.py"), "train", "generator-finetune-tiny", "--data", str(data),
           "--runs", str(tmp_path / "runs"), "--set", f"optim.init_from={token_bundle}",
           "--set", "model.pitch_min=50", "--set", "model.pitch_max=72", "--set", "loss.critic_warmup=3",
           "--base", str(token_bundle), "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    base, new = load_bundle(token_bundle), load_bundle(out)
    c = new.generator.config
    assert (c.pitch_min, c.pitch_max, c.hidden, c.n_tokens) == (50, 72, 16, 4)
    assert torch.equal(new.mean, base.mean) and torch.equal(new.std, base.std)
    assert new.token_stats == base.token_stats and new.provenance["generator_base"] == "base.dwb"
    for k, v in base.vocoder.state_dict().items():
        assert torch.equal(new.vocoder.state_dict()[k], v), k
    for p in (50, 60, 72):
        assert torch.allclose(_play(new.generator, p), _play(base.generator, min(max(p, 55), 67)), atol=1e-3), p
    # with one step past the warm-up the generator moves
    more = subprocess.run(cmd[:-4] + ["--set", "optim.steps=4", "--base", str(token_bundle), "--out", str(out)],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert more.returncode == 0, more.stderr[-2000:]
    from training.train_generator import load_generator
    run = next((tmp_path / "runs").iterdir())
    moved, _, _ = load_generator(run, "latest")
    assert not torch.allclose(_play(moved, 60), _play(base.generator, 60), atol=1e-3)


def test_a_fine_tune_that_reshapes_the_model_says_so_in_one_line(token_bundle, tmp_path):
    cmd = [sys.executable, str(ROOT / "main.py"), "train", "generator-finetune-tiny", "--data", str(tmp_path),
           "--runs", str(tmp_path / "runs"), "--set", f"optim.init_from={token_bundle}", "--set", "model.hidden=64",
           "--run-dir"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "hidden=16" in r.stderr
