"""OSC control: a UDP server where every bus parameter, trigger and note is an address.

Addresses (:data:`ROUTES`; the parameter names are read from ``engine.bus.specs`` at each
message, so parameters added to the bus, effects' among them, are addresses at once):

* ``/driftwave/param/<name> <value>``: a parameter's value, clamped to its range as the bus
  clamps it (a choice takes its index or its name, e.g. ``/driftwave/param/tempo_source bpm``);
* ``/driftwave/param/<name>/norm <0..1>``: the same from a 0..1 control position;
* ``/driftwave/trigger/<name>`` (no argument, or one number: nonzero fires, as a button's
  press and release send 1 and 0);
* ``/driftwave/note/on <note> <velocity>`` (velocity 0 is a note-off, as in MIDI),
  ``/driftwave/note/off <note>``: queued on the engine's event queue like a MIDI note;
* ``/driftwave/panic``: instant silence and state reset.

Bundles are taken apart and their messages applied at once (their time tags are not
waited for). A message with an unknown address, the wrong number or types of arguments, or
a NaN changes nothing; a datagram that holds one, or is not whole OSC (cut short, padded
with garbage, not OSC at all: then nothing of it is applied), is counted in
:attr:`OscServer.ignored`, and :attr:`OscServer.last_ignored` says why, in one line
(``tests/test_osc.py``).

NB: the server's thread (``driftwave-osc``) does what the GUI thread does: whole-item bus
stores and trigger counts (params.py) and puts on ``engine.events`` (a SimpleQueue, whose
put never blocks); it never waits for the engine. Two threads firing one trigger at the
same moment may count once: the engine fires a trigger at most once per step anyway.
``received``, ``ignored`` and ``last_ignored`` are written by this thread alone. ``engine``
is a reference the session replaces whole on a device switch; each datagram reads it once.
"""
from __future__ import annotations

import math
import socket
import threading
from typing import Callable

from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.parsing import osc_types

PREFIX = "/driftwave/"
RECEIVE_BUFFER = 1 << 22        # bytes asked for SO_RCVBUF (the kernel may cap it: net.core.rmem_max)
POLL_S = 0.1                    # how often the thread looks at its stop flag while no datagram comes
BUNDLE = b"#bundle\x00"
ARG_TYPES = "ifdhsbTFN"         # OSC type tags taken (no arrays, colours, MIDI, time tags)
MAX_BUNDLE_DEPTH = 8            # bundles inside bundles, at most


class OscRefused(ValueError):
    """A message the server does not apply (its text says why)."""


def _number(x, what: str) -> float:
    """``x`` (an OSC int, float, infinitum or true/false) as a float; anything else, and
    NaN, refused."""
    if isinstance(x, bool):
        return 1.0 if x else 0.0
    if not isinstance(x, (int, float)):
        raise OscRefused(f"{what} must be a number, not {type(x).__name__}")
    v = float(x)
    if math.isnan(v):
        raise OscRefused(f"{what} is NaN")
    return v


def _count(args: list, allowed: tuple[int, ...], address: str) -> None:
    if len(args) not in allowed:
        want = " or ".join(str(n) for n in allowed)
        raise OscRefused(f"{address} takes {want} argument(s), got {len(args)}")


def _spec(engine, name: str):
    spec = engine.bus.specs.get(name)
    if spec is None:
        raise OscRefused(f"no parameter {name!r}")
    return spec


def _param(engine, rest: str, args: list) -> None:
    """``param/<name>`` and ``param/<name>/norm``."""
    name, _, tail = rest.partition("/")
    if tail not in ("", "norm"):
        raise OscRefused(f"unknown address param/{rest}")
    spec = _spec(engine, name)
    _count(args, (1,), f"param/{rest}")
    x = args[0]
    if tail == "norm":
        engine.bus.set_normalized(name, min(max(_number(x, name), 0.0), 1.0))
    elif isinstance(x, str) and spec.kind == "choice":
        engine.bus.set(name, x)              # a name not among the choices raises ValueError
    else:
        v = _number(x, name)
        if spec.kind == "choice" and math.isinf(v):
            v = spec.maximum if v > 0 else spec.minimum
        engine.bus.set(name, v)


def _pressed(args: list, address: str) -> bool:
    _count(args, (0, 1), address)
    return not args or _number(args[0], address) != 0.0


def _trigger(engine, rest: str, args: list) -> None:
    spec = _spec(engine, rest)
    if spec.kind != "trigger":
        raise OscRefused(f"{rest!r} is not a trigger (set it with {PREFIX}param/{rest})")
    if _pressed(args, f"trigger/{rest}"):
        engine.bus.trigger(rest)


def _note(x, what: str) -> int:
    v = _number(x, what)
    if not 0.0 <= v <= 127.0:
        raise OscRefused(f"{what} {v} is outside 0..127")
    return int(round(v))


def _note_on(engine, rest: str, args: list) -> None:
    _count(args, (2,), "note/on")
    note = _note(args[0], "note")
    velocity = int(round(min(max(_number(args[1], "velocity"), 0.0), 127.0)))
    if velocity == 0:
        engine.note_off(note)
    else:
        engine.note_on(note, velocity)


def _note_off(engine, rest: str, args: list) -> None:
    _count(args, (1, 2), "note/off")        # a release velocity, when sent, is not used
    if len(args) == 2:
        _number(args[1], "velocity")
    engine.note_off(_note(args[0], "note"))


def _panic(engine, rest: str, args: list) -> None:
    if _pressed(args, "panic"):
        engine.bus.trigger("panic")


# address after PREFIX -> handler(engine, the rest of the address, arguments). An entry
# ending in "/" takes every address below it; the others are exact.
ROUTES: dict[str, Callable] = {
    "param/": _param,
    "trigger/": _trigger,
    "note/on": _note_on,
    "note/off": _note_off,
    "panic": _panic,
}


def parse_datagram(data: bytes, depth: int = 0) -> list[OscMessage]:
    """The messages of one datagram (a message, or a bundle's messages in order, nested
    bundles flattened), parsed by python-osc. Strict: a bundle element that is neither a
    message nor a bundle, or does not fit its stated size, refuses the whole datagram
    (python-osc's own bundle parser skips such an element with a log line per element).
    Raises :class:`OscRefused`, or python-osc's ParseError."""
    if not data.startswith(BUNDLE):
        if not data.startswith(b"/"):
            raise OscRefused("not an OSC message or bundle")
        return [_whole_message(data)]
    if depth >= MAX_BUNDLE_DEPTH:
        raise OscRefused(f"bundles nested deeper than {MAX_BUNDLE_DEPTH}")
    out, i = [], len(BUNDLE) + 8               # after the time tag
    if len(data) < i:
        raise OscRefused("a bundle without its time tag")
    while i < len(data):
        size = int.from_bytes(data[i:i + 4], "big", signed=True) if len(data) >= i + 4 else -1
        if size <= 0 or size % 4 or i + 4 + size > len(data):
            raise OscRefused("a bundle element that does not fit the bundle")
        out += parse_datagram(data[i + 4:i + 4 + size], depth + 1)
        i += 4 + size
    return out


def _whole_message(data: bytes) -> OscMessage:
    """``data`` parsed by python-osc, if it is one whole message: python-osc pads a float
    or int cut short with zeros (a truncated ``/param/morph 0.7`` would read 0.5 or 0), so
    the message is encoded again from what was parsed and must give ``data`` back."""
    address, index = osc_types.get_string(data, 0)
    if index == len(data):              # no type tag: an old sender's message without arguments
        return OscMessage(data)
    tags, _ = osc_types.get_string(data, index)
    if not tags.startswith(","):
        raise OscRefused("a type tag that does not start with ','")
    tags = tags[1:]
    if any(t not in ARG_TYPES for t in tags):   # before python-osc, which logs a line for each
        raise OscRefused(f"argument types {tags!r}: only {ARG_TYPES!r} are taken")
    msg = OscMessage(data)
    again = OscMessageBuilder(address)
    for tag, value in zip(tags, msg.params):
        again.add_arg(value, tag)
    if len(tags) != len(msg.params) or again.build().dgram != data:
        raise OscRefused("a message cut short or padded with garbage")
    return msg


def apply_message(engine, address: str, args: list) -> None:
    """Applies one OSC message to ``engine``; raises :class:`OscRefused` (or the bus's
    ValueError / KeyError) for one it does not take. Any thread."""
    if not isinstance(address, str) or not address.startswith(PREFIX):
        raise OscRefused(f"unknown address {address!r}")
    path = address[len(PREFIX):]
    handler = ROUTES.get(path)
    if handler is not None:
        return handler(engine, "", list(args))
    head, sep, rest = path.partition("/")
    handler = ROUTES.get(head + "/") if sep and rest else None
    if handler is None:
        raise OscRefused(f"unknown address {address!r}")
    return handler(engine, rest, list(args))


class OscServer:
    """Listens on UDP ``host:port`` (port 0: any free port, see :attr:`port`) on its own
    thread, applying each datagram to ``engine`` (:func:`apply_message`). Raises OSError
    with a one-line message when the address cannot be bound."""

    def __init__(self, engine, port: int, host: str = "127.0.0.1"):
        self.engine = engine
        self.received = 0               # datagrams taken and handled (counted once it is applied)
        self.ignored = 0                # datagrams not applied in full
        self.last_ignored: str | None = None
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            self._sock.bind((host, int(port)))
        except (OSError, OverflowError) as e:
            self._sock.close()
            raise OSError(f"cannot listen for OSC on {host}:{port}: {getattr(e, 'strerror', None) or e}") from None
        self._sock.settimeout(POLL_S)
        self.host, self.port = self._sock.getsockname()[:2]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="driftwave-osc", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _run(self) -> None:
        sock = self._sock
        while not self._stop.is_set():
            try:
                data = sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:             # closed under it, or a transient error
                if self._stop.wait(POLL_S):
                    return
                continue
            self._handle(data)
            self.received += 1          # after: whoever sees the count sees what the datagram did

    def _handle(self, data: bytes) -> None:
        """One datagram; never raises (a bad one is counted, with its reason)."""
        engine = self.engine            # read once: a device switch replaces it whole
        try:
            messages = parse_datagram(data)
        except OscRefused as e:
            self._refuse(str(e))
            return
        except Exception as e:          # python-osc raises ParseError, and others on odd bytes
            self._refuse(f"not OSC ({type(e).__name__}: {e})")
            return
        refused = None
        for msg in messages:
            try:
                apply_message(engine, msg.address, msg.params)
            except (OscRefused, ValueError, KeyError, TypeError, OverflowError) as e:
                refused = f"{msg.address}: {e}"
            except Exception as e:      # a bug must not end the server
                refused = f"{msg.address}: {type(e).__name__}: {e}"
        if refused is not None:
            self._refuse(refused)

    def _refuse(self, why: str) -> None:
        self.ignored += 1
        self.last_ignored = " ".join(why.split())     # one line, whatever the exception's text

    def stop(self) -> None:
        """Stops the thread and frees the port. Idempotent."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(5 * POLL_S + 1.0)
        self._sock.close()
