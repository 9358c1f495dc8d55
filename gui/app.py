"""``main.py`` / ``main.py gui``: the window, playing the bundle at once."""
from __future__ import annotations

import signal
import sys
import time

from PySide6 import QtCore, QtWidgets

from core.compute import ComputeUnavailable
from realtime.gc_pauses import freeze_heap
from realtime.headless import NoAudioDevice, build


class Session:
    """An engine, its output and the window; rebuilds the engine for a device switch."""

    def __init__(self, args):
        self.args = args
        self.engine, self.output = build(args.bundle, args.device, args.samplerate, args.frames_per_step,
                                         args.latency_ms, args.threads, args.precision, args.seed,
                                         voices=args.voices, compute=args.compute,
                                         mel_match=getattr(args, "mel_match", "full"))
        from realtime.presets import load_mappings
        try:
            load_mappings(self.engine.controller)
            self.mapping_error = None
        except ValueError as e:
            self.mapping_error = str(e)

    def start(self) -> None:
        if getattr(self.args, "reference", None):
            self.engine.load_reference(self.args.reference)     # errors reach the window's banner
        freeze_heap()       # once, before the sound: a full GC of it would be a dropout (gc_pauses.py)
        self.engine.start()
        self.output.start()

    def rebuild(self, device, latency_ms: float):
        old_engine, old_out = self.window.engine, self.window.output
        state = old_engine.bus.state()
        mappings = old_engine.controller.to_json()
        path = old_engine.player.bundle.path
        engine, output = build(path, device, None, self.args.frames_per_step, latency_ms, self.args.threads,
                               self.args.precision, int(state["seed_a"]), voices=self.args.voices,
                               compute=str(old_engine.compute_device), mel_match=old_engine.mel_match)
        old_out.stop()
        old_engine.stop()
        for k, v in state.items():
            engine.bus.set(k, v)
        engine.controller.load_json(mappings)
        engine.start()
        output.start()
        self.engine, self.output = engine, output
        return engine, output


def run_gui(args) -> int:
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    # Ctrl-C / SIGTERM close the window cleanly (the mapping save and shutdown below run);
    # Python handles a signal between bytecodes, which the window's timer provides. The
    # handlers go in first: a signal while the bundle loads or the ring prefills (seconds on a
    # busy machine) used to end the process with a KeyboardInterrupt traceback or rc -15
    quit_requested = []

    def on_signal(*_):
        quit_requested.append(True)
        app.quit()
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    print(f"loading '{args.bundle}'", file=sys.stderr, flush=True)
    try:
        return _run_window(app, args, quit_requested)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run_window(app, args, quit_requested: list) -> int:
    """Builds the session and the window, plays until quit; ``quit_requested`` is non-empty
    once a signal asked to quit."""
    from .main_window import MainWindow

    try:
        session = Session(args)
    except (NoAudioDevice, ComputeUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    window = MainWindow(session.engine, session.output, rebuild=session.rebuild)
    session.window = window
    if session.mapping_error:
        window.show_error(session.mapping_error + "; using the default MIDI map")
    if getattr(args, "midi", None) is not None:
        window.open_midi(args.midi_api, args.midi)
    w, h = args.size
    window.resize(w, h)
    window.show()
    # the first layout and paint run before the sound starts: they hold the GIL for longer
    # than the ring's 50 ms, and the first seconds of playback underran (1-3 per start)
    app.processEvents()
    if not quit_requested:
        session.start()
    if args.quit_after is not None:
        def finish():
            if args.screenshot:
                window.grab().save(args.screenshot)
                print(f"screenshot {args.screenshot} ({w}x{h})", file=sys.stderr)
            window.close()
            app.quit()
        QtCore.QTimer.singleShot(int(args.quit_after * 1000), finish)
    if not quit_requested:      # app.quit() before exec() is forgotten: a signal so far ends here
        print(f"playing '{window.engine.model_name}' on {window.output.device_name}; "
              "close the window or press Ctrl-C to quit", file=sys.stderr, flush=True)
        QtCore.QTimer.singleShot(0, lambda: quit_requested and app.quit())  # one just before exec()
        app.exec()
    if window.isVisible():
        window.close()
    if window.engine.controller.dirty and window.engine.controller.learned is not None:
        from realtime.presets import save_mappings
        save_mappings(window.engine.controller)
    window.deleteLater()
    app.processEvents()
    return 0


class OffscreenSession:
    """The window around an existing engine, for the soak benchmark (``--gui``)."""

    def __init__(self, engine, output, size=(1280, 800)):
        from .main_window import MainWindow
        self.app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
        self.window = MainWindow(engine, output)
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
