"""A MIDI file played through the instrument offline: the engine's own step, without a
device and without the engine thread.

:class:`OfflineInstrument` builds an :class:`~realtime.engine.Engine` (its control bus, voice
bank, MIDI controller with the default mappings, player, effects rack and limiter), never
starts it, and runs ``Engine._step`` by hand at one frame per step (the live default): the
step's events through the engine's handler, the bus snapshot, the triggers, the voices, the
player's inputs; then gain, rack and limiter. Only the model runs over several steps at once
(``chunk_frames``): the controls of every frame are those of the 1-frame engine, and
:meth:`~realtime.player.BundlePlayer.synthesize` never lets a run cross a frame where the
computed voices change, so each voice's model state advances as it does live. The rule, tested by ``tests/test_render_midi.py``: the output is
the engine's own step loop fed the same events before the same steps, sample for sample
(``chunk_frames=1`` bit-exact; other chunkings within float rounding of batched model maths).

An event at ``t`` seconds is handled before the step of the model frame ``t`` falls in
(frame ``floor(t * sample_rate / hop)``). The voice bank starts gated: silent until the
first note, as the live bank is once any note has been played (the live drone before the
first key is not part of a score). Every channel plays the one instrument, as live MIDI
does; program changes do nothing.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from core.bundle import Bundle
from core.pitch_filter import DEFAULT_STRENGTH

from .midi_parse import MidiEvent, parse_message
from .player import BundlePlayer, StepWork

TAIL_S = 1.0        # rendered after the file's end, for the release (0.3 s release: -80 dB at 0.55 s)
CHUNK_FRAMES = 64   # model frames per synthesis call by default


class MidiFileError(ValueError):
    """A file that cannot be read as a MIDI file (the message is one line naming it)."""


@dataclass(frozen=True)
class MidiScore:
    """What a MIDI file plays: its channel messages in time order and its length."""
    events: tuple[MidiEvent, ...]       # times in seconds from the file's start
    length_s: float                     # the file's length (its last message, end of track included)

    @property
    def notes(self) -> int:
        return sum(ev.kind == "note_on" for ev in self.events)


def read_midi(path: str) -> MidiScore:
    """Reads a MIDI file with mido: all tracks merged, tempo changes applied, times in
    seconds. Raises :class:`MidiFileError` (one line) for a missing or unreadable file."""
    import mido

    try:
        mid = mido.MidiFile(str(path))
        events, t = [], 0.0
        for msg in mid:                 # merged tracks, delta times in seconds
            t += msg.time
            if not msg.is_meta:
                ev = parse_message(msg.bytes(), t)
                if ev is not None:
                    events.append(ev)
    except FileNotFoundError:
        raise MidiFileError(f"no MIDI file '{path}'") from None
    except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError) as e:
        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MidiFileError(f"cannot read '{path}' as a MIDI file: {why}") from None
    return MidiScore(tuple(events), t)


def events_by_frame(events: Iterable[MidiEvent], frame_rate: float) -> dict[int, list[MidiEvent]]:
    """Events grouped by the model frame their time falls in, in order (``frame_rate``: Hz)."""
    out: dict[int, list[MidiEvent]] = {}
    for ev in events:
        out.setdefault(max(0, math.floor(ev.time * frame_rate)), []).append(ev)
    return out


class OfflineInstrument:
    """An :class:`~realtime.engine.Engine`, built as live play builds it but never started
    (no device, no engine thread), stepped by hand one frame per step (see the module).

    :meth:`step` does one engine step's control work and queues the model's part;
    :meth:`flush` runs the model over the queued steps and returns their audio
    (``ndarray[samples]`` float32 at ``out_rate``, after the engine's post chain). Mutates
    the bundle's models (their stream state), as a player does."""

    def __init__(self, bundle: Bundle, out_rate: int, voices: int = 4, seed: int = 0,
                 mel_match: str = "full", precision: str = "float32",
                 params: dict[str, float] | None = None, pitch_filter: float = DEFAULT_STRENGTH):
        from .engine import Engine        # not at import: the engine pulls in the audio stack

        self.engine = Engine(bundle, out_rate, frames_per_step=1, voices=voices, seed=seed,
                             mel_match=mel_match, precision=precision, realtime=False,
                             pitch_filter=pitch_filter)
        self.engine.voices.gated = True   # silent until the first note (see the module)
        for name, value in (params or {}).items():
            self.engine.bus.jump(name, value)
        self._queued: list[tuple[StepWork, dict]] = []    # prepared steps and their snapshot values
        self._done: list[np.ndarray] = []                   # their audio, once synthesized

    @property
    def out_rate(self) -> int:
        return self.engine.out_rate

    @property
    def player(self) -> BundlePlayer:
        return self.engine.player

    @property
    def delay_samples(self) -> int:
        """Output samples by which the sound lags its frames (model and resampler look-ahead)."""
        return int(round(self.player.delay_s * self.out_rate))

    def step(self, events: Sequence[MidiEvent] = ()) -> None:
        """``Engine._step`` up to the model, for one frame (``Engine._controls``: ``events``
        drained through the engine's handler, the bus snapshot, triggers, beats, voices), then
        the player's inputs; the model's part is queued."""
        eng = self.engine
        for ev in events:
            eng.events.put(ev)
        # a panic resets the model state after what came before it: the queued steps run first
        snap, controls = eng._controls(1, before_panic=self._synthesize_queued)
        self._queued.append((eng.player.prepare(1, snap, eng.voices, controls), snap.values))

    def flush(self) -> np.ndarray:
        """Runs the model over the queued steps; the audio of every step since the last flush,
        each step's block through the engine's post chain as ``Engine._step`` writes it."""
        self._synthesize_queued()
        out, self._done = self._done, []
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def _synthesize_queued(self) -> None:
        queued, self._queued = self._queued, []
        blocks = self.player.synthesize([work for work, _ in queued])
        self._done += [self._post(block, v) for block, (_, v) in zip(blocks, queued)]

    def _post(self, block: np.ndarray, v: dict) -> np.ndarray:
        """``Engine._step`` after the player: its NaN count, then ``Engine._post_chain``."""
        eng = self.engine
        eng.nan_events += self.player.nan_events
        self.player.nan_events = 0
        return eng._post_chain(block, v)


def play_frames(instrument: OfflineInstrument, by_frame: dict[int, list[MidiEvent]], n_frames: int,
                chunk_frames: int | Sequence[int] = CHUNK_FRAMES) -> np.ndarray:
    """Steps ``instrument`` ``n_frames`` times with the events of each frame; the model runs
    over ``chunk_frames`` steps at a time (a sequence: those sizes in turn, cycled).
    Returns the raw output (not aligned for the look-ahead)."""
    sizes = itertools.cycle([chunk_frames] if isinstance(chunk_frames, int) else list(chunk_frames))
    pieces, frame = [], 0
    while frame < n_frames:
        k = min(max(1, int(next(sizes))), n_frames - frame)
        for f in range(frame, frame + k):
            instrument.step(by_frame.get(f, ()))
        pieces.append(instrument.flush())
        frame += k
    return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)


def render_events(bundle: Bundle, events: Iterable[MidiEvent], seconds: float, *, voices: int = 4,
                  chunk_frames: int | Sequence[int] = CHUNK_FRAMES, seed: int = 0, mel_match: str = "full",
                  out_rate: int | None = None, precision: str = "float32",
                  params: dict[str, float] | None = None,
                  pitch_filter: float = DEFAULT_STRENGTH) -> tuple[np.ndarray, int]:
    """``events`` (times in seconds) played for ``seconds``: (audio ``ndarray[round(seconds *
    rate)]`` float32 mono, rate). Aligned for the look-ahead: sample 0 is time 0 of the events.
    ``chunk_frames``: model frames per synthesis call (0: all at once; a sequence: those sizes
    in turn); every chunking gives the same samples.
    ``params``: starting values of bus parameters (no glide), e.g. ``{"morph": 0.3}``.
    ``pitch_filter``: the pitch post-filter's strength (:mod:`core.pitch_filter`; 0: off)."""
    rate = int(out_rate or bundle.sample_rate)
    inst = OfflineInstrument(bundle, rate, voices, seed, mel_match, precision, params, pitch_filter)
    n_out = int(round(seconds * rate))
    delay = inst.delay_samples
    model_samples = (n_out + delay) * bundle.sample_rate / rate
    n_frames = math.ceil(model_samples / bundle.hop) + 1
    if isinstance(chunk_frames, int) and chunk_frames <= 0:     # 0: every frame in one run
        chunk_frames = n_frames
    audio = play_frames(inst, events_by_frame(events, bundle.sample_rate / bundle.hop), n_frames, chunk_frames)
    return audio[delay:delay + n_out].astype(np.float32, copy=False), rate


def render_midi(bundle: Bundle, midi_path: str, *, voices: int = 4, chunk_frames: int = CHUNK_FRAMES,
                seed: int = 0, mel_match: str = "full", out_rate: int | None = None,
                seconds: float | None = None, tail_s: float = TAIL_S, precision: str = "float32",
                params: dict[str, float] | None = None,
                pitch_filter: float = DEFAULT_STRENGTH) -> tuple[np.ndarray, int]:
    """A MIDI file played through the instrument: (audio ``ndarray`` float32 mono, rate).

    ``voices``: polyphony (the live default 4; more notes steal as the live bank does).
    ``chunk_frames``: model frames per synthesis call (any value gives the same samples).
    ``seed``: noise walks A and B (seed, seed + 1), as ``play --seed``. ``mel_match``: as
    :mod:`core.mel_match` ("full" by default, as offline rendering). ``out_rate``: None:
    the model's rate. ``seconds``: None: the file's length plus ``tail_s`` (for the
    release). A file with no notes renders silence of that length. Raises
    :class:`MidiFileError` for a missing or unreadable file."""
    score = read_midi(midi_path)
    length = score.length_s + tail_s if seconds is None else seconds
    return render_events(bundle, score.events, length, voices=voices, chunk_frames=chunk_frames, seed=seed,
                         mel_match=mel_match, out_rate=out_rate, precision=precision, params=params,
                         pitch_filter=pitch_filter)
