"""``main.py`` / ``main.py gui``: the window, playing the bundle at once."""
from __future__ import annotations

import signal
import sys
import time

from PySide6 import QtCore, QtWidgets

from core.compute import ComputeUnavailable
from realtime.midi import MidiError
from realtime.session import NoAudioDevice, Session
from realtime.settings import Settings
from realtime.status import step_status


def run_gui(settings: Settings, screenshot: str | None = None, quit_after: float | None = None,
            size: tuple[int, int] = (1280, 800), stats_json: str | None = None) -> int:
    """The window playing ``settings``; ``screenshot``: a PNG of the window saved at
    ``quit_after`` seconds, when it closes; ``stats_json``: the engine's final stats, written
    when it closes. Returns the exit code."""
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    # Ctrl-C / SIGTERM close the window cleanly (the mapping save and shutdown below run);
    # Python handles a signal between bytecodes, which the window's timer provides. The
    # handlers go in first, so that a signal while the bundle loads or the ring prefills ends
    # the process cleanly too (tests/test_gui.py::test_ctrl_c_or_sigterm_closes_the_window_cleanly)
    quit_requested = []

    def on_signal(*_):
        quit_requested.append(True)
        app.quit()
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    print(f"loading '{settings.bundle}'", file=sys.stderr, flush=True)
    try:
        return _run_window(app, settings, quit_requested, screenshot, quit_after, size, stats_json)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_window(app, settings: Settings, quit_requested: list, screenshot, quit_after, size, stats_json) -> int:
    """Builds the session and the window, plays until quit; ``quit_requested`` is non-empty
    once a signal asked to quit."""
    from .main_window import MainWindow

    try:
        session = Session(settings)
    except (NoAudioDevice, ComputeUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    window = MainWindow(session)
    try:
        session.open_midi_from_settings()
    except MidiError as e:
        window.show_error(str(e))
    w, h = size
    window.resize(w, h)
    window.show()
    # the first layout and paint run before the sound starts: they hold the GIL for longer
    # than the ring holds (tests/test_gui.py::test_the_sound_starts_after_the_window_has_painted)
    app.processEvents()
    if not quit_requested:
        session.start(wait_for_reference=False)      # a reference file's error reaches the banner
        window.show_warnings()
    if quit_after is not None:
        def finish():
            if screenshot:
                window.grab().save(screenshot)
                print(f"screenshot {screenshot} ({w}x{h})", file=sys.stderr)
            window.close()
            app.quit()
        QtCore.QTimer.singleShot(int(quit_after * 1000), finish)
    if not quit_requested:      # app.quit() before exec() is forgotten: a signal so far ends here
        print(f"playing '{session.engine.model_name}' on {session.output.device_name} "
              f"({step_status(session.engine.stats(), full=True)}); "
              "close the window or press Ctrl-C to quit", file=sys.stderr, flush=True)
        QtCore.QTimer.singleShot(0, lambda: quit_requested and app.quit())  # one just before exec()
        app.exec()
    if window.isVisible():
        window.close()          # closeEvent stops the session (sound, then MIDI; saves learned mappings)
    stats = session.stop()
    if stats_json:
        import json
        with open(stats_json, "w") as f:
            json.dump(stats, f, indent=1)
    window.deleteLater()
    app.processEvents()
    return 0


class OffscreenWindow:
    """The window around an existing session, for the soak benchmark (``--gui``)."""

    def __init__(self, session: Session, size=(1280, 800)):
        from .main_window import MainWindow
        self.app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
        self.window = MainWindow(session)
        self.window.resize(*size)
        self.window.show()

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.app.processEvents(QtCore.QEventLoop.AllEvents, 20)
            time.sleep(0.005)

    def close(self) -> None:
        self.window.timer.stop()
        self.window.hide()
        self.window.deleteLater()
        self.app.processEvents()
