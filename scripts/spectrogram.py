"""Draw the MelGAN log-mel spectrogram of WAV files as one PNG (rows: files, top to bottom).

    python scripts/spectrogram.py OUT.png A.wav [B.wav ...] [--seconds 8] [--start 0]
        [--linear 5000]

``--linear F``: a linear-frequency spectrogram from 0 to F Hz instead (2048-point Hann
frames, hop 256, 70 dB of range under each file's peak), where the noise between a note's
partials shows, which the mel's wide upper bands average away.
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


def linear_image(x: np.ndarray, sr: int, fmax: float, n_fft: int = 2048, hop: int = 256,
                 range_db: float = 70.0) -> np.ndarray:
    """RGB ``[bins x frames x 3]`` of the power spectrum from 0 to ``fmax`` Hz (low at the
    bottom), ``range_db`` under the file's loudest bin."""
    x = np.pad(np.asarray(x, np.float64), (n_fft // 2, n_fft // 2))
    n = 1 + max(0, (len(x) - n_fft) // hop)
    frames = x[np.arange(n)[:, None] * hop + np.arange(n_fft)[None]] * np.hanning(n_fft)[None]
    db = 10 * np.log10(np.abs(np.fft.rfft(frames, axis=1)) ** 2 + 1e-20).T            # [bins x frames]
    db = db[: int(fmax / (sr / n_fft)) + 1]
    return inferno((db - (db.max() - range_db)) / range_db)[::-1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("wavs", nargs="+")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--start", type=float, default=0.0, help="seconds into each file")
    ap.add_argument("--scale", type=int, default=3, help="pixels per mel bin")
    ap.add_argument("--linear", type=float, default=None, metavar="HZ",
                    help="a linear-frequency spectrogram up to HZ instead of the log-mel")
    a = ap.parse_args()
    rows = []
    for w in a.wavs:
        x = read_mono(w, 22050)[int(a.start * 22050):][: int(a.seconds * 22050)]
        if a.linear:
            img = np.repeat(linear_image(x, 22050, a.linear), 2, 1)
        else:
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
