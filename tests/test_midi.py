"""MIDI over real JACK MIDI ports: knobs, notes, learn, mappings, fuzz."""
import time

import numpy as np
import pytest

from core.bundle import load_bundle
from realtime.audio_output import AudioOutput
from realtime.controller import Mapping, MidiController
from realtime.engine import Engine
from realtime.midi import MidiError, MidiInput
from realtime.midi_parse import parse_message
from realtime.params import ControlBus
from realtime.presets import load_mappings, load_preset, save_mappings, save_preset
from realtime.voices import VoiceBank
from tests.jackutil import wait_until

RATE = 48000


def start_listening_engine(bundle_path, port: str):
    """An engine playing on JACK with 2 voices, listening to the JACK MIDI port ``port``."""
    engine = Engine(load_bundle(bundle_path), RATE, threads=1, voices=2)
    out = AudioOutput(engine.ring, samplerate=RATE)
    engine.attach_output(out)
    midi = MidiInput(engine.events, api="jack", port=port)
    engine.midi_input = midi
    engine.start()
    out.start()
    return engine, out, midi


@pytest.fixture
def rig(jack_server, small_bundle):
    """An engine listening to a test controller's JACK MIDI port."""
    import rtmidi
    ctrl = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="test-controller")
    ctrl.open_virtual_port("knobs")
    engine, out, midi = start_listening_engine(small_bundle, "test-controller:knobs")
    time.sleep(0.3)
    yield engine, ctrl
    out.stop()          # first: rtmidi's JACK calls must not meet a running JACK stream
    engine.stop()
    midi.close()
    ctrl.close_port()
    ctrl.delete()


def test_parse_message_table():
    assert parse_message([0x90, 60, 100]).kind == "note_on"
    assert parse_message([0x93, 60, 0]).kind == "note_off"            # velocity 0 = off
    assert parse_message([0x80, 60, 64]).kind == "note_off"
    ev = parse_message([0xB2, 74, 127])
    assert (ev.kind, ev.channel, ev.a, ev.b) == ("cc", 2, 74, 127)
    assert parse_message([0xE0, 0, 0x40]).a == 0                      # bend centre
    assert parse_message([0xE0, 0x7F, 0x7F]).a == 8191
    assert parse_message([0xC0, 5]).kind == "program"
    for junk in ([], [0x40, 1, 2], [0xF0, 1, 2, 0xF7], [0xF8], [0x90, 200, 1], [0x90, 60],
                 [0xB0, 1, 2, 3], ["x"], [0x90, -1, 5], [10 ** 30]):
        assert parse_message(junk) is None, junk


def test_knobs_and_notes_over_jack(rig):
    engine, ctrl = rig
    ctrl.send_message([0xB0, 70, 127])          # CC70 -> morph (default map)
    ctrl.send_message([0xB0, 72, 0])            # CC72 -> temperature
    assert wait_until(lambda: engine.bus.get("morph") == 1.0 and engine.bus.get("temperature") == 0.0, 3)
    ctrl.send_message([0x90, 67, 100])          # note on
    assert wait_until(lambda: engine.voices.gated and engine.voices.voices[0].note == 67, 3)
    assert wait_until(lambda: abs(engine.voices.voices[0].pitch - 67) < 0.05, 3)
    ctrl.send_message([0x90, 70, 90])           # a second note takes the second voice
    assert wait_until(lambda: [v.note for v in engine.voices.voices] == [67, 70], 3)
    ctrl.send_message([0xE0, 0x7F, 0x7F])       # bend up to +2 semitones
    assert wait_until(lambda: abs(engine.voices.voices[0].pitch - 69) < 0.1, 3)
    ctrl.send_message([0x80, 67, 0])
    assert wait_until(lambda: engine.voices.voices[0].stage in ("release", "idle"), 3)
    ctrl.send_message([0xB0, 123, 0])           # All Notes Off
    assert wait_until(lambda: all(v.stage in ("release", "idle") for v in engine.voices.voices), 3)
    ctrl.send_message([0xB0, 121, 0])           # Reset All Controllers
    assert wait_until(lambda: engine.bus.get("morph") == 0.0 and engine.voices.bend == 0.0, 3)
    s = engine.stats()
    assert s["midi_messages_received"] == 8 and s["midi_messages_ignored"] == 0


def test_midi_learn_binds_a_cc(rig):
    engine, ctrl = rig
    engine.controller.learn("drift")
    ctrl.send_message([0xB0, 20, 64])
    assert wait_until(lambda: engine.controller.learning is None, 3)
    assert engine.controller.learned == Mapping("cc", 20, "drift")
    ctrl.send_message([0xB0, 20, 127])
    assert wait_until(lambda: engine.bus.get("drift") == 1.0, 3)
    ctrl.send_message([0xB0, 71, 0])            # drift's old default CC is unbound now
    ctrl.send_message([0xB0, 20, 0])
    assert wait_until(lambda: engine.bus.get("drift") == 0.0, 3)


def test_mappings_and_presets_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("DRIFTWAVE_CONFIG_DIR", str(tmp_path))
    bus = ControlBus()
    c = MidiController(bus, VoiceBank(1, 86.0))
    c.bind(Mapping("cc", 30, "temperature", lo=0.2, hi=0.8, curve="exp", channel=3))
    save_mappings(c)
    c2 = MidiController(ControlBus(), VoiceBank(1, 86.0), mappings=[])
    assert load_mappings(c2)
    assert c2.mappings == c.mappings
    bus.set("morph", 0.25)
    save_preset("my sound", bus, c)
    bus3 = ControlBus()
    c3 = MidiController(bus3, None, mappings=[])
    load_preset("my sound", bus3, c3)
    assert bus3.get("morph") == 0.25 and c3.mappings == c.mappings
    (tmp_path / "mappings.json").write_text("{broken")
    with pytest.raises(ValueError, match="mappings.json"):
        load_mappings(c2)
    with pytest.raises(ValueError, match="no preset"):
        load_preset("nope", bus3)


def test_mapping_curves_and_channel_filter():
    bus = ControlBus()
    c = MidiController(bus, None, mappings=[Mapping("cc", 1, "temperature", 0.0, 0.5, "exp", channel=1)])
    from realtime.midi_parse import MidiEvent
    c.handle(None, MidiEvent("cc", 0, 1, 127, 0))       # wrong channel: ignored
    assert bus.get("temperature") == 1.0
    c.handle(None, MidiEvent("cc", 1, 1, 127, 0))
    assert bus.get("temperature") == pytest.approx(1.0)  # 0.5 of the range 0..2
    c.handle(None, MidiEvent("cc", 1, 1, 64, 0))
    assert bus.get("temperature") == pytest.approx(2.0 * 0.5 * (64 / 127) ** 2)


def test_a_jack_input_reroutes_to_another_source_without_a_new_port(jack_server):
    """A JACK MIDI input is driftwave's own port connected to its source; a switch moves the
    connection (realtime/jack_ports.py: RtMidi's port unregister races its process callback).
    After it, the new source is heard and the old one is not, with fresh counters, and the
    same single port of driftwave's; a switch to a port that is not there changes nothing."""
    import queue
    import rtmidi
    from realtime.jack_ports import JackConnections
    a, b = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="src-a"), rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="src-b")
    a.open_virtual_port("out")
    b.open_virtual_port("out")
    jack = JackConnections("test-watch")
    events = queue.SimpleQueue()
    midi = MidiInput(events, api="jack", port="src-a:out")
    try:
        assert midi.reroutable and midi.port_name == "src-a:out"
        own = midi._own_port
        assert jack.connections(own) == ["src-a:out"]

        def heard(sender, cc, inp):
            sender.send_message([0xB0, cc, 1])
            time.sleep(0.2)
            inp.poll()
            got = []
            while not events.empty():
                got.append(events.get().a)
            return got

        assert heard(a, 20, midi) == [20] and midi.received == 1
        moved = midi.reroute("src-b:out")
        assert moved is not midi and moved.port_name == "src-b:out" and moved.received == 0
        assert jack.connections(own) == ["src-b:out"] and moved._own_port == own
        assert len(jack.ports(r"midi_in_")) == 1                    # no second port registered
        assert heard(a, 21, moved) == [] and heard(b, 22, moved) == [22]
        midi.poll()
        midi.close()                                               # the old one closes nothing
        assert heard(b, 23, moved) == [23]
        with pytest.raises(MidiError, match="no MIDI input port"):
            moved.reroute("no such source")
        assert jack.connections(own) == ["src-b:out"] and heard(b, 24, moved) == [24]
    finally:
        for m in (midi, locals().get("moved")):
            if m is not None:
                m.close()
        assert jack.ports(r"midi_in_") == []                        # the last close frees the port
        jack.close()
        for s in (a, b):
            s.close_port()
            s.delete()


def test_a_reroute_that_jack_refuses_leaves_the_old_source_connected(jack_server):
    """A source listed a moment ago can be gone when JACK is asked to connect it (the race is
    staged by making that one connect fail): the switch raises MidiError in one line and the
    input stays on its old source."""
    import queue
    import rtmidi
    from realtime.jack_ports import JackUnavailable
    a, b = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="keep-a"), rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="keep-b")
    a.open_virtual_port("out")
    b.open_virtual_port("out")
    midi = MidiInput(queue.SimpleQueue(), api="jack", port="keep-a:out")
    real_connect = midi._jack.connect

    def refuse_b(source, destination):
        if source.startswith("keep-b"):
            raise JackUnavailable(f"JACK would not connect {source} to {destination} (error -1)")
        real_connect(source, destination)
    midi._jack.connect = refuse_b
    try:
        with pytest.raises(MidiError, match="cannot open MIDI port 'keep-b:out'.*would not connect"):
            midi.reroute("keep-b:out")
        assert midi._jack.connections(midi._own_port) == ["keep-a:out"]
        assert not midi._closed
    finally:
        midi.close()
        for s in (a, b):
            s.close_port()
            s.delete()


def test_bad_port_is_a_clear_error(jack_server):
    with pytest.raises(MidiError, match="no MIDI input port"):
        MidiInput(__import__("queue").SimpleQueue(), api="jack", port="no such controller")
    with pytest.raises(MidiError, match="unknown MIDI API"):
        MidiInput(__import__("queue").SimpleQueue(), api="carrier-pigeon")


def test_parse_fuzz_never_raises():
    rng = np.random.default_rng(0)
    bus, voices = ControlBus(), VoiceBank(4, 86.0)
    c = MidiController(bus, voices)
    for _ in range(100_000):
        msg = [int(x) for x in rng.integers(0, 256, rng.integers(0, 5))]
        ev = parse_message(msg)
        if ev is not None:
            c.handle(None, ev)
    voices.render(4, 60.0, 0.05, 0.01, 0.3)


FUZZ_SENDER = """
import sys, time
import numpy as np
import rtmidi
out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="fuzzer")
out.open_virtual_port("garbage")
print("ready", flush=True)
sys.stdin.readline()
rng = np.random.default_rng(1)
sent = 0
for i in range(100_000):
    r = i % 10
    if r == 0:                                   # a sysex flood message
        msg = [0xF0] + [int(x) for x in rng.integers(0, 128, 200)] + [0xF7]
    elif r == 1:                                 # running-status garbage: data bytes only
        msg = [int(x) for x in rng.integers(0, 128, rng.integers(1, 4))]
    else:                                        # anything at all
        msg = [int(x) for x in rng.integers(0, 256, rng.integers(1, 4))]
    try:
        out.send_message(msg)
        sent += 1
    except Exception:                            # rtmidi refuses some shapes itself
        pass
    if i % 1000 == 0:
        time.sleep(0.001)                        # let JACK's period drain its MIDI buffer
print(sent, flush=True)
time.sleep(0.5)
"""


def test_fuzz_over_jack_at_full_speed(jack_server, small_bundle):
    """100,000 random byte messages, sysex floods and running-status garbage from another
    process, as fast as it can send: nothing escapes, the engine keeps stepping, everything
    unknown is counted. (Whether it keeps real time under the flood is a speed question for a
    quiet machine, not a test: on this 2-core machine the sender, rtmidi, JACK and the engine
    share two cores, and a fresh-clone CI run once produced 3.7 s of audio in 4.5 s.)"""
    import os
    import subprocess
    import sys
    sender = subprocess.Popen([sys.executable, "-c", FUZZ_SENDER], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=dict(os.environ, **jack_server.env))
    assert sender.stdout.readline().strip() == "ready"
    engine, out, midi = start_listening_engine(small_bundle, "fuzzer:garbage")
    try:
        time.sleep(0.5)
        steps0, t0 = engine.steps, time.monotonic()
        sender.stdin.write("go\n")
        sender.stdin.flush()
        sent = int(sender.stdout.readline())
        sender.wait(30)
        time.sleep(0.5)
        elapsed = time.monotonic() - t0
        s = engine.stats()
        produced_s = (engine.steps - steps0) * engine.step_s
        alive = engine._thread.is_alive()
    finally:
        out.stop()
        engine.stop()
        midi.close()
    assert alive
    assert not [e for e in s["errors"] if "engine step failed" in e]
    assert s["midi_messages_received"] > 10_000 and s["midi_messages_received"] <= sent
    assert s["midi_messages_ignored"] > 10_000
    assert produced_s > 0, (produced_s, elapsed)             # it kept making sound through the flood


def test_the_default_midi_api_falls_back_to_jack_without_an_alsa_sequencer(jack_server, small_bundle, tmp_path):
    """Tried as a new user would: ``play --headless --midi-virtual NAME`` with a JACK server and
    no ALSA sequencer failed with "cannot start MIDI backend 'default'". The default API now
    tries the other compiled backends and says which one opened."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import rtmidi
    try:
        rtmidi.MidiIn(rtmidi.API_LINUX_ALSA).delete()
        pytest.skip("this machine has an ALSA sequencer: the default API opens it")
    except Exception:
        pass
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, DRIFTWAVE_CONFIG_DIR=str(tmp_path), **jack_server.env)
    r = subprocess.run([sys.executable, str(root / "main.py"), "play", "--headless", "--seconds", "1", "--quiet",
                        "--bundle", str(small_bundle), "--midi-virtual", "keys", "--stats-json", str(tmp_path / "s.json")],
                       cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "opened JACK" in r.stderr, r.stderr
    import json
    assert json.loads((tmp_path / "s.json").read_text())["midi_port"] == "driftwave:keys (virtual)"
