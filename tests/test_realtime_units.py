"""Ring buffer, safety limiter, control bus, token and pitch sources."""
import threading

import numpy as np
import pytest
import torch

from core.limiter import SafetyLimiter, is_runaway
from core.notes import NOTE_DIM, held_note
from realtime.params import ControlBus
from realtime.ringbuffer import RingBuffer
from realtime.sources import SILENT_BELOW_LOUDEST, TokenSource, autopilot_transitions
from realtime.voices import VoiceBank


def test_ring_buffer_wraps_and_keeps_order():
    rb = RingBuffer(10)
    out = np.zeros((7, 2), np.float32)           # a stereo device reading a mono ring
    assert rb.write(np.arange(6, dtype=np.float32)) == 6
    assert rb.read_into(out[:4]) == 4
    assert rb.write(np.arange(6, 14, dtype=np.float32)) == 8     # wraps around the end
    assert rb.write(np.ones(5, np.float32)) == 0                   # full: nothing written
    assert rb.read_into(out) == 7
    np.testing.assert_array_equal(out[:, 0], np.arange(4, 11))
    np.testing.assert_array_equal(out[:, 1], np.arange(4, 11))
    assert rb.available() == 3 and rb.space() == 7


def test_ring_buffer_spsc_threads_lose_nothing():
    rb = RingBuffer(257)
    total = 200_000
    got = []

    def consume():
        buf = np.zeros((100, 1), np.float32)
        n = 0
        while n < total:
            k = rb.read_into(buf[:np.random.randint(1, 100)])
            got.append(buf[:k, 0].copy())
            n += k

    t = threading.Thread(target=consume)
    t.start()
    data = np.arange(total, dtype=np.float32)
    i = 0
    while i < total:
        i += rb.write(data[i:i + np.random.randint(1, 120)])
    t.join(30)
    np.testing.assert_array_equal(np.concatenate(got), data)


def test_limiter_never_exceeds_the_ceiling_and_leaves_quiet_audio_alone():
    lim = SafetyLimiter(48000)
    quiet = (0.5 * np.sin(np.arange(4800) / 7)).astype(np.float32)
    np.testing.assert_array_equal(lim.process(quiet.copy()), quiet)
    rng = np.random.default_rng(0)
    for _ in range(50):
        loud = (rng.standard_normal(512) * rng.uniform(0.1, 30)).astype(np.float32)
        assert np.max(np.abs(lim.process(loud))) <= 0.98
    # after the loud part, the gain recovers (release) instead of staying down
    for _ in range(200):
        lim.process(quiet.copy()[:512])
    assert lim.gain > 0.99


def test_runaway_detection():
    assert is_runaway(np.array([0.1, np.nan], np.float32))
    assert is_runaway(np.array([0.1, np.inf], np.float32))
    assert is_runaway(np.array([0.1, 50.0], np.float32))
    assert not is_runaway(np.array([0.1, -0.9], np.float32))


def test_control_bus_jump_sets_a_value_without_a_glide():
    bus = ControlBus()
    bus.set("morph", 1.0)
    assert bus.snapshot(0.01)["morph"] < 0.5            # set: glides
    assert bus.jump("gain", -12.0) == -12.0
    assert bus.snapshot(0.001)["gain"] == -12.0         # jump: there at once
    assert bus.jump("gain", 100.0) == 12.0              # clamped as set is


def test_control_bus_clamps_smooths_and_counts_triggers():
    bus = ControlBus()
    assert bus.set("morph", 3.0) == 1.0
    assert bus.set("freeze", 0.7) == 1.0
    assert bus.set("token_mode", "autopilot") == 2
    with pytest.raises(KeyError):
        bus.set("nope", 1)
    with pytest.raises(ValueError):
        bus.set("morph", float("nan"))
    snap = bus.snapshot(0.05)       # morph smooths with tau 0.05 s: one tau -> 63 %
    assert abs(snap["morph"] - (1 - np.exp(-1))) < 1e-6
    for _ in range(100):
        snap = bus.snapshot(0.05)
    assert snap["morph"] == 1.0 and snap["freeze"] == 1.0
    bus.trigger("new_seed_a")
    bus.trigger("new_seed_a")
    assert bus.snapshot(0.01).fired == {"new_seed_a"}
    assert bus.snapshot(0.01).fired == set()
    bus.set_normalized("gain", 0.5)
    assert bus.get("gain") == pytest.approx(-24.0)


def test_token_sources():
    stats = {"transitions": [[0, 1, 0], [0, 0, 1], [1, 0, 0]]}   # a deterministic cycle
    src = TokenSource(3, stats, seed=0)
    assert list(src.next(4, 0, 2, 1)) == [2, 2, 2, 2]               # hold
    src = TokenSource(3, stats)
    src.set_sequence([0, 2])
    assert list(src.next(8, 1, 0, 2)) == [0, 0, 2, 2, 0, 0, 2, 2]   # sequence, 2 frames each
    src = TokenSource(3, stats)
    out = src.next(6, 2, 0, 1)                                      # autopilot walks the cycle
    assert all((b - a) % 3 == 1 for a, b in zip(out[:-1], out[1:]))
    src = TokenSource(3, stats)
    src.set_reference(np.array([1, 1, 0]))
    assert list(src.next(5, 3, 0, 1)) == [1, 1, 0, 1, 1]            # reference, looped


def test_the_autopilot_never_walks_into_a_token_that_stands_for_silence():
    # token 2 is where the chain wants to go and stay, and its frames are 2.4 log10 quieter
    stats = {"transitions": [[0.1, 0.1, 0.8], [0.1, 0.1, 0.8], [0.0, 0.05, 0.95]],
             "loudness": [-2.0, -2.5, -4.4]}
    out = TokenSource(3, stats, seed=1).next(2000, 2, 0, 1)
    assert set(out) == {0, 1}
    assert np.isclose(autopilot_transitions(3, stats), [[0.5, 0.5, 0], [0.5, 0.5, 0], [0, 1, 0]]).all()
    # without loudness the walk is the bare matrix, and it lives in token 2
    bare = TokenSource(3, {"transitions": stats["transitions"]}, seed=1).next(2000, 2, 0, 1)
    assert np.mean(bare == 2) > 0.8
    # tokens within SILENT_BELOW_LOUDEST of the loudest all stay reachable
    near = dict(stats, loudness=[-2.0, -2.5, -2.0 - SILENT_BELOW_LOUDEST + 0.01])
    assert np.allclose(autopilot_transitions(3, near), stats["transitions"])


def test_voice_glide_and_mono_legato():
    bank = VoiceBank(1, frame_rate=100.0)
    c = bank.render(3, 72.0, 0.0, 0.01, 0.3)                        # drone: follows the parameter
    assert np.all(c.pitch == 72.0) and np.all(c.level == 1.0)
    bank.note_on(60, 127)
    c = bank.render(100, 72.0, 0.1, 0.05, 0.3)                      # glide tau = 10 frames
    assert abs(c.pitch[0, 9] - (60 + 12 * np.exp(-1))) < 1e-3 and np.all(np.diff(c.pitch[0]) < 0)
    assert c.level[0, 4] == pytest.approx(1.0)                      # 0.05 s attack at 100 fps
    bank.note_on(64, 127)                                           # legato: no new attack
    c = bank.render(2, 72.0, 0.0, 0.05, 0.3)
    assert np.all(c.stage == 2) and c.level[0, -1] > 0.99
    assert list(c.onset_age[0]) == [100, 101]                       # ... and no new onset
    bank.note_off(64)                                               # back to the held note
    assert bank.render(1, 72.0, 0.0, 0.05, 0.3).pitch[0, 0] == 60.0
    bank.note_off(60)
    c = bank.render(200, 72.0, 0.0, 0.05, 0.3)
    assert c.stage[0, 0] == 3 and c.level[0, -1] == 0.0             # released, then idle


def test_voice_note_clock():
    """Held, onset age and release age per frame: what a note-conditioned generator hears."""
    bank = VoiceBank(2, frame_rate=100.0)
    c = bank.render(3, 60.0, 0.0, 0.01, 0.3)                        # the drone: held for ever
    assert list(c.held[0]) == [1, 1, 1] and list(c.held[1]) == [0, 0, 0]
    assert np.allclose(c.note_features()[0], held_note((3,)))
    bank.note_on(60, 100)
    c = bank.render(4, 60.0, 0.0, 0.01, 0.3)
    assert list(c.held[0]) == [1, 1, 1, 1] and list(c.onset_age[0]) == [0, 1, 2, 3]
    assert list(c.release_age[0]) == [0, 0, 0, 0] and np.all(c.held[1] == 0)
    bank.note_on(64, 100)                                           # the second voice
    bank.note_off(60)
    c = bank.render(3, 60.0, 0.0, 0.01, 0.3)
    assert list(c.held[0]) == [0, 0, 0] and list(c.release_age[0]) == [0, 1, 2]
    assert list(c.onset_age[0]) == [4, 5, 6] and list(c.onset_age[1]) == [0, 1, 2]
    f = c.note_features()
    assert f.shape == (2, 3, NOTE_DIM) and f[0, 0, -1] == pytest.approx(1.0) and f[1, 0, 1] == pytest.approx(1.0)
    bank.note_on(60, 100)                                           # a free voice? no: 0 is releasing
    c = bank.render(1, 60.0, 0.0, 0.01, 0.3)
    assert c.held[0, 0] == 1 and c.onset_age[0, 0] == 0              # retriggered: a new onset


def test_voice_stealing_takes_the_oldest():
    bank = VoiceBank(2, frame_rate=100.0)
    assert bank.note_on(60, 100) == 0
    assert bank.note_on(62, 100) == 1
    assert bank.note_on(64, 100) == 0                               # both busy: steal the oldest
    assert [v.note for v in bank.voices] == [64, 62]


def test_engine_stats_import_nothing_once_started(small_bundle):
    """The status line's first stats() imported numpy.ma (np.percentile's first use): ~10 ms
    holding the GIL and the import lock, which underran the ring 1 s into every headless start.
    Once the engine has started, stats() must import nothing (run in a fresh interpreter, where
    nothing else has imported it already)."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    code = f"""
import sys
sys.path.insert(0, {str(root)!r})
from core.bundle import load_bundle
from realtime.engine import Engine
e = Engine(load_bundle({str(small_bundle)!r}), out_rate=48000)
e.start()
before = set(sys.modules)
e.stats()
e.stop()
print(sorted(set(sys.modules) - before))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_controller_state_is_a_snapshot_replaced_whole():
    """Other threads read the mappings only through ``controller.state``; every change
    replaces it whole, and a snapshot taken before a change keeps what it held."""
    from realtime.controller import Mapping, MidiController
    from realtime.params import ControlBus
    bus = ControlBus()
    c = MidiController(bus)
    before = c.state
    assert {m.key for m in before.mappings} == set(c.mappings)
    c.learn("drift")
    armed = c.state
    assert armed is not before and armed.learning == "drift" and before.learning is None
    assert armed.version > before.version
    c._control("cc", 21, 0.5, 0)               # the engine thread handles a CC while armed
    after = c.state
    assert after.learning is None and after.learned == Mapping("cc", 21, "drift")
    assert [m.number for m in after.bound_to("drift")] == [21]
    assert [m.number for m in armed.bound_to("drift")] == [71]     # the old snapshot is unchanged
    with pytest.raises(KeyError):                                   # a bad list changes nothing
        c.load_json([{"source": "cc", "number": 1, "param": "no_such_param"}])
    assert c.state is after


def test_view_requests_run_on_the_engine_thread(small_bundle):
    """The window's MIDI learn and mapping loads reach the controller as requests that the
    engine thread runs between steps; a bad mapping list is refused before it is sent."""
    import threading

    from core.bundle import load_bundle
    from realtime.engine import Engine
    from realtime.view import EngineView
    from tests.jackutil import wait_until

    engine = Engine(load_bundle(small_bundle), 22050, threads=1)
    view = EngineView(engine)
    ran_on = []
    engine.request(lambda e: ran_on.append(threading.current_thread().name))
    view.learn("morph")
    assert engine.controller.learning is None          # not yet: nothing ran it
    view.load_mappings([{"source": "cc", "number": 30, "param": "gain"}])
    with pytest.raises(KeyError):
        view.load_mappings([{"source": "cc", "number": 31, "param": "no_such_param"}])
    with pytest.raises(TypeError):
        view.load_mappings([{"source": "cc", "wrong_field": 1}])
    engine.request(lambda e: 1 / 0)                   # a failing request is reported, not fatal
    engine.start(prefill=False)
    try:
        assert wait_until(lambda: view.controller.learning == "morph" and len(view.controller.mappings) == 1, 5)
        assert ran_on == ["driftwave-engine"]
        assert [m.number for m in view.controller.bound_to("gain")] == [30]
        assert wait_until(lambda: any("ZeroDivisionError" in m for m in engine.errors), 5)
        assert engine._thread.is_alive()                              # and it plays on
    finally:
        engine.stop()


def test_status_extras_show_what_applies_and_nothing_else():
    from realtime.status import status_extras
    bare = {"tempo_source": "free", "tempo_bpm": None, "osc_address": None,
            "osc_messages_received": 0, "osc_messages_ignored": 0}
    assert status_extras(bare) == ""
    synced = dict(bare, tempo_source="midi_clock", tempo_bpm=None)
    assert status_extras(synced, " | ") == " | tempo ? BPM (midi_clock)"       # not estimated yet
    full = dict(bare, tempo_source="bpm", tempo_bpm=96.0, osc_address="127.0.0.1:9000",
                osc_messages_received=12, osc_messages_ignored=1)
    assert status_extras(full, " | ") == " | tempo 96.0 BPM (bpm) | OSC 127.0.0.1:9000 12 (1 ignored)"


def test_the_latency_words_say_while_the_ring_is_settling():
    from realtime.status import latency_words
    assert latency_words({"latency_mode": "normal", "ring_sized": False}) == "normal, settling"
    assert latency_words({"latency_mode": "low", "ring_sized": True}) == "low"
    assert latency_words({"latency_mode": "fixed", "ring_sized": True}) == "fixed"


def test_compile_choice_and_its_status_words(monkeypatch):
    """--compile auto compiles everywhere but on CUDA (which has CUDA graphs); the status line
    says which step runs, and headless play's first line why an asked-for compile did not."""
    from realtime.session import wants_compiled
    from realtime.status import step_status

    assert not wants_compiled("auto", torch.device("cpu"))       # DRIFTWAVE_COMPILE=off (conftest)
    monkeypatch.delenv("DRIFTWAVE_COMPILE")
    assert wants_compiled("auto", torch.device("cpu")) and not wants_compiled("auto", torch.device("cuda"))
    assert wants_compiled("on", torch.device("cuda")) and not wants_compiled("off", torch.device("cpu"))
    with pytest.raises(ValueError, match="auto, on or off"):
        wants_compiled("yes", torch.device("cpu"))
    assert step_status({"step_path": "compiled", "compile_s": 8.04}) == "compiled"
    assert step_status({"step_path": "compiled", "compile_s": 8.04}, full=True) == "compiled step, prepared in 8.0 s"
    missing = "eager (no C++ compiler ('g++' not found; Debian/Ubuntu: apt install g++))"
    assert step_status({"step_path": missing}) == "eager"
    assert step_status({"step_path": missing}, full=True) == missing + " step"
