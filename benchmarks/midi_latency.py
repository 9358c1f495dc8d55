"""MIDI note-on to first sound of ``main.py play --headless --midi-virtual``, in frames of the JACK clock (notes sent and the output captured in one JACK process callback).

The product runs as a user runs it: a child process ``main.py play --headless --midi-api jack
--midi-virtual NAME --bundle B`` with every other setting at its default (4 voices, the
default latency mode, mel matching and step), on a JACK server with the dummy driver
(48 kHz, ``--period`` frames). ``--latency``, ``--mel-match``, ``--frames-per-step`` and
``--voices`` override the defaults when given.

One JACK client of this process (:class:`KeyProbe`) has a MIDI output port connected to
driftwave's virtual input and an audio input port connected to driftwave's output. Its
process callback writes each note-on at a chosen offset within the cycle (frame
``last_frame_time + offset``) and records its audio input at frame ``last_frame_time``, so
the latency is a difference of two frame numbers of one clock; nothing is timed with
Python's sleeps or clocks. The offsets step through the period so that the notes meet the
engine's steps at every phase.

The sound's onset (:func:`sound_onset`): the first captured sample after the note-on frame
whose magnitude exceeds the larger of two thresholds, 10x the RMS of the 100 ms before the
note (20 dB above whatever was there: a Gaussian noise floor exceeds 10 sigma with
probability 1e-23, so the floor never triggers it) and -40 dB of the note's own peak (with
digital silence before the note, the first numerical ripple of the resampler or model is
not yet sound; at -40 dB the attack is under way). A sample magnitude is causal: the
onset is never early, and late by at most a fraction of a cycle of the note's waveform
(an envelope such as the Hilbert transform's would spread the onset earlier). The
recording is indexed by frame number, so a cycle the probe's own callback missed leaves a
hole, never a shift; a probe whose onset follows such a hole is flagged
(``capture_hole_before_onset``: its onset may be late by the hole).

Between probes the note is released (the release set short by CC 76, driftwave's default
release knob) and the benchmark waits for the output to fall silent (-50 dB of the note's
peak, no sooner than 0.3 s after the note-off, at most 3 s more), so that each note starts
from silence; the first note, before the probes, switches the gate on (until then voice 0
drones).

What JACK's driver adds after the graph (``system:playback_1``'s playback latency, which the
dummy driver reports as 2 periods) is reported beside the measured figure: the measured
figure ends where driftwave's output enters JACK's graph, which is also what a DAW
recording driftwave receives.

    python -m benchmarks.midi_latency [--probes 15] [--period 512] [--json PATH] [--load]
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import emit

ROOT = Path(__file__).resolve().parent.parent
RATE = 48000
RELEASE_CC = (76, 11)           # CC 76 (release, exp curve over 0.01..5 s) = 11: about 50 ms
PRE_NOTE_S = 0.1                # the level before a note: RMS of this long before its frame
RMS_FACTOR = 10.0               # onset threshold: this many times the pre-note RMS ...
PEAK_DB = -40.0                 # ... and at least this far below the note's peak (dB)
QUIET_DB = -50.0                # between probes: wait until the output is this far below the peak
SETTLE_S = 0.3                  # ... and at least this long after the note-off (latency + release)


def sound_onset(pre: np.ndarray, post: np.ndarray, rms_factor: float = RMS_FACTOR,
                peak_db: float = PEAK_DB) -> int | None:
    """Index in ``post`` (float ``[n]``, the samples from the note-on frame on) of the first
    sample whose magnitude exceeds ``max(rms_factor * rms(pre), peak * 10**(peak_db/20))``
    (``pre``: the samples just before the note; ``peak``: ``max |post|``); None when the
    note's peak does not rise above ``rms_factor`` times the level before it."""
    post = np.abs(np.asarray(post, dtype=np.float64))
    if not len(post):
        return None
    pre = np.asarray(pre, dtype=np.float64)
    floor = rms_factor * (float(np.sqrt(np.mean(pre * pre))) if len(pre) else 0.0)
    peak = float(post.max())
    if peak <= floor or peak == 0.0:
        return None
    threshold = max(floor, peak * 10.0 ** (peak_db / 20.0))
    return int(np.argmax(post > threshold))


class JackProbe:
    """A JACK client of this process with an audio input (``in``) that its process callback
    records into :attr:`buf`, in frames of the server's clock (``last_frame_time``), while
    :attr:`recording`. A subclass registers its own outputs, then calls :meth:`_activate`;
    its callback calls :meth:`_record_cycle` once a cycle."""

    def __init__(self, server, seconds: float, name: str, recording: bool = True):
        import jack
        self.client = jack.Client(name, servername=server.name, no_start_server=True)
        self.rate = self.client.samplerate
        self.period = self.client.blocksize
        self.audio = self.client.inports.register("in")
        self.buf = np.zeros(int(seconds * self.rate), np.float32)
        self.first_frame: int | None = None     # JACK frame of buf[0]
        self.n = 0                              # frames recorded into buf
        self.skipped_cycles = 0                 # cycles whose first frame did not follow the last
        self.holes: list[tuple[int, int]] = []  # [start, stop) of buf those cycles left unrecorded
        self.overflow = False
        self.recording = recording

    def _activate(self) -> None:
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames: int) -> None:
        raise NotImplementedError

    def _record_cycle(self, start: int, frames: int) -> int:
        """Records this cycle's input (cycle start ``start``, a JACK frame); returns the
        cycle's index in :attr:`buf` (-1 while not recording)."""
        if not self.recording:
            return -1
        if self.first_frame is None:
            self.first_frame = start
        i = (start - self.first_frame) & 0xFFFFFFFF        # jack_nframes_t wraps at 2**32
        if i != self.n:
            self.skipped_cycles += 1
            self.holes.append((self.n, i))
        if i + frames > len(self.buf):
            self.overflow = True
            return i
        self.buf[i:i + frames] = self.audio.get_array()
        self.n = i + frames
        return i

    def segment(self, start: int, stop: int) -> np.ndarray:
        return self.buf[max(0, start):max(0, min(stop, self.n))]

    def wait_for(self, frame: int, timeout: float = 10.0) -> None:
        """Until the recording reaches ``frame``."""
        deadline = time.monotonic() + timeout
        while self.n < frame and time.monotonic() < deadline:
            time.sleep(0.005)

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


class KeyProbe(JackProbe):
    """A JACK client with a MIDI output (``keys``) and an audio input (``in``); one process
    callback writes queued MIDI messages at chosen frames and records the input, both in
    frames of the server's clock (``last_frame_time``). Recording starts at :meth:`record`."""

    def __init__(self, server, seconds: float, name: str = "latency-probe"):
        super().__init__(server, seconds, name, recording=False)
        self.midi = self.client.midi_outports.register("keys")
        self._out: collections.deque = collections.deque()    # (bytes, offset), this thread appends
        self.sent: list[tuple[int, bytes]] = []               # (JACK frame, message), the callback appends
        self._activate()

    def _process(self, frames: int) -> None:
        self.midi.clear_buffer()
        start = self.client.last_frame_time
        if self._out:
            msg, offset = self._out.popleft()
            offset = min(int(offset), frames - 1)
            self.midi.write_midi_event(offset, msg)
            self.sent.append((start + offset, msg))
        self._record_cycle(start, frames)

    def record(self) -> None:
        self.recording = True

    def send(self, msg: list[int], offset: int = 0, timeout: float = 5.0) -> int:
        """Queues ``msg`` for the next cycle at ``offset`` frames into it; returns its frame
        index in :attr:`buf` once the callback has written it (it must be recording)."""
        k = len(self.sent)
        self._out.append((bytes(msg), offset))
        deadline = time.monotonic() + timeout
        while len(self.sent) <= k:
            if time.monotonic() > deadline:
                raise RuntimeError("the JACK process callback did not run")
            time.sleep(0.001)
        frame = self.sent[k][0]
        return (frame - self.first_frame) & 0xFFFFFFFF if self.first_frame is not None else -1


def connect_to_program(probe: KeyProbe, midi_port_name: str, timeout: float) -> tuple[str, str]:
    """Waits for driftwave's audio output and its virtual MIDI input (``…:midi_port_name``),
    connects them to the probe; returns (audio port, MIDI port)."""
    own = probe.client.name + ":"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        audio = [p.name for p in probe.client.get_ports(is_audio=True, is_output=True)
                 if not p.name.startswith(("system:", own))]
        midi = [p.name for p in probe.client.get_ports(is_midi=True, is_input=True)
                if p.name.endswith(":" + midi_port_name) and not p.name.startswith(own)]
        if audio and midi:
            probe.client.connect(audio[0], probe.audio)      # the first channel: all carry the mono
            probe.client.connect(probe.midi, midi[0])
            return audio[0], midi[0]
        time.sleep(0.05)
    raise RuntimeError("driftwave's audio output and MIDI input did not appear in JACK")


def play_command(a, midi_port_name: str, stats_path: str) -> list[str]:
    """``main.py play --headless`` with the MIDI port, and only the settings asked for."""
    cmd = [sys.executable, str(ROOT / "main.py"), "play", "--headless", "--quiet", "--bundle", a.bundle,
           "--midi-api", "jack", "--midi-virtual", midi_port_name, "--stats-json", stats_path]
    for flag, value in (("--latency", a.latency), ("--mel-match", a.mel_match),
                        ("--frames-per-step", a.frames_per_step), ("--voices", a.voices),
                        ("--compile", a.compile)):
        if value is not None:
            cmd += [flag, str(value)]
    return cmd


def wait_quiet(probe: KeyProbe, peak: float, after: int, timeout: float = 3.0) -> bool:
    """Until the recording has passed frame ``after`` (a note-off plus more than its latency
    and release: before that a quiet moment is not the end of the note) and its last 50 ms
    are :data:`QUIET_DB` below ``peak``; False on timeout."""
    probe.wait_for(after)
    limit = peak * 10.0 ** (QUIET_DB / 20.0)
    deadline = time.monotonic() + timeout
    window = probe.rate // 20
    while time.monotonic() < deadline:
        seg = probe.segment(probe.n - window, probe.n)
        if len(seg) == window and float(np.max(np.abs(seg))) <= limit:
            return True
        time.sleep(0.05)
    return False


def start_play(cmd: list[str], server, config_dir: str, stderr_path: str) -> subprocess.Popen:
    """Starts ``cmd`` (a ``main.py play --headless`` command line) on JACK server ``server``,
    with ``config_dir`` as its config folder (no saved mappings of the user) and its stderr
    written to ``stderr_path``."""
    env = dict(os.environ, DRIFTWAVE_CONFIG_DIR=config_dir, **server.env)
    with open(stderr_path, "w") as err:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)


def stop_play(child: subprocess.Popen, stats_path: str, stderr_path: str) -> dict:
    """Stops a ``main.py play --headless --stats-json`` child with SIGTERM (it stops cleanly
    and writes its stats) and returns those stats; RuntimeError with the tail of its stderr
    when it exits otherwise."""
    child.send_signal(signal.SIGTERM)
    code = child.wait(60)
    if code != 0 or not os.path.exists(stats_path):
        raise RuntimeError(f"main.py play exited {code}: {open(stderr_path).read()[-2000:]}")
    with open(stats_path) as f:
        return json.load(f)


def teardown(child: subprocess.Popen | None, server, *clients) -> None:
    """After a probe run, passed or failed: kills ``child`` if it still runs, closes
    ``clients`` (this process's JACK clients: probes, xrun counters), then stops ``server``;
    None stands for a part that never started."""
    if child is not None and child.poll() is None:
        child.kill()
    for client in clients:
        if client is not None:
            client.close()
    if server is not None:
        server.stop()


def summary(values_ms: list[float]) -> dict:
    if not values_ms:
        return {"median": None, "min": None, "max": None}
    v = np.asarray(values_ms)
    return {"median": round(float(np.median(v)), 2), "min": round(float(v.min()), 2), "max": round(float(v.max()), 2)}


def run_probes(probe: KeyProbe, n_probes: int, hold_s: float) -> list[dict]:
    """The first note (gate on), then ``n_probes`` notes from silence; one dict per probe."""
    rate, period = probe.rate, probe.period
    on = probe.send([0xB0, *RELEASE_CC])
    probe.send([0x90, 60, 100])
    time.sleep(0.4)
    off = probe.send([0x80, 60, 0])
    settle = int(SETTLE_S * rate)
    wait_quiet(probe, float(np.max(np.abs(probe.segment(on, probe.n)))) or 1.0, off + settle)
    probes = []
    for i in range(n_probes):
        note = 48 + (i * 5) % 24
        offset = (i * period * 7 // n_probes + i) % period        # every phase of the cycle
        frame = probe.send([0x90, note, 110], offset)
        time.sleep(hold_s)
        off = probe.send([0x80, note, 0])
        probe.wait_for(off)
        pre = probe.segment(frame - int(PRE_NOTE_S * rate), frame)
        post = probe.segment(frame, off)
        k = sound_onset(pre, post)
        peak = float(np.max(np.abs(post))) if len(post) else 0.0
        quiet = wait_quiet(probe, peak if peak > 0 else 1.0, off + settle)
        # an onset right after (or inside) frames the probe did not record may be late
        hole = k is not None and any(h0 <= frame + k and h1 >= frame for h0, h1 in list(probe.holes))
        probes.append({"note": note, "offset_in_cycle": offset, "onset_frames": k, "capture_hole_before_onset": hole,
                       "latency_ms": None if k is None else round(1e3 * k / rate, 3),
                       "pre_note_rms": float(np.sqrt(np.mean(pre.astype(np.float64) ** 2))) if len(pre) else None,
                       "peak": peak, "silent_after_release": quiet})
        time.sleep(0.05)
    return probes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="benchmarks.midi_latency", description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default=str(ROOT / "models" / "default.dwb"))
    ap.add_argument("--probes", type=int, default=15)
    ap.add_argument("--period", type=int, default=512, choices=[256, 512, 1024, 2048],
                    help="JACK period, frames (48 kHz)")
    ap.add_argument("--hold", type=float, default=0.4, help="seconds each note is held")
    ap.add_argument("--latency", default=None, choices=["low", "normal", "safe"],
                    help="driftwave's latency mode (default: the product's)")
    ap.add_argument("--mel-match", default=None, choices=["full", "low-latency", "zero-latency", "off"])
    ap.add_argument("--frames-per-step", type=int, default=None)
    ap.add_argument("--voices", type=int, default=None, help="default: the product's (4)")
    ap.add_argument("--compile", default=None, choices=["auto", "on", "off"],
                    help="the compiled step (core/compiled_step.py); default: the product's (auto)")
    ap.add_argument("--warmup", type=float, default=24.0,
                    help="seconds of play before the first note (the ring holds its safe fill for the "
                         "first 20 s: realtime/ring_sizer.py)")
    ap.add_argument("--load", action="store_true", help="one core kept busy by another process throughout")
    ap.add_argument("--startup-timeout", type=float, default=120.0)
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the JSON here")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    from tests.jackutil import (_terminate_portaudio, BusyCore, JackServer, XrunCounter, graph_errors_by_client,
                                playback_latency_frames)

    load_before = os.getloadavg()
    load = BusyCore() if a.load else None
    server = child = probe = xruns = None
    tmp = tempfile.mkdtemp(prefix="dwlatency-")
    stats_path = os.path.join(tmp, "stats.json")
    stderr_path = os.path.join(tmp, "stderr.txt")
    try:
        server = JackServer(rate=RATE, period=a.period)
        _terminate_portaudio()      # this process plays nothing: no idle PortAudio client in the graph
        xruns = XrunCounter(server)
        port_name = "bench-keys"
        child = start_play(play_command(a, port_name, stats_path), server, tmp, stderr_path)
        seconds = a.warmup + 6 + a.probes * (a.hold + 3.5)
        probe = KeyProbe(server, seconds)
        audio_port, midi_port = connect_to_program(probe, port_name, a.startup_timeout)
        probe.record()
        time.sleep(a.warmup)                    # the engine sizes its ring from its first 20 s
        log0, xruns0 = server.log_size(), xruns.count
        probes = run_probes(probe, a.probes, a.hold)
        graph = server.graph_errors(log0)
        jack_xruns = xruns.count - xruns0
        playback = playback_latency_frames(probe.client, "system:playback_1")
        s = stop_play(child, stats_path, stderr_path)
    finally:
        teardown(child, server, probe, xruns)
        load_report = load.stop() if load is not None else {"ran": False}
    lat = [p["latency_ms"] for p in probes if p["latency_ms"] is not None]
    playback_ms = 1e3 * playback / RATE
    result = {
        "benchmark": "midi_latency", "method": "frame-accurate: note-on and capture in one JACK process callback",
        "command": " ".join(play_command(a, "NAME", "STATS")[1:]),
        "jack_period": a.period, "jack_rate": RATE, "period_ms": round(1e3 * a.period / RATE, 2),
        "model": s["model"], "voices": s["voices"], "latency_mode": s["latency_mode"], "mel_match": s["mel_match"],
        "frames_per_step": s["frames_per_step"], "step_choice": s.get("step_choice"), "step_path": s.get("step_path"), "compile_s": s.get("compile_s"), "priority": s["priority"], "priority_note": s["priority_note"],
        "threads": s["threads"], "probes": len(probes), "probes_with_onset": len(lat),
        "latency_ms": summary(lat),
        "latency_at_speaker_ms": {**summary([v + playback_ms for v in lat]),
                                  "note": "measured + the driver's playback latency (system:playback_1)"},
        "driver_playback_latency_ms": round(playback_ms, 2),
        "engine_note_to_sound_ms": s["note_to_sound_ms"], "engine_latency_parts_ms": s["latency_parts_ms"],
        "underruns": s["underruns"], "xruns": s["xruns"], "jack_xruns_during_probes": jack_xruns,
        "jack_graph_errors_during_probes": graph_errors_by_client(graph),
        "probe_skipped_cycles": probe.skipped_cycles,
        "probes_with_capture_hole_before_onset": sum(p["capture_hole_before_onset"] for p in probes),
        "probe_buffer_overflow": probe.overflow,
        "midi_messages_received": s["midi_messages_received"], "step_ms_p50": s["step_ms_p50"],
        "step_ms_p99": s["step_ms_p99"], "rtf": s["rtf"], "errors": s["errors"],
        "load": load_report, "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "connected": {"audio": audio_port, "midi": midi_port},
        "detector": f"first sample after the note-on frame above max({RMS_FACTOR:g} x RMS of the "
                    f"{1e3 * PRE_NOTE_S:g} ms before, {PEAK_DB:g} dB re the note's peak)",
        "per_probe": probes,
    }
    emit(result, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
