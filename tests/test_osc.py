"""OSC control over loopback UDP: a real python-osc client sets parameters, fires triggers and
plays notes on an engine (no audio device: the test steps the engine itself, or lets its
thread run while it empties the ring); garbage datagrams are refused and counted, exactly."""
import socket
import time

import numpy as np
import pytest
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.udp_client import SimpleUDPClient

from core.bundle import load_bundle
from realtime.engine import Engine
from realtime.osc import OscServer, apply_message
from tests.jackutil import wait_until

F32 = 1e-6          # python-osc sends floats as float32


@pytest.fixture
def rig(small_bundle):
    engine = Engine(load_bundle(small_bundle), 22050, threads=1, voices=2)
    server = OscServer(engine, 0)          # any free port on 127.0.0.1
    engine.osc = server                    # for its counters in the stats, as the session does
    client = SimpleUDPClient("127.0.0.1", server.port)
    yield engine, server, client
    server.stop()


def sent(server, n: int) -> bool:
    """Waits until the server has taken ``n`` datagrams in all."""
    return wait_until(lambda: server.received >= n, 5, interval=0.001) and server.received == n


def test_a_real_client_sets_parameters_fires_triggers_and_plays_notes(rig):
    engine, server, client = rig
    bus = engine.bus
    client.send_message("/driftwave/param/morph", 0.4)
    client.send_message("/driftwave/param/gain", 99.0)              # clamped to the top, +12 dB
    client.send_message("/driftwave/param/token_mode", 2)           # a choice by index: autopilot
    client.send_message("/driftwave/param/tempo_source", "bpm")     # a choice by name
    client.send_message("/driftwave/param/bpm", 97)                 # an int for a float parameter
    client.send_message("/driftwave/param/drift/norm", 0.5)
    client.send_message("/driftwave/param/freeze", True)
    client.send_message("/driftwave/trigger/new_seed_a", [])
    client.send_message("/driftwave/note/on", [60, 100])
    client.send_message("/driftwave/note/on", [64, 90])
    assert sent(server, 10) and server.ignored == 0, server.last_ignored
    assert bus.get("morph") == pytest.approx(0.4, abs=F32)
    assert bus.get("gain") == 12.0
    assert bus.get("token_mode") == 2 and bus.get("tempo_source") == 1 and bus.get("bpm") == 97.0
    assert bus.get("drift") == pytest.approx(0.5, abs=F32) and bus.get("freeze") == 1.0
    seed = bus.get("seed_a")
    engine._step()                                                  # the engine thread's part
    assert bus.get("seed_a") != seed                                # the trigger fired once
    assert [v.note for v in engine.voices.voices] == [60, 64]
    assert [v.velocity for v in engine.voices.voices] == pytest.approx([100 / 127, 90 / 127], abs=1e-3)
    client.send_message("/driftwave/note/off", 60)
    client.send_message("/driftwave/note/on", [64, 0])              # velocity 0: a note-off
    assert sent(server, 12) and server.ignored == 0
    engine._step()
    assert [v.stage for v in engine.voices.voices] == ["release", "release"]
    client.send_message("/driftwave/panic", [])
    assert sent(server, 13)
    engine._step()
    assert all(v.stage == "idle" for v in engine.voices.voices)
    s = engine.stats()
    assert (s["osc_messages_received"], s["osc_messages_ignored"]) == (13, 0)


def test_every_bus_parameter_is_an_address(rig):
    """Every parameter on the bus (effects' included: the names are read at message time) takes
    a 0..1 position at .../norm and its top value at its own address."""
    engine, server, client = rig
    names = [n for n, s in engine.bus.specs.items() if s.kind != "trigger"]
    for name in names:
        client.send_message(f"/driftwave/param/{name}/norm", 1.0)
    assert sent(server, len(names)) and server.ignored == 0, server.last_ignored
    for name in names:
        assert engine.bus.normalized(name) == pytest.approx(1.0), name
    for name in names:
        client.send_message(f"/driftwave/param/{name}", -1e30)      # clamped to the bottom
    assert sent(server, 2 * len(names)) and server.ignored == 0, server.last_ignored
    for name in names:
        assert engine.bus.normalized(name) == pytest.approx(0.0), name


BAD = [
    ("/driftwave/param/no_such_param", [1.0], "no parameter"),
    ("/driftwave/param/morph", [], "takes 1"),
    ("/driftwave/param/morph", [0.1, 0.2], "takes 1"),
    ("/driftwave/param/morph", ["loud"], "must be a number"),
    ("/driftwave/param/morph", [float("nan")], "NaN"),
    ("/driftwave/param/morph", [b"\x00\x01"], "must be a number"),
    ("/driftwave/param/morph/norm", [float("nan")], "NaN"),
    ("/driftwave/param/morph/wide", [0.5], "unknown address"),
    ("/driftwave/param/tempo_source", ["swing"], "is not one of"),
    ("/driftwave/trigger/morph", [], "is not a trigger"),
    ("/driftwave/trigger/panic", ["now"], "must be a number"),
    ("/driftwave/note/on", [60], "takes 2"),
    ("/driftwave/note/on", [200, 100], "outside 0..127"),
    ("/driftwave/note/on", ["C4", 100], "must be a number"),
    ("/driftwave/note/off", [], "takes 1 or 2"),
    ("/driftwave/panic", [1, 2], "takes 0 or 1"),
    ("/driftwave/nothing", [], "unknown address"),
    ("/other/param/morph", [0.5], "unknown address"),
]


def test_a_bad_message_changes_nothing_and_says_why(rig):
    engine, server, client = rig
    before = engine.bus.state()
    for i, (address, args, why) in enumerate(BAD, 1):
        client.send_message(address, args)
        assert sent(server, i), (address, args)
        assert server.ignored == i and why in server.last_ignored, (address, args, server.last_ignored)
    assert engine.bus.state() == before and engine.events.empty()


def garbage(n: int, seed: int = 0) -> list[bytes]:
    """``n`` datagrams none of which driftwave may apply: random bytes (0..600 of them),
    truncated messages and bundles, and well-formed messages with wrong argument types
    or counts, in a random order."""
    rng = np.random.default_rng(seed)

    def msg(address, *args) -> bytes:
        b = OscMessageBuilder(address)
        for a in args:
            b.add_arg(a)
        return b.build().dgram

    wrong = [msg("/driftwave/param/morph", "x"), msg("/driftwave/param/morph"),
             msg("/driftwave/param/gain", 1.0, 2.0), msg("/driftwave/note/on", 60),
             msg("/driftwave/note/on", "a", "b"), msg("/driftwave/note/off", b"\x01"),
             msg("/driftwave/param/morph", float("nan")), msg("/driftwave/trigger/gain"),
             msg("/driftwave/param/zzz", 1), msg("/driftwave", 1), msg("/", 0)]
    whole = [msg("/driftwave/note/on", 60, 100), msg("/driftwave/param/morph", 0.5)]
    bundle = b"#bundle\x00" + bytes(8) + len(whole[0]).to_bytes(4, "big") + whole[0]
    cut_short = [d[:k] for d in whole for k in range(len(d) - 4, len(d))] + \
                [bundle[:k] for k in range(17, len(bundle))]
    noise = rng.bytes(600 * n)
    pick, size = rng.integers(0, 1 << 30, n), rng.integers(0, 600, n)
    out = []
    for i in range(n):
        kind, j, k = i % 4, int(pick[i]), int(size[i])
        if kind == 0:                           # random bytes, 0..599 of them
            out.append(noise[600 * i:600 * i + k])
        elif kind == 1:     # a good message cut inside its last argument, or a bundle inside its element
            out.append(cut_short[j % len(cut_short)])
        elif kind == 2:
            out.append(wrong[j % len(wrong)])
        else:                                   # random bytes after a driftwave address
            out.append(b"/driftwave/param/morph\x00\x00" + noise[600 * i:600 * i + k % 40])
    rng.shuffle(out)
    return out


BURST = 100     # datagrams in flight at once: ~150 kB of socket buffer, under Linux's default 208 kB


def test_a_flood_of_garbage_is_counted_exactly_and_the_server_answers_after(rig, caplog):
    """100,000 garbage datagrams while the engine thread plays: no crash, every one counted
    as received and ignored (sent in bursts the socket buffer holds, so loopback drops none),
    nothing applied, and a valid message afterwards is applied; the engine steps throughout."""
    engine, server, client = rig
    datagrams = garbage(100_000)
    before = engine.bus.state()
    for d in datagrams[:2000]:              # each one really is refused, and changes nothing
        server._handle(d)
    assert server.ignored == 2000 and engine.bus.state() == before and engine.events.empty()
    server.ignored = 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    target = ("127.0.0.1", server.port)
    engine.start(prefill=False)
    try:
        steps0, played, t0 = engine.steps, 0, time.monotonic()
        for i in range(0, len(datagrams), BURST):
            for d in datagrams[i:i + BURST]:
                sock.sendto(d, target)
            assert wait_until(lambda: server.received >= min(i + BURST, len(datagrams)), 5,
                              interval=0.0005), (i, server.received)
            due = int((time.monotonic() - t0) * engine.out_rate) - played   # the device's part, in real time
            played += engine.ring.drop(due)
        client.send_message("/driftwave/param/morph", 0.25)
        assert sent(server, len(datagrams) + 1)
        alive, steps = engine._thread.is_alive(), engine.steps - steps0
    finally:
        engine.stop()
        sock.close()
    assert server._thread.is_alive() and alive
    assert server.ignored == len(datagrams), server.last_ignored
    assert engine.bus.get("morph") == pytest.approx(0.25, abs=F32)
    assert steps > 0
    assert not [e for e in engine.errors if "engine step failed" in e]
    assert not caplog.records           # python-osc logs nothing either (a line per datagram would flood)


def test_stopping_the_server_frees_the_port(small_bundle):
    engine = Engine(load_bundle(small_bundle), 22050, threads=1)
    server = OscServer(engine, 0)
    port = server.port
    server.stop()
    again = OscServer(engine, port)             # the same port binds again at once
    assert again.port == port and again._thread.name == "driftwave-osc"
    with pytest.raises(OSError, match=f"cannot listen for OSC on 127.0.0.1:{port}"):
        OscServer(engine, port)                 # taken: a one-line error
    again.stop()
    assert not again._thread.is_alive()


def test_apply_message_routes_by_address_without_a_server(small_bundle):
    engine = Engine(load_bundle(small_bundle), 22050, threads=1)
    apply_message(engine, "/driftwave/param/token_beats", [2])
    apply_message(engine, "/driftwave/note/on", [61.0, 127.0])      # floats, as many controllers send
    assert engine.bus.get("token_beats") == 2.0
    ev = engine.events.get_nowait()
    assert (ev.kind, ev.a, ev.b) == ("note_on", 61, 127)


def test_session_starts_and_stops_the_server_with_the_sound(small_bundle, monkeypatch):
    """--osc PORT reaches the session's settings; the session's stop frees the port."""
    import main
    from realtime import session as session_module

    a = main.build_parser().parse_args(["play", "--headless", "--osc", "9000", "--bundle", "x"])
    assert main.play_settings(a).osc == 9000 and main.play_settings(a).osc_host == "127.0.0.1"
    a = main.build_parser().parse_args(["gui", "--osc", "9001", "--osc-host", "0.0.0.0"])
    assert (main.play_settings(a).osc, main.play_settings(a).osc_host) == (9001, "0.0.0.0")
    with pytest.raises(SystemExit):
        main.build_parser().parse_args(["play", "--osc", "70000"])
    engine = Engine(load_bundle(small_bundle), 22050, threads=1)

    class Output:           # no device: what the session calls on one
        def start(self):
            pass

        def stop(self):
            pass

    monkeypatch.setattr(session_module, "build", lambda s: (engine, Output()))
    monkeypatch.setattr(session_module, "freeze_heap", lambda: None)
    monkeypatch.setattr(engine, "start", lambda prefill=True: None)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    s = session_module.Session(session_module.Settings(bundle=str(small_bundle), osc=port))
    s.start()
    assert s.osc is not None and engine.osc is s.osc and s.osc.port == port
    assert not [w for w in s.warnings if "OSC" in w]
    SimpleUDPClient("127.0.0.1", port).send_message("/driftwave/param/morph", 1.0)
    assert wait_until(lambda: engine.bus.get("morph") == 1.0, 5)
    busy = session_module.Session(session_module.Settings(bundle=str(small_bundle), osc=port))
    busy.start()                                # the port is taken: a warning, the sound goes on
    assert busy.osc is None and any("cannot listen for OSC" in w for w in busy.warnings)
    stats = s.stop()
    assert stats["osc_messages_received"] == 1
    free = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    free.bind(("127.0.0.1", port))              # freed with the session
    free.close()
    busy.stop()


def test_bundles_are_applied_whole_and_a_message_cut_short_is_not(rig):
    """A bundle's messages are applied (nested bundles too); a float cut short, which
    python-osc itself would read padded with zeros (0.7 -> 0.5), is refused."""
    from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder

    engine, server, client = rig

    def msg(address, *args):
        b = OscMessageBuilder(address)
        for a in args:
            b.add_arg(a)
        return b.build()

    inner = OscBundleBuilder(IMMEDIATELY)
    inner.add_content(msg("/driftwave/param/drift", 0.25))
    outer = OscBundleBuilder(IMMEDIATELY)
    outer.add_content(msg("/driftwave/param/morph", 0.75))
    outer.add_content(inner.build())
    client.send(outer.build())
    assert sent(server, 1) and server.ignored == 0, server.last_ignored
    assert (engine.bus.get("morph"), engine.bus.get("drift")) == pytest.approx((0.75, 0.25), abs=F32)
    whole = msg("/driftwave/param/morph", 0.7).dgram
    for cut in (1, 2, 3, 4):
        client._sock.sendto(whole[:-cut], ("127.0.0.1", server.port))
    assert sent(server, 5) and server.ignored == 4 and "cut short" in server.last_ignored
    assert engine.bus.get("morph") == pytest.approx(0.75, abs=F32)
