"""Named parameters and the control bus that carries them to the engine.

Any thread (GUI, MIDI, CLI) calls :meth:`ControlBus.set` or :meth:`ControlBus.trigger`;
the engine thread calls :meth:`ControlBus.snapshot` once per step and gets smoothed values.

NB: no locks. ``_targets`` is a dict whose items are replaced whole (one atomic store
under the GIL); a snapshot reads each item once. ``specs`` items are frozen and replaced
whole too (:meth:`ControlBus.set_range`, when a bundle with another token count loads). ``_trigger_counts`` only grow, and
the engine compares them with the counts it last saw, so no trigger is lost or doubled.
``_smoothed`` belongs to the engine thread alone.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

from core.tempo import TEMPO_SOURCES


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: float
    minimum: float
    maximum: float
    unit: str = ""
    smoothing_s: float = 0.0        # one-pole time constant; 0 = jumps at once
    kind: str = "float"             # float | int | bool | choice | trigger
    choices: tuple[str, ...] = ()
    doc: str = ""

    def clamp(self, value):
        if self.kind == "choice":
            if isinstance(value, str):
                if value not in self.choices:
                    raise ValueError(f"{self.name}: {value!r} is not one of {self.choices}")
                return self.choices.index(value)
            return int(min(max(int(value), 0), len(self.choices) - 1))
        v = float(value)
        if math.isnan(v):
            raise ValueError(f"{self.name}: NaN is not a value")
        v = min(max(v, self.minimum), self.maximum)
        if self.kind == "bool":
            return 1.0 if v >= 0.5 else 0.0
        if self.kind == "int":
            return float(round(v))
        return v


TOKEN_MODES = ("hold", "sequence", "autopilot", "reference", "input")

DEFAULT_SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("morph", 0.0, 0.0, 1.0, "", 0.05, doc="slerp from noise seed A (0) to seed B (1)"),
    ParamSpec("drift", 0.05, 0.0, 1.0, "", 0.1, doc="how fast the noise wanders (per frame)"),
    ParamSpec("temperature", 1.0, 0.0, 2.0, "", 0.05, doc="noise scale"),
    ParamSpec("freeze", 0.0, 0.0, 1.0, "", 0.0, "bool", doc="hold the noise where it is"),
    ParamSpec("seed_a", 0, 0, 2 ** 31 - 1, "", 0.0, "int", doc="seed of noise walk A"),
    ParamSpec("seed_b", 1, 0, 2 ** 31 - 1, "", 0.0, "int", doc="seed of noise walk B"),
    ParamSpec("new_seed_a", 0, 0, 1, "", 0.0, "trigger", doc="draw a new seed A"),
    ParamSpec("new_seed_b", 0, 0, 1, "", 0.0, "trigger", doc="draw a new seed B"),
    ParamSpec("token", 0, 0, 4095, "", 0.0, "int", doc="selected token (token models)"),
    ParamSpec("token_mode", 0, 0, len(TOKEN_MODES) - 1, "", 0.0, "choice", TOKEN_MODES,
              doc="hold one token / step a sequence / autopilot / a reference file's tokens / the live input's"),
    ParamSpec("token_rate", 8.0, 1.0, 64.0, "frames", 0.0, doc="frames per token in sequence mode"),
    ParamSpec("tempo_source", 0, 0, len(TEMPO_SOURCES) - 1, "", 0.0, "choice", TEMPO_SOURCES,
              doc="token moves: every token_rate frames (free) / on beats of bpm / on beats of MIDI clock"),
    ParamSpec("bpm", 120.0, 20.0, 300.0, "BPM", 0.0, doc="tempo of the bpm tempo source"),
    ParamSpec("token_beats", 1.0, 0.25, 16.0, "beats", 0.0, doc="beats per token move when synced to a tempo"),
    ParamSpec("pitch", 60.0, 0.0, 127.0, "MIDI", 0.0, doc="pitch condition (pitch models)"),
    ParamSpec("pitch_follow", 0.0, 0.0, 1.0, "", 0.0, "bool",
              doc="the live input's tracked pitch sets the pitch (held while unvoiced)"),
    ParamSpec("glide", 0.05, 0.0, 2.0, "s", 0.0, doc="pitch glide time constant"),
    ParamSpec("bend_range", 2.0, 0.0, 24.0, "st", 0.0, doc="pitch-bend range in semitones"),
    ParamSpec("attack", 0.01, 0.001, 2.0, "s", 0.0, doc="note attack time"),
    ParamSpec("release", 0.3, 0.01, 5.0, "s", 0.0, doc="note release time"),
    ParamSpec("note_mode", 0, 0, 1, "", 0.0, "choice", ("pitch", "token"),
              doc="notes set the pitch, or select tokens (token models)"),
    ParamSpec("token_base", 48, 0, 127, "MIDI", 0.0, "int", doc="note that selects token 0"),
    ParamSpec("gain", 0.0, -60.0, 12.0, "dB", 0.05, doc="output level"),
    ParamSpec("panic", 0, 0, 1, "", 0.0, "trigger", doc="instant silence and state reset"),
)


@dataclass
class Snapshot:
    values: dict[str, float]
    fired: set[str] = field(default_factory=set)   # triggers fired since the last snapshot

    def __getitem__(self, name: str) -> float:
        return self.values[name]


class ControlBus:
    def __init__(self, specs: tuple[ParamSpec, ...] = DEFAULT_SPECS):
        self.specs = {s.name: s for s in specs}
        self._targets = {s.name: s.clamp(s.default) for s in specs if s.kind != "trigger"}
        self._smoothed = dict(self._targets)
        self._trigger_counts = {s.name: 0 for s in specs if s.kind == "trigger"}
        self._seen = dict(self._trigger_counts)
        self.version = 0       # bumped on every change, so views can refresh cheaply

    def names(self) -> list[str]:
        return list(self.specs)

    def set(self, name: str, value) -> float:
        """Sets a parameter's target (clamped to its range); any thread."""
        spec = self.specs.get(name)
        if spec is None:
            raise KeyError(f"unknown parameter {name!r}")
        if spec.kind == "trigger":
            if value:
                self.trigger(name)
            return 0.0
        v = spec.clamp(value)
        self._targets[name] = v
        self.version += 1
        return v

    def jump(self, name: str, value) -> float:
        """Sets a parameter's target and its smoothed value at once (no glide): for the
        state an engine starts in, before its thread runs."""
        v = self.set(name, value)
        if name in self._smoothed:
            self._smoothed[name] = v
        return v

    def set_range(self, name: str, minimum: float, maximum: float) -> None:
        """Narrows or widens a parameter to what the loaded model takes (the token knob spans
        a bundle's own tokens, so a MIDI knob's 128 steps and the slider cover just those);
        the target is clamped into the new range. Any thread."""
        old = self.specs[name]
        if not minimum <= maximum:
            raise ValueError(f"{name}: empty range {minimum}..{maximum}")
        spec = replace(old, minimum=minimum, maximum=maximum, default=min(max(old.default, minimum), maximum))
        self.specs[name] = spec
        if name in self._targets:
            self._targets[name] = spec.clamp(self._targets[name])
        self.version += 1

    def set_normalized(self, name: str, x: float) -> float:
        """Sets from a 0..1 control position (knobs, MIDI CCs)."""
        s = self.specs[name]
        if s.kind == "choice":
            return self.set(name, round(min(max(x, 0), 1) * (len(s.choices) - 1)))
        return self.set(name, s.minimum + min(max(x, 0.0), 1.0) * (s.maximum - s.minimum))

    def get(self, name: str) -> float:
        return self._targets[name]

    def normalized(self, name: str) -> float:
        s = self.specs[name]
        return (self._targets[name] - s.minimum) / (s.maximum - s.minimum) if s.maximum > s.minimum else 0.0

    def trigger(self, name: str) -> None:
        if self.specs[name].kind != "trigger":
            raise KeyError(f"{name!r} is not a trigger")
        self._trigger_counts[name] += 1
        self.version += 1

    def snapshot(self, dt: float) -> Snapshot:
        """Engine thread: advance smoothing by ``dt`` seconds; return the values and the
        triggers fired since the last call."""
        values = {}
        for name, target in list(self._targets.items()):
            tau = self.specs[name].smoothing_s
            if tau > 0:
                cur = self._smoothed[name]
                cur += (target - cur) * (1.0 - math.exp(-dt / tau))
                if abs(cur - target) < 1e-6:
                    cur = target
            else:
                cur = target
            self._smoothed[name] = cur
            values[name] = cur
        fired = set()
        for name, count in list(self._trigger_counts.items()):
            if count != self._seen[name]:
                fired.add(name)
                self._seen[name] = count
        return Snapshot(values, fired)

    def state(self) -> dict[str, float]:
        """Current targets by name (for presets and stats)."""
        return dict(self._targets)

    def describe(self) -> list[dict]:
        return [asdict(s) for s in self.specs.values()]
