"""Benchmarks: each module measures one thing and prints one JSON object (``main.py bench``)."""
from __future__ import annotations

import json
from pathlib import Path


def emit(result: dict, path: str | None = None) -> None:
    """Prints ``result`` as JSON on stdout and, with ``path``, writes the same text there."""
    text = json.dumps(result, indent=1)
    print(text)
    if path:
        Path(path).write_text(text + "\n")
