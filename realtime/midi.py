"""MIDI input with python-rtmidi.

RtMidi queues incoming messages on its own thread (in C++). The engine thread takes them
once per step, before it applies events (:meth:`MidiInput.poll`, from
:meth:`realtime.engine.Engine._drain_events`): it parses each message, counts it, and puts a
timestamped :class:`~realtime.midi_parse.MidiEvent` on the engine's event queue, which the
same step then applies (:class:`~realtime.controller.MidiController`). Messages wait in
RtMidi's queue exactly as long as they would wait in the engine's own queue: the engine
applies events once per step either way. (A polling thread instead would wait for the GIL
behind the engine's Python code: docs/history.md.)

Why poll rather than take RtMidi's callback: with JACK, RtMidi calls the callback on JACK's
process thread, which must then wait for Python's GIL, and python-rtmidi holds the GIL through
its own JACK server calls (open, connect, close), which JACK finishes only after the current
process cycle. Any JACK thread of this process waiting for the GIL then stalls JACK's graph:
with a Python audio callback in that place, it froze JACK, the sound and the app for good
(docs/history.md). Polled, no JACK
thread runs Python for MIDI.

A JACK input of another program's port is a port of driftwave's own, connected to that
source through libjack (:mod:`realtime.jack_ports`); switching sources moves the connection
(:meth:`MidiInput.reroute`, used by :meth:`realtime.session.Session.open_midi`), because RtMidi's
close unregisters its port while its process callback may still read it, which aborted the
process inside libjack (tests/test_midi.py::test_a_jack_input_reroutes_to_another_source_without_a_new_port).

NB: ``received`` and ``ignored`` are ints written by the engine thread alone (read by the
stats); the queue is a ``queue.SimpleQueue``. :meth:`MidiInput.poll` only *tries* the lock that
:meth:`MidiInput.close` holds while it closes the port: the engine never waits for it, and never
reads a closed port.
"""
from __future__ import annotations

import itertools
import os
import threading
import time

from .midi_parse import parse_clock, parse_message

API_NAMES = {"alsa": "API_LINUX_ALSA", "jack": "API_UNIX_JACK", "coremidi": "API_MACOSX_CORE",
             "winmm": "API_WINDOWS_MM", "default": "API_UNSPECIFIED"}


_PORT_NUMBERS = itertools.count()
QUEUE_SIZE = 65536      # messages RtMidi holds between two polls (one engine step) before it drops


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
    """One MIDI input: an RtMidi input port and the counters of what it received.

    On JACK, an input of another program's port is a port of driftwave's own that JACK
    connects to that source (:mod:`realtime.jack_ports`), so that :meth:`reroute` can move it
    to another source without unregistering a port while RtMidi's process callback runs."""

    def __init__(self, queue, api: str = "default", port: str | int | None = None,
                 virtual: str | None = None, client_name: str = "driftwave"):
        import rtmidi
        try:
            self.midi = rtmidi.MidiIn(_api(api), name=client_name, queue_size_limit=QUEUE_SIZE)
        except MidiError:
            raise
        except Exception as e:
            raise MidiError(f"cannot start MIDI backend {api!r}: {e}") from None
        self.queue = queue
        self._reset_counts()
        # timing passes: MIDI clock drives the beat clock; sysex and active sensing are counted
        self.midi.ignore_types(sysex=False, timing=False, active_sense=False)
        self.port_name = None
        self._jack = None           # JackConnections, for a JACK input of another program's port
        self._own_port: str | None = None
        try:
            if virtual:
                self.midi.open_virtual_port(virtual)
                self.port_name = f"{client_name}:{virtual} (virtual)"
            elif port is not None and self.midi.get_current_api() == rtmidi.API_UNIX_JACK:
                self._open_jack_route(port)
            elif port is not None:
                ports = self.midi.get_ports()
                idx = self._find(ports, port)
                self.midi.open_port(idx)
                self.port_name = ports[idx]
        except MidiError:
            self._release()
            raise
        except Exception as e:
            self._release()
            raise MidiError(f"cannot open MIDI port {port or virtual!r}: {e}") from None
        self._lock = threading.Lock()
        self._closed = False

    def _reset_counts(self) -> None:
        self.received = 0
        self.ignored = 0
        self._t0 = time.monotonic()
        self.midi_time = 0.0        # rtmidi's delta times summed, s: the clock ticks' time base

    def _open_jack_route(self, port: str | int) -> None:
        """Registers driftwave's own input port and connects ``port`` (a source) to it."""
        from .jack_ports import JackConnections, JackUnavailable
        ports = self.midi.get_ports()
        source = ports[self._find(ports, port)]
        own = f"midi_in_{os.getpid()}_{next(_PORT_NUMBERS)}"       # unique: found by name below
        self.midi.open_virtual_port(own)
        try:
            self._jack = JackConnections()
            found = self._jack.ports(f":{own}$")
            if len(found) != 1:
                raise MidiError(f"cannot find driftwave's JACK MIDI port {own!r}")
            self._own_port = found[0]
            self._jack.connect(source, self._own_port)
        except JackUnavailable as e:
            raise MidiError(f"cannot open MIDI port {port!r}: {e}") from None
        self.port_name = source

    @property
    def reroutable(self) -> bool:
        """True for a JACK input that :meth:`reroute` can move to another source."""
        return self._own_port is not None

    def reroute(self, port: str | int) -> "MidiInput":
        """Moves this JACK input to another source ``port`` and returns the input that now
        owns it (fresh counters); this one is closed, its port kept. Raises MidiError (and
        changes nothing) for an unknown port. What the old source sent and no poll took is
        dropped."""
        ports = self.midi.get_ports()
        source = ports[self._find(ports, port)]
        with self._lock:                    # waits for a poll in progress
            before = self._jack.connections(self._own_port)
            self._jack.disconnect_all(self._own_port)
            while self.midi.get_message() is not None:     # the old source's last messages
                pass
            try:
                self._jack.connect(source, self._own_port)
            except Exception as e:
                for old in before:          # back as it was: this input plays on
                    try:
                        self._jack.connect(old, self._own_port)
                    except Exception:       # the old source went away meanwhile
                        pass
                raise MidiError(f"cannot open MIDI port {port!r}: {e}") from None
            self._closed = True
        new = object.__new__(MidiInput)
        new.__dict__.update(self.__dict__)
        new._reset_counts()
        new._lock, new._closed, new.port_name = threading.Lock(), False, source
        self._jack = self._own_port = None   # the port is the new input's now
        self._handed_over = True
        return new

    def _release(self) -> None:
        """Closes the RtMidi port and the JACK control client (unless handed over)."""
        if getattr(self, "_handed_over", False):
            return
        if self._jack is not None:
            self._jack.disconnect_all(self._own_port or "")
            self._jack.close()
            self._jack = None
        try:
            self.midi.close_port()
        finally:
            self.midi.delete()

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

    def poll(self) -> None:
        """Moves what RtMidi has queued onto the event queue (the engine thread, once per
        step). Never waits: if :meth:`close` holds the port, this step takes nothing."""
        if not self._lock.acquire(blocking=False):
            return
        try:
            if not self._closed:
                get = self.midi.get_message
                while (message := get()) is not None:
                    self._on_message(message)
        finally:
            self._lock.release()

    def _on_message(self, message) -> None:
        # parse, count, queue. Never raises.
        self.received += 1
        try:
            msg, delta = message
        except (TypeError, ValueError):
            self.ignored += 1
            return
        if isinstance(delta, (int, float)) and 0.0 <= delta < 3600.0:
            self.midi_time += delta
        ev = parse_message(msg, time.monotonic() - self._t0) or parse_clock(msg, self.midi_time)
        if ev is None:
            self.ignored += 1
        else:
            self.queue.put(ev)

    def close(self) -> None:
        """Closes the port (waits for a poll in progress)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._release()


API_LABELS = {"alsa": "ALSA", "jack": "JACK", "coremidi": "CoreMIDI", "winmm": "Windows MultiMedia"}


def open_input(queue, api: str = "default", port: str | int | None = None,
               virtual: str | None = None) -> tuple[MidiInput, str | None]:
    """A :class:`MidiInput` on ``api``. With ``api="default"``, when RtMidi's default backend
    cannot start or has no such port (e.g. no ALSA sequencer on a machine that runs JACK), every
    other compiled backend is tried in turn. Returns ``(input, note)``: ``note`` says which backend
    opened when it was not the default's first choice, else None. Raises :class:`MidiError` naming
    each backend's reason when none opens (``tests/test_midi.py::
    test_the_default_midi_api_falls_back_to_jack_without_an_alsa_sequencer``)."""
    try:
        return MidiInput(queue, api=api, port=port, virtual=virtual), None
    except MidiError as first:
        if api != "default":
            raise
        import rtmidi
        reasons = [f"default: {first}"]
        for api_id in rtmidi.get_compiled_api():
            name = next((k for k, v in API_NAMES.items() if getattr(rtmidi, v, None) == api_id and k != "default"), None)
            if name is None:
                continue
            try:
                midi = MidiInput(queue, api=name, port=port, virtual=virtual)
            except MidiError as e:
                reasons.append(f"{name}: {e}")
                continue
            return midi, f"MIDI: the default backend did not open; opened {API_LABELS[name]} instead"
        raise MidiError("no MIDI backend opened: " + "; ".join(reasons)) from None
