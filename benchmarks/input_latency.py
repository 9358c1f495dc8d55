"""Live-input-to-output latency of ``main.py play --headless --input --pitch-follow``, in frames of the JACK clock (tone bursts played into driftwave's input port and its output captured in one JACK process callback).

The product runs as a user runs it: a child process ``main.py play --headless --input 0
--pitch-follow --bundle B`` (token mode "input" and pitch following; every other setting at
its default) on a JACK server with the dummy driver (48 kHz, ``--period`` frames).

One JACK client of this process (:class:`BurstProbe`) has an audio output connected to
driftwave's input port and an audio input connected to driftwave's output. Its process
callback starts each burst (a harmonic tone, ``--burst`` seconds) at a chosen offset within
the cycle and records its audio input, both by frame number of one clock; nothing is timed
with Python's clocks. The offsets step through the period so that the bursts meet the
engine's steps at every phase.

The response: the bursts alternate between 220 Hz and 329.6 Hz (MIDI 57 and 64), silence
between them, so the output drones at the last burst's pitch (pitch following holds it while
the input is unvoiced) until the next burst moves it a fifth. The onset
(:func:`pitch_response_onset`) is the end of the first of :data:`RUN` consecutive YIN windows
(:data:`WINDOW` samples, lags up to half of it, one every :data:`STEP` samples) of the output
that read the new pitch within :data:`CENTS` cents. A window's end is causal (the onset is
never early); YIN reads the new pitch once it fills about half the window, so the figure is
late by at most a window. (The level of the default bundle's output is no response to go by:
it plays the tokens of silence about as loud as those of the tone.) The figure ends where
driftwave's output enters JACK's graph; the engine's own account (``input_to_output_ms`` and
its parts: input device block, analysis, jitter queue, then the output side of
note-to-sound) is reported beside it.

    python -m benchmarks.input_latency [--probes 12] [--period 512] [--json PATH]
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import emit
from benchmarks.midi_latency import JackProbe, start_play, stop_play, summary, teardown
from core.pitch import yin_of_frames

PITCHES_HZ = (220.0, 329.63)    # MIDI 57 and 64, alternating
WINDOW, STEP, RUN, CENTS = 512, 48, 3, 50.0

ROOT = Path(__file__).resolve().parent.parent
RATE = 48000


def pitch_response_onset(post: np.ndarray, f0: float, rate: int = RATE) -> int | None:
    """Samples from ``post[0]`` (the burst's first frame) to the end of the first of
    :data:`RUN` consecutive YIN windows of ``post`` that read ``f0`` within :data:`CENTS`;
    None if none does."""
    post = np.asarray(post, np.float64)
    if len(post) < WINDOW + RUN * STEP:
        return None
    frames = np.lib.stride_tricks.sliding_window_view(post, WINDOW)[::STEP]
    hz, voiced = yin_of_frames(frames, rate, fmin=150.0, fmax=1000.0, threshold=0.3)
    with np.errstate(invalid="ignore"):
        hit = voiced & (np.abs(1200 * np.log2(hz / f0)) < CENTS)
    runs = np.convolve(hit.astype(int), np.ones(RUN, int), "valid") == RUN
    return int(np.argmax(runs)) * STEP + WINDOW if runs.any() else None


def burst(seconds: float, f0: float = 220.0, rate: int = RATE) -> np.ndarray:
    """A harmonic tone (4 partials, -6 dBFS peak about), 5 ms raised-cosine fade-in and out."""
    t = np.arange(int(seconds * rate)) / rate
    x = sum(0.5 / k * np.sin(2 * np.pi * k * f0 * t) for k in range(1, 5)) / 1.1
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.005)
    return (x * 0.5 * (1 - np.cos(np.pi * fade))).astype(np.float32)


class BurstProbe(JackProbe):
    """A JACK client with an audio output (``out``) and input (``in``); one process callback
    starts queued bursts at chosen frames and records the input, by the server's frame clock."""

    def __init__(self, server, seconds: float, name: str = "input-probe"):
        super().__init__(server, seconds, name)
        self.out = self.client.outports.register("out")
        self._queue: collections.deque = collections.deque()   # (signal, offset), this thread appends
        self._playing: tuple[np.ndarray, int] | None = None     # (signal, next index)
        self.started: list[int] = []                            # buf index of each burst's first frame
        self._activate()

    def _process(self, frames: int) -> None:
        start = self.client.last_frame_time
        i = self._record_cycle(start, frames)
        out = self.out.get_array()
        out[:] = 0.0
        if self._playing is None and self._queue:
            sig, offset = self._queue.popleft()
            offset = min(int(offset), frames - 1)
            self._playing = (sig, -offset)
            self.started.append(i + offset)
        if self._playing is not None:
            sig, pos = self._playing
            lo = max(0, -pos)
            k = min(frames - lo, len(sig) - max(pos, 0))
            out[lo:lo + k] = sig[max(pos, 0):max(pos, 0) + k]
            pos += frames
            self._playing = None if pos >= len(sig) else (sig, pos)

    def play(self, sig: np.ndarray, offset: int, timeout: float = 5.0) -> int:
        """Queues ``sig`` to start ``offset`` frames into the next free cycle; returns its
        first frame's index in :attr:`buf` once started."""
        k = len(self.started)
        self._queue.append((sig, offset))
        deadline = time.monotonic() + timeout
        while len(self.started) <= k:
            if time.monotonic() > deadline:
                raise RuntimeError("the JACK process callback did not run")
            time.sleep(0.001)
        return self.started[k]


def connect(probe: BurstProbe, timeout: float) -> tuple[str, str]:
    """Waits for driftwave's output and input ports; connects them to the probe."""
    own = probe.client.name + ":"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outs = [p.name for p in probe.client.get_ports(is_audio=True, is_output=True)
                if not p.name.startswith(("system:", own))]
        ins = [p.name for p in probe.client.get_ports(is_audio=True, is_input=True)
               if not p.name.startswith(("system:", own))]
        if outs and ins:
            probe.client.connect(outs[0], probe.audio)
            probe.client.connect(probe.out, ins[0])
            return outs[0], ins[0]
        time.sleep(0.05)
    raise RuntimeError("driftwave's audio output and input did not appear in JACK")


def play_command(a, stats_path: str) -> list[str]:
    return [sys.executable, str(ROOT / "main.py"), "play", "--headless", "--quiet", "--bundle", a.bundle,
            "--input", "0", "--pitch-follow", "--stats-json", stats_path]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="benchmarks.input_latency", description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default=str(ROOT / "models" / "default.dwb"))
    ap.add_argument("--probes", type=int, default=12)
    ap.add_argument("--period", type=int, default=512, choices=[256, 512, 1024, 2048])
    ap.add_argument("--burst", type=float, default=0.4, help="seconds each burst lasts")
    ap.add_argument("--gap", type=float, default=1.0, help="seconds of silence after each burst")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--startup-timeout", type=float, default=120.0)
    ap.add_argument("--json", default=None, metavar="PATH")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    from tests.jackutil import _terminate_portaudio, JackServer

    server = child = probe = None
    tmp = tempfile.mkdtemp(prefix="dwinlatency-")
    stats_path, stderr_path = os.path.join(tmp, "stats.json"), os.path.join(tmp, "stderr.txt")
    load_before = os.getloadavg()
    try:
        server = JackServer(rate=RATE, period=a.period)
        _terminate_portaudio()
        child = start_play(play_command(a, stats_path), server, tmp, stderr_path)
        probe = BurstProbe(server, a.warmup + 4 + a.probes * (a.burst + a.gap + 0.5))
        ports = connect(probe, a.startup_timeout)
        time.sleep(a.warmup)
        bursts = [burst(a.burst, f0) for f0 in PITCHES_HZ]
        probe.wait_for(probe.play(bursts[1], 0) + len(bursts[1]))       # the pitch the first probe leaves
        time.sleep(a.gap)
        probes = []
        for i in range(a.probes):
            offset = (i * probe.period * 5 // max(a.probes, 1) + i) % probe.period
            sig, f0 = bursts[i % 2], PITCHES_HZ[i % 2]
            frame = probe.play(sig, offset)
            end = frame + len(sig)
            probe.wait_for(end)
            k = pitch_response_onset(probe.buf[frame:end], f0)
            hole = k is not None and any(h0 <= frame + k and h1 >= frame for h0, h1 in probe.holes)
            probes.append({"f0_hz": f0, "offset_in_cycle": offset, "onset_frames": k,
                           "capture_hole_before_onset": hole,
                           "latency_ms": None if k is None else round(1e3 * k / RATE, 3)})
            time.sleep(a.gap)
        s = stop_play(child, stats_path, stderr_path)
    finally:
        teardown(child, server, probe)
    lat = [p["latency_ms"] for p in probes if p["latency_ms"] is not None]
    result = {
        "benchmark": "input_latency", "method": "frame-accurate: burst and capture in one JACK process callback",
        "command": " ".join(play_command(a, "STATS")[1:]), "jack_period": a.period, "jack_rate": RATE,
        "model": s["model"], "voices": s["voices"], "latency_mode": s["latency_mode"], "mel_match": s["mel_match"],
        "frames_per_step": s["frames_per_step"], "priority": s["priority"],
        "detector": f"end of the first {RUN} consecutive YIN windows ({WINDOW} samples, every {STEP}) "
                    f"of the output within {CENTS:g} cents of the burst's pitch",
        "probes": len(probes), "probes_with_onset": len(lat), "latency_ms": summary(lat),
        "engine_input_to_output_ms": s.get("input_to_output_ms"),
        "engine_input_latency_parts_ms": s.get("input_latency_parts_ms"),
        "engine_note_to_sound_ms": s["note_to_sound_ms"], "engine_latency_parts_ms": s["latency_parts_ms"],
        "underruns": s["underruns"], "input_overruns": s.get("input_overruns"),
        "input_starved_frames": s.get("input_starved_frames"), "input_dropped_frames": s.get("input_dropped_frames"),
        "step_ms_p50": s["step_ms_p50"], "step_ms_p99": s["step_ms_p99"], "errors": s["errors"],
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "connected": {"output": ports[0], "input": ports[1]},
        "probes_with_capture_hole_before_onset": sum(p["capture_hole_before_onset"] for p in probes),
        "per_probe": probes,
    }
    emit(result, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
