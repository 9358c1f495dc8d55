"""Draw the MelGAN log-mel spectrogram of WAV files as one PNG (rows: files, top to bottom).

    python scripts/spectrogram.py OUT.png A.wav [B.wav ...] [--seconds 8]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.audio_io import read_mono  # noqa: E402
from core.mel import LogMel  # noqa: E402


def inferno(x: np.ndarray) -> np.ndarray:
    """0..1 -> RGB uint8, a dark-to-bright ramp (black, purple, orange, yellow)."""
    stops = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], float)
    pos = np.clip(x, 0, 1) * (len(stops) - 1)
    i = np.minimum(pos.astype(int), len(stops) - 2)
    f = (pos - i)[..., None]
    return (stops[i] * (1 - f) + stops[i + 1] * f).astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("wavs", nargs="+")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--scale", type=int, default=3, help="pixels per mel bin")
    a = ap.parse_args()
    rows = []
    for w in a.wavs:
        x = read_mono(w, 22050)[: int(a.seconds * 22050)]
        m = LogMel()(torch.from_numpy(x[: len(x) // 256 * 256])).numpy()        # [80 x T]
        img = inferno((m + 5.0) / 6.0)[::-1]                                        # low bins at the bottom
        img = np.repeat(np.repeat(img, a.scale, 0), 2, 1)
        rows.append(img)
        rows.append(np.full((6, img.shape[1], 3), 255, np.uint8))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows]
    pic = np.ascontiguousarray(np.concatenate(rows))
    from PySide6.QtGui import QImage
    QImage(pic.data, pic.shape[1], pic.shape[0], 3 * pic.shape[1], QImage.Format_RGB888).save(a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
