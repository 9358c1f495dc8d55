"""``main.py play --headless``: the engine and an audio device, no window."""
from __future__ import annotations

import json
import signal
import sys
import threading
import time

from core.bundle import load_bundle
from core.compute import ComputeUnavailable, compute_device

from .engine import Engine
from .gc_pauses import freeze_heap


class NoAudioDevice(Exception):
    pass


def describe_devices() -> str:
    try:
        import sounddevice as sd
        devs = str(sd.query_devices())
    except Exception as e:  # PortAudio missing or broken
        devs = f"(cannot list audio devices: {e})"
    return devs or "(no audio devices)"


def build(bundle_path: str, device=None, samplerate=None, frames_per_step=2, latency_ms=50.0,
          threads=None, precision="float32", seed=0, blocksize=0, device_latency="high", voices=1,
          compute="auto", mel_match="full"):
    """Loads the bundle onto the compute device (:func:`core.compute.compute_device`; raises
    its ``ComputeUnavailable``), opens the audio device at a rate it takes, builds the engine."""
    from .audio_output import AudioOutput, pick_samplerate

    bundle = load_bundle(bundle_path, compute_device(compute))
    try:
        import sounddevice as sd
        sd.query_devices(device, "output")
        rate = pick_samplerate(device, samplerate or bundle.sample_rate)
    except Exception as e:
        raise NoAudioDevice(f"no usable audio output device ({e}).\nDevices:\n{describe_devices()}\n"
                            f"('main.py render' works without a device.)") from None
    engine = Engine(bundle, rate, frames_per_step=frames_per_step, target_fill_s=latency_ms / 1e3,
                    threads=threads, precision=precision, seed=seed, voices=voices, mel_match=mel_match)
    out = AudioOutput(engine.ring, device=device, samplerate=rate, blocksize=blocksize, latency=device_latency)
    engine.attach_output(out)
    return engine, out


def run_headless(a) -> int:
    # the handlers go in before the bundle loads: a Ctrl-C while it loads ends the run cleanly
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        engine, out = build(a.bundle, a.device, a.samplerate, a.frames_per_step, a.latency_ms,
                            a.threads, a.precision, a.seed, voices=a.voices, compute=a.compute,
                            mel_match=getattr(a, "mel_match", "full"))
    except (NoAudioDevice, ComputeUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    from .midi import MidiError
    from .presets import load_mappings, save_mappings
    try:
        load_mappings(engine.controller)
    except ValueError as e:
        print(f"warning: {e}; using the default MIDI map", file=sys.stderr)
    midi = None
    if getattr(a, "midi", None) is not None or getattr(a, "midi_virtual", None):
        from .midi import open_midi_for_engine
        try:
            midi = open_midi_for_engine(engine, a)
        except MidiError as e:
            print(f"error: {e}", file=sys.stderr)
            out.stop()
            return 1
    if getattr(a, "reference", None):
        engine.load_reference(a.reference).join()     # its error, if any, is printed below
    freeze_heap()           # before the sound: a full GC of the startup heap would be a dropout
    engine.start()
    out.start()
    if a.record:
        try:
            engine.start_recording(a.record)
        except OSError as e:
            print(f"error: {e}", file=sys.stderr)
    print(f"playing '{engine.model_name}' on {out.device_name} at {out.samplerate} Hz "
          f"(model {engine.model_rate} Hz); Ctrl-C stops", file=sys.stderr, flush=True)
    t0 = time.monotonic()
    next_report = t0 + 1.0
    try:
        while not stop.is_set():
            if a.seconds is not None and time.monotonic() - t0 >= a.seconds:
                break
            stop.wait(0.05)
            while engine.errors:
                print(f"warning: {engine.errors.popleft()}", file=sys.stderr, flush=True)
            if not a.quiet and time.monotonic() >= next_report:
                s = engine.stats()
                print(f"\r{s['seconds_played']:7.1f} s  rtf {s['rtf']:.2f}  underruns {s['underruns']}  "
                      f"ring {s['ring_fill_ms']:5.1f} ms", end="", file=sys.stderr, flush=True)
                next_report += 1.0
    finally:
        rec = engine.recorder
        out.stop()
        engine.stop()
        if midi is not None:
            midi.close()
        if engine.controller.dirty and engine.controller.learned is not None:
            save_mappings(engine.controller)
        stats = engine.stats()
        if rec is not None:
            stats["recording"] = {"path": rec.path, "seconds": rec.seconds, "error": rec.error}
        if a.stats_json:
            with open(a.stats_json, "w") as f:
                json.dump(stats, f, indent=1)
        if not a.quiet:
            print(file=sys.stderr)
    return 0
