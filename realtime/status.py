"""The status line's optional parts, from engine ``stats()``: the same words in the window's
status bar and headless play's progress line (tests/test_realtime_units.py::test_status_extras...)."""
from __future__ import annotations

from .live_input import input_status


def tempo_status(stats: dict) -> str:
    """``"tempo 120.0 BPM (midi_clock)"``; empty while the tempo is free, "?" until MIDI
    clock has given enough ticks to estimate it."""
    source = stats.get("tempo_source", "free")
    if source == "free":
        return ""
    bpm = stats.get("tempo_bpm")
    return f"tempo {'?' if bpm is None else f'{bpm:.1f}'} BPM ({source})"


def osc_status(stats: dict) -> str:
    """``"OSC 127.0.0.1:9000 12 (1 ignored)"``; empty without an OSC server."""
    if not stats.get("osc_address"):
        return ""
    return f"OSC {stats['osc_address']} {stats['osc_messages_received']} ({stats['osc_messages_ignored']} ignored)"


def step_status(stats: dict, full: bool = False) -> str:
    """``"compiled"`` or ``"eager"`` (how the model's step runs, core/compiled_step.py), then
    ``", 2-frame steps"`` where a step is more than one frame; ``full`` adds why an
    asked-for compile did not happen and what ``--frames-per-step auto`` measured
    (realtime/step_size.py)."""
    path = stats.get("step_path", "eager")
    frames = stats.get("frames_per_step", 1)
    if full:
        took = stats.get("compile_s") or 0.0
        text = f"compiled step, prepared in {took:.1f} s" if path == "compiled" else f"{path} step"
        choice = stats.get("step_choice")
        if choice:
            measured = ", ".join(f"{f} frame{'s' * (int(f) > 1)} RTF {r:.2f}" for f, r in choice["rtf_by_frames"].items())
            late = "" if choice["within_limit"] else ", none within it: expect dropouts"
            return f"{text}; {choice['frames']}-frame steps (measured {measured}; limit {choice['limit']:.2f}{late})"
        return text if frames == 1 else f"{text}; {frames}-frame steps"
    short = path.split(" (")[0]
    return short if frames == 1 else f"{short}, {frames}-frame steps"


def latency_words(stats: dict) -> str:
    """``"normal"``, or ``"normal, settling"`` while the ring still holds its warm-up fill
    (realtime/ring_sizer.py: the first 20 s)."""
    mode = stats.get("latency_mode", "normal")
    return mode if stats.get("ring_sized", True) else f"{mode}, settling"


def status_extras(stats: dict, sep: str = "  ") -> str:
    """The parts that apply, each after ``sep``: live input, tempo, OSC."""
    live = input_status(stats, sep)
    rest = "".join(sep + p for p in (tempo_status(stats), osc_status(stats)) if p)
    return live + rest
