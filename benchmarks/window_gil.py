"""How long the spectrogram's redraws keep the GIL from another thread.

The engine thread steps in Python between its kernels, so every millisecond the GUI thread
holds the GIL can delay a step. This runs the window's spectrogram display alone (offscreen
Qt, a display the size it has in a 1280x800 window, redrawn at the window's rate with a
scrolling random log-mel), beside a probe thread that sleeps 2 ms and measures how late it
wakes (waking needs the GIL). Three displays in one run, in turn: none (the probe's own
lateness), pyqtgraph's ``PlotItem`` + ``ImageItem`` (the design before gui/spectrogram.py,
kept here as the baseline), and :class:`gui.spectrogram.SpectrogramView`.

    QT_QPA_PLATFORM=offscreen python -m benchmarks.window_gil --seconds 10 --json F
"""
from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import numpy as np

FRAMES, N_MELS = 512, 80
SIZE = (960, 560)            # the display's share of a 1280x800 window


class _Probe(threading.Thread):
    """Sleeps 2 ms, again and again; records how late each wake-up was (s)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.late: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.perf_counter()
            time.sleep(0.002)
            self.late.append(time.perf_counter() - t0 - 0.002)


def _pyqtgraph_display():
    import pyqtgraph as pg
    plots = pg.GraphicsLayoutWidget()
    mel_plot = plots.addPlot(row=0, col=0)
    mel_plot.setLabel("left", "mel bin")
    mel_plot.setLabel("bottom", "frames (newest right)")
    mel_plot.setMouseEnabled(False, False)
    image = pg.ImageItem(axisOrder="row-major")
    image.setColorMap(pg.colormap.get("inferno"))
    image.setLevels((-2.5, 2.5))
    mel_plot.addItem(image)
    token_plot = plots.addPlot(row=1, col=0)
    token_plot.setMaximumHeight(90)
    curve = token_plot.plot(pen=pg.mkPen((90, 200, 255), width=2))

    def show(mel, written, toks):
        i = written % FRAMES
        image.setImage(np.roll(mel, -i, axis=0).T, autoLevels=False)
        t = np.roll(toks, -i).astype(np.float32)
        curve.setData(np.arange(FRAMES), t)
    return plots, show


def _label_display():
    from gui.spectrogram import SpectrogramView
    view = SpectrogramView()
    view.set_token_count(16)
    return view, view.show_taps


def measure(kind: str, seconds: float, refresh_ms: int) -> dict:
    from PySide6 import QtCore, QtWidgets
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    window = QtWidgets.QMainWindow()
    show = None
    if kind != "none":
        widget, show = {"pyqtgraph": _pyqtgraph_display, "qlabel": _label_display}[kind]()
        window.setCentralWidget(widget)
    window.resize(*SIZE)
    window.show()
    app.processEvents()
    rng = np.random.default_rng(0)
    mel = rng.standard_normal((FRAMES, N_MELS)).astype(np.float32)
    toks = (np.arange(FRAMES) // 24 % 16).astype(np.int32)
    state = {"written": 0, "tick_s": []}

    def tick():
        if show is None:
            return
        t0 = time.perf_counter()
        w = state["written"]
        mel[w % FRAMES] = rng.standard_normal(N_MELS)
        state["written"] = w + 6            # about 6 model frames a redraw at 15 Hz
        show(mel, state["written"], toks)
        state["tick_s"].append(time.perf_counter() - t0)

    timer = QtCore.QTimer()
    timer.timeout.connect(tick)
    timer.start(refresh_ms)
    probe = _Probe()
    probe.start()
    loop = QtCore.QEventLoop()
    QtCore.QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()
    timer.stop()
    probe.stop.set()
    probe.join()
    window.close()
    app.processEvents()
    late = np.array(probe.late[20:]) * 1e3
    ticks = np.array(state["tick_s"] or [0.0]) * 1e3
    return {"display": kind, "redraws": len(state["tick_s"]),
            "probe_wakes": int(len(late)),
            "probe_late_ms_p50": float(np.median(late)), "probe_late_ms_p99": float(np.percentile(late, 99)),
            "probe_late_ms_max": float(late.max()),
            "probe_wakes_late_over_1ms": float(np.mean(late > 1.0)),
            "update_call_ms_p50": float(np.median(ticks))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="per display and round")
    ap.add_argument("--rounds", type=int, default=2, help="the displays measured in turn, this many times")
    ap.add_argument("--refresh-ms", type=int, default=None, help="default: the window's REFRESH_MS")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from gui.main_window import REFRESH_MS
    refresh = a.refresh_ms or REFRESH_MS
    runs = [measure(kind, a.seconds, refresh) for _ in range(a.rounds) for kind in ("none", "pyqtgraph", "qlabel")]
    for r in runs:
        print(f"{r['display']:>9}: probe late p50 {r['probe_late_ms_p50']:.2f}  p99 {r['probe_late_ms_p99']:.2f}  "
              f"max {r['probe_late_ms_max']:.2f} ms; {100 * r['probe_wakes_late_over_1ms']:.1f} % of wakes over 1 ms "
              f"late; update call {r['update_call_ms_p50']:.2f} ms")
    out = {"benchmark": "window_gil", "refresh_ms": refresh, "display_size": SIZE, "seconds": a.seconds,
           "qt_platform": os.environ.get("QT_QPA_PLATFORM"), "loadavg": os.getloadavg(),
           "command": "QT_QPA_PLATFORM=offscreen python -m benchmarks.window_gil --seconds 10 --json F",
           "runs": runs}
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
