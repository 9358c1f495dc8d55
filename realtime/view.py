"""What the window may see of a playing engine: a read-only view, the control bus, and
requests.

The GUI thread never reads the engine's player, controller or ring itself. It reads the
values listed here (each one reference or number the engine replaces whole, see
:mod:`realtime.engine`'s NB), sets parameters on :attr:`EngineView.bus`, and asks for
everything else: MIDI learn and mapping changes run on the engine thread
(:meth:`realtime.engine.Engine.request`); bundle and reference loads on the loader thread;
recording replaces the recorder reference. Guarded by ``tests/test_gui.py`` (the window
is built from a view) and ``tests/test_realtime_units.py::test_view_requests_run_on_the_engine_thread``.
"""
from __future__ import annotations

import numpy as np

from .controller import ControllerState, checked_mappings
from .engine import Engine
from .params import ControlBus
from .recorder import Recorder


class EngineView:
    def __init__(self, engine: Engine):
        self._engine = engine

    # ---- read-only --------------------------------------------------------------------
    @property
    def bus(self) -> ControlBus:
        """The control bus: the GUI sets parameters and fires triggers here."""
        return self._engine.bus

    @property
    def mel_tap(self) -> np.ndarray:
        """``ndarray[frames x n_mels]``, standardized log-mel, written circularly."""
        return self._engine.mel_tap

    @property
    def mel_tap_written(self) -> int:
        return self._engine.mel_tap_written

    @property
    def token_tap(self) -> np.ndarray:
        """``ndarray[frames]`` int32, the token of each mel-tap frame (-1: none)."""
        return self._engine.token_tap

    @property
    def peak(self) -> float:
        return self._engine.peak

    @property
    def rms(self) -> float:
        return self._engine.rms

    @property
    def n_tokens(self) -> int:
        """Tokens of the bundle playing (0: not a token model)."""
        return self._engine.player.cfg.n_tokens

    @property
    def bundle_path(self) -> str:
        return self._engine.player.bundle.path

    @property
    def model_name(self) -> str:
        return self._engine.model_name

    @property
    def ring_target_ms(self) -> float:
        """The ring's target fill, ms (the latency setting)."""
        return 1e3 * self._engine.target_fill / self._engine.out_rate

    @property
    def controller(self) -> ControllerState:
        """The mappings as the engine thread last left them (a snapshot)."""
        return self._engine.controller.state

    @property
    def rack(self) -> "RackView":
        """The effects rack, for presets: what one keeps of it beyond its bus parameters."""
        return RackView(self._engine)

    @property
    def recorder(self) -> Recorder | None:
        return self._engine.recorder

    def stats(self) -> dict:
        return self._engine.stats()

    def pop_errors(self) -> list[str]:
        """Messages the engine, loader and recorder left since the last call, oldest first."""
        errors = self._engine.errors
        out = []
        while errors:
            out.append(errors.popleft())
        return out

    # ---- requests ---------------------------------------------------------------------
    def note_on(self, note: int, velocity: int = 100) -> None:
        self._engine.note_on(note, velocity)

    def note_off(self, note: int) -> None:
        self._engine.note_off(note)

    def learn(self, param: str | None) -> None:
        """Arms MIDI learn for ``param`` (None cancels), on the engine thread."""
        if param is not None and param not in self.bus.specs:
            raise KeyError(f"unknown parameter {param!r}")
        self._engine.request(lambda e: e.controller.learn(param))

    def load_mappings(self, data: list[dict]) -> None:
        """Replaces the mappings with ``data`` (``Mapping`` fields as dicts), on the engine
        thread. Checked here first: a bad list raises ValueError/KeyError/TypeError and
        changes nothing."""
        checked_mappings(self.bus, data)            # raises on a bad list
        self._engine.request(lambda e: e.controller.load_json(data))

    def load_bundle(self, path: str):
        return self._engine.load_bundle(path)

    def load_reference(self, path: str):
        return self._engine.load_reference(path)

    def start_recording(self, path: str) -> Recorder:
        return self._engine.start_recording(path)

    def stop_recording(self) -> Recorder | None:
        return self._engine.stop_recording()


class RackView:
    """The effects rack as the window sees it (``save_preset``/``load_preset``'s ``rack``):
    :meth:`settings` reads the plugin path (a reference the loader replaces whole);
    :meth:`restore` loads a preset's plugin file on the loader thread, never the GUI's
    (tests/test_gui.py::test_presets_round_trip_the_rack_in_the_window)."""

    def __init__(self, engine: Engine):
        self._engine = engine

    def settings(self) -> dict:
        return self._engine.rack.settings()

    def restore(self, settings: dict | None) -> None:
        path = (settings or {}).get("plugin_path")
        if path != self._engine.rack.plugin_path:
            self._engine.load_plugin(path)
