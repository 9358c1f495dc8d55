"""MIDI bytes -> events. Pure and total: any list of ints gives an event or None.

rtmidi hands over one message at a time (running status already expanded by the backend
where it applies); garbage, unknown messages, sysex and system real-time come back as None
and the caller counts them as ignored.
"""
from __future__ import annotations

from typing import NamedTuple


class MidiEvent(NamedTuple):
    kind: str          # note_on | note_off | cc | pitchbend | pressure | program
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
