"""The latency, soak and startup benchmarks' parts that need no JACK server: the onset and
gap detectors on synthetic signals with known frames, the option parsers (the product's
defaults unless an option names a setting), the busy-core load, and ``main.py bench``'s list."""
import os

import numpy as np
import pytest

from benchmarks import midi_latency, soak, startup_underruns
from benchmarks.midi_latency import sound_onset
from benchmarks.startup_underruns import MIN_GAP, dropouts, silent_gaps

RATE = 48000


def tone(n: int, freq: float, amp: float, phase: float = np.pi / 2) -> np.ndarray:
    t = np.arange(n) / RATE
    return (amp * np.sin(2 * np.pi * freq * t + phase)).astype(np.float32)


@pytest.mark.parametrize("k", [0, 1, 37, 2400])
def test_onset_of_a_tone_from_digital_silence_with_ripple(k):
    """Silence with numerical ripple (1e-7) before the note: the -40 dB re peak rule ignores
    the ripple; a tone starting at its crest at frame k is found at k."""
    rng = np.random.default_rng(k)
    pre = np.zeros(RATE // 10, np.float32)
    post = (1e-7 * rng.standard_normal(RATE // 2)).astype(np.float32)
    post[k:] += tone(len(post) - k, 220.0, 0.3)
    assert abs(sound_onset(pre, post) - k) <= 1


def test_onset_above_a_loud_floor_uses_ten_times_its_rms():
    """A floor of RMS 0.01 (a previous note's tail): the threshold is 10x that (0.1), above
    every floor sample; a 0.5 tone starting at its crest at frame 1000 is found there."""
    rng = np.random.default_rng(1)
    floor = 0.01
    pre = (floor * rng.standard_normal(RATE // 10)).astype(np.float32)
    post = (floor * rng.standard_normal(RATE // 2)).astype(np.float32)
    post[1000:] += tone(len(post) - 1000, 330.0, 0.5)
    assert abs(sound_onset(pre, post) - 1000) <= 1


def test_onset_of_a_ramped_attack_is_never_early_and_late_by_under_a_cycle():
    """A 1 kHz tone (48 samples a cycle) with a 10 ms linear attack from frame 500: -40 dB of
    the peak is reached 4.8 samples in; the detector lands within one cycle after 500."""
    post = np.zeros(RATE // 2, np.float32)
    n = len(post) - 500
    ramp = np.minimum(np.arange(n) / (0.01 * RATE), 1.0).astype(np.float32)
    post[500:] = tone(n, 1000.0, 0.8, phase=0.0) * ramp
    k = sound_onset(np.zeros(4800, np.float32), post)
    assert 500 <= k <= 500 + 48


def test_no_onset_when_the_note_does_not_rise_above_the_floor():
    rng = np.random.default_rng(2)
    pre = (0.1 * rng.standard_normal(4800)).astype(np.float32)
    post = (0.1 * rng.standard_normal(24000)).astype(np.float32)      # the same level: no note
    assert sound_onset(pre, post) is None
    assert sound_onset(np.zeros(10, np.float32), np.zeros(100, np.float32)) is None


def test_silent_gaps_are_bounded_zero_runs_of_at_least_min_gap():
    x = tone(10000, 200.0, 0.5, phase=0.3)
    x[:300] = 0                          # before the sound: not a gap
    x[2000:2100] = 0                     # a dropout of 100 frames
    x[5000:5000 + MIN_GAP - 1] = 0       # too short to count
    x[9000:] = 0                         # after the sound: not a gap
    assert silent_gaps(x) == [(2000, 100)]
    d = dropouts(x, seconds=1.0, rate=RATE)
    assert d["first_sound_frame"] == 300 and d["capture_gaps"] == 1
    assert d["last_sound_s"] == round((8999 - 300) / RATE, 3)      # where the sound stopped
    assert d["gap_starts_s"] == [round(1700 / RATE, 3)]
    assert d["silent_ms"] == round(1e3 * 100 / RATE, 2)
    # only the first `seconds` after the first sound count
    assert dropouts(x, seconds=1500 / RATE, rate=RATE)["capture_gaps"] == 0
    assert dropouts(np.zeros(100, np.float32), 1.0, RATE)["capture_gaps"] is None


def test_the_benchmarks_pass_only_the_settings_asked_for():
    a = midi_latency.parse_args([])
    assert a.period == 512 and a.probes == 15 and not a.load
    cmd = midi_latency.play_command(a, "keys", "s.json")
    assert cmd[2:4] == ["play", "--headless"] and "--midi-virtual" in cmd
    assert not {"--latency", "--mel-match", "--frames-per-step", "--voices"} & set(cmd)
    cmd = midi_latency.play_command(midi_latency.parse_args(["--latency", "low", "--period", "1024"]), "k", "s")
    assert cmd[cmd.index("--latency") + 1] == "low"

    assert soak.engine_settings(soak.parse_args([])) == {}
    given = soak.engine_settings(soak.parse_args(["--latency", "safe", "--voices", "2", "--load"]))
    assert given == {"latency": "safe", "voices": 2}

    head = startup_underruns.child_command(startup_underruns.parse_args(["--seconds", "3"]), "s.json")
    assert head[2:6] == ["play", "--headless", "--quiet", "--seconds"] and "--stats-json" in head
    gui = startup_underruns.child_command(startup_underruns.parse_args(["--gui"]), "s.json")
    assert gui[2:4] == ["gui", "--quit-after"] and "--stats-json" not in gui


def test_busy_core_runs_until_stopped_and_is_gone_after():
    from tests.jackutil import BusyCore

    with BusyCore() as load:
        proc = load.proc
        assert proc.poll() is None
    report = load.stop()
    assert proc.poll() is not None
    # normal priority: nice 0, or at worst this process's own where it may not go lower
    assert report["ran"] and 0 <= report["nice"] <= max(0, os.getpriority(os.PRIO_PROCESS, 0))
    assert report["cpu_seconds"] is not None


def test_main_bench_lists_each_benchmark_by_its_first_sentence():
    from main import benchmarks

    listed = benchmarks()
    for name in ("midi_latency", "soak", "startup_underruns"):
        assert listed[name].endswith(".") and len(listed[name]) > 40, listed[name]


def test_thread_clocks_find_a_stall_and_who_ran_in_it():
    """A counter that steps every 5 ms, then stops for 0.3 s while another thread spins in C
    (numpy, the GIL released) and then steps again: the sampler finds one stall of 0.3 s
    (within two of its 20 ms samples), the stepping thread neither ran nor waited in it
    (asleep), and the spinning thread ran in it (at least a fifth of it: the machine may be
    busy)."""
    import threading
    import time

    from benchmarks.thread_clocks import ThreadClocks, thread_names

    steps = [0]
    stop_spin = threading.Event()

    def stepper():
        for phase in ("before", "stall", "after"):
            if phase == "stall":
                spin_thread.start()
                time.sleep(0.3)
                stop_spin.set()
                continue
            t_end = time.monotonic() + 0.2
            while time.monotonic() < t_end:
                steps[0] += 1
                time.sleep(0.005)

    def spin():
        a = np.ones((200, 200))
        while not stop_spin.is_set():
            a @ a

    step_thread = threading.Thread(target=stepper, name="test-stepper")
    spin_thread = threading.Thread(target=spin, name="test-spinner")
    clocks = ThreadClocks(lambda: steps[0]).start()
    step_thread.start()
    step_thread.join()
    spin_thread.join()
    clocks.stop()
    stalls = clocks.stalls(min_s=0.1)
    assert len(stalls) == 1
    names = thread_names()
    names[step_thread.native_id], names[spin_thread.native_id] = "test-stepper", "test-spinner"
    r = clocks.report(*stalls[0], names, clocks.samples[0][0], top=1000)
    assert abs(r["ms"] - 300) <= 45 and r["engine_steps"] == 0
    rows = {n: (run, wait) for n, run, wait in r["threads_run_wait_ms"]}
    assert rows["test-spinner"][0] >= 0.2 * r["ms"]
    assert sum(rows.get("test-stepper", (0.0, 0.0))) <= 5.0
