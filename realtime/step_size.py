"""Frames per engine step, chosen from what a step costs on this machine
(``--frames-per-step auto``, the default).

A step of more frames costs less per frame (the per-call overhead is shared:
``benchmarks/bench_voices.py``) and adds its length to the note-to-sound delay (11.6 ms a
frame at 22050 Hz, hop 256). The engine measures, before it plays, the CPU time its step
takes with every voice sounding (:meth:`realtime.player.BundlePlayer.step_cost`), per
second of audio it makes: the step's real-time factor. It plays the smallest step of
:data:`CHOICES` whose factor is at most the latency mode's limit (:data:`RTF_LIMITS`), and the
largest when none is. A step that takes most of its own length leaves the ring nothing to
refill from when the machine is busy: the ring sizer (:mod:`realtime.ring_sizer`) covers the
step's jitter, not a mean it cannot keep up with.

Thread time, not wall time: the measurement runs before the engine thread has its real-time
priority, and another process sharing the core would otherwise count against the step.
``tests/test_step_size.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

CHOICES = (1, 2, 4)     # frames per step the engine may choose, smallest (least delay) first
# the largest real-time factor (CPU seconds per second of audio, every voice sounding) a
# step may have, by latency mode ("fixed": a ring fill the user set)
RTF_LIMITS = {"low": 0.85, "normal": 0.7, "safe": 0.5, "fixed": 0.7}
MEASURE_S = 1.0         # seconds of audio each measured step size plays


@dataclass(frozen=True)
class StepChoice:
    """What :func:`choose_frames` chose and what it measured (``rtf``: frames -> factor)."""
    frames: int
    limit: float
    rtf: dict[int, float] = field(default_factory=dict)

    @property
    def within_limit(self) -> bool:
        return self.rtf.get(self.frames, 0.0) <= self.limit

    def as_dict(self) -> dict:
        return {"frames": self.frames, "limit": self.limit, "within_limit": self.within_limit,
                "rtf_by_frames": {str(f): round(r, 4) for f, r in self.rtf.items()}}


def choose_frames(measure: Callable[[int], float], limit: float,
                  choices: tuple[int, ...] = CHOICES) -> StepChoice:
    """The smallest of ``choices`` whose ``measure(frames)`` (a real-time factor) is at most
    ``limit``, else the largest; measures each size in order until one is within it."""
    if not choices:
        raise ValueError("no step sizes to choose from")
    rtf: dict[int, float] = {}
    for frames in choices:
        rtf[frames] = float(measure(frames))
        if rtf[frames] <= limit:
            return StepChoice(frames, limit, rtf)
    return StepChoice(choices[-1], limit, rtf)


def parse_frames_per_step(text: str) -> int | str:
    """``--frames-per-step``: "auto" or a positive count of frames."""
    if text == "auto":
        return "auto"
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n <= 0:
        raise ValueError(f"frames per step must be 'auto' or a positive whole number, not {text!r}")
    return n
