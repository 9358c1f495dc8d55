"""The scrolling spectrogram and its token lane: an image numpy builds, which Qt's C++ code
scales and paints.

Rule: the live displays never paint from Python. PySide6 holds the GIL through every
QPainter call made from Python (a Python ``paintEvent``, or pyqtgraph's item paints), and
the engine thread needs the GIL between its kernels: a thread spinning in Python made no
progress at all through ten ``drawImage`` calls of a window-sized picture, and pyqtgraph's
plot held it about 7 ms a redraw in a cProfile run (docs/measurements.md, "The window's GIL"). So each refresh
builds one small picture, one pixel per frame and mel bin
(:func:`spectrogram_image`, under a millisecond), and hands it to a ``QLabel`` as a pixmap;
the label scales it to its size in its C++ ``paintEvent``, which the event loop runs without
the GIL. Guarded by tests/test_gui.py::test_the_live_displays_paint_without_python; the
picture by tests/test_gui.py::test_spectrogram_image_*.

Colours come from pyqtgraph's colour maps (inferno for the level, a hue circle for tokens).
"""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

MEL_LEVELS = (-2.5, 2.5)     # standardized log-mel: a fixed colour scale, never auto
LANE_ROWS = 4                # the token lane's height in image pixels
GAP_ROWS = 1
NO_TOKEN = 0xFF202024        # the lane where a frame has no token (dark grey)


def _argb(rgb: np.ndarray) -> np.ndarray:
    """``ndarray[K x 3]`` uint8 -> ``ndarray[K]`` uint32 0xAARRGGBB, opaque."""
    rgb = rgb.astype(np.uint32)
    return 0xFF000000 | (rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]


LEVEL_LUT = _argb(pg.colormap.get("inferno").getLookupTable(nPts=256, alpha=False))


def token_palette(n_tokens: int) -> np.ndarray:
    """``ndarray[n_tokens + 1]`` uint32: a colour for each token on a hue circle (neighbouring
    tokens apart in hue), and last, at index -1, the no-token grey."""
    hues = [pg.intColor((3 * i) % max(n_tokens, 1), hues=max(n_tokens, 1), values=1, maxValue=210, sat=170)
            for i in range(n_tokens)]
    rgb = np.array([[c.red(), c.green(), c.blue()] for c in hues], dtype=np.uint8).reshape(-1, 3)
    return np.append(_argb(rgb), np.uint32(NO_TOKEN))


def frame_columns(mel: np.ndarray, levels=MEL_LEVELS) -> np.ndarray:
    """Frames of standardized log-mel ``ndarray[k x n_mels]`` -> their picture columns
    ``ndarray[n_mels x k]`` uint32 ARGB, the highest mel bin at row 0."""
    lo, hi = levels
    idx = np.clip((mel - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    return LEVEL_LUT[idx.T[::-1]]


def lane_columns(tokens: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Tokens ``ndarray[k]`` (-1 or out of range: none) -> the gap and token-lane rows of their
    columns, ``ndarray[(GAP_ROWS + LANE_ROWS) x k]`` uint32 ARGB."""
    toks = np.where((tokens >= 0) & (tokens < len(palette) - 1), tokens, -1)
    lane = np.broadcast_to(palette[toks], (LANE_ROWS, len(toks)))
    return np.vstack([np.full((GAP_ROWS, len(toks)), np.uint32(NO_TOKEN)), lane])


def spectrogram_image(mel_tap: np.ndarray, written: int, token_tap: np.ndarray | None = None,
                      palette: np.ndarray | None = None, levels=MEL_LEVELS) -> np.ndarray:
    """The picture of the taps: ``mel_tap`` ``ndarray[frames x n_mels]`` (standardized log-mel,
    written circularly, ``written`` frames so far) -> ``ndarray[H x frames]`` uint32 ARGB, the
    oldest frame at column 0 and the newest at the right, the highest mel bin at row 0; with
    ``token_tap`` ``ndarray[frames]`` (-1: none) and its ``palette`` (:func:`token_palette`),
    H = n_mels + 1 + 4 rows, the token lane at the bottom."""
    cols = frame_columns(mel_tap, levels)
    if token_tap is not None and palette is not None:
        cols = np.vstack([cols, lane_columns(token_tap, palette)])
    return np.ascontiguousarray(np.roll(cols, -(written % len(mel_tap)), axis=1))


class SpectrogramView(QtWidgets.QLabel):
    """The spectrogram (and token lane) as a scaled pixmap. :meth:`show_taps` replaces the
    picture; Qt scales and paints it in C++. :attr:`image` is the last picture
    (``ndarray[H x frames]`` uint32 ARGB), :attr:`levels` its fixed colour scale."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setScaledContents(True)
        self.setMinimumSize(200, 120)
        self.setSizePolicy(QtWidgets.QSizePolicy.Ignored, QtWidgets.QSizePolicy.Ignored)
        self.setStyleSheet("background:#141418")
        self.levels = MEL_LEVELS
        self.image: np.ndarray | None = None
        self.n_tokens = 0
        self._palette: np.ndarray | None = None
        self._columns: np.ndarray | None = None    # the picture in tap order (slot i: column i)
        self._written = -1                          # the frames it holds

    def set_token_count(self, n_tokens: int) -> None:
        """The lane's palette for a model with ``n_tokens`` tokens (0: no lane)."""
        self.n_tokens = n_tokens
        self._palette = token_palette(n_tokens) if n_tokens > 0 else None
        self._written = -1                          # colour everything anew
        self.setToolTip("log-mel spectrogram, newest frame at the right"
                        + ("; below it, each frame's token as a colour" if n_tokens else ""))

    def show_taps(self, mel_tap: np.ndarray, written: int, token_tap: np.ndarray | None) -> None:
        """The picture of the taps (:func:`spectrogram_image`); only the frames written since
        the last call are coloured anew (tests/test_gui.py::test_spectrogram_view_*)."""
        frames = len(mel_tap)
        lane = token_tap is not None and self._palette is not None
        cols = self._columns
        fresh = written - self._written
        if cols is None or self._written < 0 or not 0 <= fresh < frames or lane != (len(cols) > mel_tap.shape[1]):
            cols = self._columns = spectrogram_image(mel_tap, 0, token_tap if lane else None, self._palette, self.levels)
        elif fresh:
            slots = np.arange(written - fresh, written) % frames
            cols[:mel_tap.shape[1], slots] = frame_columns(mel_tap[slots], self.levels)
            if lane:
                cols[mel_tap.shape[1]:, slots] = lane_columns(token_tap[slots], self._palette)
        self._written = written
        img = self.image = np.ascontiguousarray(np.roll(cols, -(written % frames), axis=1))
        h, w = img.shape
        qimg = QtGui.QImage(img.data, w, h, 4 * w, QtGui.QImage.Format_RGB32)
        self.setPixmap(QtGui.QPixmap.fromImage(qimg))       # copies: ``img`` may go
