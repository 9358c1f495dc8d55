"""The whole chain (generator -> vocoder), the render and resynth commands."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from core.bundle import load_bundle
from core.latent import NoiseSource
from core.resynth import resynthesize
from core.synth import Synth
from tests.conftest import chunkings
from training.metrics import logmel_l1

ROOT = Path(__file__).resolve().parent.parent


def test_synth_chunked_equals_whole(small_bundle):
    synth = Synth(load_bundle(small_bundle))
    T = 40
    z = torch.from_numpy(NoiseSource(20, 1, 2).next(T, drift=0.1).T.copy())[None]
    tok = torch.randint(0, 4, (1, T))
    pit = torch.linspace(40, 80, T)[None]
    synth.reset()
    whole, mel = synth.step(z, tok, pit)
    assert whole.shape == (1, T * 256) and mel.shape == (1, 80, T)
    assert whole.abs().max() > 1e-3
    for name, sizes in chunkings(T, seed=3):
        synth.reset()
        outs, i = [], 0
        for n in sizes:
            outs.append(synth.step(z[:, :, i:i + n], tok[:, i:i + n], pit[:, i:i + n])[0])
            i += n
        torch.testing.assert_close(torch.cat(outs, 1), whole, atol=1e-5, rtol=0, msg=name)


def run_main(*args, check=True):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)],
                          capture_output=True, text=True, check=check, cwd=ROOT)


def test_render_is_the_same_for_every_chunk_size(small_bundle, tmp_path):
    outs = {}
    for k in (0, 1, 3, 16):
        path = tmp_path / f"k{k}.wav"
        run_main("render", path, "--seconds", 1.0, "--seed", 7, "--chunk-frames", k, "--bundle", small_bundle)
        audio, sr = sf.read(path, dtype="float32")
        info = sf.info(path)
        assert sr == 22050 and info.subtype == "FLOAT" and len(audio) == 22050
        outs[k] = audio
    assert np.abs(outs[0]).max() > 1e-3
    for k in (1, 3, 16):
        np.testing.assert_allclose(outs[k], outs[0], atol=1e-5, rtol=0, err_msg=f"K={k}")
    other = tmp_path / "other.wav"
    run_main("render", other, "--seconds", 1.0, "--seed", 8, "--bundle", small_bundle)
    assert np.abs(sf.read(other, dtype="float32")[0] - outs[0]).max() > 1e-3   # the seed matters


def test_scale_and_morph_sweep_render_the_same_for_every_chunk_size(small_bundle):
    from core.render import render
    b = load_bundle(small_bundle)
    with torch.no_grad():
        outs = {k: render(b, 1.0, seed=3, chunk_frames=k, pitch=[48, 55, 60, 67], morph=0.0, morph_to=1.0)
                for k in (0, 1, 7)}
        held = render(b, 1.0, seed=3, pitch=48, morph=0.0)
    for k in (1, 7):
        np.testing.assert_allclose(outs[k], outs[0], atol=1e-5, rtol=0, err_msg=f"K={k}")
    # the first quarter asks for note 48 at morph ~0 as the held note does; the rest differs
    q = 22050 // 4 - 2 * 256
    assert np.abs(outs[0][q:] - held[q:]).max() > 1e-3
    np.testing.assert_allclose(outs[0][:256], held[:256], atol=1e-3)


def test_noise_morph_sweep_is_per_frame():
    a = NoiseSource(8, 1, 2).next(5, morph=np.linspace(0, 1, 5))
    ends = NoiseSource(8, 1, 2)
    np.testing.assert_allclose(a[0], NoiseSource(8, 1, 2).next(5, morph=0.0)[0], atol=1e-6)
    np.testing.assert_allclose(a[-1], ends.next(5, morph=1.0)[-1], atol=1e-6)


def test_resynth_streamed_equals_whole_and_keeps_length(small_bundle, tmp_path):
    b = load_bundle(small_bundle)
    sr = 22050
    t = np.arange(int(0.7 * sr)) / sr
    x = (0.4 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
    whole = resynthesize(b, x)
    assert whole.shape == x.shape
    for k in (1, 5):
        np.testing.assert_allclose(resynthesize(b, x, chunk_frames=k), whole, atol=1e-5, rtol=0)
    # the command reads any rate and channel count
    inp = tmp_path / "in.wav"
    sf.write(inp, np.stack([x, x], 1), sr, subtype="FLOAT")
    run_main("resynth", inp, tmp_path / "out.wav", "--bundle", small_bundle)
    out, osr = sf.read(tmp_path / "out.wav", dtype="float32")
    assert osr == sr and len(out) == len(x)
    np.testing.assert_allclose(out, whole, atol=1e-5)


def test_mel_matching_is_on_by_default_and_can_be_turned_off(small_bundle, tmp_path):
    """Without mel matching, ``resynth`` plays the vocoder's audio as it is, sooner (this
    vocoder looks 1425 samples ahead, so the filter adds 1007 samples, not 896; the
    low-latency one 495); with it (the default), the copy's mel is nearer the input's."""
    b = load_bundle(small_bundle)
    off = Synth(b, mel_match="off").delay
    assert b.vocoder.delay == 1425 and Synth(b).delay - off == 1007
    assert Synth(b, mel_match="low-latency").delay - off == 495
    assert Synth(b, mel_match="zero-latency").delay - off == 0
    with pytest.raises(ValueError, match="full, low-latency, zero-latency, off"):
        Synth(b, mel_match="sometimes")
    from core.mel_match import MODES
    r = run_main("render", tmp_path / "x.wav", "--seconds", 1, "--mel-match", "sometimes", check=False)
    assert r.returncode == 2 and all(m in r.stderr for m in MODES)      # the CLI offers the same modes
    sr = 22050
    t = np.arange(sr) / sr
    x = sum(0.3 / k * np.sin(2 * np.pi * k * 220 * t) for k in range(1, 8)).astype(np.float32)
    inp = tmp_path / "in.wav"
    sf.write(inp, x, sr, subtype="FLOAT")
    outs = {}
    for flag in ([], ["--mel-match", "off"]):
        run_main("resynth", inp, tmp_path / "out.wav", "--bundle", small_bundle, *flag)
        outs[bool(flag)] = sf.read(tmp_path / "out.wav", dtype="float32")[0]
        assert len(outs[bool(flag)]) == len(x)
    np.testing.assert_allclose(outs[True], resynthesize(b, x, mel_match="off"), atol=1e-5)
    assert logmel_l1(x, outs[False]) < 0.7 * logmel_l1(x, outs[True])   # an untrained vocoder: gains hit +-24 dB


def test_bad_cli_arguments_exit_2(small_bundle, tmp_path):
    for args in (["render", tmp_path / "x.wav"], ["render", tmp_path / "x.wav", "--seconds", "-1"],
                 ["render", tmp_path / "x.wav", "--seconds", "1", "--chunk-frames", "-2"],
                 ["render", tmp_path / "x.wav", "--seconds", "1", "--morph", "2"],
                 ["frobnicate"], ["gui", "--size", "10x10"]):
        r = run_main(*args, check=False)
        assert r.returncode == 2, args
        assert "usage" in (r.stderr + r.stdout).lower()


def test_bad_bundle_and_bad_audio_exit_1_with_a_message(tmp_path):
    junk = tmp_path / "junk.dwb"
    junk.write_bytes(b"\x00" * 100)
    r = run_main("render", tmp_path / "x.wav", "--seconds", 1, "--bundle", junk, check=False)
    assert r.returncode == 1 and str(junk) in r.stderr and "Traceback" not in r.stderr
    bad_wav = tmp_path / "bad.wav"
    bad_wav.write_text("not audio")
    r = run_main("resynth", bad_wav, tmp_path / "o.wav", check=False)
    assert r.returncode == 1 and "cannot read audio" in r.stderr and "Traceback" not in r.stderr


def test_settle_is_a_deterministic_pre_roll_on_every_row(small_bundle):
    from core.synth import SETTLE_FRAMES, SETTLE_SEED
    b = load_bundle(small_bundle)
    a, c = Synth(b), Synth(load_bundle(small_bundle))
    a.settle(rows=3)
    c.reset()                                   # the same frames by hand, one row
    cfg = b.generator.config
    z = torch.from_numpy(NoiseSource(cfg.z_dim, SETTLE_SEED, SETTLE_SEED + 1).next(SETTLE_FRAMES, drift=0.05).T.copy())[None]
    c.step(z, torch.zeros(1, SETTLE_FRAMES, dtype=torch.long),
           torch.full((1, SETTLE_FRAMES), (cfg.pitch_min + cfg.pitch_max) / 2))
    torch.manual_seed(9)
    zz = torch.randn(1, 20, 12)
    tok, pit = torch.ones(1, 12, dtype=torch.long), torch.full((1, 12), 50.0)
    want, _ = c.step(zz, tok, pit)
    got, _ = a.step(zz.expand(3, -1, -1), tok.expand(3, -1), pit.expand(3, -1))
    for r in range(3):                          # every row settled like the single one
        torch.testing.assert_close(got[r], want[0], atol=1e-5, rtol=0)
    fresh = Synth(load_bundle(small_bundle))
    fresh.reset()
    assert (fresh.step(zz, tok, pit)[0] - want).abs().max() > 1e-4   # and settling changed the state
