"""The engine: turns controls into sound, one step at a time, forever.

Threads (and what each may touch):

* **audio callback** (rtmixer's C callback on PortAudio's thread; no Python runs there):
  copies ring -> device, zero-fills what the ring lacks.
* **driftwave-audio-watch** (:class:`~realtime.audio_output.AudioOutput`; real-time one
  level below the engine, since it takes the GIL):
  restarts rtmixer's ring action after the ring ran empty, counts underruns, xruns and
  frames from rtmixer's stats, and carries out panic flushes (the ring's reader only while
  the C callback is not reading it).
* **driftwave-engine** (:meth:`Engine._run`): asks the OS for real-time scheduling for
  itself (:mod:`realtime.priority`; what it got is in ``stats()["priority"]``), takes a
  control snapshot, drains MIDI events, reads and analyses the live input (if any:
  :mod:`realtime.live_input`; the device side, :mod:`realtime.audio_input`, is a C callback),
  advances the noise/token/pitch sources, runs one generator + vocoder step, guards
  against NaN/Inf, resamples to the device rate, applies gain, the effects rack
  (:mod:`realtime.rack`; its plugin slot: see there) and the safety limiter,
  writes the ring buffer, hands the block to the recorder, updates the taps. It sleeps
  while the ring holds at least ``target_fill`` frames. With a latency *mode* ("low",
  "normal", "safe": :data:`LATENCY_MARGINS_MS`) that fill follows the deepest dips the ring
  went through in the last 20 s (:mod:`realtime.ring_sizer`; the "safe" fill until 20 s have
  been seen); with a fixed ``target_fill_s`` it is that.
* **driftwave-loader**: loads a bundle for a hot swap and builds its player (which runs
  the model's settling pre-roll, :meth:`core.synth.Synth.settle`, and with ``compiled``
  compiles its step, :mod:`core.compiled_step`), so a slow load never
  stalls the sound; hands it over through ``_incoming``, and sets the token parameter
  to the new bundle's default token (a bus store, as the GUI's). It also names a
  reference file's frames with tokens (reference token mode), and loads a VST3/AU file
  into the effects rack's plugin slot (:meth:`Engine.load_plugin`; see ``rack`` below).
* **driftwave-recorder** (:class:`~realtime.recorder.Recorder`): writes the WAV; with
  ``--record-input`` a second one writes the live input's (``live_input.recorder``, which the
  engine thread pushes the consumed input to).
* **driftwave-osc** (:class:`~realtime.osc.OscServer`, only with ``--osc PORT``): receives
  OSC datagrams, parses them, and sets parameters and triggers on the bus (whole-item stores,
  as the GUI's) or queues notes on ``events`` (:meth:`Engine.note_on`); it never touches
  engine state otherwise, and never waits for the engine. Its counters are ints it alone
  writes.
* **GUI thread**: sets parameters on the control bus, pushes events, and reads the taps and
  stats. It never waits for the engine. MIDI has no Python thread: RtMidi queues messages
  in C++ and the engine thread takes them at the start of each step
  (:meth:`~realtime.midi.MidiInput.poll`, a try-lock it never waits for). No JACK thread of
  this process runs Python.

NB: shared values, and why each is safe without a lock:

* ``ring``: single producer (engine), single consumer (the C callback; the watcher during a
  flush); see ringbuffer.py.
* ``bus``: see params.py (whole-item stores, monotonic trigger counters; the loader
  replaces the token parameter's spec whole when a bundle with another token count loads).
* ``_incoming``: one reference; the loader stores it, the engine takes it and stores
  None (each store is atomic under the GIL, and only the loader stores non-None).
* a player's ``tokens.reference``: an array the loader replaces whole; the engine's
  ``TokenSource.next`` reads the attribute once per call.
* ``events``: ``queue.SimpleQueue`` (thread safe, put never blocks). It carries MIDI and
  keyboard events and :class:`EngineRequest` s, functions another thread asks the engine
  thread to run between steps (:meth:`Engine.request`): that is how the GUI changes what
  belongs to the engine thread (the controller's mappings, MIDI learn).
* ``controller.state``: an immutable snapshot of the mappings the controller replaces whole
  (controller.py); other threads read only that, never ``controller.mappings``.
* ``midi_input``: a reference the GUI replaces whole (None while it swaps ports); the engine
  reads it once per step.
* ``recorder``: a reference replaced whole; the engine reads it once per step.
* ``live_input``: a :class:`~realtime.live_input.LiveInput` reference replaced whole (the
  session, None without ``--input``); the engine reads it once per step and alone reads its
  device's ring (the C callback of :mod:`realtime.audio_input` writes it).
* ``rack``: the engine thread's, but for its plugin slot's effect, which the thread loading
  a plugin file builds and stores whole; the engine reads it once per block (rack.py).
* ``clock`` (core/tempo.py): the engine thread's alone (the controller feeds it MIDI clock
  as the engine drains events); ``stats()`` reads only its ``bpm_estimate``, a float it stores.
* ``osc``: a reference the session stores (None without OSC); ``stats()`` reads its counters.
* taps (``mel_tap``, ``peak``, ``rms``, ...): arrays written by the engine, read by the GUI
  by value (a torn read shows one frame of a spectrogram a step late: harmless).
* ``errors``: ``collections.deque`` (appends and pops are atomic); the rack's failing slots
  append to it too (core.effects.Rack.failures).
* counters (``nan_events``, ``steps``, ...): ints written by the engine alone.
* ``GC_PAUSES`` (gc_pauses.py): ints and a bounded deque written by the GC's
  callback in whichever thread collects (holding the GIL), read by ``stats()``.

The cyclic garbage collector is the one pause the engine cannot schedule: a full
collection holds the GIL for as long as it walks the heap (far longer than the ring, with
the default bundle and the window: docs/measurements.md). ``main.py`` freezes the startup heap before the sound starts
(:func:`~realtime.gc_pauses.freeze_heap`), and ``stats()`` reports every pause.
"""
from __future__ import annotations

import collections
import os
import queue
import random
import threading
import time

import numpy as np
import torch

from core.audio_io import AudioReadError, read_mono
from core.bundle import Bundle, BundleError, load_bundle
from core.tokens import tokens_of_audio
from core.limiter import SafetyLimiter
from core.pitch_filter import DEFAULT_STRENGTH
from core.tempo import TEMPO_SOURCES, BeatClock, beat_slots

from .controller import MidiController
from .gc_pauses import GC_PAUSES
from .midi_parse import MidiEvent
from .params import DEFAULT_SPECS, ControlBus
from .player import BundlePlayer
from .priority import Priority, raise_priority
from .rack import RACK_SPECS, EngineRack
from .recorder import Recorder
from . import ring_sizer
from .ring_sizer import RingSizer
from .ringbuffer import RingBuffer
from .step_size import CHOICES as STEP_CHOICES, MEASURE_S, RTF_LIMITS, StepChoice, choose_frames
from .voices import VoiceBank


def default_threads() -> int:
    """Leave at least one core to the audio path (TESTING.md: two intra-op threads on a
    2-core machine starved the callback)."""
    return max(1, (os.cpu_count() or 2) - 1)


# What the ring holds beyond one step and the measured step-time jitter, per latency mode
# (ms): "low" for a quiet machine, "normal" for one with other programs running, "safe" for a
# loaded one. The ring never holds less than a step, nor less than a device block minus a step.
LATENCY_MARGINS_MS = {"low": 2.0, "normal": 6.0, "safe": 40.0}


class EngineRequest:
    """A function for the engine thread: ``fn(engine)``, run between two steps. What it
    raises lands in :attr:`Engine.errors`; the sound goes on."""
    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn


class Engine:
    def __init__(self, bundle: Bundle, out_rate: int, *, frames_per_step: int | str = 2,
                 target_fill_s: float | None = 0.05, latency: str = "normal", threads: int | None = None,
                 precision: str = "float32", seed: int = 0, fade_s: float = 0.25,
                 mel_tap_frames: int = 512, voices: int = 1, mel_match: str = "full",
                 realtime: bool = True, compiled: bool = False, pitch_filter: float = DEFAULT_STRENGTH):
        """``target_fill_s``: a fixed ring fill, seconds; None: sized by ``latency`` (a key of
        :data:`LATENCY_MARGINS_MS`) from measured step times. ``realtime``: ask the OS for
        real-time scheduling for the engine thread (else only a better nice value).
        ``compiled``: the model's steps run as compiled graphs (:mod:`core.compiled_step`),
        prepared when a player is built (here, and on the loader thread for a hot swap).
        ``pitch_filter``: the pitch post-filter's strength (:mod:`core.pitch_filter`; 0: off).
        ``frames_per_step`` "auto": the smallest step within the latency mode's real-time
        factor, measured here before playing (:mod:`realtime.step_size`; the choice is in
        :attr:`step_choice`); a hot swap keeps the step chosen."""
        if latency not in LATENCY_MARGINS_MS:
            raise ValueError(f"latency must be one of {', '.join(LATENCY_MARGINS_MS)}; got {latency!r}")
        self.out_rate = int(out_rate)
        auto_step = frames_per_step == "auto"
        self.frames_per_step = STEP_CHOICES[0] if auto_step else int(frames_per_step)
        self.threads = threads or default_threads()
        self.precision = precision
        self.mel_match = mel_match      # core/mel_match.py's mode: full, low-latency or off
        self.pitch_filter = float(pitch_filter)     # core/pitch_filter.py's strength; 0: off
        self.latency_mode = "fixed" if target_fill_s is not None else latency
        self.realtime = realtime
        self.priority = Priority("normal", None, "the engine thread has not started")
        self.bus = ControlBus(DEFAULT_SPECS + RACK_SPECS)
        self.bus.set("seed_a", seed)
        self.bus.set("seed_b", seed + 1)
        self.n_voices = int(voices)
        self.voices = VoiceBank(self.n_voices, bundle.sample_rate / bundle.hop)
        self.controller = MidiController(self.bus, self.voices)
        self.midi_input = None         # a MidiInput feeding self.events, for its counters
        self.live_input = None         # a LiveInput: tokens and pitch of the input device (live_input.py)
        self.osc = None                # an OscServer setting the bus, for its counters (session.py)
        self.clock = BeatClock()       # beat positions token moves follow (core/tempo.py)
        self.compiled = compiled
        # before the player: its compiled kernels take the thread count they are compiled with
        # (TorchInductor's OpenMP loops), and the engine steps with self.threads
        torch.set_num_threads(self.threads)
        self.player = BundlePlayer(bundle, self.out_rate, seed, seed + 1, precision, self.n_voices, self.mel_match,
                                   self._compile_frames, pitch_filter=self.pitch_filter)
        self.step_choice: StepChoice | None = None     # what "auto" measured and chose
        if auto_step:
            self.step_choice = choose_frames(lambda f: self.player.step_cost(f, MEASURE_S),
                                             RTF_LIMITS[self.latency_mode])
            self.frames_per_step = self.step_choice.frames
        self._use_default_token(bundle)
        self.reference_path: str | None = None     # reference token mode's file (loader thread)
        self._fading: BundlePlayer | None = None
        self._fade_pos = 0
        self.fade_len = max(1, int(fade_s * self.out_rate))
        self._incoming: BundlePlayer | None = None
        self._gc_mark = (time.monotonic(), GC_PAUSES.count, GC_PAUSES.long)   # reset by start()
        self.step_out = int(np.ceil(self.frames_per_step * bundle.hop * self.out_rate / bundle.sample_rate))
        self.output = None
        if target_fill_s is not None:
            self.target_fill = max(int(target_fill_s * self.out_rate), self.step_out + 64)
        else:       # until start() knows the device: a step, its compute and the mode's margin
            self.target_fill = self._fill_for(self.step_s)
        self.sizer: RingSizer | None = None      # sizes target_fill from the ring's dips (start())
        self._underruns_seen = 0
        self._slack = 0                     # the ring's fill just before the last step's write
        self.ring = RingBuffer(max(self.target_fill, int(0.25 * self.out_rate)) + 4 * self.step_out + self.out_rate // 2)
        self.errors: collections.deque[str] = collections.deque(maxlen=32)
        self.rack = EngineRack(self.out_rate, errors=self.errors)   # after the gain, before the limiter
        self.limiter = SafetyLimiter(self.out_rate)
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.event_handler = self.controller.handle   # applies MIDI/keyboard events
        self.recorder: Recorder | None = None
        # taps for the GUI
        self.mel_tap = np.full((mel_tap_frames, bundle.mel.n_mels), -3.0, dtype=np.float32)
        self.mel_tap_written = 0
        self.token_tap = np.full(mel_tap_frames, -1, dtype=np.int32)   # -1: no token model
        self.peak = 0.0
        self.rms = 0.0
        self.last_tokens: np.ndarray | None = None
        # stats
        self.steps = 0
        self.nan_events = 0
        self.frames_generated = 0
        self.compute_s = 0.0
        self._step_ms = np.zeros(1 << 16, dtype=np.float32)
        self._rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def _compile_frames(self) -> int | None:
        return self.frames_per_step if self.compiled else None

    # ---- control from other threads -------------------------------------------------
    def attach_output(self, output) -> None:
        """The AudioOutput reading :attr:`ring` (for stats, panic and latency)."""
        self.output = output

    def attach_input(self, audio_input):
        """Live audio input (an :class:`~realtime.audio_input.AudioInput`, started by the
        caller): token mode "input" and ``pitch_follow`` play what it hears. Returns the
        :class:`~realtime.live_input.LiveInput` (one store, see NB)."""
        from .live_input import LiveInput

        live = LiveInput(audio_input, self.player.bundle)
        self.live_input = live
        return live

    def start(self, prefill: bool = True) -> None:
        GC_PAUSES.install()
        self._gc_mark = (time.monotonic(), GC_PAUSES.count, GC_PAUSES.long)
        # NB: the first stats() pays for a lazy numpy import (its first percentile) holding the
        # GIL and the import lock: paid here, before the sound, not a second into it
        # (tests/test_realtime_units.py::test_engine_stats_import_nothing_once_started)
        self.stats()
        if self.latency_mode != "fixed":    # now that the device (and its block) is known
            self.sizer = self._make_sizer()
            self.target_fill = self.sizer.target
        if prefill:     # fill the ring before the device starts pulling
            torch.set_num_threads(self.threads)
            while self.ring.available() < self.target_fill:
                self._step()
        self._thread = threading.Thread(target=self._run, name="driftwave-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stops for good (the engine does not start again)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self.stop_recording()

    def _use_default_token(self, bundle) -> None:
        """The token knob spans the bundle's own tokens (0 .. n_tokens - 1), and starts on
        the token the bundle names (its loudest common one: some tokens stand for the silence
        between notes); token numbers mean nothing across bundles."""
        n = bundle.generator.config.n_tokens
        self.bus.set_range("token", 0, max(n - 1, 0))
        if n:
            self.bus.set("token", bundle.default_token)

    def _on_loader(self, job, label: str, on_done=None) -> threading.Thread:
        """Runs ``job()`` (returns what it did) on a driftwave-loader thread. A failure leaves
        its message in :attr:`errors` (and ``on_done(False, message)``); the sound goes on."""
        def work():
            try:
                ok, msg = True, job()
            except (BundleError, AudioReadError, ValueError) as e:
                ok, msg = False, str(e)
            except Exception as e:  # a bug or an unexpected file problem must not kill the sound
                ok, msg = False, f"{label}: {type(e).__name__}: {e}"
            if not ok:
                self.errors.append(msg)
            if on_done:
                on_done(ok, msg)
        t = threading.Thread(target=work, name="driftwave-loader", daemon=True)
        t.start()
        return t

    def load_bundle(self, path: str, on_done=None) -> threading.Thread:
        """Hot swap: load ``path`` on the loader thread; the engine crossfades to it. A bad
        file leaves a message in :attr:`errors` and the current sound goes on."""
        def job() -> str:
            bundle = load_bundle(path, self.compute_device)   # where the current one runs
            v = self.bus.state()
            player = BundlePlayer(bundle, self.out_rate, int(v["seed_a"]), int(v["seed_b"]),
                                  self.precision, self.n_voices, self.mel_match, self._compile_frames,
                                  pitch_filter=self.pitch_filter)
            if self.reference_path and player.tokens is not None:
                try:      # the reference file in the new model's own tokens
                    self._give_reference(player, self.reference_path)
                except (ValueError, AudioReadError) as e:     # reference mode then plays the token knob
                    self.errors.append(str(e))
            self._incoming = player
            self._use_default_token(bundle)
            return f"loaded {bundle.name}"
        return self._on_loader(job, f"bundle '{path}'", on_done)

    def load_plugin(self, path: str | None, on_done=None) -> threading.Thread:
        """The effects rack's plugin slot (:mod:`realtime.rack`): loads a VST3/AU file, or
        empties the slot for None, on the loader thread (a plugin can take seconds to load). A
        file that is not a plugin leaves its one line in :attr:`errors`; the slot keeps what
        it had and the sound goes on (tests/test_effects.py)."""
        def job() -> str:
            if path is None:
                self.rack.clear_plugin()
                return "plugin slot emptied"
            return self.rack.load_plugin(path)
        return self._on_loader(job, f"plugin '{path}'", on_done)

    def load_reference(self, path: str, on_done=None) -> threading.Thread:
        """Reference token mode: the tokens of an audio file, named by the bundle's own token
        encoder, on a loader thread; then the token mode switches to "reference". Kept for
        hot swaps (a bundle with an encoder re-reads the file). A bad file or a bundle
        without an encoder leaves a message in :attr:`errors`; the sound goes on."""
        def job() -> str:
            self._give_reference(self.player, path)
            self.reference_path = path
            self.bus.set("token_mode", "reference")
            return f"reference tokens from {path}"
        return self._on_loader(job, f"reference '{path}'", on_done)

    @staticmethod
    def _give_reference(player: BundlePlayer, path: str) -> None:
        """Loader thread: ``player``'s reference tokens from ``path`` (one store, see NB)."""
        if player.tokens is None:
            raise ValueError(f"'{player.name}' takes no tokens, so it has no use for a reference file")
        audio = read_mono(path, player.bundle.sample_rate)
        player.tokens.set_reference(tokens_of_audio(player.bundle, audio))

    def start_recording(self, path: str) -> Recorder:
        self.stop_recording()
        rec = Recorder(path, self.out_rate)
        self.recorder = rec
        return rec

    def stop_recording(self) -> Recorder | None:
        rec, self.recorder = self.recorder, None
        if rec is not None:
            rec.stop()
            if rec.error:
                self.errors.append(rec.error)
        return rec

    @property
    def running(self) -> bool:
        """The engine thread is running (started, not stopped)."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def compute_device(self) -> torch.device:
        """Where the models run (the bundle's device; hot swaps load onto it)."""
        return self.player.synth.device

    @property
    def model_rate(self) -> int:
        return self.player.bundle.sample_rate

    @property
    def model_name(self) -> str:
        return self.player.name

    @property
    def step_s(self) -> float:
        return self.frames_per_step * self.player.bundle.hop / self.model_rate

    def _device_block(self) -> int:
        """Frames the device takes per callback (its reported latency, when it has one)."""
        out = self.output
        return int(round(out.latency_s * self.out_rate)) if out is not None and out.latency_s else 0

    def _fill_for(self, step_time_s: float, mode: str | None = None) -> int:
        """Ring target (frames) for steps that take ``step_time_s`` at worst. The device takes
        a block at a time, and a step starts once the ring is below its target, so just after
        the device took a block: what is left must outlast the step's compute, and the mode's
        margin on top. Never less than one step."""
        margin = int(LATENCY_MARGINS_MS[mode or self.latency_mode] / 1e3 * self.out_rate)
        return max(self._device_block() + int(step_time_s * self.out_rate) + margin, self.step_out + margin)

    def _make_sizer(self) -> RingSizer:
        """The ring's sizer for this latency mode: the "safe" fill for a step's duration during
        the warm-up, and never more than that (the largest margin is "safe"'s)."""
        safe = self._fill_for(self.step_s, "safe")
        margin = int(LATENCY_MARGINS_MS[self.latency_mode] / 1e3 * self.out_rate)
        return RingSizer(margin=margin, floor=self.step_out + margin, ceiling=safe, warmup=safe,
                         grow_by=max(self._device_block() // 2, self.step_out // 2),
                         window_s=ring_sizer.WINDOW_S, warmup_s=ring_sizer.WARMUP_S)

    def _resize_ring(self, now: float) -> None:
        """Engine thread, between steps: an underrun since the last call is a dip as deep as
        the target (and, once settled, grows it); then the target for ``now``."""
        sizer, out = self.sizer, self.output
        if out is not None and out.underruns != self._underruns_seen:
            self._underruns_seen = out.underruns
            sizer.observe(now, self.target_fill)
            if sizer.settled:
                sizer.underrun()
        self.target_fill = sizer.update(now)

    def latency_parts_ms(self) -> dict[str, float]:
        """Where a note's latency goes: waiting for the next step (half a step on average),
        the ring's target fill, the model's look-ahead and the resampler's holdback, the
        device buffer."""
        parts = {
            "ring_fill_ms": 1e3 * self.target_fill / self.out_rate,
            "step_ms": 1e3 * self.step_s,
            "model_lookahead_ms": 1e3 * self.player.delay_s,
            "device_buffer_ms": 1e3 * (self.output.latency_s if self.output is not None else 0.0),
        }
        return parts

    def _input_stats(self, parts: dict[str, float]) -> dict:
        """The live input's level and counters, and its input-to-output latency: the input
        device's buffer, the analysis (mel window centre to token), the jitter queue, then
        the output side of :meth:`note_to_sound_ms`. Empty without an input."""
        live = self.live_input
        if live is None:
            return {}
        inp = live.latency_parts_ms()
        return {**live.stats(), "input_latency_parts_ms": inp,
                "input_to_output_ms": sum(inp.values()) + self.note_to_sound_ms(parts)}

    def note_to_sound_ms(self, parts: dict[str, float] | None = None) -> float:
        """The expected time from a note-on to its first sound, ms (the sum of
        :meth:`latency_parts_ms`, half a step for the wait)."""
        p = parts or self.latency_parts_ms()
        return p["step_ms"] / 2 + p["ring_fill_ms"] + p["model_lookahead_ms"] + p["device_buffer_ms"]

    def stats(self) -> dict:
        n = min(self.steps, len(self._step_ms))
        ms = self._step_ms[:n] if n else np.zeros(1, np.float32)
        out = self.output
        midi = self.midi_input          # read once: the GUI may swap it meanwhile
        osc = self.osc
        parts = self.latency_parts_ms()
        played = out.frames_played / self.out_rate if out is not None else 0.0
        gc_t0, gc_count, gc_long = self._gc_mark
        audio_s = self.frames_generated * self.player.bundle.hop / self.model_rate
        p50, p99 = np.percentile(ms, [50, 99])      # one pass over the step times
        return {
            "seconds_played": played,
            "model_rate": self.model_rate,
            "device_rate": self.out_rate,
            "device": getattr(out, "device_name", None),
            "model": self.model_name,
            "underruns": out.underruns if out is not None else 0,
            "xruns": out.xruns if out is not None else 0,
            "step_ms_mean": float(ms.mean()),
            "step_ms_p50": float(p50),
            "step_ms_p99": float(p99),
            "rtf": self.compute_s / audio_s if audio_s else 0.0,
            "latency_ms": parts["ring_fill_ms"] + parts["model_lookahead_ms"] + parts["device_buffer_ms"],
            "note_to_sound_ms": self.note_to_sound_ms(parts),
            "latency_parts_ms": parts,
            **self._input_stats(parts),
            "latency_mode": self.latency_mode,
            **self._sizer_stats(),
            "priority": str(self.priority),
            "priority_note": self.priority.note,
            "frames_per_step": self.frames_per_step,
            "step_choice": self.step_choice.as_dict() if self.step_choice else None,
            "threads": self.threads,
            "precision": self.precision,
            "mel_match": self.mel_match,
            "pitch_filter": self.pitch_filter,
            # the frame-rate notch the synth was built with (core/frame_notch.py; 0: none)
            "frame_notch": self.player.synth.frame_notch.rate if self.player.synth.frame_notch else 0.0,
            # whether mel matching only cuts the bands between each voice's partials (core/mel_match.py)
            "mel_match_cut_only_between_partials": self.player.synth.match_f0,
            # whether silence asked for plays as digital silence (core/silence_gate.py)
            "silence_gate": self.player.synth.silence_gate is not None,
            "step_path": self.player.step_path,
            "compile_s": self.player.compile_s,
            "compute": str(self.compute_device),
            "ring_fill_ms": 1e3 * self.ring.available() / self.out_rate,
            "midi_messages_received": midi.received if midi else 0,
            "midi_messages_ignored": midi.ignored if midi else 0,
            "midi_port": midi.port_name if midi else None,
            "osc_address": osc.address if osc else None,
            "osc_messages_received": osc.received if osc else 0,
            "osc_messages_ignored": osc.ignored if osc else 0,
            **self._tempo_stats(),
            "voices": self.n_voices,
            "nan_events": self.nan_events,
            "steps": self.steps,
            # the cyclic GC's pauses since start (they hold the GIL: see gc_pauses.py)
            "gc_collections": GC_PAUSES.count - gc_count,
            "gc_pauses_over_20ms": GC_PAUSES.long - gc_long,
            "gc_pause_ms_max": GC_PAUSES.longest_since(gc_t0),
            "gc_frozen_objects": GC_PAUSES.frozen,     # not gc.get_freeze_count(): it walks them all
            "recording": None if self.recorder is None else {
                "path": self.recorder.path, "seconds": self.recorder.seconds, "error": self.recorder.error},
            "errors": list(self.errors),
            "params": self.bus.state(),
        }

    def _sizer_stats(self) -> dict:
        """The ring sizer's state: settled (a whole window of dips seen), the deepest dip of
        the window and of the run, and what underruns added (ms)."""
        sizer = self.sizer
        if sizer is None:
            return {"ring_sized": True, "ring_grown_ms": 0.0}
        ms = 1e3 / self.out_rate
        return {"ring_sized": sizer.settled, "ring_grown_ms": sizer.grown * ms,
                "ring_dip_ms_window": sizer.window_depth(time.monotonic()) * ms,
                "ring_dip_ms_max": sizer.deepest * ms}

    # ---- the engine thread -------------------------------------------------------------
    def _run(self) -> None:
        # NB: before torch makes any worker thread from this one (they would inherit it);
        # OMP_WAIT_POLICY=PASSIVE (main.py) keeps such workers from spinning between steps
        self.priority = raise_priority(self.realtime)
        torch.set_num_threads(self.threads)
        poll = min(0.001, self.step_s / 8)
        sizer = self.sizer
        dip_target = None           # the target when the current dip began (None: no dip)
        dip_low = 0                 # the lowest fill before a write in the current dip
        next_resize = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if sizer is not None and now >= next_resize:
                self._resize_ring(now)
                next_resize = now + 0.25
            if self.ring.available() >= self.target_fill:
                # a dip ends; it counts only if the target stayed as it began (a grown target
                # would read as a dip as deep as the growth)
                if dip_target is not None and sizer is not None and dip_target == self.target_fill:
                    sizer.observe(now, dip_target - dip_low)
                dip_target = None
                time.sleep(poll)
                continue
            if dip_target is None:
                dip_target, dip_low = self.target_fill, self.target_fill
            try:
                self._step()
                dip_low = min(dip_low, self._slack)
            except Exception as e:   # keep playing: report, reset the model, go on
                self.errors.append(f"engine step failed: {type(e).__name__}: {e}")
                self.player.reset()
                time.sleep(self.step_s)

    def request(self, fn) -> None:
        """Any thread: run ``fn(engine)`` on the engine thread before its next step (in order
        with MIDI events). Never waits."""
        self.events.put(EngineRequest(fn))

    def _drain_events(self) -> None:
        midi = self.midi_input
        if midi is not None:
            midi.poll()         # what RtMidi queued since the last step (never waits)
        handler = self.event_handler
        while True:
            try:
                ev = self.events.get_nowait()
            except queue.Empty:
                return
            if isinstance(ev, EngineRequest):
                try:
                    ev.fn(self)
                except Exception as e:     # a bad request is reported; the sound goes on
                    self.errors.append(f"request failed: {type(e).__name__}: {e}")
            elif handler is not None:
                handler(self, ev)

    def _step(self) -> None:
        t0 = time.perf_counter()
        n = self.frames_per_step
        snap, controls = self._controls(n)
        player = self.player
        player.render(n, snap, self.voices, controls)
        if self._fading is not None:
            old = self._fading
            old.render(n, snap, self.voices, controls)
            m = min(len(player.pending), len(old.pending))
            new_part, old_part = player.take(m), old.take(m)
            pos = self._fade_pos + np.arange(m)
            x = np.clip(pos / self.fade_len, 0.0, 1.0) * (np.pi / 2)
            block = (new_part * np.sin(x) + old_part * np.cos(x)).astype(np.float32)
            self._fade_pos += m
            self.nan_events += old.nan_events
            old.nan_events = 0
            if self._fade_pos >= self.fade_len:
                self._fading = None
        else:
            block = player.take(len(player.pending))
        self.nan_events += player.nan_events
        player.nan_events = 0
        block = self._post_chain(block, snap.values)
        self._slack = self.ring.available()
        self.ring.write(block)
        rec = self.recorder
        if rec is not None:
            rec.push(block)
        self._update_taps(player, block)
        self.frames_generated += n
        dt = time.perf_counter() - t0
        self.compute_s += dt
        self._step_ms[self.steps % len(self._step_ms)] = dt * 1e3
        self.steps += 1

    def _controls(self, n: int, before_panic=None):
        """The control half of a step of ``n`` frames, up to the model: the events drained, the
        bus snapshot, a panic (``before_panic()`` first, if given), new seeds, a hot swap's
        player taken over, beats, the live input, the voices. Returns ``(snap, controls)`` for
        ``player.render``/``prepare``; :mod:`realtime.offline` runs the same half
        (tests/test_render_midi.py: its output is this engine's, sample for sample)."""
        self._drain_events()
        snap = self.bus.snapshot(self.step_s)
        if "panic" in snap.fired:
            if before_panic is not None:
                before_panic()
            self._panic()
        self._draw_new_seeds(snap)
        incoming = self._incoming
        if incoming is not None:
            self._incoming = None
            self._fading, self.player, self._fade_pos = self.player, incoming, 0
        v = snap.values
        self._give_beats(n, v)
        pitch, glide, live = v["pitch"], v["glide"], self.live_input
        if live is not None:       # the input's tokens to the token source, its pitch if followed
            follow = v["pitch_follow"] >= 0.5
            pitch = live.feed(self.player, n, pitch, follow)
            glide = 0.0 if follow else glide       # the input's own pitch moves are its glide
        return snap, self.voices.render(n, pitch, glide, v["attack"], v["release"])

    def _post_chain(self, block: np.ndarray, v: dict) -> np.ndarray:
        """A step's device-rate block after the player: the gain, the effects rack, the
        safety limiter (in place); ``v``: the step's snapshot values."""
        block = block * np.float32(10.0 ** (v["gain"] / 20.0))
        block = self.rack.process(block, v)
        self.limiter.process(block)
        return block

    def _draw_new_seeds(self, snap) -> None:
        """The ``new_seed_a`` / ``new_seed_b`` triggers fired in ``snap``: a new seed drawn,
        set on the bus and in the snapshot's values (this step plays it)."""
        for trigger, seed in (("new_seed_a", "seed_a"), ("new_seed_b", "seed_b")):   # constants: no per-step strings
            if trigger in snap.fired:
                self.bus.set(seed, self._rng.randrange(2 ** 31 - 1))
                snap.values[seed] = self.bus.get(seed)

    def _tempo_stats(self) -> dict:
        """The tempo source and its tempo, BPM (None: free, or MIDI clock not yet estimated)."""
        source = TEMPO_SOURCES[int(self.bus.get("tempo_source"))]
        bpm = {"bpm": self.bus.get("bpm"), "midi_clock": self.clock.bpm_estimate}.get(source)
        return {"tempo_source": source, "tempo_bpm": bpm}

    def _give_beats(self, n: int, v: dict) -> None:
        """The token sources' beat slots for this step's ``n`` frames (None in free tempo):
        from the beat clock at ``tempo_source``, ``bpm`` and ``token_beats``."""
        frame_rate = self.model_rate / self.player.bundle.hop
        beats = self.clock.advance(n, frame_rate, TEMPO_SOURCES[int(v["tempo_source"])], v["bpm"])
        slots = None if beats is None else beat_slots(beats, v["token_beats"])
        for p in (self.player, self._fading):
            if p is not None and p.tokens is not None:
                p.tokens.slots = slots

    def _update_taps(self, player: BundlePlayer, block: np.ndarray) -> None:
        if len(block):
            self.peak = float(np.max(np.abs(block)))
            self.rms = float(np.sqrt(np.mean(block * block)))
        mel = player.last_mel
        if mel is not None:
            k = len(mel)
            i = self.mel_tap_written % len(self.mel_tap)
            first = min(k, len(self.mel_tap) - i)
            self.mel_tap[i:i + first] = mel[:first]
            if k > first:
                self.mel_tap[:k - first] = mel[first:]
            toks = player.last_tokens
            for j in range(k):
                self.token_tap[(i + j) % len(self.token_tap)] = -1 if toks is None else int(toks[min(j, len(toks) - 1)])
            self.mel_tap_written += k
        self.last_tokens = player.last_tokens

    def note_on(self, note: int, velocity: int = 100) -> None:
        """Any thread (on-screen keyboard): queued like a MIDI note."""
        self.events.put(MidiEvent("note_on", 0, int(note), int(velocity), time.monotonic()))

    def note_off(self, note: int) -> None:
        self.events.put(MidiEvent("note_off", 0, int(note), 0, time.monotonic()))

    def _panic(self) -> None:
        self.voices.silence()
        self.player.reset()
        if self._fading is not None:
            self._fading = None
        self.limiter.gain = 1.0
        self.rack.reset()
        if self.output is not None:
            self.output.flush_requested = True
