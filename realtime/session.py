"""A playing session: startup and shutdown, the same for headless play and the window.

:class:`Session` builds the engine and its audio output from :class:`~realtime.settings.Settings`,
loads the saved MIDI mappings, opens MIDI, starts the OSC server, starts the sound (after freezing the startup heap:
:func:`~realtime.gc_pauses.freeze_heap`), switches devices, and stops everything in the one
order that is safe with JACK (audio first, then MIDI).
It runs on the thread that owns the program (the main thread, or the GUI thread); the
engine's own threads are listed in :mod:`realtime.engine`.
"""
from __future__ import annotations

import os
import sys
import time

from core.bundle import load_bundle
from core.compute import compute_device

from .engine import Engine
from .gc_pauses import freeze_heap
from .midi import MidiError, MidiInput, open_input
from .osc import OscServer
from .presets import load_mappings, save_mappings
from .settings import Settings
from .view import EngineView


class NoAudioDevice(Exception):
    pass


def describe_devices() -> str:
    try:
        import sounddevice as sd
        devs = str(sd.query_devices())
    except Exception as e:  # PortAudio missing or broken
        devs = f"(cannot list audio devices: {e})"
    return devs or "(no audio devices)"


def wants_compiled(choice: str, device) -> bool:
    """``--compile``: "on", "off", or "auto": what ``DRIFTWAVE_COMPILE`` says ("on" or "off")
    where it is set, else on where the step has no CUDA graphs (every device but CUDA;
    core/compiled_step.py)."""
    if choice not in ("auto", "on", "off"):
        raise ValueError(f"compile must be auto, on or off; got {choice!r}")
    if choice == "auto":
        choice = os.environ.get("DRIFTWAVE_COMPILE", "auto")
    return choice == "on" or (choice == "auto" and getattr(device, "type", str(device)) != "cuda")


def build(settings: Settings):
    """Loads the bundle onto the compute device (:func:`core.compute.compute_device`; raises
    its ``ComputeUnavailable``), opens the audio device at a rate it takes (raises
    :class:`NoAudioDevice`), builds the engine. Returns ``(engine, output)``, not started."""
    from .audio_output import AudioOutput, pick_samplerate

    s = settings
    bundle = load_bundle(s.bundle, compute_device(s.compute))
    try:
        import sounddevice as sd
        sd.query_devices(s.device, "output")
        rate = pick_samplerate(s.device, s.samplerate or bundle.sample_rate)
    except Exception as e:
        raise NoAudioDevice(f"no usable audio output device ({e}).\nDevices:\n{describe_devices()}\n"
                            f"('driftwave render' works without a device.)") from None
    compiled = wants_compiled(s.compile, bundle.mean.device)
    if compiled:          # seconds of silence otherwise unexplained (longer the first time)
        print("compiling and timing the model's step (seconds with the kernels cached, minutes the first "
              "time; --compile off skips it)",
              file=sys.stderr, flush=True)
    engine = Engine(bundle, rate, frames_per_step=s.frames_per_step,
                    target_fill_s=None if s.latency_ms is None else s.latency_ms / 1e3, latency=s.latency,
                    threads=s.threads, precision=s.precision, seed=s.seed, voices=s.voices,
                    mel_match=s.mel_match, realtime=s.realtime,
                    compiled=compiled, pitch_filter=s.pitch_filter)
    out = AudioOutput(engine.ring, device=s.device, samplerate=rate, blocksize=s.blocksize,
                      latency=s.device_latency, realtime=s.realtime)
    engine.attach_output(out)
    return engine, out


class Session:
    """One engine and its output, started and stopped as a whole.

    ``warnings``: one-line messages for the user collected at startup (a broken mappings
    file, the MIDI backend that opened instead of the default, a recording that could not
    start); the caller shows them (stderr, or the window's banner)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.warnings: list[str] = []
        self.engine, self.output = build(settings)
        self.midi: MidiInput | None = None
        self.osc: OscServer | None = None
        self._stopped = False
        try:
            load_mappings(self.engine.controller)       # before start: no engine thread yet
        except ValueError as e:
            self.warnings.append(f"{e}; using the default MIDI map")

    @property
    def view(self) -> EngineView:
        """The read-only view of the engine playing now (a new one after a device switch)."""
        return EngineView(self.engine)

    # ---- MIDI ---------------------------------------------------------------------------
    def open_midi(self, api: str = "default", port: str | int | None = None, virtual: str | None = None) -> MidiInput:
        """Opens a MIDI input for the engine (closing the one before); raises MidiError. With
        the default API and no ALSA sequencer, the other compiled backends are tried (JACK)."""
        # NB: python-rtmidi holds the GIL through JACK server calls, which end only after a JACK
        # cycle; no JACK thread of this process waits for the GIL (the C callback), so they need
        # no pause (docs/history.md; tests/test_gui.py::test_switching_jack_midi_inputs_...)
        old = self.midi
        if old is not None and old.reroutable and virtual is None and port is not None and api in ("jack", "default"):
            # a JACK input moves to the new source; no port is unregistered while RtMidi's
            # process callback runs (realtime/jack_ports.py)
            try:
                midi = old.reroute(port)          # on MidiError the old input plays on
            except MidiError:
                if api == "jack":
                    raise
            else:
                self.midi = midi
                self.engine.midi_input = midi
                return midi
        self._close_midi()
        midi, note = open_input(self.engine.events, api, port, virtual)
        self.midi = midi
        self.engine.midi_input = midi
        if note:
            self.warnings.append(note)
        return midi

    def open_midi_from_settings(self) -> MidiInput | None:
        s = self.settings
        if s.midi is None and not s.midi_virtual:
            return None
        return self.open_midi(s.midi_api, s.midi, s.midi_virtual)

    def close_midi(self) -> None:
        self._close_midi()

    def _close_midi(self) -> None:
        midi, self.midi = self.midi, None
        if midi is not None:
            self.engine.midi_input = None
            midi.close()

    # ---- OSC ----------------------------------------------------------------------------
    def open_osc(self, port: int, host: str = "127.0.0.1") -> OscServer:
        """Starts the OSC server (realtime/osc.py) for the engine, closing the one before;
        raises OSError (one line) when the address cannot be bound."""
        self.close_osc()
        self.osc = OscServer(self.engine, port, host)
        self.engine.osc = self.osc
        return self.osc

    def close_osc(self) -> None:
        """Stops the OSC server and frees its port (its counters stay in the engine's stats)."""
        osc, self.osc = self.osc, None
        if osc is not None:
            osc.stop()

    # ---- live audio input ------------------------------------------------------------------
    def open_input(self, device) -> None:
        """Opens ``device`` (PortAudio number or name) as the engine's live input
        (realtime/audio_input.py), closing the one before; raises :class:`NoAudioDevice`."""
        from .audio_input import AudioInput
        from .recorder import Recorder

        inp = None
        try:
            inp = AudioInput(device, samplerate=self.engine.out_rate)
            inp.start()
        except Exception as e:      # PortAudio's errors, a device without inputs
            if inp is not None:     # opened but would not start: closed, not left registered
                try:
                    inp.stop()
                except Exception:
                    pass
            raise NoAudioDevice(f"no usable audio input device {device!r} ({' '.join(str(e).split())})") from None
        old = self.engine.live_input
        live = self.engine.attach_input(inp)
        if self.settings.record_input:
            try:
                live.recorder = Recorder(self.settings.record_input, inp.samplerate)
            except OSError as e:
                self.warnings.append(str(e))
        self._retire_input(old)

    def close_input(self) -> None:
        old, self.engine.live_input = self.engine.live_input, None
        self._retire_input(old)

    def _retire_input(self, live) -> None:
        """Stops ``live``'s device once the engine no longer reads it (two steps later; at
        once when the engine does not run), and its recorder."""
        if live is None:
            return
        engine, t0 = self.engine, time.monotonic()
        s0 = engine.steps
        while engine.running and engine.steps < s0 + 2 and time.monotonic() - t0 < 1.0:
            time.sleep(0.002)
        live.input.stop()
        if live.recorder is not None:
            live.recorder.stop()

    # ---- sound --------------------------------------------------------------------------
    def start(self, wait_for_reference: bool = True) -> None:
        """Reference tokens (if asked for), OSC (a port that cannot be bound is a warning),
        heap freeze, engine, device, recording."""
        if self.settings.osc is not None and self.osc is None:
            try:
                self.open_osc(self.settings.osc, self.settings.osc_host)
            except OSError as e:
                self.warnings.append(f"{e}; OSC is off")
        if self.settings.reference:
            job = self.engine.load_reference(self.settings.reference)   # its error lands in engine.errors
            if wait_for_reference:
                job.join()
        if self.settings.plugin:            # a file that is no plugin: its line in engine.errors
            def switch_in(ok: bool, msg: str) -> None:
                if ok:                      # asked for by name: it plays, not bypassed
                    self.engine.bus.set("fx_plugin_bypass", 0)
            self.engine.load_plugin(self.settings.plugin, switch_in).join()
        unused = [flag for flag, on in (("--pitch-follow", self.settings.pitch_follow),
                                        ("--record-input", self.settings.record_input)) if on]
        if unused and self.settings.input is None:
            self.warnings.append(f"{' and '.join(unused)} without --input: nothing to follow or record; ignored")
        if self.settings.input is not None and self.engine.live_input is None:
            self.open_input(self.settings.input)     # raises NoAudioDevice
            if self.engine.player.tokens is not None:
                self.engine.bus.set("token_mode", "input")     # as --reference switches to its mode
            self.engine.bus.set("pitch_follow", self.settings.pitch_follow)
        freeze_heap()           # before the sound: a full GC of the startup heap would be a dropout
        self.engine.start()
        self.output.start()
        if self.settings.record:
            try:
                self.engine.start_recording(self.settings.record)
            except OSError as e:
                self.warnings.append(f"cannot record to '{self.settings.record}': {e}")

    def pause(self) -> None:
        """Transport stop: the device stops pulling; the engine waits with a full ring."""
        self.output.pause()

    def resume(self) -> None:
        self.output.resume()

    def switch_device(self, device, latency: str | float) -> tuple[Engine, object]:
        """A new engine on ``device`` with the ring at ``latency`` (a mode of
        :data:`realtime.engine.LATENCY_MARGINS_MS`, or a fixed fill in ms): parameters, mappings,
        seeds, bundle, compute device and MIDI input carry over. Raises what :func:`build`
        raises, with the old engine still playing."""
        old_engine, old_out = self.engine, self.output
        state = old_engine.bus.state()
        fixed = not isinstance(latency, str)
        settings = self.settings.but(bundle=old_engine.player.bundle.path, device=device, samplerate=None,
                                     latency=self.settings.latency if fixed else latency,
                                     latency_ms=float(latency) if fixed else None, seed=int(state["seed_a"]),
                                     compute=str(old_engine.compute_device), mel_match=old_engine.mel_match,
                                     pitch_filter=old_engine.pitch_filter,
                                     compile="on" if old_engine.compiled else "off",
                                     # the step "auto" chose: the model's cost does not change with the device
                                     frames_per_step=old_engine.frames_per_step)
        engine, output = build(settings)
        old_out.stop()
        old_engine.stop()                 # its thread has ended: this thread may read its controller
        for k, v in state.items():
            engine.bus.set(k, v)
        engine.controller.load_json(old_engine.controller.to_json())
        engine.controller.dirty = old_engine.controller.dirty
        engine.controller.learned = old_engine.controller.learned
        if old_engine.live_input is not None:       # the same input device plays into the new engine
            live = engine.attach_input(old_engine.live_input.input)
            live.recorder = old_engine.live_input.recorder
        if self.midi is not None:         # the queue first: the new engine polls once it sees midi_input
            self.midi.queue = engine.events
            engine.midi_input = self.midi
        if self.osc is not None:
            self.osc.engine, engine.osc = engine, self.osc
        if old_engine.rack.plugin_path is not None:     # the plugin too (loaded again for the new rate)
            engine.load_plugin(old_engine.rack.plugin_path).join()
        engine.start()
        output.start()
        self.engine, self.output, self.settings = engine, output, settings
        return engine, output

    def stop(self) -> dict:
        """Stops the sound, then MIDI (no JACK MIDI call while this process's JACK stream runs),
        saves mappings a MIDI learn changed; returns the engine's final stats. Idempotent."""
        rec = self.engine.recorder
        if not self._stopped:
            self._stopped = True
            self.close_osc()              # no more parameter changes from outside
            try:
                self.output.stop()
            finally:
                self.engine.stop()
                self._retire_input(self.engine.live_input)  # the engine has stopped: at once
                self._final_stats = self.engine.stats()     # with the MIDI input's counters
                self._close_midi()
            c = self.engine.controller
            if c.dirty and c.learned is not None:
                try:
                    save_mappings(c)
                except OSError as e:
                    print(f"warning: cannot save the MIDI mappings: {e}", file=sys.stderr)
        stats = dict(self._final_stats)
        if rec is not None:
            stats["recording"] = {"path": rec.path, "seconds": rec.seconds, "error": rec.error}
        return stats
