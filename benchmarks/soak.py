"""Soak: headless play (or the window) on a JACK dummy server at the product's default settings, for minutes, optionally with one core kept busy by another process.

Prints one JSON object: underruns (and an empty-callback client's underruns in the same
run, as the baseline for this shared machine), PortAudio xruns and the JACK server's xruns
(its xrun notifications, and the clients its log names as not finished), p50/p99 engine
step time, real-time factor, RSS growth, and control latency: time from a parameter change
(gain -60 dB -> 0 dB) to the first captured device sample that reflects it, with the
parts it is made of.

The engine is the product's: ``Session(Settings(bundle))`` with every setting at its default
(voices, latency mode, step, mel matching, threads) unless an option names it. ``--load``
starts a second process that keeps one core 100 % busy at normal priority from before the
baseline to the end (tests/jackutil.BusyCore; killed at the end, on error too); the JSON
says that it ran and the CPU it used.

    python -m benchmarks.soak [--seconds 600] [--load] [--gui] [--period 512] [--json PATH]
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

from core.mel_match import MODES
from realtime.gc_pauses import GC_PAUSES, LONG_MS, freeze_heap

from benchmarks import emit

ROOT = Path(__file__).resolve().parent.parent


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


class OtherCpu:
    """Cores that processes other than this one kept busy, per interval: the machine's busy
    time (/proc/stat) less this process's (/proc/self/stat), both in clock ticks. Tells
    whether an underrun came while something else on a small machine took the CPU."""

    def __init__(self):
        self.tick = os.sysconf("SC_CLK_TCK")
        self.last = self._read()
        self.samples: list[tuple[float, float]] = []      # (seconds since t_start, cores)

    @staticmethod
    def _read() -> tuple[float, int, int]:
        with open("/proc/stat") as f:
            cpu = [int(v) for v in f.readline().split()[1:]]
        busy = sum(cpu) - cpu[3] - cpu[4]                 # all but idle and iowait
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return time.monotonic(), busy, int(fields[11]) + int(fields[12])     # utime + stime

    def sample(self, t_rel: float) -> None:
        now = self._read()
        dt = now[0] - self.last[0]
        if dt > 0:
            other = (now[1] - self.last[1]) - (now[2] - self.last[2])
            self.samples.append((round(t_rel, 1), round(max(0, other) / self.tick / dt, 2)))
        self.last = now

    def around(self, times: list[float], pad: float = 1.5) -> list[float]:
        """The largest sample within ``pad`` seconds of each time."""
        return [max((c for t, c in self.samples if abs(t - x) <= pad), default=float("nan")) for x in times]


def empty_callback_underruns(seconds: float, rate: int) -> int:
    import sounddevice as sd
    count = {"n": 0}

    def cb(outdata, frames, t, status):
        if status.output_underflow:
            count["n"] += 1
        outdata[:] = 0

    with sd.OutputStream(samplerate=rate, channels=2, dtype="float32", latency="high", callback=cb):
        time.sleep(seconds)
    return count["n"]


def control_latency(engine, cap, rate: int) -> float | None:
    """Sets gain -60 dB, waits, sets 0 dB at t0; returns seconds until the first captured
    sample above 10x the quiet level."""
    engine.bus.set("gain", -60.0)
    time.sleep(1.0)
    quiet_from = cap.n
    time.sleep(0.2)
    quiet = cap.segment(quiet_from, cap.n)
    level = max(float(np.max(np.abs(quiet))) if len(quiet) else 0.0, 1e-6)
    start = cap.n
    t0 = time.monotonic()
    engine.bus.set("gain", 0.0)
    time.sleep(0.6)
    seg = cap.segment(start, cap.n)
    hits = np.flatnonzero(np.abs(seg) > 10 * level)
    if not len(hits):
        return None
    return cap.time_of_frame(start + int(hits[0])) - t0


def engine_settings(a: argparse.Namespace) -> dict:
    """The Settings fields the options name (the rest stay the product's defaults)."""
    given = {"frames_per_step": a.frames_per_step, "latency": a.latency, "latency_ms": a.latency_ms,
             "threads": a.threads, "precision": a.precision, "mel_match": a.mel_match, "voices": a.voices}
    return {k: v for k, v in given.items() if v is not None}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="benchmarks.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--bundle", default=str(ROOT / "models" / "default.dwb"))
    ap.add_argument("--period", type=int, default=512, choices=[512, 1024, 2048], help="JACK period, frames (48 kHz)")
    ap.add_argument("--load", action="store_true",
                    help="a second process keeps one core 100 %% busy (normal priority) for the whole run")
    ap.add_argument("--frames-per-step", type=int, default=None, help="default: the product's")
    ap.add_argument("--latency", default=None, choices=["low", "normal", "safe"], help="default: the product's")
    ap.add_argument("--latency-ms", type=float, default=None, help="a fixed ring fill instead of --latency")
    ap.add_argument("--voices", type=int, default=None, help="default: the product's")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--precision", default=None, choices=["float32", "bfloat16"])
    ap.add_argument("--json", default=None, metavar="PATH", help="also write the JSON here")
    ap.add_argument("--baseline-seconds", type=float, default=20.0)
    ap.add_argument("--probe-every", type=float, default=30.0, help="seconds between latency probes")
    ap.add_argument("--gui", action="store_true", help="with the window open (offscreen Qt)")
    ap.add_argument("--thread-clocks", action="store_true",
                    help="sample every thread's kernel clocks (20 ms) and report them over each stall "
                         "of the engine (benchmarks/thread_clocks.py; it ran 3-5 %% of a core in the soaks)")
    ap.add_argument("--no-probes", action="store_true",
                    help="no capture client and no control-latency probes: only driftwave's own client in "
                         "the JACK graph (the capture's process callback runs Python in this process)")
    ap.add_argument("--mel-match", default=None, choices=MODES)
    ap.add_argument("--no-gc-freeze", action="store_true",
                    help="leave the startup heap to the cyclic GC (main.py freezes it: realtime/gc_pauses.py)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    from tests.jackutil import BusyCore, Capture, JackServer, XrunCounter, graph_errors_by_client
    rate = 48000
    load_before = os.getloadavg()
    load = BusyCore() if a.load else None       # before the baseline: the whole run carries it
    server = xruns = None
    try:
        server = JackServer(rate=rate, period=a.period)
        xruns = XrunCounter(server)
        xruns0 = xruns.count
        baseline = empty_callback_underruns(a.baseline_seconds, rate)
        baseline_jack_xruns = xruns.count - xruns0
        from realtime.session import Session
        from realtime.settings import Settings
        overrides = engine_settings(a)
        session = Session(Settings(a.bundle, **overrides))
        engine, out = session.engine, session.output
        window = None
        if a.gui:       # before the capture client: the window lists MIDI ports with rtmidi, whose
            window = _open_gui(session)         # JACK calls hold the GIL (an in-process Python JACK client would stall: docs/history.md)
            window.pump(1.0)                    # painted before the sound starts, as main.py does it
        cap = None if a.no_probes else Capture(server, seconds=15.0, ring=True)   # a probe looks at recent audio
        if not a.no_gc_freeze:
            freeze_heap()                       # as main.py does before the sound
        engine.start()
        out.start()
        if cap is not None:
            cap.connect_program_outputs()
        if window is not None:
            window.pump(5.0)
        else:
            time.sleep(5.0)
        main_priority = None
        if window is None:      # as main.py's headless loop: it takes the GIL, so it is real-time too
            from realtime.priority import MAIN_LOOP_PRIORITY, raise_priority
            main_priority = str(raise_priority(engine.realtime, rt_priority=MAIN_LOOP_PRIORITY))
        rss0, t_start = rss_mb(), time.monotonic()
        clocks = None
        if a.thread_clocks:
            from benchmarks.thread_clocks import ThreadClocks, thread_names
            clocks, names = ThreadClocks(lambda: engine.steps).start(), thread_names()
        under0, xruns_start, log_start = out.underruns, xruns.count, server.log_size()
        lat, probe_times, underrun_times, ring_targets = [], [], [], []
        seen = under0
        next_probe = t_start + 5.0
        started_unix = time.time()
        other_cpu, next_cpu = OtherCpu(), t_start + 1.0
        while time.monotonic() - t_start < a.seconds:
            if window is not None:
                window.pump(0.05)
            else:
                time.sleep(0.05)
            if out.underruns != seen:       # when they happen, to the 50 ms of this loop
                underrun_times += [round(time.monotonic() - t_start, 2)] * (out.underruns - seen)
                seen = out.underruns
            if time.monotonic() >= next_cpu:
                other_cpu.sample(time.monotonic() - t_start)
                ring_targets.append(round(1e3 * engine.target_fill / rate, 1))
                next_cpu += 1.0
            if cap is not None and time.monotonic() >= next_probe:
                probe_times.append(round(time.monotonic() - t_start, 2))
                v = control_latency(engine, cap, rate)
                if v is not None:
                    lat.append(v)
                next_probe = time.monotonic() + a.probe_every
        rss1 = rss_mb()
        stalls = None
        if clocks is not None:
            clocks.stop()
            names.update(thread_names())
            stalls = {"sampler_priority": clocks.priority,
                      "note": "stretches of 0.1 s or more without an engine step: per thread "
                              "[name, ms on a CPU, ms runnable but off a CPU], busiest first",
                      "typical": clocks.typical(names, t_start),
                      "stalls": [clocks.report(i, j, names, t_start) for i, j in clocks.stalls()],
                      "before_underruns": clocks.before(underrun_times, t_start, names),
                      "per_second": clocks.per_second(t_start, engine._thread.native_id)}
        jack_xruns = xruns.count - xruns_start
        graph_errors = graph_errors_by_client(server.graph_errors(log_start))
        if cap is not None:
            cap.close()
        if window is not None:
            window.close()
        out.stop()
        engine.stop()
        s = engine.stats()
        result = {
            "benchmark": "soak", "gui": a.gui, "seconds": a.seconds, "bundle": a.bundle, "model": s["model"],
            "settings_given": overrides, "jack_period": a.period, "period_ms": round(1e3 * a.period / rate, 2),
            "device_rate": s["device_rate"], "model_rate": s["model_rate"], "threads": s["threads"],
            "precision": s["precision"], "mel_match": s["mel_match"], "step_path": s.get("step_path"), "compile_s": s.get("compile_s"), "frames_per_step": s["frames_per_step"], "step_choice": s.get("step_choice"),
            "voices": s["voices"], "latency_mode": s["latency_mode"], "priority": s["priority"],
            "priority_note": s["priority_note"], "note_to_sound_ms": s["note_to_sound_ms"],
            "underruns": out.underruns - under0, "underruns_total": out.underruns, "xruns": out.xruns,
            "jack_xruns": jack_xruns, "jack_graph_errors_by_client": graph_errors,
            "baseline_jack_xruns": baseline_jack_xruns,
            "underrun_times_s": underrun_times, "probe_times_s": probe_times, "started_unix": round(started_unix, 1),
            "other_processes_cores": {
                "median": float(np.median([c for _, c in other_cpu.samples])) if other_cpu.samples else None,
                "max": max((c for _, c in other_cpu.samples), default=None),
                "at_underruns": other_cpu.around(underrun_times),
                "note": "cores busy with processes other than this one (JACK's server included), per second"},
            "baseline_empty_callback_underruns": baseline, "baseline_seconds": a.baseline_seconds,
            "step_ms_p50": s["step_ms_p50"], "step_ms_p99": s["step_ms_p99"], "step_ms_mean": s["step_ms_mean"],
            "rtf": s["rtf"], "nan_events": s["nan_events"], "gc_frozen": not a.no_gc_freeze,
            "gc_frozen_objects": s["gc_frozen_objects"], "gc_collections": s["gc_collections"],
            "gc_pauses_over_20ms": s["gc_pauses_over_20ms"], "gc_pause_ms_max": s["gc_pause_ms_max"],
            "gc_pauses_over_20ms_at_s": [[round(when - t_start, 2), round(ms, 1)] for when, ms in list(GC_PAUSES.slow)
                                         if when >= t_start and ms > LONG_MS],
            "rss_start_mb": rss0, "rss_end_mb": rss1, "rss_growth_mb": rss1 - rss0,
            "control_latency_ms": {
                "probes": len(lat),
                "median": 1e3 * float(np.median(lat)) if lat else None,
                "max": 1e3 * float(np.max(lat)) if lat else None,
                "parts_ms": s["latency_parts_ms"],
                "note": "gain is applied after the vocoder and the resampler: this path is step + "
                        "ring fill + device buffer; a model condition also passes the resampler's "
                        "holdback and the vocoder's look-ahead (model_lookahead_ms holds both)",
            },
            "ring": {"sized": s["ring_sized"], "grown_ms": s["ring_grown_ms"],
                     "deepest_dip_ms": s.get("ring_dip_ms_max"),
                     "target_ms_per_second": ring_targets,
                     "note": "the ring's target fill each second from the start of the counted run "
                             "(realtime/ring_sizer.py: the safe fill for its first 20 s, then the deepest "
                             "dip of the last 20 s plus the mode's margin)"},
            "engine_stalls": stalls, "main_loop_priority": main_priority,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    finally:
        if xruns is not None:
            xruns.close()
        load_report = load.stop() if load is not None else {"ran": False}
        if server is not None:
            server.stop()
    result["load"] = load_report
    result["loadavg_before"] = [round(x, 2) for x in load_before]
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    emit(result, a.json)
    return 0


def _open_gui(session):
    from gui.app import OffscreenWindow
    return OffscreenWindow(session)


if __name__ == "__main__":
    sys.exit(main())
