"""realtime/step_size.py: ``--frames-per-step auto`` plays the smallest step the machine
keeps up with; measuring it leaves the instrument as it was."""
import numpy as np
import pytest

from core.bundle import load_bundle
from realtime import step_size
from realtime.engine import Engine
from realtime.params import ControlBus
from realtime.player import BundlePlayer
from realtime.status import step_status
from realtime.step_size import StepChoice, choose_frames, parse_frames_per_step
from realtime.voices import VoiceBank


def test_the_smallest_step_within_the_limit_is_chosen_and_larger_ones_are_not_measured():
    asked = []

    def measure(frames):
        asked.append(frames)
        return {1: 0.9, 2: 0.6, 4: 0.4}[frames]

    choice = choose_frames(measure, 0.7)
    assert (choice.frames, asked, choice.within_limit) == (2, [1, 2], True)
    assert choose_frames(measure, 0.95).frames == 1
    assert choice.as_dict() == {"frames": 2, "limit": 0.7, "within_limit": True,
                                "rtf_by_frames": {"1": 0.9, "2": 0.6}}


def test_when_no_step_keeps_up_the_largest_plays_and_says_so():
    choice = choose_frames(lambda f: 2.0 / f, 0.3)
    assert choice.frames == 4 and not choice.within_limit and set(choice.rtf) == {1, 2, 4}
    with pytest.raises(ValueError):
        choose_frames(lambda f: 0.1, 0.7, choices=())


def test_frames_per_step_option():
    assert parse_frames_per_step("auto") == "auto" and parse_frames_per_step("2") == 2
    for bad in ("0", "-1", "x", "1.5", ""):
        with pytest.raises(ValueError, match="'auto' or a positive whole number"):
            parse_frames_per_step(bad)


def test_status_line_says_the_step_and_what_auto_measured():
    choice = StepChoice(2, 0.7, {1: 1.06, 2: 0.68}).as_dict()
    s = {"step_path": "compiled", "compile_s": 8.04, "frames_per_step": 2, "step_choice": choice}
    assert step_status(s) == "compiled, 2-frame steps"
    assert step_status(s, full=True) == ("compiled step, prepared in 8.0 s; 2-frame steps "
                                         "(measured 1 frame RTF 1.06, 2 frames RTF 0.68; limit 0.70)")
    late = StepChoice(4, 0.7, {1: 3.0, 2: 2.0, 4: 1.5}).as_dict()
    assert step_status({**s, "frames_per_step": 4, "step_choice": late}, full=True).endswith(
        "limit 0.70, none within it: expect dropouts)")
    assert step_status({"step_path": "eager", "frames_per_step": 1}) == "eager"


def _play(player, steps=12):
    bus, bank = ControlBus(), VoiceBank(player.n_voices, player.frame_rate)
    bank.note_on(60, 100)
    out = []
    for _ in range(steps):
        player.render(1, bus.snapshot(0.02), bank, bank.render(1, 60.0, 0.05, 0.01, 0.3))
        out.append(player.take(len(player.pending)))
    return np.concatenate(out)


def test_measuring_the_step_leaves_the_player_as_built(small_bundle):
    measured = BundlePlayer(load_bundle(small_bundle), 48000, n_voices=2, mel_match="zero-latency")
    fresh = BundlePlayer(load_bundle(small_bundle), 48000, n_voices=2, mel_match="zero-latency")
    rtf = measured.step_cost(2, seconds=0.2)
    assert rtf > 0
    a, b = _play(measured), _play(fresh)
    assert np.abs(b).max() > 0
    np.testing.assert_array_equal(a, b)


def test_engine_auto_step_follows_the_measured_cost(small_bundle, monkeypatch):
    bundle = load_bundle(small_bundle)
    monkeypatch.setitem(step_size.RTF_LIMITS, "normal", 1e6)     # any machine keeps up
    e = Engine(bundle, 48000, frames_per_step="auto", target_fill_s=None, voices=2, threads=1)
    assert e.frames_per_step == 1 and e.step_choice.within_limit and list(e.step_choice.rtf) == [1]
    assert e.stats()["step_choice"]["frames"] == 1
    monkeypatch.setitem(step_size.RTF_LIMITS, "normal", 0.0)     # none does
    e = Engine(load_bundle(small_bundle), 48000, frames_per_step="auto", target_fill_s=None, voices=2, threads=1)
    assert e.frames_per_step == 4 and not e.step_choice.within_limit
    assert e.step_out == int(np.ceil(4 * 256 * 48000 / 22050))
    fixed = Engine(load_bundle(small_bundle), 48000, frames_per_step=2, voices=2, threads=1)
    assert fixed.frames_per_step == 2 and fixed.step_choice is None and fixed.stats()["step_choice"] is None
