"""Small widgets: a parameter control with MIDI learn, a level meter, an on-screen keyboard."""
from __future__ import annotations

from PySide6 import QtCore, QtGui, QtWidgets

from realtime.params import ParamSpec

SLIDER_STEPS = 1000


class ParamControl(QtWidgets.QWidget):
    """Name, a slider (or box / check box), the value with its unit, a Learn button and the
    bound CC. Emits nothing: it calls ``set_value(name, value)`` and ``learn(name)``."""

    def __init__(self, spec: ParamSpec, set_value, learn, parent=None, label: str | None = None):
        super().__init__(parent)
        self.spec, self._set_value, self._learn = spec, set_value, learn
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(2, 1, 2, 1)
        self.label = QtWidgets.QLabel(label or spec.name)
        self.label.setMinimumWidth(max(86, self.label.sizeHint().width()))     # long rack names whole
        self.label.setToolTip(spec.doc)
        lay.addWidget(self.label)
        if spec.kind == "choice":
            self.editor = QtWidgets.QComboBox()
            self.editor.addItems(list(spec.choices))
            self.editor.currentIndexChanged.connect(lambda i: self._set_value(spec.name, i))
        elif spec.kind == "bool":
            self.editor = QtWidgets.QCheckBox()
            self.editor.toggled.connect(lambda on: self._set_value(spec.name, 1.0 if on else 0.0))
        else:
            self.editor = QtWidgets.QSlider(QtCore.Qt.Horizontal)
            self.editor.setRange(0, SLIDER_STEPS)
            self.editor.setMinimumWidth(110)
            self.editor.valueChanged.connect(self._slider_moved)
        self.editor.setObjectName(f"param-{spec.name}")
        lay.addWidget(self.editor, 1)
        self.value_label = QtWidgets.QLabel()
        self.value_label.setFixedWidth(72)
        self.value_label.setAlignment(QtCore.Qt.AlignRight | QtCore.Qt.AlignVCenter)
        lay.addWidget(self.value_label)
        self.learn_button = QtWidgets.QPushButton("Learn")
        self.learn_button.setCheckable(True)
        self.learn_button.setFixedWidth(56)
        self.learn_button.setObjectName(f"learn-{spec.name}")
        self.learn_button.clicked.connect(lambda checked: self._learn(spec.name if checked else None))
        lay.addWidget(self.learn_button)
        self.cc_label = QtWidgets.QLabel("")
        self.cc_label.setFixedWidth(76)
        lay.addWidget(self.cc_label)
        self._updating = False

    def _slider_moved(self, pos: int) -> None:
        if self._updating:
            return
        s = self.spec
        self._set_value(s.name, s.minimum + (s.maximum - s.minimum) * pos / SLIDER_STEPS)

    def show_value(self, value: float) -> None:
        """Reflects a value set elsewhere (MIDI, presets) without echoing it back."""
        s = self.spec
        self._updating = True
        self.editor.blockSignals(True)
        if s.kind == "choice":
            self.editor.setCurrentIndex(int(value))
            text = s.choices[int(value)]
        elif s.kind == "bool":
            self.editor.setChecked(value >= 0.5)
            text = "on" if value >= 0.5 else "off"
        else:
            self.editor.setValue(round((value - s.minimum) / (s.maximum - s.minimum) * SLIDER_STEPS))
            text = f"{value:.0f}" if s.kind == "int" else f"{value:.3g}"
            if s.unit:
                text += f" {s.unit}"
        self.editor.blockSignals(False)
        self._updating = False
        self.value_label.setText(text)

    def show_binding(self, text: str, learning: bool) -> None:
        self.cc_label.setText(text)
        self.learn_button.setChecked(learning)


class LevelMeter(QtWidgets.QWidget):
    """Peak and RMS bars in dBFS with a peak hold that falls back after 1.5 s."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setMinimumSize(28, 120)
        self.peak_db = self.rms_db = self.hold_db = -90.0
        self._hold_t = 0.0

    def update_level(self, peak: float, rms: float, now: float) -> None:
        import math
        self.peak_db = 20 * math.log10(max(peak, 1e-5))
        self.rms_db = 20 * math.log10(max(rms, 1e-5))
        if self.peak_db >= self.hold_db or now - self._hold_t > 1.5:
            self.hold_db, self._hold_t = self.peak_db, now
        self.update()

    def _y(self, db: float) -> int:
        h = self.height()
        return int(h - h * (min(max(db, -60.0), 0.0) + 60.0) / 60.0)

    def paintEvent(self, e) -> None:
        p = QtGui.QPainter(self)
        p.fillRect(self.rect(), QtGui.QColor(20, 20, 24))
        w = self.width()
        p.fillRect(QtCore.QRect(2, self._y(self.rms_db), w - 4, self.height()), QtGui.QColor(40, 170, 90))
        p.fillRect(QtCore.QRect(w // 3, self._y(self.peak_db), w // 3, self.height()), QtGui.QColor(120, 220, 120))
        colour = QtGui.QColor(230, 60, 50) if self.hold_db > -1.0 else QtGui.QColor(240, 220, 90)
        p.fillRect(QtCore.QRect(2, self._y(self.hold_db), w - 4, 2), colour)
        p.end()


class Keyboard(QtWidgets.QWidget):
    """Two octaves of piano keys. Mouse and computer keys (A W S E D F T G Y H U J K: one
    octave from C; Z / X shift the octave) call ``note_on(note)`` / ``note_off(note)``."""

    KEYS = "AWSEDFTGYHUJK"

    def __init__(self, note_on, note_off, parent=None, first: int = 48, octaves: int = 2):
        super().__init__(parent)
        self.note_on, self.note_off = note_on, note_off
        self.first, self.octaves = first, octaves
        self.octave_shift = 0
        self.down: set[int] = set()
        self._mouse_note: int | None = None
        self.setMinimumHeight(70)
        self.setFocusPolicy(QtCore.Qt.StrongFocus)

    def _layout(self):
        whites, blacks = [], []
        n_white = 7 * self.octaves
        ww = self.width() / n_white
        wi = 0
        for note in range(self.first, self.first + 12 * self.octaves):
            if note % 12 in (1, 3, 6, 8, 10):
                blacks.append((note, QtCore.QRectF(wi * ww - ww * 0.3, 0, ww * 0.6, self.height() * 0.6)))
            else:
                whites.append((note, QtCore.QRectF(wi * ww, 0, ww, self.height())))
                wi += 1
        return whites, blacks

    def note_at(self, pos) -> int | None:
        whites, blacks = self._layout()
        for note, r in blacks + whites:
            if r.contains(pos):
                return note
        return None

    def paintEvent(self, e) -> None:
        p = QtGui.QPainter(self)
        whites, blacks = self._layout()
        for note, r in whites:
            p.fillRect(r, QtGui.QColor(250, 170, 60) if note in self.down else QtGui.QColor(245, 245, 240))
            p.setPen(QtGui.QColor(80, 80, 80))
            p.drawRect(r)
            if note % 12 == 0:
                p.drawText(r.adjusted(2, 0, 0, -4), QtCore.Qt.AlignBottom | QtCore.Qt.AlignLeft, f"C{note // 12 - 1}")
        for note, r in blacks:
            p.fillRect(r, QtGui.QColor(250, 140, 30) if note in self.down else QtGui.QColor(25, 25, 25))
        p.end()

    def press(self, note: int) -> None:
        if note not in self.down:
            self.down.add(note)
            self.note_on(note)
            self.update()

    def release(self, note: int) -> None:
        if note in self.down:
            self.down.discard(note)
            self.note_off(note)
            self.update()

    def mousePressEvent(self, e) -> None:
        note = self.note_at(e.position())
        if note is not None:
            self._mouse_note = note
            self.press(note)

    def mouseReleaseEvent(self, e) -> None:
        if self._mouse_note is not None:
            self.release(self._mouse_note)
            self._mouse_note = None

    def _key_note(self, e) -> int | None:
        t = e.text().upper()
        if t and t in self.KEYS:
            return self.first + 12 * self.octave_shift + self.KEYS.index(t)
        return None

    def keyPressEvent(self, e) -> None:
        if e.isAutoRepeat():
            return
        t = e.text().upper()
        if t == "Z":
            self.octave_shift = max(-3, self.octave_shift - 1)
        elif t == "X":
            self.octave_shift = min(4, self.octave_shift + 1)
        note = self._key_note(e)
        if note is not None:
            self.press(note)
        else:
            super().keyPressEvent(e)

    def keyReleaseEvent(self, e) -> None:
        if e.isAutoRepeat():
            return
        note = self._key_note(e)
        if note is not None:
            self.release(note)
        else:
            super().keyReleaseEvent(e)
