"""``driftwave play --headless``: a :class:`~realtime.session.Session` and an audio device, no window."""
from __future__ import annotations

import json
import signal
import sys
import threading
import time

from core.compute import ComputeUnavailable

from .status import status_extras, step_status
from .midi import MidiError
from .priority import MAIN_LOOP_PRIORITY, raise_priority
from .session import NoAudioDevice, Session
from .settings import Settings


def _warn(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr, flush=True)


def run_headless(settings: Settings, seconds: float | None = None, stats_json: str | None = None,
                 quiet: bool = False) -> int:
    """Plays until Ctrl-C / SIGTERM or for ``seconds``; writes the final stats to
    ``stats_json``. Returns the exit code."""
    # the handlers go in before the bundle loads: a Ctrl-C while it loads ends the run cleanly
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        session = Session(settings)
    except (NoAudioDevice, ComputeUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        session.open_midi_from_settings()
    except MidiError as e:
        print(f"error: {e}", file=sys.stderr)
        session.stop()
        return 1
    engine = session.engine
    try:
        session.start()
    except NoAudioDevice as e:          # the live input (--input) would not open
        print(f"error: {e}", file=sys.stderr)
        session.stop()
        return 1
    for msg in session.warnings:
        _warn(msg)
    out = session.output
    # this loop takes the GIL too: a normal thread preempted while holding it stalls the engine
    raise_priority(settings.realtime, rt_priority=MAIN_LOOP_PRIORITY)
    print(f"playing '{engine.model_name}' on {out.device_name} at {out.samplerate} Hz "
          f"(model {engine.model_rate} Hz, {step_status(engine.stats(), full=True)}); Ctrl-C stops",
          file=sys.stderr, flush=True)
    if session.osc is not None:
        print(f"OSC on {session.osc.address} (addresses /driftwave/...: see the README)", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    next_report = t0 + 1.0
    try:
        while not stop.is_set():
            if seconds is not None and time.monotonic() - t0 >= seconds:
                break
            stop.wait(0.05)
            while engine.errors:
                _warn(engine.errors.popleft())
            if not quiet and time.monotonic() >= next_report:
                s = engine.stats()
                print(f"\r{s['seconds_played']:7.1f} s  rtf {s['rtf']:.2f} {step_status(s)}  underruns {s['underruns']}  "
                      f"ring {s['ring_fill_ms']:5.1f} ms{status_extras(s)}", end="", file=sys.stderr, flush=True)
                next_report += 1.0
    finally:
        stats = session.stop()
        if stats_json:
            with open(stats_json, "w") as f:
                json.dump(stats, f, indent=1)
        if not quiet:
            print(file=sys.stderr)
    return 0
