"""``main.py play --headless``, ``main.py devices`` and ``main.py bench`` as a user runs them."""
import json
import os
import subprocess
import sys
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parent.parent
STATS_KEYS = {"seconds_played", "model_rate", "device_rate", "underruns", "step_ms_mean", "step_ms_p99",
              "rtf", "latency_ms", "midi_messages_received", "midi_messages_ignored", "nan_events", "params"}


def main_py(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, env=env, timeout=timeout)


def test_play_headless_for_seconds_writes_stats_and_recording(jack_server, small_bundle, tmp_path):
    env = dict(os.environ, **jack_server.env)
    stats_path, wav = tmp_path / "stats.json", tmp_path / "rec.wav"
    r = main_py("play", "--headless", "--seconds", 3, "--bundle", small_bundle, "--stats-json", stats_path,
                "--record", wav, "--seed", 3, "--quiet", env=env)
    assert r.returncode == 0, r.stderr
    stats = json.loads(stats_path.read_text())
    assert STATS_KEYS <= set(stats)
    assert 2.8 < stats["seconds_played"] < 4.0
    assert stats["model_rate"] == 22050 and stats["device_rate"] == 48000
    assert stats["nan_events"] == 0 and stats["rtf"] > 0 and stats["step_ms_p99"] >= stats["step_ms_mean"] * 0.5
    assert stats["params"]["seed_a"] == 3 and "morph" in stats["params"]
    assert stats["latency_ms"] > 64.6            # at least the vocoder's look-ahead
    # the startup heap (torch and the models: far more than 10,000 objects) was frozen before
    # the sound, and every collection since is counted and timed
    assert stats["gc_frozen_objects"] > 10000
    assert stats["gc_collections"] >= stats["gc_pauses_over_20ms"] >= 0 and stats["gc_pause_ms_max"] >= 0
    assert 2.5 < sf.info(str(wav)).duration < 4.0


def test_play_without_any_audio_device_says_so_and_lists_devices(small_bundle):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JACK")}
    env["JACK_NO_START_SERVER"] = "1"
    env["JACK_DEFAULT_SERVER"] = "no-such-server"
    r = main_py("play", "--headless", "--seconds", 1, "--bundle", small_bundle, env=env)
    assert r.returncode == 1
    assert "no usable audio output device" in r.stderr and "render" in r.stderr
    assert "Traceback" not in r.stderr


def test_devices_lists_the_jack_device(jack_server):
    r = main_py("devices", env=dict(os.environ, **jack_server.env))
    assert r.returncode == 0 and "JACK" in r.stdout


def test_bench_lists_runs_and_refuses_benchmarks_by_name(small_bundle):
    r = main_py("bench")
    assert r.returncode == 0
    names = [line.split()[0] for line in r.stdout.splitlines() if line and not line.startswith("main.py")]
    assert names == sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem != "__init__")
    r = main_py("bench", "no_such_bench")
    assert r.returncode == 2 and "no benchmark 'no_such_bench'" in r.stderr and "noise_floor" in r.stderr
    r = main_py("bench", "voices", "--no-such-option")          # the benchmark's own usage error
    assert r.returncode == 2 and "main.py bench voices" in r.stderr and "unrecognized" in r.stderr
    r = main_py("bench", "noise_floor", "--clips", 1, "--bundle", small_bundle, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["benchmark"] == "noise_floor" and out["clips_per_process"] == 1
    assert set(out["white"]) == {"independent", "griffin_lim", "vocoder"}


def test_render_to_an_unwritable_path_says_so_in_one_line(small_bundle, tmp_path):
    """Before the render starts: no traceback, the path named, exit 1, no time lost."""
    for out, why in ((tmp_path / "no" / "such" / "folder" / "x.wav", "no folder"),
                     (tmp_path, "it is a folder")):
        r = main_py("render", out, "--seconds", 1, "--bundle", small_bundle)
        assert r.returncode == 1
        assert r.stderr.strip().splitlines() == [f"error: cannot write '{out}': {why}" + (
            f" '{out.parent.resolve()}'" if why == "no folder" else "")]
    wav = tmp_path / "in.wav"
    sf.write(str(wav), [0.0] * 22050, 22050)
    r = main_py("resynth", wav, tmp_path / "missing" / "y.wav", "--bundle", small_bundle)
    assert r.returncode == 1 and "cannot write" in r.stderr and "Traceback" not in r.stderr


def test_play_names_its_osc_address_and_warns_of_a_plugin_that_does_not_load_and_a_flag_without_input(jack_server, small_bundle, tmp_path):
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:     # a port free just now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, **jack_server.env)
    stats_path = tmp_path / "stats.json"
    r = main_py("play", "--headless", "--seconds", 1.5, "--bundle", small_bundle, "--osc", port,
                "--plugin", tmp_path / "missing.vst3", "--pitch-follow", "--stats-json", stats_path, env=env)
    assert r.returncode == 0, r.stderr
    assert f"OSC on 127.0.0.1:{port}" in r.stderr
    warnings = [line for line in r.stderr.splitlines() if "missing.vst3" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: "), r.stderr
    assert "warning: --pitch-follow without --input" in r.stderr         # a flag with nothing to act on
    stats = json.loads(stats_path.read_text())
    assert stats["seconds_played"] > 1.0 and stats["params"]["fx_plugin_bypass"] == 1.0   # nothing switched in
    assert stats["osc_address"] == f"127.0.0.1:{port}"
