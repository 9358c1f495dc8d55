"""Training on real rendered audio: every configuration steps, resume is exact, torchrun
keeps ranks in sync, bad files are skipped, export plays, eval prints JSON."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf
import torch

from training.config import PRESETS, load_config
from training.corpus import render_corpus
from training.data import AudioCorpus
from training.pipeline import run_stage
from training.runner import lr_at, read_log

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="needs fluidsynth")


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    render_corpus(d, [40, 73], low=55, high=67, step=3, phrases=1, phrase_length=10, seed=1)
    return d


@pytest.fixture(scope="module")
def corpus(corpus_dir):
    return AudioCorpus(corpus_dir, val_fraction=0.25)


def test_corpus_renderer_writes_labelled_audio(corpus_dir):
    wavs = sorted(corpus_dir.glob("*.wav"))
    assert len(wavs) == 4
    for w in wavs:
        audio, sr = sf.read(str(w), dtype="float32", always_2d=True)
        assert sr == 22050
        labels = json.loads(w.with_suffix(".json").read_text())
        notes = labels["notes"]
        assert notes and all({"pitch", "onset", "offset", "velocity", "program"} <= set(n) for n in notes)
        score = mido.MidiFile(str(w.with_suffix(".mid")))       # the score stays beside its render
        on = [m for m in score if m.type == "note_on" and m.velocity > 0]
        assert sorted(m.note for m in on) == sorted(n["pitch"] for n in notes)
        mono = audio.mean(1)
        env = np.array([np.sqrt(np.mean(mono[i:i + 512] ** 2)) for i in range(0, len(mono) - 512, 256)])
        for n in notes:          # sound where every note is labelled
            a, b = int(n["onset"] * sr / 256), int(n["offset"] * sr / 256)
            assert env[a:b + 1].max() > 3e-3, n
        if w.stem.endswith("-notes"):      # separate notes: the level rises at each labelled onset
            for n in notes:
                i = int(n["onset"] * sr / 256)
                assert env[i + 1:i + 6].max() > 2.5 * max(env[max(0, i - 6):i - 1].min(), 1e-4), n


def test_unreadable_files_are_skipped_and_counted(corpus_dir, tmp_path):
    d = tmp_path / "mixed"
    shutil.copytree(corpus_dir, d)
    (d / "broken.wav").write_bytes(b"RIFF....garbage")
    (d / "notes.flac").write_text("this is not audio")
    with pytest.warns(UserWarning, match="skipping"):
        c = AudioCorpus(d)
    assert len(c.skipped) == 2 and len(c.train) + len(c.val) == 4


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_configuration_builds_and_takes_a_step(name, corpus, tmp_path):
    overrides = ["optim.steps=1", "log.checkpoint_every=1"]
    if not name.endswith("-tiny"):
        overrides += ["optim.batch=2"]          # full-size models; a small batch keeps the suite short
    cfg = load_config(name, overrides)
    if cfg.stage == "generator":                # conditions need a trained VQCPC; none here
        cfg.model.pop("n_tokens", None)
    run = run_stage(cfg, corpus, str(tmp_path), progress=False)
    rows = (run.dir / "log.csv").read_text().splitlines()
    assert len(rows) == 2 and (run.dir / "checkpoint.pt").exists()
    values = dict(zip(rows[0].split(","), rows[1].split(",")))
    assert all(np.isfinite(float(v)) for v in values.values() if v)


def _params(run):
    return torch.cat([p.detach().flatten() for p in run.model.parameters()])


PITCHED = ["model.pitch_min=55", "model.pitch_max=67", "loss.pitch=0.5"]
NOTED = PITCHED + ["model.note_dim=5", "loss.envelope=1.0", "loss.texture=1.0"]


@pytest.mark.parametrize("preset,extra", [("vocoder-stft-tiny", []), ("generator-began-tiny", []),
                                          ("generator-began-tiny", PITCHED), ("generator-began-tiny", NOTED),
                                          ("vqcpc-tiny", []),
                                          ("vocoder-stft-tiny", ["optim.lr_end=0.0", "optim.lr_decay_steps=4"])])
def test_resume_continues_exactly(preset, extra, corpus, tmp_path):
    straight = run_stage(load_config(preset, ["optim.steps=4"] + extra), corpus, str(tmp_path / "a"), progress=False)
    run_stage(load_config(preset, ["optim.steps=2", "log.checkpoint_every=2"] + extra), corpus, str(tmp_path / "b"),
              progress=False)
    resumed = run_stage(load_config(preset, ["optim.steps=4"] + extra), corpus, str(tmp_path / "b"), progress=False)
    assert resumed.dir.name == straight.dir.name
    assert torch.equal(_params(straight), _params(resumed))
    log = (resumed.dir / "log.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in log[1:]] == ["1", "2", "3", "4"]


def test_pitch_classifier_trains_the_generator_gets_its_loss_and_samples_are_written(corpus, tmp_path):
    run = run_stage(load_config("generator-began-tiny", ["optim.steps=2", "log.sample_every=2"] + PITCHED), corpus,
                    str(tmp_path), progress=False)
    audio, sr = sf.read(str(run.dir / "samples" / "step0000002.wav"))     # a generated sample to listen to
    assert sr == 22050 and len(audio) == 32 * 256 and np.isfinite(audio).all() and np.abs(audio).max() > 0.1
    rows = read_log(run.dir / "log.csv")
    assert len(rows) == 2
    for r in rows:          # classifier and generator pitch losses are logged, finite, and near ln(13) at start
        assert 0.5 < r["pitch_c"] < 10 and 0.5 < r["pitch_g"] < 10
        assert 0 <= r["pitch_acc_real"] <= 1 and 0 <= r["pitch_acc_fake"] <= 1
    state = torch.load(run.dir / "checkpoint.pt", weights_only=True)
    assert "C" in state and "opt_c" in state


def test_note_condition_comes_from_the_labels_and_warm_starts(corpus, tmp_path):
    it = next(i for i in corpus.train if i.notes)
    f = corpus.frame_notes(it)
    assert f.shape == (len(corpus.mel_of(it)), 5)
    spans = corpus.note_frames(it)
    first = min(a for a, _ in spans)
    assert np.all(f[:first] == 0)                                   # before the first note: silence
    for a, b in spans:
        assert f[a, 0] == 1 and f[a, 1] == 1                       # held, struck at its onset
    last = max(b for _, b in spans)
    if last < len(f):
        assert f[last, 0] == 0 and f[last, 4] == pytest.approx(1.0)   # released
    src = run_stage(load_config("generator-began-tiny", ["optim.steps=2"] + PITCHED), corpus, str(tmp_path),
                    progress=False)
    warm = run_stage(load_config("generator-began-tiny", ["optim.steps=2", f"optim.init_from={src.dir}"] + NOTED),
                     corpus, str(tmp_path), progress=False)
    state = torch.load(warm.dir / "checkpoint.pt", weights_only=True)
    assert state["G"]["note_in.0.weight"].abs().sum() > 0        # zero at the warm start, trained since
    assert "note_in.weight" in state["D"]                         # the critic hears the notes too
    last = read_log(warm.dir / "log.csv")[-1]
    assert all(np.isfinite(v) for v in last.values()) and 0 < last["envelope"] < 10 and 0 < last["texture"] < 10


def test_lr_schedule_is_a_cosine_from_lr_to_lr_end():
    o = {"lr": 1e-3, "lr_end": 1e-5, "steps": 100}
    assert lr_at(o, 0) == pytest.approx(1e-3)
    assert lr_at(o, 50) == pytest.approx((1e-3 + 1e-5) / 2)
    assert lr_at(o, 100) == pytest.approx(1e-5)
    assert all(lr_at(o, i) >= lr_at(o, i + 1) for i in range(100))
    assert lr_at({"lr": 1e-3, "steps": 100}, 70) == 1e-3
    assert lr_at({**o, "lr_decay_steps": 50, "steps": 200}, 120) == pytest.approx(1e-5)


def test_init_from_warm_starts_a_new_run(corpus, tmp_path):
    src = run_stage(load_config("vocoder-stft-tiny", ["optim.steps=2"]), corpus, str(tmp_path), progress=False)
    warm = run_stage(load_config("vocoder-stft-tiny", ["optim.steps=0", f"optim.init_from={src.dir}"]), corpus,
                     str(tmp_path), progress=False)
    cold = run_stage(load_config("vocoder-stft-tiny", ["optim.steps=0", "seed=1"]), corpus, str(tmp_path),
                     progress=False)
    assert warm.dir != src.dir
    assert torch.equal(_params(warm), _params(src))
    assert not torch.equal(_params(cold), _params(src))
    with pytest.raises(ValueError, match="init_from"):
        run_stage(load_config("vocoder-stft-tiny", ["optim.init_from=/nonexistent"]), corpus, str(tmp_path),
                  progress=False)
    # a vocoder gaining harmonic excitation starts from the plain one and trains (YIN f0 per segment)
    harm = run_stage(load_config("vocoder-stft-tiny", ["optim.steps=2", "model.harmonics=4", f"optim.init_from={src.dir}"]),
                     corpus, str(tmp_path), progress=False)
    state = torch.load(harm.dir / "checkpoint.pt", weights_only=True)
    assert any(k.startswith("source_proj") for k in state["G"])
    assert np.isfinite(read_log(harm.dir / "log.csv")[-1]["stft"])
    # the other way round: weights the model lacks are an error
    with pytest.raises(ValueError, match="lacks"):
        run_stage(load_config("vocoder-stft-tiny", ["optim.steps=0", f"optim.init_from={harm.dir}"]), corpus,
                  str(tmp_path), progress=False)


def test_torchrun_two_processes_stay_in_sync(corpus_dir, tmp_path):
    torchrun = Path(sys.executable).parent / "torchrun"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", str(ROOT / "main.py"), "train",
                        "vocoder-stft-tiny", "--data", str(corpus_dir), "--runs", str(tmp_path),
                        "--set", "optim.steps=3"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    # a failure shows every line of both ranks that is not a progress bar or a warning
    said = [line for line in r.stderr.splitlines() if "it/s]" not in line and "Warning" not in line]
    assert r.returncode == 0, "\n".join(said[-80:])
    run_dir = next(tmp_path.glob("vocoder-*"))
    ranks = json.loads((run_dir / "ranks.json").read_text())
    assert ranks["world"] == 2
    a, b = ranks["param_sums"]
    assert a == b                                   # identical weights on both ranks
    assert len((run_dir / "log.csv").read_text().splitlines()) == 4


def test_train_all_exports_a_bundle_that_renders_and_evaluates(corpus_dir, tmp_path):
    bundle = tmp_path / "tiny.dwb"
    vocoder_dir = tmp_path / "vocoder-data"       # the vocoder trains on one training file only
    vocoder_dir.mkdir()
    (vocoder_dir / "one.wav").symlink_to(Path(AudioCorpus(corpus_dir).train[0].path).resolve())
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "train", "all", "--data", str(corpus_dir),
                        "--out", str(bundle), "--runs", str(tmp_path / "runs"), "--vocoder-data", str(vocoder_dir),
                        "--vqcpc", "vqcpc-tiny", "--vocoder", "vocoder-stft-tiny", "--generator", "generator-began-tiny"],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    from core.bundle import load_bundle
    b = load_bundle(bundle)
    assert b.provenance["trained"] and b.generator.config.n_tokens == 4
    assert b.provenance["vocoder_data"] == str(vocoder_dir) and b.provenance["vocoder_corpus_files"] == 1
    assert b.generator.config.pitch_min == 55 and b.generator.config.pitch_max == 67
    assert b.token_stats and len(b.token_stats["transitions"]) == 4
    # the VQCPC's encoder travels with the model and names frames as training's tokenizer did
    from core.tokens import tokens_of_audio
    from training.pipeline import make_tokenizer
    corpus = AudioCorpus(corpus_dir)
    it = corpus.train[0]
    mel = (corpus.mel_of(it) - b.mean.numpy()) / b.std.numpy()
    vq_run = tmp_path / "runs" / b.provenance["vqcpc_run"]
    expected = make_tokenizer(vq_run)(torch.from_numpy(mel.T.copy())[None].float())[0].numpy()
    assert np.array_equal(tokens_of_audio(b, it.audio), expected)
    # the real-vs-real reference does not depend on what the model made
    from training.evaluate import eval_generator
    first = eval_generator(b, corpus, 2.0)
    with torch.no_grad():
        for p in b.generator.parameters():
            p.add_(0.05 * torch.randn_like(p))
    second = eval_generator(b, corpus, 2.0)
    assert first["jsd"] != second["jsd"]
    for key in ("ndb_real_vs_real", "jsd_real_vs_real", "ndb_sounding_real_vs_real", "jsd_sounding_real_vs_real"):
        assert first[key] == second[key], key
    out = tmp_path / "x.wav"
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "render", str(out), "--seconds", "1",
                        "--bundle", str(bundle)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert sf.info(str(out)).duration == pytest.approx(1.0, abs=0.01)
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "eval", "--bundle", str(bundle), "--data",
                        str(corpus_dir), "--seconds", "3", "--stability-minutes", "0.1",
                        "--pitch-filter", "0.3", "--frame-notch", "0.1"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads(r.stdout)
    assert result["pitch_filter"] == 0.3 and result["frame_notch"] == 0.1     # the output names what played
    for key in ("vocoder_mrstft", "griffin_lim_mrstft", "vocoder_logmel_l1"):
        assert np.isfinite(result["vocoder"][key])
    per_file = result["vocoder"]["per_file"]
    assert set(per_file) == {Path(it.path).name for it in corpus.val}
    assert sum(f["clips"] for f in per_file.values()) == result["vocoder"]["clips"]
    small = result["vocoder"]["mrstft_of_small_changes_to_the_real_clips"]
    assert all(v > 0 and np.isfinite(v) for v in small.values()), small
    for key in ("ndb", "jsd", "ndb_real_vs_real", "jsd_real_vs_real", "voiced_ratio_generated",
                "voiced_ratio_real", "pitch_error_cents_median", "ndb_sounding", "jsd_sounding",
                "ndb_sounding_real_vs_real", "jsd_sounding_real_vs_real", "mel_change_generated",
                "mel_change_real", "loudness_spread_generated", "loudness_spread_real"):
        assert key in result["generator"]
    assert result["generator"]["pitch_plan"] == "held-out score"      # labelled corpus: plays its score
    assert result["generator"]["token_plan"] == "held-out audio's tokens"
    for key in ("ndb_autopilot", "jsd_autopilot", "mel_change_autopilot", "token_change_rate_held_out"):
        assert np.isfinite(result["generator"][key])
    assert result["stability"]["nan_frames"] == 0


def test_bad_configs_are_usage_errors(corpus_dir, tmp_path):
    held_out = tmp_path / "with-held-out"         # a vocoder folder must not hold eval's files
    held_out.mkdir()
    (held_out / "x.wav").symlink_to(Path(AudioCorpus(corpus_dir).val[0].path).resolve())
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "train", "all", "--data", str(corpus_dir), "--out",
                        str(tmp_path / "x.dwb"), "--runs", str(tmp_path / "runs"), "--vocoder-data", str(held_out)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "holds out for eval" in r.stderr, r.stderr[-2000:]
    assert not (tmp_path / "runs").exists()
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "train", "no-such-preset", "--data", str(corpus_dir)],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "no preset" in r.stderr
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "train", "vqcpc-tiny", "--data", "/nonexistent"],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_the_vocoder_mel_loss_is_part_of_the_generator_loss(corpus, tmp_path):
    """``loss.mel`` adds w x the log10-mel L1 (HiFi-GAN's mel loss) to the vocoder's loss; at 0
    (the default) mel L1 is only logged."""
    rows = {}
    for w in (0.0, 3.0):
        run = run_stage(load_config("vocoder-stft-tiny", ["optim.steps=2", "log.every=1", f"loss.mel={w}"]),
                        corpus, str(tmp_path), progress=False)
        rows[w] = read_log(run.dir / "log.csv")
    for w, log in rows.items():
        for r in log:
            assert r["g"] == pytest.approx(r["stft"] + w * r["mel_l1"], rel=1e-5)
            assert r["mel_l1"] > 0


def test_vocoder_losses_can_be_taken_after_mel_matching(corpus, tmp_path):
    """``loss.mel_match``: the vocoder's losses are taken on its audio after mel matching
    (core/mel_match.py), as the player plays it. At the first step (same weights, same batch)
    the matched audio's mel is nearer the target's than the raw audio's (about half as far:
    the untrained vocoder's bands are mostly further below the target than the 24 dB the
    filter may lift them)."""
    first = {}
    for mm in ("false", "true"):
        run = run_stage(load_config("vocoder-stft-tiny", ["optim.steps=1", "log.every=1", f"loss.mel_match={mm}"]),
                        corpus, str(tmp_path), progress=False)
        first[mm] = read_log(run.dir / "log.csv")[0]
    assert first["true"]["mel_l1"] < 0.7 * first["false"]["mel_l1"]
    assert first["true"]["stft"] < first["false"]["stft"]


def test_a_vocoder_given_more_harmonics_warm_starts_as_the_old_one(corpus, tmp_path):
    """``optim.init_from`` a vocoder with fewer harmonics: the source projection keeps the old
    columns and the new ones start at zero, so the new model plays exactly what the old one
    did until it trains."""
    from training.runner import init_from
    from training.train_vocoder import build_vocoder, load_vocoder
    old = run_stage(load_config("vocoder-stft-tiny", ["optim.steps=2", "model.harmonics=2"]), corpus, str(tmp_path),
                    progress=False)
    new = build_vocoder(load_config("vocoder-stft-tiny", ["model.harmonics=6"]))
    assert init_from({"init_from": str(old.dir)}, {"G": new})
    w = new.source_proj.weight
    assert w.shape[1] == 6 and torch.all(w[:, 2:] == 0) and w[:, :2].abs().sum() > 0
    torch.manual_seed(0)
    mel, f0 = torch.randn(1, 80, 12) - 3, torch.full((1, 12), 220.0)
    before = load_vocoder(old.dir)
    with torch.no_grad():
        a, b = before(mel, f0), new.eval()(mel, f0)
    torch.testing.assert_close(b, a, atol=1e-5, rtol=0)


def test_stft_resolutions_come_from_the_config():
    """Noise between the partials of a MIDI 36 tone (65.4 Hz; 39 sines at (k + 1/2) f0, 30 dB
    under the partials) is nearly invisible to the default resolutions, whose longest window
    (1200 samples) cannot part partials 65 Hz apart; a 4096-sample window sees it."""
    from training.train_vocoder import STFT_RESOLUTIONS, stft_loss_fn
    sr, n, f0 = 22050, 16384, 65.4
    t = torch.arange(n) / sr
    tone = sum(0.3 / k * torch.sin(2 * np.pi * k * f0 * t + k) for k in range(1, 40))
    between = sum(0.3 / k * torch.sin(2 * np.pi * (k + 0.5) * f0 * t + 2 * k) for k in range(1, 40))
    fake, real = (tone + 10 ** (-30 / 20) * between)[None, None], tone[None, None]
    coarse = float(stft_loss_fn(1e-5, STFT_RESOLUTIONS)(fake, real))
    fine = float(stft_loss_fn(1e-5, [[4096, 480, 4096]])(fake, real))
    assert fine > 3 * coarse
    assert float(stft_loss_fn(1e-5, [[4096, 480, 4096]])(real, real)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="stft_resolutions"):
        stft_loss_fn(1e-5, [[1024, 120, 2048]])           # a window longer than its FFT
    cfg = load_config("vocoder-stft-tiny", ["loss.stft_resolutions=[[4096,480,4096]]"])
    assert cfg.loss["stft_resolutions"] == [[4096, 480, 4096]]


def test_vocoder_warm_starts_from_a_bundle(corpus, tmp_path):
    """``optim.init_from=BUNDLE.dwb``: the run's vocoder starts as the bundle's and plays the
    same samples; a generator cannot start from a bundle (it holds no critic), in one line."""
    from core.bundle import load_bundle, save_bundle
    from core.mel import MelConfig
    from training.train_vocoder import build_vocoder, fold
    from tests.conftest import small_models
    overrides = ["model.harmonics=4", "optim.steps=0"]
    voc = fold(build_vocoder(load_config("vocoder-stft-tiny", overrides))).eval()
    gen, _ = small_models()
    path = tmp_path / "source.dwb"
    save_bundle(path, name="source", generator=gen, vocoder=voc, mel=MelConfig(), mean=torch.zeros(80),
                std=torch.ones(80), half=False)
    warm = run_stage(load_config("vocoder-stft-tiny", overrides + [f"optim.init_from={path}", "seed=3"]), corpus,
                     str(tmp_path), progress=False)
    mel = torch.randn(1, 80, 12) - 3
    f0 = torch.full((1, 12), 220.0)
    with torch.no_grad():
        bundle_voc = load_bundle(path).vocoder
        bundle_voc.reset()
        want = bundle_voc(mel, f0)
        started = fold(warm.model).eval()
        started.reset()
        got = started(mel, f0)
    assert want.abs().max() > 1e-3
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="bundle"):
        run_stage(load_config("generator-began-tiny", [f"optim.init_from={path}"]), corpus, str(tmp_path),
                  progress=False)


def test_a_trained_vocoder_replaces_a_bundles_own(corpus_dir, small_bundle, tmp_path):
    """``train VOCODER --base B --out O``: O is B with the run's vocoder. A missing base is a
    bad bundle (exit 1, one line), a generator preset with --base that does not start from the
    base a usage error (exit 2), both before any training (no run folder)."""
    from core.bundle import load_bundle
    out, runs = tmp_path / "new.dwb", tmp_path / "runs"
    train = [sys.executable, str(ROOT / "main.py"), "train", "--data", str(corpus_dir), "--runs", str(runs)]
    r = subprocess.run(train[:3] + ["vocoder-stft-tiny"] + train[3:] + ["--base", str(tmp_path / "none.dwb"),
                       "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "no such file" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = subprocess.run(train[:3] + ["generator-began-tiny"] + train[3:] + ["--base", str(small_bundle),
                       "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "needs --set optim.init_from=" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not runs.exists() and not out.exists()
    r = subprocess.run(train[:3] + ["vocoder-stft-tiny"] + train[3:] + ["--base", str(small_bundle),
                       "--out", str(out), "--set", "optim.steps=2"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    base, new = load_bundle(small_bundle), load_bundle(out)
    assert new.name == base.name and new.provenance["vocoder_base"] == small_bundle.name
    assert new.vocoder.config.ngf == 4 and base.vocoder.config.ngf == 8     # the tiny preset's vocoder
    for (k, a), (_, b) in zip(base.generator.state_dict().items(), new.generator.state_dict().items()):
        assert torch.equal(a, b), k
    assert torch.equal(new.mean, base.mean) and torch.equal(new.std, base.std)
