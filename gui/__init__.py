"""PySide6 window (pyqtgraph's colour maps). Pulls everything from the engine with a QTimer; never waits on it."""
import os

os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
