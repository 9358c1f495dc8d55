"""Dropouts in the first seconds after start: N starts in a row of ``main.py play --headless`` (or, with ``--gui``, the window), each counted by the engine's underruns and by the silent gaps in a JACK capture of its output.

Each start is a fresh child process, as a user starts it, with every setting at the product's
default (``--latency``, ``--mel-match``, ``--frames-per-step`` override them), on a JACK
server with the dummy driver (48 kHz, ``--period`` frames):

* headless: ``main.py play --headless --seconds S --stats-json F``; its stats give the
  underruns (device callbacks not filled from the ring) and PortAudio's xruns of the run.
* window: ``main.py gui --quit-after S`` with ``QT_QPA_PLATFORM=offscreen``. The window
  writes no stats, so the capture is what counts there.

The capture: a JACK client of this process (otherwise idle, so nothing holds its GIL)
connects to the child's output port as soon as it appears, before the sound starts, and
records it. An underrun plays digital silence (the device callback zeroes its buffer and
copies what the ring holds), so a dropout is a run of at least :data:`MIN_GAP` exact
zeros between two sounding samples, within the first S seconds after the first sound; the
drone that plays with no note held never holds exact zeros that long. A starvation
that spans several device blocks is one gap (its length is in ``silent_ms``); a block
short by fewer than :data:`MIN_GAP` frames is not seen. For the headless starts the two
counts check each other.

``--load`` starts a second process that keeps one core 100 % busy at normal priority for
the whole run (tests/jackutil.BusyCore), as benchmarks/soak.py does.

    python -m benchmarks.startup_underruns [--starts 10] [--seconds 10] [--gui] [--load] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import emit

ROOT = Path(__file__).resolve().parent.parent
RATE = 48000
MIN_GAP = 16            # frames of exact zeros that count as a dropout (0.33 ms at 48 kHz)


def silent_gaps(x: np.ndarray, min_len: int = MIN_GAP) -> list[tuple[int, int]]:
    """(start, length) of each run of at least ``min_len`` exact zeros in ``x`` (float
    ``[n]``) with a non-zero sample on both sides (leading and trailing silence: before
    the sound and after it ended, are not gaps)."""
    z = np.concatenate(([0], (np.asarray(x) == 0).astype(np.int8), [0]))
    d = np.diff(z)
    starts, ends = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
    return [(int(s), int(e - s)) for s, e in zip(starts, ends)
            if e - s >= min_len and s > 0 and e < len(x)]


def dropouts(audio: np.ndarray, seconds: float, rate: int) -> dict:
    """The gaps of ``audio`` (a capture from before the sound on) within ``seconds`` after
    its first non-zero sample."""
    sounding = np.flatnonzero(audio != 0)
    if not len(sounding):
        return {"first_sound_frame": None, "capture_gaps": None, "silent_ms": None, "gap_starts_s": []}
    first = int(sounding[0])
    tail = audio[first:]
    gaps = [(s, n) for s, n in silent_gaps(tail) if s < seconds * rate]
    return {"first_sound_frame": first, "analysed_s": round(min(len(tail) / rate, seconds), 3),
            "last_sound_s": round((int(sounding[-1]) - first) / rate, 3),
            "capture_gaps": len(gaps), "silent_ms": round(1e3 * sum(n for _, n in gaps) / rate, 2),
            "gap_starts_s": [round(s / rate, 3) for s, _ in gaps]}


def child_command(a, stats_path: str) -> list[str]:
    """The start command, with only the settings asked for."""
    main = [sys.executable, str(ROOT / "main.py")]
    if a.gui:
        cmd = main + ["gui", "--quit-after", str(a.seconds), "--bundle", a.bundle]
    else:
        cmd = main + ["play", "--headless", "--quiet", "--seconds", str(a.seconds), "--bundle", a.bundle,
                      "--stats-json", stats_path]
    for flag, value in (("--latency", a.latency), ("--mel-match", a.mel_match),
                        ("--frames-per-step", a.frames_per_step), ("--voices", a.voices)):
        if value is not None:
            cmd += [flag, str(value)]
    return cmd


def connect_new_output(cap, before: set[str], timeout: float, child) -> str | None:
    """Waits for an audio output port not in ``before`` (the child's) and connects the
    capture to it; None if the child exited or ``timeout`` passed first."""
    own = cap.client.name + ":"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None:
        ports = [p.name for p in cap.client.get_ports(is_audio=True, is_output=True)
                 if not p.name.startswith(("system:", own)) and p.name not in before]
        if ports:
            cap.client.connect(ports[0], cap.port)      # the first channel: all carry the mono
            return ports[0]
        time.sleep(0.005)
    return None


def one_start(a, i: int, server, cap, xruns, tmp: str) -> dict:
    import subprocess

    from tests.jackutil import graph_errors_by_client

    stats_path = os.path.join(tmp, f"stats{i}.json")
    err_path = os.path.join(tmp, f"stderr{i}.txt")
    env = dict(os.environ, DRIFTWAVE_CONFIG_DIR=tmp, **server.env)    # no saved mappings of the user
    if a.gui:
        env["QT_QPA_PLATFORM"] = "offscreen"
    before = {p.name for p in cap.client.get_ports(is_audio=True, is_output=True)}
    log0, xruns0 = server.log_size(), xruns.count
    t0 = time.monotonic()
    with open(err_path, "w") as err:
        child = subprocess.Popen(child_command(a, stats_path), cwd=ROOT, env=env,
                                 stdout=subprocess.DEVNULL, stderr=err)
    try:
        port = connect_new_output(cap, before, a.startup_timeout, child)
        n0 = cap.n
        t_connect = time.monotonic()
        code = child.wait(a.seconds + a.startup_timeout)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
    audio = cap.segment(n0, cap.n) if port else np.zeros(0, np.float32)
    row = {"start": i, "exit_code": code, "port": port, "launch_to_port_s": round(t_connect - t0, 2),
           "connected_after_sound": bool(len(audio) and audio[0] != 0),
           **dropouts(audio, a.seconds, cap.rate),
           "jack_xruns": xruns.count - xruns0,
           "jack_graph_errors_by_client": graph_errors_by_client(server.graph_errors(log0))}
    if row["first_sound_frame"] is not None:
        row["launch_to_sound_s"] = round(t_connect - t0 + row["first_sound_frame"] / cap.rate, 2)
    if not a.gui and os.path.exists(stats_path):
        with open(stats_path) as f:
            s = json.load(f)
        row.update(underruns=s["underruns"], xruns=s["xruns"], seconds_played=round(s["seconds_played"], 2),
                   priority=s["priority"], latency_mode=s["latency_mode"], note_to_sound_ms=s["note_to_sound_ms"],
                   rtf=round(s["rtf"], 3), step_ms_p99=round(s["step_ms_p99"], 2),
                   frames_per_step=s["frames_per_step"], step_choice=s.get("step_choice"),
                   gc_collections=s["gc_collections"], gc_pause_ms_max=round(s["gc_pause_ms_max"], 2))
    if code != 0:
        with open(err_path) as f:
            row["stderr_tail"] = f.read()[-1500:]
    return row


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="benchmarks.startup_underruns", description=__doc__.split("\n\n")[0])
    ap.add_argument("--starts", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=10.0, help="each start plays this long")
    ap.add_argument("--gui", action="store_true", help="the window (main.py gui) instead of play --headless")
    ap.add_argument("--load", action="store_true", help="one core kept busy by another process throughout")
    ap.add_argument("--bundle", default=str(ROOT / "models" / "default.dwb"))
    ap.add_argument("--period", type=int, default=512, choices=[512, 1024, 2048], help="JACK period, frames")
    ap.add_argument("--latency", default=None, choices=["low", "normal", "safe"], help="default: the product's")
    ap.add_argument("--mel-match", default=None, choices=["full", "low-latency", "zero-latency", "off"])
    ap.add_argument("--frames-per-step", type=int, default=None)
    ap.add_argument("--voices", type=int, default=None)
    ap.add_argument("--startup-timeout", type=float, default=120.0)
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the JSON here")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    from tests.jackutil import _terminate_portaudio, BusyCore, Capture, JackServer, XrunCounter

    load_before = os.getloadavg()
    load = BusyCore() if a.load else None
    server = cap = xruns = None
    rows = []
    tmp = tempfile.mkdtemp(prefix="dwstartup-")
    try:
        server = JackServer(rate=RATE, period=a.period)
        _terminate_portaudio()      # this process plays nothing: no idle PortAudio client in the graph
        xruns = XrunCounter(server)
        # holds a whole start from its port's appearance to its exit (load, run, shutdown)
        cap = Capture(server, seconds=a.seconds + a.startup_timeout + 30, name="startup-capture", ring=True)
        for i in range(a.starts):
            rows.append(one_start(a, i, server, cap, xruns, tmp))
            print(json.dumps({k: rows[-1].get(k) for k in ("start", "underruns", "capture_gaps", "silent_ms")}),
                  file=sys.stderr, flush=True)
    finally:
        if cap is not None:
            cap.close()
        if xruns is not None:
            xruns.close()
        load_report = load.stop() if load is not None else {"ran": False}
        if server is not None:
            server.stop()
    counts = [r.get("underruns") for r in rows]
    gaps = [r.get("capture_gaps") for r in rows]
    result = {
        "benchmark": "startup_underruns", "mode": "window" if a.gui else "headless",
        "command": " ".join(child_command(a, "STATS")[1:]), "starts": len(rows), "seconds_each": a.seconds,
        "jack_period": a.period, "jack_rate": RATE,
        "underruns_per_start": counts if not a.gui else None,
        "capture_gaps_per_start": gaps,
        "starts_with_dropouts": sum(1 for r in rows if (r.get("underruns") or 0) > 0 or (r.get("capture_gaps") or 0) > 0
                                    or r.get("capture_gaps") is None),
        "failed_starts": sum(1 for r in rows if r["exit_code"] != 0),
        "load": load_report, "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "gap_rule": f"a run of >= {MIN_GAP} exact zeros between sounding samples, within "
                    f"{a.seconds:g} s after the first sound",
        "per_start": rows,
    }
    emit(result, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
