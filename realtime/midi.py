"""MIDI input with python-rtmidi.

The rtmidi callback runs on RtMidi's own thread: it parses the message, counts it, and
puts a timestamped :class:`~realtime.midi_parse.MidiEvent` on the engine's event queue.
Nothing else happens there; the engine applies events once per step
(:class:`~realtime.controller.MidiController`).

NB: ``received`` and ``ignored`` are ints written by the rtmidi thread alone (read by the
stats); the queue is a ``queue.SimpleQueue``.
"""
from __future__ import annotations

import time

from .midi_parse import parse_message

API_NAMES = {"alsa": "API_LINUX_ALSA", "jack": "API_UNIX_JACK", "coremidi": "API_MACOSX_CORE",
             "winmm": "API_WINDOWS_MM", "default": "API_UNSPECIFIED"}


class MidiError(Exception):
    pass


def _api(name: str) -> int:
    import rtmidi
    key = API_NAMES.get(name.lower())
    if key is None:
        raise MidiError(f"unknown MIDI API {name!r}; choose from {sorted(API_NAMES)}")
    return getattr(rtmidi, key)


def list_ports() -> dict[str, list[str]]:
    """Input ports per compiled backend; a backend that cannot start lists its error."""
    import rtmidi
    out = {}
    for api in rtmidi.get_compiled_api():
        name = rtmidi.get_api_name(api)
        try:
            m = rtmidi.MidiIn(api, name="driftwave-list")
            out[name] = m.get_ports()
            m.delete()
        except Exception as e:   # rtmidi raises its own SystemError when a backend is down
            out[name] = [f"(unavailable: {e})"]
    return out


class MidiInput:
    def __init__(self, queue, api: str = "default", port: str | int | None = None,
                 virtual: str | None = None, client_name: str = "driftwave"):
        import rtmidi
        try:
            self.midi = rtmidi.MidiIn(_api(api), name=client_name)
        except MidiError:
            raise
        except Exception as e:
            raise MidiError(f"cannot start MIDI backend {api!r}: {e}") from None
        self.queue = queue
        self.received = 0
        self.ignored = 0
        self._t0 = time.monotonic()
        self.midi.ignore_types(sysex=False, timing=False, active_sense=False)   # count them, not drop them
        self.port_name = None
        try:
            if virtual:
                self.midi.open_virtual_port(virtual)
                self.port_name = f"{client_name}:{virtual} (virtual)"
            elif port is not None:
                ports = self.midi.get_ports()
                idx = self._find(ports, port)
                self.midi.open_port(idx)
                self.port_name = ports[idx]
        except MidiError:
            self.midi.delete()
            raise
        except Exception as e:
            self.midi.delete()
            raise MidiError(f"cannot open MIDI port {port or virtual!r}: {e}") from None
        self.midi.set_callback(self._on_message)

    @staticmethod
    def _find(ports: list[str], port: str | int) -> int:
        if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
            i = int(port)
            if 0 <= i < len(ports):
                return i
        else:
            matches = [i for i, p in enumerate(ports) if port == p] or \
                      [i for i, p in enumerate(ports) if port.lower() in p.lower()]
            if matches:
                return matches[0]
        raise MidiError(f"no MIDI input port {port!r}; ports: {ports or 'none'}")

    def _on_message(self, message, data=None) -> None:
        # RtMidi's thread: parse, count, queue. Never raises.
        self.received += 1
        try:
            msg, _delta = message
        except (TypeError, ValueError):
            self.ignored += 1
            return
        ev = parse_message(msg, time.monotonic() - self._t0)
        if ev is None:
            self.ignored += 1
        else:
            self.queue.put(ev)

    def close(self) -> None:
        try:
            self.midi.cancel_callback()
            self.midi.close_port()
        finally:
            self.midi.delete()


def open_midi_for_engine(engine, args) -> MidiInput:
    """Opens the MIDI input the command line asks for and connects it to the engine."""
    m = MidiInput(engine.events, api=getattr(args, "midi_api", "default") or "default",
                  port=getattr(args, "midi", None), virtual=getattr(args, "midi_virtual", None))
    engine.midi_input = m
    return m
