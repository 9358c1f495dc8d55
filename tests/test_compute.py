"""Where the models run (``--compute``): the choice and its errors everywhere; on a CUDA
machine, the streaming contract, the engine and a training step of every configuration on
the GPU, each compared with the CPU. The GPU tests skip where torch sees no CUDA GPU (CI
has none); they were run on an H100 (docs/measurements.md, "On a GPU")."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from core.bundle import load_bundle
from core.compute import ComputeUnavailable, compute_device
from core.generator import GeneratorConfig, StreamingUNAGAN
from core.notes import NOTE_DIM
from core.vocoder import MelGANVocoder, VocoderConfig
from tests.conftest import chunkings
from training.config import PRESETS, load_config

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = ROOT / "models" / "default.dwb"
gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


# ---- the choice (runs everywhere) ---------------------------------------------------------
def test_cpu_is_always_there_and_auto_takes_a_gpu_when_there_is_one():
    assert compute_device("cpu") == torch.device("cpu")
    auto = compute_device("auto")
    if torch.cuda.is_available():
        assert auto == torch.device("cuda", 0)
    else:
        assert auto.type in ("cpu", "mps")


@pytest.mark.parametrize("name,words", [("tpu", "unknown compute device"), ("cuda:99", "asked for"),
                                        ("gpu!", "unknown compute device")])
def test_an_absent_or_unknown_device_is_a_clear_error(name, words):
    with pytest.raises(ComputeUnavailable, match=words):
        compute_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_a_missing_gpu_says_what_torch_sees():
    with pytest.raises(ComputeUnavailable, match="cuda: no"):
        compute_device("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cli_refuses_a_missing_gpu_with_a_message_and_writes_nothing(tmp_path):
    out = tmp_path / "x.wav"
    p = subprocess.run([sys.executable, str(ROOT / "main.py"), "render", str(out), "--seconds", "0.5",
                        "--compute", "cuda"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "error: compute device 'cuda' asked for" in p.stderr
    assert "Traceback" not in p.stderr and not out.exists()


def test_cli_renders_on_the_cpu_when_asked(tmp_path, small_bundle):
    out = tmp_path / "x.wav"
    p = subprocess.run([sys.executable, str(ROOT / "main.py"), "render", str(out), "--seconds", "0.3",
                        "--bundle", str(small_bundle), "--compute", "cpu"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    assert sf.info(str(out)).frames == round(0.3 * 22050)


# ---- on the GPU ------------------------------------------------------------------------------
@pytest.fixture
def exact_gpu():
    """Full float32 on the GPU: cuDNN convolutions default to TF32 (10-bit mantissa)."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    with torch.no_grad():
        yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def _stream(model, inputs, time_axes, sizes, call):
    """``call(model, chunk of every input)`` over the chunk ``sizes``, concatenated in time."""
    model.reset()
    outs, i = [], 0
    for n in sizes:
        outs.append(call(model, [x.narrow(ax, i, n) for x, ax in zip(inputs, time_axes)]))
        i += n
    return torch.cat(outs, -1)


@gpu
def test_generator_streams_exactly_on_the_gpu_and_matches_the_cpu(exact_gpu):
    torch.manual_seed(0)
    cfg = GeneratorConfig(hidden=64, n_tokens=8, pitch_min=40, pitch_max=80, note_dim=NOTE_DIM)
    g_cpu = StreamingUNAGAN(cfg).eval()
    for m in g_cpu.modules():             # the note projections start at zero; make them act
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.normal_(m.weight, 0.0, 0.2)
    g_gpu = StreamingUNAGAN(cfg).eval()
    g_gpu.load_state_dict(g_cpu.state_dict())
    g_gpu.cuda()
    T = 70
    z, tok, pit = torch.randn(2, 20, T), torch.randint(0, 8, (2, T)), 40 + 40 * torch.rand(2, T)
    note = torch.rand(2, T, NOTE_DIM)
    call = lambda g, x: g(x[0], x[1], x[2], x[3])            # noqa: E731
    dev = [x.cuda() for x in (z, tok, pit, note)]
    axes = (2, 1, 1, 1)
    whole = _stream(g_gpu, dev, axes, [T], call)
    assert whole.device.type == "cuda" and whole.shape == (2, 80, T)
    torch.testing.assert_close(whole.cpu(), _stream(g_cpu, [z, tok, pit, note], axes, [T], call),
                               atol=1e-4, rtol=0)
    for name, sizes in chunkings(T, seed=3):
        torch.testing.assert_close(_stream(g_gpu, dev, axes, sizes, call), whole, atol=1e-5, rtol=0, msg=name)


@gpu
def test_harmonic_vocoder_streams_exactly_on_the_gpu_and_matches_the_cpu(exact_gpu):
    torch.manual_seed(1)
    v_cpu = MelGANVocoder(VocoderConfig(ngf=16, harmonics=8)).eval()
    torch.nn.init.normal_(v_cpu.source_gate.weight, 0.0, 0.1)
    v_gpu = MelGANVocoder(VocoderConfig(ngf=16, harmonics=8)).eval()
    v_gpu.load_state_dict(v_cpu.state_dict())
    v_gpu.cuda()
    mel = torch.randn(2, 80, 24)
    f0 = torch.cat([torch.linspace(100, 900, 24)[None], torch.zeros(1, 24)])
    call = lambda v, x: v(x[0], x[1])                          # noqa: E731
    dev, axes = [mel.cuda(), f0.cuda()], (2, 1)
    whole = _stream(v_gpu, dev, axes, [24], call)
    torch.testing.assert_close(whole.cpu(), _stream(v_cpu, [mel, f0], axes, [24], call), atol=1e-4, rtol=0)
    for name, sizes in chunkings(24, seed=4, n_random=2):
        torch.testing.assert_close(_stream(v_gpu, dev, axes, sizes, call), whole, atol=1e-5, rtol=0, msg=name)


def _snr_db(ref: np.ndarray, x: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref ** 2) / max(np.sum((ref - x) ** 2), 1e-30)))


@gpu
@pytest.mark.parametrize("tf32", [False, True])
def test_the_default_model_renders_on_the_gpu_as_on_the_cpu(tf32):
    """The shipped bundle, a C3-C5 scale with struck notes: GPU against CPU. In full float32
    the two agree to float rounding; with cuDNN's TF32 (torch's default) still closely."""
    from core.render import render

    old = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        kw = dict(seconds=3.0, seed=5, pitch=[48, 55, 60, 64, 67, 72], chunk_frames=4)
        cpu = render(load_bundle(DEFAULT), **kw)
        gpu_audio = render(load_bundle(DEFAULT, "cuda"), **kw)
    finally:
        torch.backends.cudnn.allow_tf32 = old
    snr = _snr_db(cpu, gpu_audio)
    print(f"tf32={tf32}: GPU vs CPU SNR {snr:.1f} dB, rms {np.sqrt(np.mean(cpu ** 2)):.4f}")
    assert np.isfinite(gpu_audio).all() and np.sqrt(np.mean(gpu_audio ** 2)) > 0.01
    assert snr > (60.0 if not tf32 else 20.0)


@gpu
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_the_gru_weights_are_packed_once_on_the_gpu(precision):
    """Moved or cast to bfloat16 on CUDA, the GRUs' weights must be one packed chunk: cuDNN
    otherwise re-packs them on every step and warns each time ("not part of single
    contiguous chunk of memory", seen on an H100 with bfloat16)."""
    import warnings

    from core.synth import Synth

    synth = Synth(load_bundle(DEFAULT, "cuda"), precision)
    cfg = synth.generator.config
    z = torch.randn(1, cfg.z_dim, 4)
    tokens = torch.full((1, 4), synth.bundle.default_token, dtype=torch.long) if cfg.n_tokens else None
    pitch = torch.full((1, 4), 60.0) if cfg.has_pitch else None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        audio, _ = synth.step(z, tokens, pitch)
    assert torch.isfinite(torch.as_tensor(audio)).all()


@gpu
def test_the_engine_plays_on_the_gpu_as_on_the_cpu_and_hot_swaps_onto_it(exact_gpu):
    from realtime.engine import Engine

    def play(device, steps=60):
        engine = Engine(load_bundle(DEFAULT, device), 48000, threads=1, voices=2, seed=3)
        out = np.zeros((0, 1), np.float32)
        buf = np.zeros((4096, 1), np.float32)
        for _ in range(steps):
            engine._step()
            n = engine.ring.read_into(buf)
            out = np.concatenate((out, buf[:n]))
        return engine, out[:, 0]

    eg, a_gpu = play("cuda")
    assert eg.compute_device.type == "cuda" and eg.stats()["compute"] == "cuda:0"
    _, a_cpu = play("cpu")
    assert len(a_gpu) == len(a_cpu) > 48000 * 0.5
    assert _snr_db(a_cpu, a_gpu) > 60.0
    eg.load_bundle(str(DEFAULT)).join(60)
    assert eg._incoming is not None and eg._incoming.synth.device.type == "cuda"


@pytest.fixture(scope="module")
def tone_corpus(tmp_path_factory):
    """Four labelled files of harmonic tones with decaying envelopes (synthetic: FluidSynth
    is not on every GPU machine); the same label format the corpus renderer writes."""
    d = tmp_path_factory.mktemp("tones")
    sr, rng = 22050, np.random.default_rng(0)
    for f in range(4):
        audio, notes, t = np.zeros(int(6 * sr), np.float32), [], 0.2
        while t < 5.2:
            p, dur = int(rng.integers(55, 68)), float(rng.uniform(0.3, 0.9))
            i0, n = int(t * sr), int(dur * sr)
            tt = np.arange(n) / sr
            hz = 440 * 2 ** ((p - 69) / 12)
            tone = sum(np.sin(2 * np.pi * k * hz * tt) / k for k in range(1, 6)) * np.exp(-3 * tt)
            audio[i0:i0 + n] += 0.2 * tone.astype(np.float32)
            notes.append({"pitch": p, "onset": t, "offset": t + dur, "velocity": 100, "program": f})
            t += dur + 0.15
        sf.write(str(d / f"t{f}.wav"), audio, sr)
        (d / f"t{f}.json").write_text(json.dumps({"program": f, "sample_rate": sr, "notes": notes}))
    return d


@gpu
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_configuration_takes_a_step_on_the_gpu(name, tone_corpus, tmp_path):
    from training.data import AudioCorpus
    from training.pipeline import run_stage

    overrides = ["optim.steps=2", "log.checkpoint_every=1", "log.every=1"]
    if not name.endswith("-tiny"):
        overrides += ["optim.batch=2"]
    cfg = load_config(name, overrides)
    if cfg.stage == "generator":
        cfg.model.pop("n_tokens", None)
    run = run_stage(cfg, AudioCorpus(tone_corpus, val_fraction=0.25), str(tmp_path), progress=False)
    assert next(run.model.parameters()).device.type == "cuda"
    rows = (run.dir / "log.csv").read_text().splitlines()
    assert len(rows) == 3 and (run.dir / "checkpoint.pt").exists()
    values = dict(zip(rows[0].split(","), rows[2].split(",")))
    assert all(np.isfinite(float(v)) for v in values.values() if v)


@gpu
def test_the_whole_recipe_trains_exports_renders_and_evaluates_on_the_gpu(tone_corpus, tmp_path):
    """Tokens, the harmonic vocoder and a generator with pitch, the pitch classifier, the
    note clock and the envelope loss (what the default's recipe uses), tiny sizes."""
    from core.render import render
    from training.data import AudioCorpus
    from training.evaluate import evaluate
    from training.pipeline import train_all

    noted = ["model.pitch_min=55", "model.pitch_max=67", "loss.pitch=0.5", "model.note_dim=5", "loss.envelope=1.0"]
    path = train_all(str(tone_corpus), str(tmp_path / "tiny.dwb"), str(tmp_path / "runs"), "vqcpc-tiny",
                     "vocoder-stft-tiny", "generator-began-tiny",
                     {"vocoder": ["model.harmonics=8"], "generator": noted}, progress=False)
    b = load_bundle(path, "cuda")
    assert b.generator.config.n_tokens and b.generator.config.note_dim == NOTE_DIM and b.vocoder.source is not None
    audio = render(b, 1.0, pitch=[55, 60, 67], chunk_frames=3)
    assert audio.shape == (22050,) and np.isfinite(audio).all()
    result = evaluate(b, AudioCorpus(tone_corpus, val_fraction=0.25), 3.0, 0.1)
    assert np.isfinite(result["vocoder"]["vocoder_mrstft"]) and result["stability"]["nan_frames"] == 0
