"""JACK port connections through libjack itself (ctypes), for switching MIDI sources.

Why: RtMidi's JACK input unregisters its port while its own process callback may still be
reading that port's buffer (RtMidi.cpp, ``MidiInJack::closePort`` against ``jackProcessIn``);
one run in five of a 60-switch test aborted the process inside libjack (``JackGraphManager::AssertPort``,
tests/test_gui.py::test_switching_jack_midi_inputs_while_playing_on_jack_never_freezes).
So a JACK MIDI input is opened once, as a port of driftwave's own, and a switch to another
source only moves the JACK connection (:class:`realtime.midi.MidiInput.reroute`); no port is
unregistered while the instrument plays.

The client here is never activated: it has no process callback and no thread of its own, so
no JACK thread runs Python. ctypes releases the GIL for each call (a connection request waits
for the server's next cycle), so the engine thread steps on meanwhile.
"""
from __future__ import annotations

import ctypes
import ctypes.util

JACK_NO_START_SERVER = 0x01
EEXIST = 17


class JackUnavailable(Exception):
    pass


def _lib():
    name = ctypes.util.find_library("jack") or "libjack.so.0"
    try:
        lib = ctypes.CDLL(name)
    except OSError as e:
        raise JackUnavailable(f"libjack not found ({e})") from None
    lib.jack_client_open.restype = ctypes.c_void_p
    lib.jack_client_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    lib.jack_client_close.argtypes = [ctypes.c_void_p]
    lib.jack_connect.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
    lib.jack_disconnect.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
    lib.jack_port_by_name.restype = ctypes.c_void_p
    lib.jack_port_by_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.jack_port_get_all_connections.restype = ctypes.POINTER(ctypes.c_char_p)
    lib.jack_port_get_all_connections.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.jack_free.argtypes = [ctypes.c_void_p]
    lib.jack_get_ports.restype = ctypes.POINTER(ctypes.c_char_p)
    lib.jack_get_ports.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong]
    return lib


class JackConnections:
    """A control client of the running JACK server (never activated): connects, disconnects
    and lists the connections of ports by their full names (``client:port``)."""

    def __init__(self, name: str = "driftwave-connect"):
        self._jack = _lib()
        status = ctypes.c_int(0)
        self._client = self._jack.jack_client_open(name.encode(), JACK_NO_START_SERVER, ctypes.byref(status))
        if not self._client:
            raise JackUnavailable(f"no JACK server to connect MIDI ports on (status 0x{status.value:x})")

    def _names(self, names) -> list[str]:
        """A NULL-ended array of names libjack returned, freed."""
        if not names:
            return []
        out = []
        i = 0
        while names[i] is not None:
            out.append(names[i].decode())
            i += 1
        self._jack.jack_free(ctypes.cast(names, ctypes.c_void_p))
        return out

    def ports(self, pattern: str) -> list[str]:
        """Full names of the ports whose name matches the regular expression ``pattern``."""
        return self._names(self._jack.jack_get_ports(self._client, pattern.encode(), None, 0))

    def connections(self, port: str) -> list[str]:
        """The ports ``port`` is connected to (empty for an unknown port)."""
        p = self._jack.jack_port_by_name(self._client, port.encode())
        if not p:
            return []
        return self._names(self._jack.jack_port_get_all_connections(self._client, p))

    def connect(self, source: str, destination: str) -> None:
        """Connects output ``source`` to input ``destination``; raises JackUnavailable in one
        line when JACK refuses (an unknown port, say)."""
        err = self._jack.jack_connect(self._client, source.encode(), destination.encode())
        if err not in (0, EEXIST):
            raise JackUnavailable(f"JACK would not connect {source} to {destination} (error {err})")

    def disconnect_all(self, destination: str) -> None:
        """Removes every connection into input port ``destination``."""
        for source in self.connections(destination):
            self._jack.jack_disconnect(self._client, source.encode(), destination.encode())

    def close(self) -> None:
        if self._client:
            self._jack.jack_client_close(self._client)
            self._client = None
