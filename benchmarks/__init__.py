"""Benchmarks: each module measures one thing and prints one JSON object (``main.py bench``)."""
from __future__ import annotations

import json
import time
from pathlib import Path


def emit(result: dict, path: str | None = None) -> None:
    """Prints ``result`` as JSON on stdout and, with ``path``, writes the same text there."""
    text = json.dumps(result, indent=1)
    print(text)
    if path:
        Path(path).write_text(text + "\n")


def python_loop_ns(n: int = 3_000_000) -> float:
    """Nanoseconds (thread CPU time) per iteration of a fixed pure-Python loop: a scale for
    this shared host's speed at the time, so that runs of different days can be set side by
    side (``benchmarks/bench_voices.py`` records it before and after its runs)."""
    t0, x = time.thread_time(), 0
    for i in range(n):
        x += i
    return (time.thread_time() - t0) / n * 1e9
