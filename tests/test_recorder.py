"""Crash-safe recording: SIGKILL mid-recording, and a disk that fills up."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from realtime.recorder import Recorder

ROOT = Path(__file__).resolve().parent.parent


def test_recorder_writes_what_it_is_given(tmp_path):
    path = tmp_path / "r.wav"
    rec = Recorder(path, 48000)
    x = (np.sin(np.arange(48000) / 10) * 0.5).astype(np.float32)
    for i in range(0, len(x), 1000):
        rec.push(x[i:i + 1000])
    rec.stop()
    y, sr = sf.read(path, dtype="float32")
    assert sr == 48000 and rec.error is None
    np.testing.assert_array_equal(y, x)


def test_sigkill_during_headless_recording_leaves_a_valid_wav(jack_server, small_bundle, tmp_path):
    wav = tmp_path / "killed.wav"
    env = dict(os.environ, **jack_server.env)
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "play", "--headless", "--quiet",
                             "--bundle", str(small_bundle), "--record", str(wav)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()           # printed once sound and recording run
        assert "playing" in line, line
        n = 4.0
        time.sleep(n)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    info = sf.info(str(wav))
    assert info.samplerate == 48000
    assert info.duration >= n - 1.5, info.duration
    y, _ = sf.read(str(wav), dtype="float32")
    assert len(y) == info.frames and np.all(np.isfinite(y)) and np.abs(y).max() > 1e-3


def test_disk_full_stops_recording_with_a_message_and_a_valid_file(tmp_path):
    """RLIMIT_FSIZE makes writes past 300 kB fail as a full disk would (EFBIG)."""
    wav = tmp_path / "full.wav"
    script = textwrap.dedent(f"""
        import json, resource, signal, sys, time
        import numpy as np
        sys.path.insert(0, {str(ROOT)!r})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (300_000, 300_000))
        from realtime.recorder import Recorder
        rec = Recorder({str(wav)!r}, 48000, header_interval_s=0.05)
        for i in range(200):                       # 200 x 4800 floats = 3.8 MB, far past the limit
            rec.push(np.full(4800, 0.25, np.float32))
            time.sleep(0.005)
            if rec.error:
                break
        time.sleep(0.3)
        rec.stop()
        print(json.dumps({{"error": rec.error, "frames": rec.frames_written}}))
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["error"] and str(wav) in result["error"] and "stopped" in result["error"]
    info = sf.info(str(wav))                       # still a WAV that reads
    y, _ = sf.read(str(wav), dtype="float32")
    assert len(y) == info.frames > 0.5 * 48000     # what was written before the disk filled stays
    assert np.all(y == 0.25)


def test_unwritable_path_is_a_clear_error(tmp_path):
    import pytest
    with pytest.raises(OSError, match="cannot record to"):
        Recorder(tmp_path / "no" / "such" / "dir" / "x.wav", 48000)
