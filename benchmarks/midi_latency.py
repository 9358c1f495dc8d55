"""MIDI-to-sound latency: a note-on sent over JACK MIDI at t0 -> the first captured device
sample whose level reflects it (the voice was silent before). Prints JSON.

    python -m benchmarks.midi_latency [--probes 20] [--bundle models/default.dwb]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from core.mel_match import MODES

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", default=str(ROOT / "models" / "default.dwb"))
    ap.add_argument("--probes", type=int, default=20)
    ap.add_argument("--frames-per-step", type=int, default=2)
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--voices", type=int, default=4)
    ap.add_argument("--mel-match", default="full", choices=MODES)
    a = ap.parse_args()

    import rtmidi

    from realtime.session import build
    from realtime.settings import Settings
    from realtime.midi import MidiInput
    from tests.jackutil import Capture, JackServer

    rate = 48000
    server = JackServer(rate=rate, period=1024)
    try:
        ctrl = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="bench-keys")
        ctrl.open_virtual_port("keys")
        engine, out = build(Settings(a.bundle, samplerate=rate, frames_per_step=a.frames_per_step,
                                     latency_ms=a.latency_ms, voices=a.voices, mel_match=a.mel_match))
        engine.bus.set("release", 0.05)
        midi = MidiInput(engine.events, api="jack", port="bench-keys:keys")
        engine.midi_input = midi
        cap = Capture(server, seconds=20.0, ring=True)
        engine.start()
        out.start()
        cap.connect_program_outputs()
        ctrl.send_message([0x90, 60, 100])    # first note switches the gate on
        time.sleep(0.3)
        ctrl.send_message([0x80, 60, 0])
        time.sleep(1.0)
        lat = []
        for i in range(a.probes):
            note = 48 + (i * 5) % 24
            quiet = cap.segment(max(0, cap.n - rate // 5), cap.n)
            level = max(float(np.max(np.abs(quiet))), 1e-6)
            start = cap.n
            t0 = time.monotonic()
            ctrl.send_message([0x90, note, 110])
            time.sleep(0.5)
            seg = cap.segment(start, cap.n)
            hits = np.flatnonzero(np.abs(seg) > 10 * level)
            if len(hits):
                lat.append(cap.time_of_frame(start + int(hits[0])) - t0)
            ctrl.send_message([0x80, note, 0])
            time.sleep(0.7)
        cap.close()
        out.stop()      # first: rtmidi's JACK calls must not meet a running JACK stream
        engine.stop()
        midi.close()
        s = engine.stats()
        print(json.dumps({
            "benchmark": "midi_to_sound_latency", "model": s["model"], "mel_match": a.mel_match, "voices": a.voices,
            "frames_per_step": a.frames_per_step, "probes": len(lat),
            "latency_ms_median": 1e3 * float(np.median(lat)) if lat else None,
            "latency_ms_min": 1e3 * float(np.min(lat)) if lat else None,
            "latency_ms_max": 1e3 * float(np.max(lat)) if lat else None,
            "parts_ms": s["latency_parts_ms"], "underruns": s["underruns"],
            "midi_messages_received": s["midi_messages_received"],
            "note": "detector: first sample above 10x the level before the note; the envelope "
                    "is aligned with the vocoder's look-ahead, so it is part of this latency",
        }, indent=1))
        ctrl.close_port()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
