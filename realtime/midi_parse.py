"""MIDI bytes -> events. Pure and total: any list of ints gives an event or None.

rtmidi hands over one message at a time (running status already expanded by the backend
where it applies); garbage, unknown messages, sysex and system real-time come back as None
and the caller counts them as ignored, except MIDI clock and transport, which
:func:`parse_clock` takes (for the beat clock, core/tempo.py).
"""
from __future__ import annotations

from typing import NamedTuple


class MidiEvent(NamedTuple):
    kind: str          # note_on | note_off | cc | pitchbend | pressure | program, or a CLOCK_KINDS
    channel: int       # 0..15
    a: int             # note / controller / program / bend (-8192..8191) / pressure
    b: int             # velocity / value (0 for one-byte messages)
    time: float        # seconds (rtmidi's delta times summed), or the receive time


_DATA_LEN = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}


def parse_message(msg, t: float = 0.0) -> MidiEvent | None:
    try:
        if not msg or len(msg) > 3:
            return None
        status = int(msg[0])
        if not 0x80 <= status <= 0xEF:          # data byte first, sysex, system messages
            return None
        kind = status & 0xF0
        data = [int(x) for x in msg[1:]]
        if len(data) != _DATA_LEN[kind] or any(not 0 <= d <= 0x7F for d in data):
            return None
        ch = status & 0x0F
        if kind == 0x90:
            return MidiEvent("note_on" if data[1] > 0 else "note_off", ch, data[0], data[1], t)
        if kind == 0x80:
            return MidiEvent("note_off", ch, data[0], data[1], t)
        if kind == 0xB0:
            return MidiEvent("cc", ch, data[0], data[1], t)
        if kind == 0xE0:
            return MidiEvent("pitchbend", ch, (data[0] | (data[1] << 7)) - 8192, 0, t)
        if kind == 0xD0:
            return MidiEvent("pressure", ch, data[0], 0, t)
        if kind == 0xC0:
            return MidiEvent("program", ch, data[0], 0, t)
        return None                              # 0xA0 poly aftertouch: not used
    except (TypeError, ValueError, OverflowError):
        return None


# MIDI clock and transport, for the beat clock (core/tempo.py): status -> (kind, data bytes)
_CLOCK_MESSAGES = {0xF8: ("clock", 0), 0xFA: ("start", 0), 0xFB: ("continue", 0), 0xFC: ("stop", 0),
                   0xF2: ("song_position", 2)}
CLOCK_KINDS = frozenset(kind for kind, _ in _CLOCK_MESSAGES.values())


def parse_clock(msg, t: float = 0.0) -> MidiEvent | None:
    """Clock (0xF8), Start, Continue, Stop and Song Position (0xF2, ``a`` = sixteenths,
    0..16383) -> an event on channel 0; anything else None. Pure and total, like
    :func:`parse_message`."""
    try:
        if not msg or len(msg) > 3:
            return None
        entry = _CLOCK_MESSAGES.get(int(msg[0]))
        data = [int(x) for x in msg[1:]]
        if entry is None or len(data) != entry[1] or any(not 0 <= d <= 0x7F for d in data):
            return None
        return MidiEvent(entry[0], 0, (data[0] | (data[1] << 7)) if data else 0, 0, t)
    except (TypeError, ValueError, OverflowError):
        return None
