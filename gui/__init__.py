"""PySide6 + pyqtgraph window. Pulls everything from the engine with a QTimer; never waits on it."""
import os

os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
