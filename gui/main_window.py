"""The main window: transport, parameters with MIDI learn, keyboard, spectrogram, meters,
status, recording, bundle / device / MIDI / preset pickers.

Threads: everything here runs on the GUI thread. The window sees the engine only through
:class:`~realtime.view.EngineView` (read-only values, the control bus, requests) and asks
the :class:`~realtime.session.Session` for transport, MIDI ports and device switches. A
QTimer (:data:`REFRESH_MS`) pulls the view's taps and stats (``mel_tap``, ``token_tap``,
``peak``, ``rms``, ``pop_errors()``, ``stats()``) and pushes changes through the control bus;
nothing here ever waits for the engine thread. The spectrogram is a picture Qt paints in C++
(:mod:`gui.spectrogram`: Python painting would hold the GIL the engine steps with).
"""
from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from realtime import presets
from realtime.midi import MidiError, list_ports
from realtime.rack import display_name, is_rack_param
from realtime.session import Session
from realtime.status import latency_words, status_extras, step_status

from .spectrogram import SpectrogramView
from .widgets import Keyboard, LevelMeter, ParamControl

HIDDEN = {"seed_a", "seed_b"}     # shown by the seed pickers instead


def default_record_dir() -> Path:
    music = QtCore.QStandardPaths.writableLocation(QtCore.QStandardPaths.MusicLocation)
    d = Path(music) if music else Path.home()
    return d if d.is_dir() else Path.home()


# The window redraws at 15 Hz. Its paints hold the GIL (pyqtgraph's paint code, about 6.5 ms
# a paint in a cProfile run), which the engine thread needs for every step: at 30 Hz, 4 voices
# at 1-frame steps underran 460 times in 20 s on an idle 2-core machine (RTF 1.23), at 15 Hz
# 12 times (RTF 0.85): benchmarks/results/window_refresh.json, docs/measurements.md.
REFRESH_MS = 66


class MainWindow(QtWidgets.QMainWindow):
    def __init__(self, session: Session, parent=None):
        super().__init__(parent)
        self.session = session
        self.view = session.view
        self.ask_for_path = True                # record / open / save dialogs (tests turn them off)
        self.record_dir = default_record_dir()
        self._bus_version = -1
        self._shown_bundle: str | None = None   # the bundle file the picker shows as playing
        self._mel_written = -1
        self._last_stats = 0.0
        self._error_until = 0.0
        self.setWindowTitle("driftwave")
        self._build()
        self._bind_engine()
        self.timer = QtCore.QTimer(self)
        self.timer.timeout.connect(self.tick)
        self.timer.start(REFRESH_MS)

    # ---- construction -------------------------------------------------------------------
    def _build(self) -> None:
        central = QtWidgets.QWidget()
        root = QtWidgets.QVBoxLayout(central)
        root.setContentsMargins(6, 6, 6, 6)
        root.addLayout(self._transport_row())
        root.addLayout(self._pickers_row())
        self.error_banner = QtWidgets.QLabel()
        self.error_banner.setObjectName("error-banner")
        self.error_banner.setWordWrap(True)
        self.error_banner.setStyleSheet("background:#7a1f1f;color:white;padding:4px;border-radius:3px")
        self.error_banner.hide()
        root.addWidget(self.error_banner)
        split = QtWidgets.QSplitter(QtCore.Qt.Horizontal)
        split.addWidget(self._params_panel())
        split.addWidget(self._display_panel())
        split.setStretchFactor(0, 0)
        split.setStretchFactor(1, 1)
        split.setSizes([430, 800])
        root.addWidget(split, 1)
        self.keyboard = Keyboard(self.engine_note_on, self.engine_note_off)
        root.addWidget(self.keyboard)
        self.setCentralWidget(central)
        self.status = QtWidgets.QLabel()
        self.status.setObjectName("status")
        self.status.setSizePolicy(QtWidgets.QSizePolicy.Ignored, QtWidgets.QSizePolicy.Preferred)   # never widens the window
        self.statusBar().addWidget(self.status, 1)

    def _transport_row(self):
        row = QtWidgets.QHBoxLayout()
        self.play_button = QtWidgets.QPushButton("Stop")
        self.play_button.setCheckable(True)
        self.play_button.setChecked(True)
        self.play_button.toggled.connect(self.set_playing)
        self.panic_button = QtWidgets.QPushButton("Panic")
        self.panic_button.clicked.connect(lambda: self.view.bus.trigger("panic"))
        self.record_button = QtWidgets.QPushButton("Record")
        self.record_button.setCheckable(True)
        self.record_button.setObjectName("record")
        self.record_button.toggled.connect(self.set_recording)
        self.record_label = QtWidgets.QLabel("")
        self.seed_a_button = QtWidgets.QPushButton("New seed A")
        self.seed_a_button.clicked.connect(lambda: self.view.bus.trigger("new_seed_a"))
        self.seed_a_box = QtWidgets.QSpinBox()
        self.seed_a_box.setRange(0, 2 ** 31 - 1)
        self.seed_a_box.editingFinished.connect(lambda: self.view.bus.set("seed_a", self.seed_a_box.value()))
        self.seed_b_button = QtWidgets.QPushButton("New seed B")
        self.seed_b_button.clicked.connect(lambda: self.view.bus.trigger("new_seed_b"))
        self.seed_b_box = QtWidgets.QSpinBox()
        self.seed_b_box.setRange(0, 2 ** 31 - 1)
        self.seed_b_box.editingFinished.connect(lambda: self.view.bus.set("seed_b", self.seed_b_box.value()))
        for w in (self.play_button, self.panic_button, self.record_button, self.record_label):
            row.addWidget(w)
        row.addStretch(1)
        for w in (QtWidgets.QLabel("A"), self.seed_a_box, self.seed_a_button,
                  QtWidgets.QLabel("B"), self.seed_b_box, self.seed_b_button):
            row.addWidget(w)
        return row

    def _pickers_row(self):
        row = QtWidgets.QHBoxLayout()
        self.open_button = QtWidgets.QPushButton("Open bundle…")
        self.open_button.clicked.connect(self.open_bundle_dialog)
        self.reference_button = QtWidgets.QPushButton("Reference…")
        self.reference_button.setToolTip("token models: play the tokens of an audio file (token mode 'reference')")
        self.reference_button.clicked.connect(self.open_reference_dialog)
        self.recent = QtWidgets.QComboBox()
        self.recent.setMinimumWidth(160)
        self.recent.setToolTip("the bundle playing; pick another you opened before to swap to it")
        self.recent.activated.connect(lambda i: self.load_bundle(self.recent.itemData(i)))
        self.device_box = QtWidgets.QComboBox()
        self.device_box.setMinimumWidth(120)
        self.latency_mode = QtWidgets.QComboBox()
        self.latency_mode.setToolTip("low / normal / safe: the ring sized from measured step times; "
                                     "ms: a fixed ring fill")
        self.latency_mode.addItems(["low", "normal", "safe", "ms"])
        mode = self.session.settings.latency if self.session.settings.latency_ms is None else "ms"
        self.latency_mode.setCurrentText(mode)
        self.latency_box = QtWidgets.QSpinBox()
        self.latency_box.setRange(5, 1000)
        self.latency_box.setSuffix(" ms")
        self.latency_box.setValue(int(round(self.view.ring_target_ms)))
        self.latency_box.setEnabled(mode == "ms")
        self.latency_mode.currentTextChanged.connect(lambda m: self.latency_box.setEnabled(m == "ms"))
        self.apply_device = QtWidgets.QPushButton("Apply")
        self.apply_device.clicked.connect(self._apply_device)
        self.midi_box = QtWidgets.QComboBox()
        self.midi_box.setMinimumWidth(120)
        self.midi_box.activated.connect(self._midi_selected)
        self.input_box = QtWidgets.QComboBox()      # live audio input (token mode "input", pitch_follow)
        self.input_box.setMinimumWidth(110)
        self.input_box.setToolTip("live audio input: token mode 'input' plays its tokens, pitch_follow its pitch")
        self.input_box.activated.connect(self._input_selected)
        self.preset_box = QtWidgets.QComboBox()
        self.preset_box.setEditable(True)
        self.preset_box.setMinimumWidth(110)
        save = QtWidgets.QPushButton("Save")
        save.clicked.connect(lambda: self.save_preset(self.preset_box.currentText()))
        load = QtWidgets.QPushButton("Load")
        load.clicked.connect(lambda: self.load_preset(self.preset_box.currentText()))
        for w in (self.open_button, self.recent, self.reference_button, QtWidgets.QLabel("Device"), self.device_box,
                  self.latency_mode, self.latency_box, self.apply_device, QtWidgets.QLabel("Input"), self.input_box,
                  QtWidgets.QLabel("MIDI"), self.midi_box,
                  QtWidgets.QLabel("Preset"), self.preset_box, save, load):
            row.addWidget(w)
        row.addStretch(1)
        self._fill_pickers()
        return row

    def _params_panel(self):
        """The knobs, and the effects rack's parameters on a tab of their own."""
        self.controls: dict[str, ParamControl] = {}
        tabs = QtWidgets.QTabWidget()
        tabs.addTab(self._param_list(lambda name: not is_rack_param(name)), "Knobs")
        tabs.addTab(self._param_list(is_rack_param), "Effects")
        tabs.setMinimumWidth(400)
        return tabs

    def _param_list(self, wanted) -> QtWidgets.QScrollArea:
        box = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(box)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        for spec in self.view.bus.specs.values():
            if spec.kind == "trigger" or spec.name in HIDDEN or not wanted(spec.name):
                continue
            c = ParamControl(spec, self._set_param, self._learn, label=display_name(spec.name))
            self.controls[spec.name] = c
            lay.addWidget(c)
        lay.addStretch(1)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidget(box)
        scroll.setWidgetResizable(True)
        return scroll

    def _display_panel(self):
        w = QtWidgets.QWidget()
        lay = QtWidgets.QHBoxLayout(w)
        lay.setContentsMargins(0, 0, 0, 0)
        col = QtWidgets.QVBoxLayout()
        self.display_caption = QtWidgets.QLabel("log-mel spectrogram, newest right")
        col.addWidget(self.display_caption)
        self.spectrogram = SpectrogramView()
        self.spectrogram.setObjectName("spectrogram")
        col.addWidget(self.spectrogram, 1)
        lay.addLayout(col, 1)
        self.meter = LevelMeter()
        lay.addWidget(self.meter)
        return w

    # ---- engine wiring ----------------------------------------------------------------------
    def _show_token_count(self, n_tokens: int) -> None:
        self._n_tokens = n_tokens
        self.spectrogram.set_token_count(n_tokens)
        self.display_caption.setText("log-mel spectrogram, newest right"
                                     + (f"; below, the token of each frame ({n_tokens} colours)" if n_tokens else ""))
        self._mel_written = -1                  # redraw with the new lane

    def _bind_engine(self) -> None:
        self.view = self.session.view
        self._show_token_count(self.view.n_tokens)      # and the picture drawn anew
        self._bus_version = -1

    def engine_note_on(self, note: int) -> None:
        self.view.note_on(note, 100)

    def engine_note_off(self, note: int) -> None:
        self.view.note_off(note)

    def _set_param(self, name: str, value: float) -> None:
        self.view.bus.set(name, value)

    def _learn(self, name: str | None) -> None:
        self.view.learn(name)           # the engine thread arms it; tick() shows it then
        self._bus_version = -1

    def set_playing(self, on: bool) -> None:
        self.play_button.setText("Stop" if on else "Play")
        if on:
            self.session.resume()
        else:
            self.session.pause()

    def set_recording(self, on: bool) -> None:
        if on:
            path = self.record_dir / f"driftwave-{datetime.now():%Y%m%d-%H%M%S}.wav"
            if self.ask_for_path:
                chosen, _ = QtWidgets.QFileDialog.getSaveFileName(self, "Record to", str(path), "WAV (*.wav)")
                if not chosen:
                    self.record_button.setChecked(False)
                    return
                path = Path(chosen)
            try:
                self.view.start_recording(str(path))
            except OSError as e:
                self.show_error(str(e))
                self.record_button.blockSignals(True)
                self.record_button.setChecked(False)
                self.record_button.blockSignals(False)
            return
        rec = self.view.stop_recording()
        if rec is not None:
            self.record_label.setText(f"saved {Path(rec.path).name} ({rec.seconds:.1f} s)")

    def open_bundle_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Open bundle", str(Path.cwd() / "models"),
                                                        "driftwave bundles (*.dwb);;all files (*)")
        if path:
            self.load_bundle(path)

    def open_reference_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "Reference audio", str(Path.cwd()),
                                                        "audio (*.wav *.flac *.ogg *.aiff *.aif);;all files (*)")
        if path:
            self.view.load_reference(path)      # a bad file or a model without tokens: the banner says so

    def load_bundle(self, path: str) -> None:
        """Hot swap; a bad file shows its error here and the sound goes on."""
        if not path:
            return
        self.view.load_bundle(path)     # remembered once it plays (tick), not if it fails

    def save_preset(self, name: str) -> None:
        try:
            presets.save_preset(name, self.view.bus, self.view.controller, rack=self.view.rack)
            self._fill_presets(select=name)
        except (ValueError, OSError) as e:
            self.show_error(f"cannot save preset: {e}")

    def load_preset(self, name: str) -> None:
        try:
            data = presets.load_preset(name, self.view.bus, rack=self.view.rack)
            if data.get("mappings") is not None:
                self.view.load_mappings(data["mappings"])      # on the engine thread
        except (ValueError, KeyError, TypeError) as e:
            self.show_error(f"preset {name!r}: {e}")

    @property
    def midi(self):
        """The MIDI input the session has open, or None."""
        return self.session.midi

    def open_midi(self, api: str, port) -> None:
        try:
            self.session.open_midi(api, port)
        except MidiError as e:
            self.show_error(str(e))
        self.show_warnings()

    def close_midi(self) -> None:
        self.session.close_midi()

    def _midi_selected(self, i: int) -> None:
        data = self.midi_box.itemData(i)
        if data:
            self.open_midi(*data)
        else:                               # "(no MIDI input)"
            self.close_midi()

    def _input_selected(self, i: int) -> None:
        device = self.input_box.itemData(i)
        try:
            if device is None:
                self.session.close_input()
            else:
                self.session.open_input(device)
        except Exception as e:      # NoAudioDevice: a one-line message, the sound goes on
            self.show_error(f"cannot open the audio input: {e}")
            self.input_box.setCurrentIndex(0)

    def _apply_device(self) -> None:
        device = self.device_box.currentData()
        try:
            mode = self.latency_mode.currentText()
            self.session.switch_device(device, float(self.latency_box.value()) if mode == "ms" else mode)
        except Exception as e:
            self.show_error(f"cannot switch the audio device: {e}")
            return
        self._bind_engine()

    def _fill_pickers(self) -> None:
        try:
            import sounddevice as sd
            devices = sd.query_devices()        # one query of PortAudio for both pickers
            for i, d in enumerate(devices):
                if d["max_output_channels"] > 0:
                    self.device_box.addItem(f"{i}: {d['name']}", i)
            self.input_box.addItem("(no input)", None)
            for i, d in enumerate(devices):
                if d["max_input_channels"] > 0:
                    self.input_box.addItem(f"{i}: {d['name']}", i)
        except Exception as e:
            self.device_box.addItem(f"(no devices: {e})", None)
        self.midi_box.addItem("(no MIDI input)", None)
        try:
            listed = list_ports()
            for api, ports in listed.items():
                for p in ports:
                    if not p.startswith("(unavailable"):
                        self.midi_box.addItem(f"{api}: {p}", (api, p))
        except Exception as e:
            self.midi_box.addItem(f"(MIDI unavailable: {e})", None)
        self._fill_presets()
        for path in self._recent_list():
            self.recent.addItem(Path(path).name, path)

    def _fill_presets(self, select: str | None = None) -> None:
        self.preset_box.clear()
        self.preset_box.addItems(presets.list_presets())
        if select:
            self.preset_box.setCurrentText(select)

    def _recent_file(self) -> Path:
        return presets.config_dir() / "recent.json"

    def _recent_list(self) -> list[str]:
        try:
            return [p for p in json.loads(self._recent_file().read_text()) if isinstance(p, str)]
        except (OSError, ValueError):
            return []

    def _show_playing_bundle(self, path: str) -> None:
        """Puts the playing bundle's file first among the recent ones and shows it picked."""
        self._shown_bundle = path
        path = os.path.abspath(path)
        self._remember_recent(path)
        i = self.recent.findData(path)
        if i >= 0:
            self.recent.setCurrentIndex(i)

    def _remember_recent(self, path: str) -> None:
        paths = [path] + [p for p in self._recent_list() if p != path]
        try:
            self._recent_file().parent.mkdir(parents=True, exist_ok=True)
            self._recent_file().write_text(json.dumps(paths[:10]))
        except OSError:
            pass
        if self.recent.findData(path) < 0:
            self.recent.insertItem(0, Path(path).name, path)

    # ---- the 30 Hz pull ---------------------------------------------------------------------
    def show_warnings(self) -> None:
        """The session's startup warnings, on the banner."""
        while self.session.warnings:
            self.show_error(self.session.warnings.pop(0))

    def show_error(self, msg: str, seconds: float = 8.0) -> None:
        self.error_banner.setText(msg)
        self.error_banner.show()
        self._error_until = time.monotonic() + seconds

    def tick(self) -> None:
        e = self.view
        now = time.monotonic()
        for msg in e.pop_errors():
            self.show_error(msg)
        if self.error_banner.isVisible() and now > self._error_until:
            self.error_banner.hide()
        written = e.mel_tap_written
        if written != self._mel_written:
            self._mel_written = written
            self.spectrogram.show_taps(e.mel_tap, written, e.token_tap)
        self.meter.update_level(e.peak, e.rms, now)
        if e.n_tokens != self._n_tokens:      # a hot swap to another token count
            self._show_token_count(e.n_tokens)
        if e.bundle_path != self._shown_bundle:    # at start, and after a hot swap
            self._show_playing_bundle(e.bundle_path)
        sig = (e.bus.version, e.controller.version)
        if sig != self._bus_version:
            self._bus_version = sig
            self._refresh_controls()
        if now - self._last_stats > 0.25:
            self._last_stats = now
            self._refresh_status()

    def _refresh_controls(self) -> None:
        e = self.view
        state = e.bus.state()
        mappings = e.controller                 # one snapshot for the whole refresh
        learning = mappings.learning
        for name, c in self.controls.items():
            c.spec = e.bus.specs[name]          # the token knob spans the loaded model's tokens
            c.show_value(state[name])
            maps = mappings.bound_to(name)
            text = ", ".join(f"CC{m.number}" if m.source == "cc" else m.source for m in maps)
            c.show_binding(text, learning == name)
        for box, name in ((self.seed_a_box, "seed_a"), (self.seed_b_box, "seed_b")):
            if not box.hasFocus():
                box.setValue(int(state[name]))

    def _refresh_status(self) -> None:
        s = self.view.stats()
        rec = self.view.recorder
        if rec is not None:
            size = os.path.getsize(rec.path) / 2 ** 20 if os.path.exists(rec.path) else 0.0
            self.record_label.setText(f"● {rec.seconds:6.1f} s  {size:.1f} MB")
            if rec.error:
                self.record_button.setChecked(False)
        self.status.setText(
            f"{s['model']} on {s['compute']}  |  {s['device']} {s['device_rate']} Hz  |  "
            f"note-to-sound {s['note_to_sound_ms']:.0f} ms ({latency_words(s)})  ring {s['ring_fill_ms']:.0f} ms  "
            f"RTF {s['rtf']:.2f} {step_status(s)}  engine {s['priority']}  |  "
            f"underruns {s['underruns']}  NaN {s['nan_events']}  |  voices {s['voices']}  "
            f"MIDI {s['midi_messages_received']} ({s['midi_messages_ignored']} ignored)" + status_extras(s, "  |  "))
        self.status.setToolTip(self.status.text())

    def shutdown(self) -> None:
        self.timer.stop()
        self.session.stop()         # sound first, then MIDI (see Session.stop)

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)
