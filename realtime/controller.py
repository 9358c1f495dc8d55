"""What MIDI does: CC/bend/pressure mappings with MIDI learn, notes, program changes.

:meth:`MidiController.handle` runs on the engine thread (the engine drains the MIDI
queue once per step), so it may touch the voice bank and the control bus freely.

NB: the mappings belong to the engine thread. Other threads change them only by request
(:meth:`realtime.engine.Engine.request`, which runs a function on the engine thread between
steps) and read them only through :attr:`MidiController.state`, an immutable
:class:`ControllerState` the controller replaces whole after every change (one reference
store, atomic under the GIL). Guarded by ``tests/test_realtime_units.py::
test_controller_state_is_a_snapshot_replaced_whole``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .midi_parse import CLOCK_KINDS, MidiEvent
from .params import ControlBus
from .voices import VoiceBank

CURVES = ("linear", "exp", "log", "invert")


@dataclass
class Mapping:
    """``source`` is "cc" (``number`` = controller), "pitchbend" or "pressure"; the 0..1
    control position goes through ``curve`` and lands in ``lo..hi`` of the parameter's
    range (fractions of it)."""
    source: str
    number: int
    param: str
    lo: float = 0.0
    hi: float = 1.0
    curve: str = "linear"
    channel: int | None = None      # None: any channel

    def position(self, x: float) -> float:
        x = min(max(x, 0.0), 1.0)
        if self.curve == "exp":
            x = x * x
        elif self.curve == "log":
            x = math.sqrt(x)
        elif self.curve == "invert":
            x = 1.0 - x
        return self.lo + (self.hi - self.lo) * x

    @property
    def key(self) -> tuple[str, int]:
        return (self.source, self.number)


@dataclass(frozen=True)
class ControllerState:
    """What the controller's mappings were after its last change, for other threads."""
    learning: str | None                # parameter armed for MIDI learn
    learned: Mapping | None             # the last binding made by learn
    mappings: tuple[Mapping, ...]
    version: int = 0                    # grows with every change

    def bound_to(self, param: str) -> list[Mapping]:
        return [m for m in self.mappings if m.param == param]

    def to_json(self) -> list[dict]:
        return [asdict(m) for m in self.mappings]


# A generic 8-knob controller (CC 70-77 is the default bank of many; CC 1 mod wheel,
# CC 7 volume, CC 64 sustain pedal).
DEFAULT_MAPPINGS = (
    Mapping("cc", 70, "morph"), Mapping("cc", 71, "drift", curve="exp"), Mapping("cc", 72, "temperature"),
    Mapping("cc", 73, "token"), Mapping("cc", 74, "token_rate"), Mapping("cc", 75, "glide", curve="exp"),
    Mapping("cc", 76, "release", curve="exp"), Mapping("cc", 77, "gain", lo=0.25, hi=1.0),
    Mapping("cc", 1, "morph"), Mapping("cc", 7, "gain", lo=0.25, hi=1.0), Mapping("cc", 64, "freeze"),
)


# MIDI clock and transport -> the engine's beat clock (core/tempo.py's BeatClock)
CLOCK_ACTIONS = {
    "clock": lambda clock, ev: clock.clock(ev.time), "start": lambda clock, ev: clock.start(),
    "stop": lambda clock, ev: clock.stop(), "continue": lambda clock, ev: clock.resume(),
    "song_position": lambda clock, ev: clock.song_position(ev.a),
}     # one per CLOCK_KINDS (tests/test_tempo.py::test_clock_messages_parse_and_route_to_the_beat_clock)


def check_mapping(bus: ControlBus, m: Mapping) -> Mapping:
    """``m`` if the bus has its parameter and its curve is known; raises KeyError / ValueError."""
    if m.param not in bus.specs:
        raise KeyError(f"unknown parameter {m.param!r}")
    if m.curve not in CURVES:
        raise ValueError(f"unknown curve {m.curve!r}")
    return m


def checked_mappings(bus: ControlBus, data: list[dict]) -> list[Mapping]:
    """Mappings from their JSON form (``Mapping`` fields as dicts), every one checked; raises
    KeyError / ValueError / TypeError on the first bad one (any thread: reads only ``bus.specs``)."""
    return [check_mapping(bus, Mapping(**d)) for d in data]


class MidiController:
    def __init__(self, bus: ControlBus, voices: VoiceBank | None = None,
                 mappings: list[Mapping] | None = None):
        self.bus = bus
        self.voices = voices
        self.learning: str | None = None      # parameter armed for MIDI learn
        self.learned: Mapping | None = None   # the last binding made by learn
        self.on_program = None                 # callable(program number), e.g. load a preset
        self.last_cc: tuple[int, int] | None = None
        self.state = ControllerState(None, None, ())
        self.mappings: dict[tuple[str, int], Mapping] = {}
        for m in (DEFAULT_MAPPINGS if mappings is None else mappings):
            self.bind(m)
        self.dirty = False                     # mappings changed since the last save
        self._publish()

    def _publish(self) -> None:
        """Replaces :attr:`state` whole (see the module's NB)."""
        self.state = ControllerState(self.learning, self.learned, tuple(self.mappings.values()),
                                     self.state.version + 1)

    # -- bindings ------------------------------------------------------------------------
    def bind(self, m: Mapping) -> None:
        check_mapping(self.bus, m)
        self.mappings[m.key] = m
        self.dirty = True
        self._publish()

    def unbind(self, param: str) -> None:
        for k in [k for k, m in self.mappings.items() if m.param == param]:
            del self.mappings[k]
        self.dirty = True
        self._publish()

    def learn(self, param: str | None) -> None:
        """Arms ``param``: the next CC (or bend/pressure) moved is bound to it. None cancels."""
        if param is not None and param not in self.bus.specs:
            raise KeyError(f"unknown parameter {param!r}")
        self.learning = param
        self._publish()

    def to_json(self) -> list[dict]:
        return self.state.to_json()

    def load_json(self, data: list[dict]) -> None:
        """Replaces every mapping with ``data``; a bad list raises and changes nothing."""
        maps = checked_mappings(self.bus, data)
        self.mappings = {m.key: m for m in maps}
        self.dirty = True
        self._publish()

    # -- events (engine thread) ------------------------------------------------------------
    def handle(self, engine, ev: MidiEvent) -> None:
        if ev.kind == "cc":
            self.last_cc = (ev.a, ev.b)
            if ev.a == 123 or ev.a == 120:           # All Notes Off / All Sound Off
                if self.voices:
                    self.voices.all_off() if ev.a == 123 else self.voices.silence()
                return
            if ev.a == 121:                          # Reset All Controllers
                if self.voices:
                    self.voices.bend = 0.0
                for m in self.mappings.values():
                    self.bus.set(m.param, self.bus.specs[m.param].default)
                return
            self._control("cc", ev.a, ev.b / 127.0, ev.channel)
        elif ev.kind == "pitchbend":
            if self.voices:
                self.voices.bend = ev.a / 8192.0 * self.bus.get("bend_range")
            self._control("pitchbend", 0, (ev.a + 8192) / 16383.0, ev.channel)
        elif ev.kind == "pressure":
            self._control("pressure", 0, ev.a / 127.0, ev.channel)
        elif ev.kind == "note_on" and self.voices:
            self.voices.note_on(ev.a, ev.b)
        elif ev.kind == "note_off" and self.voices:
            self.voices.note_off(ev.a)
        elif ev.kind == "program" and self.on_program is not None:
            self.on_program(ev.a)
        elif ev.kind in CLOCK_KINDS and getattr(engine, "clock", None) is not None:
            CLOCK_ACTIONS[ev.kind](engine.clock, ev)

    def _control(self, source: str, number: int, x: float, channel: int) -> None:
        if self.learning is not None and source != "pitchbend":
            for k in [k for k, m in self.mappings.items() if m.param == self.learning or k == (source, number)]:
                del self.mappings[k]
            m = Mapping(source, number, self.learning)
            self.learned, self.learning = m, None
            self.bind(m)                # publishes the new state
        m = self.mappings.get((source, number))
        if m is None or (m.channel is not None and m.channel != channel):
            return
        self.bus.set_normalized(m.param, m.position(x))
