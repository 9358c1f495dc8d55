"""The effects rack: a chain of slots, each one effect with wet/dry and bypass, built on
``pedalboard`` (JUCE's DSP; its ``process`` releases the GIL; it hosts VST3/AU plugins).

Mono in, mono out: every block is ``ndarray[n]`` float32 at the rack's sample rate (the
engine's device rate). State is per stream: a rack fed a signal in chunks of any size
gives, sample for sample, what it gives fed the signal whole, while its parameters hold
still (tests/test_effects.py::test_chunked_equals_whole).

Extension point: an effect kind is a subclass of :class:`Effect` registered with
:func:`register_effect`; it declares its user parameters (:class:`EffectParam`) and maps
them onto its DSP. :data:`EFFECT_KINDS` is the registry.
"""
from __future__ import annotations

import collections
import os
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pedalboard

# pedalboard re-prepares (and so clears) a plugin whenever a block comes in larger than any
# block before it: every plugin is prepared once for this many frames, and larger blocks are
# cut into pieces of it (tests/test_effects.py::test_chunked_equals_whole, random sizes).
PREPARED_BLOCK = 4096


class EffectError(ValueError):
    """A rack slot that cannot be built (a missing or unreadable plugin file): one line."""


@dataclass(frozen=True)
class EffectParam:
    """One user parameter of an effect kind: its range, unit and meaning."""
    name: str
    default: float
    minimum: float
    maximum: float
    unit: str = ""
    doc: str = ""

    def clamp(self, value: float) -> float:
        return float(min(max(float(value), self.minimum), self.maximum))


class Effect:
    """An effect kind: ``process(block) -> wet`` on ``ndarray[n]`` float32, stateful across
    calls (per stream); ``reset()`` clears that state. :meth:`set` takes a user parameter
    (clamped to its :class:`EffectParam` range)."""
    kind: ClassVar[str] = ""
    params: ClassVar[tuple[EffectParam, ...]] = ()

    def __init__(self, sample_rate: int):
        self.sample_rate = int(sample_rate)
        self.values = {p.name: p.default for p in self.params}
        self._specs = {p.name: p for p in self.params}

    def set(self, name: str, value: float) -> None:
        spec = self._specs.get(name)
        if spec is None:
            raise KeyError(f"{self.kind} has no parameter {name!r}")
        v = spec.clamp(value)
        if v != self.values[name]:
            self.values[name] = v
            self._apply(name, v)

    def _apply(self, name: str, value: float) -> None:
        """Carries a user parameter (already clamped) over to the DSP."""

    def process(self, block: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError


EFFECT_KINDS: dict[str, type[Effect]] = {}


def register_effect(cls: type[Effect]) -> type[Effect]:
    """Class decorator: makes ``cls`` a rack slot kind under ``cls.kind``."""
    EFFECT_KINDS[cls.kind] = cls
    return cls


class PedalboardEffect(Effect):
    """An effect that is one pedalboard plugin (:meth:`_build`), prepared once for
    :data:`PREPARED_BLOCK` frames so that its state never depends on how the stream is cut."""

    def __init__(self, sample_rate: int):
        super().__init__(sample_rate)
        self.plugin = self._build()
        for p in self.params:
            self._apply(p.name, self.values[p.name])
        self.reset()

    def _build(self):
        raise NotImplementedError

    def reset(self) -> None:
        # process(reset=True) clears the plugin and prepares it for PREPARED_BLOCK frames;
        # plugin.reset() would drop that preparation (a later larger block would clear it again)
        self.plugin.process(np.zeros((1, PREPARED_BLOCK), np.float32), self.sample_rate,
                            buffer_size=PREPARED_BLOCK, reset=True)

    def process(self, block: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(block, dtype=np.float32)[None, :]
        if x.shape[1] <= PREPARED_BLOCK:
            return self._run(x)
        return np.concatenate([self._run(x[:, i:i + PREPARED_BLOCK]) for i in range(0, x.shape[1], PREPARED_BLOCK)])

    def _run(self, x: np.ndarray) -> np.ndarray:
        """``x``: ``ndarray[1 x n]``, n <= PREPARED_BLOCK -> ``ndarray[n]``."""
        return self.plugin.process(x, self.sample_rate, buffer_size=PREPARED_BLOCK, reset=False)[0]


# ---- reverb: RT60 in seconds onto JUCE's (Freeverb's) room size ---------------------------
REVERB_DAMPING = 0.5       # JUCE's default high-frequency damping, held fixed (the table assumes it)

# (room_size, RT60 s) of pedalboard.Reverb(damping=0.5, wet_level=1, dry_level=0), measured on
# an impulse at 48 kHz with measure_rt60. Made by
#   .venv/bin/python -m core.effects
# 1/RT60 is close to linear in room size (the comb feedback is 0.7 + 0.28 room_size), so the
# mapping interpolates 1/RT60; at 48 and 44.1 kHz, on and between the table's points, the
# measured RT60 is within 5 % of the setting (tests/test_effects.py::test_reverb_rt60_matches_the_setting).
REVERB_RT60_TABLE: tuple[tuple[float, float], ...] = (
    (0.00, 0.533), (0.10, 0.600), (0.20, 0.683), (0.30, 0.787), (0.40, 0.921),
    (0.50, 1.102), (0.60, 1.361), (0.70, 1.760), (0.80, 2.489), (0.90, 3.990),
    (0.92, 4.528), (0.94, 5.256), (0.96, 6.224), (0.98, 7.597), (1.00, 9.765),
)
CALIBRATION_ROOM_SIZES = tuple(r for r, _ in REVERB_RT60_TABLE)


def _reverb_plugin(room_size: float) -> pedalboard.Reverb:
    """The JUCE reverb as :class:`Reverb` runs it (wet only, damping :data:`REVERB_DAMPING`),
    at ``room_size``: the plugin :data:`REVERB_RT60_TABLE` was measured on."""
    return pedalboard.Reverb(room_size=room_size, damping=REVERB_DAMPING, wet_level=1.0, dry_level=0.0, width=1.0)


def room_size_for_rt60(rt60_s: float) -> float:
    """JUCE room size (0..1) whose impulse decays 60 dB in ``rt60_s`` seconds."""
    rooms = np.array([r for r, _ in REVERB_RT60_TABLE])
    inv = np.array([1.0 / t for _, t in REVERB_RT60_TABLE])      # falls as the room grows
    return float(np.interp(1.0 / rt60_s, inv[::-1], rooms[::-1]))


def measure_rt60(ir: np.ndarray, sample_rate: int, fit_db: tuple[float, float] = (-5.0, -35.0)) -> float:
    """RT60 (s) of an impulse response ``ndarray[n]``: Schroeder backward integration of its
    energy, a least-squares line through the decay curve between ``fit_db`` (T30), extrapolated
    to 60 dB. The response must reach the lower fit level before it ends."""
    energy = np.cumsum((ir.astype(np.float64) ** 2)[::-1])[::-1]
    if energy[0] <= 0:
        raise ValueError("an all-zero impulse response has no decay")
    edc = 10.0 * np.log10(np.maximum(energy / energy[0], 1e-300))
    start, stop = int(np.argmax(edc <= fit_db[0])), int(np.argmax(edc <= fit_db[1]))
    if stop <= start + 1:
        raise ValueError(f"the response does not decay to {fit_db[1]} dB")
    slope = np.polyfit(np.arange(start, stop) / sample_rate, edc[start:stop], 1)[0]
    return float(-60.0 / slope)


@register_effect
class Reverb(PedalboardEffect):
    kind = "reverb"
    params = (EffectParam("rt60", 2.0, 0.6, 9.0, "s",
                          "time for the tail to fall 60 dB (Schroeder, T30; within 5 % of this)"),)

    def _build(self):
        return _reverb_plugin(0.5)

    def _apply(self, name: str, value: float) -> None:
        self.plugin.room_size = room_size_for_rt60(value)


@register_effect
class Delay(PedalboardEffect):
    kind = "delay"
    params = (EffectParam("ms", 350.0, 1.0, 2000.0, "ms", "echo time (to the nearest sample)"),
              EffectParam("feedback", 0.35, 0.0, 0.95, "", "share of each echo fed back into the line"))

    def _build(self):
        return pedalboard.Delay(delay_seconds=0.35, feedback=0.35, mix=1.0)   # echoes only: the slot mixes

    def _apply(self, name: str, value: float) -> None:
        if name == "ms":        # the line delays by whole samples, rounded down: aim a quarter past one
            samples = max(1, round(value / 1e3 * self.sample_rate))
            self.plugin.delay_seconds = (samples + 0.25) / self.sample_rate
        else:
            self.plugin.feedback = value


@register_effect
class Chorus(PedalboardEffect):
    kind = "chorus"
    params = (EffectParam("rate", 1.0, 0.05, 10.0, "Hz", "LFO rate"),
              EffectParam("depth", 0.25, 0.0, 1.0, "", "LFO depth"),
              EffectParam("centre_ms", 7.0, 1.0, 30.0, "ms", "delay the LFO swings around"),
              EffectParam("feedback", 0.0, 0.0, 0.9, "", "feedback (a flanger with a short centre delay)"))
    _names = {"rate": "rate_hz", "depth": "depth", "centre_ms": "centre_delay_ms", "feedback": "feedback"}

    def _build(self):
        return pedalboard.Chorus(mix=1.0)

    def _apply(self, name: str, value: float) -> None:
        setattr(self.plugin, self._names[name], value)


@register_effect
class Compressor(PedalboardEffect):
    kind = "compressor"
    params = (EffectParam("threshold", -18.0, -60.0, 0.0, "dB", "level above which the gain falls"),
              EffectParam("ratio", 4.0, 1.0, 20.0, "", "input dB over the threshold per output dB"),
              EffectParam("attack", 5.0, 0.1, 100.0, "ms", "attack time"),
              EffectParam("release", 100.0, 10.0, 1000.0, "ms", "release time"),
              EffectParam("makeup", 0.0, 0.0, 24.0, "dB", "gain after the compressor"))
    _names = {"threshold": "threshold_db", "ratio": "ratio", "attack": "attack_ms", "release": "release_ms"}

    def __init__(self, sample_rate: int):
        self._makeup = np.float32(1.0)
        super().__init__(sample_rate)

    def _build(self):
        return pedalboard.Compressor()

    def _apply(self, name: str, value: float) -> None:
        if name == "makeup":
            self._makeup = np.float32(10.0 ** (value / 20.0))
        else:
            setattr(self.plugin, self._names[name], value)

    def process(self, block: np.ndarray) -> np.ndarray:
        return super().process(block) * self._makeup


class FirstOrderFilter(PedalboardEffect):
    """A pedalboard first-order filter (:attr:`plugin_class`) with one parameter, its corner
    ``cutoff`` (Hz), held below 0.45 of the sample rate."""
    plugin_class: ClassVar[type] = pedalboard.LowpassFilter

    def _build(self):
        return self.plugin_class(cutoff_frequency_hz=min(self.values["cutoff"], 0.45 * self.sample_rate))

    def _apply(self, name: str, value: float) -> None:
        self.plugin.cutoff_frequency_hz = min(value, 0.45 * self.sample_rate)


@register_effect
class LowpassFilter(FirstOrderFilter):
    kind = "lowpass"
    plugin_class = pedalboard.LowpassFilter
    params = (EffectParam("cutoff", 20000.0, 20.0, 20000.0, "Hz", "first-order low-pass (6 dB/octave) corner"),)


@register_effect
class HighpassFilter(FirstOrderFilter):
    kind = "highpass"
    plugin_class = pedalboard.HighpassFilter
    params = (EffectParam("cutoff", 20.0, 20.0, 20000.0, "Hz", "first-order high-pass (6 dB/octave) corner"),)


@register_effect
class Plugin(PedalboardEffect):
    """A VST3 or Audio Unit plugin file, loaded by path (``pedalboard.load_plugin``). Its own
    parameters stay the plugin's (``effect.plugin.parameters``); the slot gives it wet/dry and
    bypass. A plugin that takes no mono input gets the block on two channels and gives back
    their mean. Never run with a real plugin file (the test machine has none): the tests stub
    pedalboard's loader with a built-in effect (presets), use an effect that raises (the
    rack bypasses it), and load files that are not plugins (one line)."""
    kind = "plugin"

    def __init__(self, sample_rate: int, path: str):
        self.path = str(path)
        self._channels = 1
        super().__init__(sample_rate)

    def _build(self):
        if not os.path.exists(self.path):
            raise EffectError(f"cannot load plugin '{self.path}': no such file")
        try:
            return pedalboard.load_plugin(self.path)
        except Exception as e:      # pedalboard raises ImportError, ValueError or RuntimeError
            reason = " ".join(str(e).split()) or type(e).__name__
            raise EffectError(f"cannot load plugin '{self.path}': {reason}") from None

    def reset(self) -> None:
        try:
            self._prepare(self._channels)
        except (ValueError, RuntimeError):
            self._channels = 2
            self._prepare(2)

    def _prepare(self, channels: int) -> None:
        self.plugin.process(np.zeros((channels, PREPARED_BLOCK), np.float32), self.sample_rate,
                            buffer_size=PREPARED_BLOCK, reset=True)

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self._channels == 1:
            return super()._run(x)
        y = self.plugin.process(np.repeat(x, 2, axis=0), self.sample_rate, buffer_size=PREPARED_BLOCK, reset=False)
        return y.mean(axis=0).astype(np.float32)


def make_effect(kind: str, sample_rate: int, **options) -> Effect:
    """A new effect of a registered ``kind``; ``options`` go to its constructor (a plugin's
    ``path``). An unknown kind or a plugin that does not load: :class:`EffectError`."""
    cls = EFFECT_KINDS.get(kind)
    if cls is None:
        raise EffectError(f"no effect kind {kind!r}; the kinds are {', '.join(EFFECT_KINDS)}")
    return cls(sample_rate, **options)


class Slot:
    """One place in the rack: an effect (or None: an empty plugin slot), its wet/dry ``mix``
    (0 dry .. 1 wet) and ``bypass``.

    A slot that is bypassed, at zero mix or empty hands its input on untouched (the same
    array: bit-exact, tests/test_effects.py::test_bypass_is_bit_exact) and does not run its
    effect. When it comes back it starts from a cleared effect (no stale tail) and fades its
    wet part in over one block; a mix change glides over one block; going to bypass fades
    the wet part out over one block before the passthrough.
    """

    def __init__(self, name: str, effect: Effect | None, mix: float = 0.0, bypass: bool = True):
        self.name = name
        self.effect = effect
        self.mix = float(mix)
        self.bypass = bool(bypass)
        self._mix_now = 0.0           # the mix the last block ended on (0 while passing through)

    def process(self, block: np.ndarray) -> np.ndarray:
        effect = self.effect          # read once: a plugin load replaces it whole
        if len(block) == 0:
            return block
        target = 0.0 if (self.bypass or effect is None) else min(max(self.mix, 0.0), 1.0)
        start = self._mix_now
        if start == 0.0 and target == 0.0:
            return block
        if effect is None:
            self._mix_now = 0.0
            return block
        if start == 0.0:
            effect.reset()
        wet = effect.process(block)
        self._mix_now = target
        if start == target:
            m = np.float32(target)
        else:
            m = np.linspace(start, target, len(block) + 1, dtype=np.float32)[1:]
        return (block * (np.float32(1.0) - m) + wet * m).astype(np.float32, copy=False)

    def reset(self) -> None:
        """Clears the effect's state (and the mix it fades from)."""
        self._mix_now = 0.0
        if self.effect is not None:
            self.effect.reset()


class Rack:
    """Slots in series: ``process(block: ndarray[n] float32) -> ndarray[n] float32``. A block
    that comes out NaN or infinite is replaced by the rack's input and the rack is reset
    (counted in :attr:`nonfinite_resets`); a slot whose effect raises (a plugin's fault) is
    put in bypass, its block passes dry, and the reason goes to :attr:`failures` (one line
    each; the bus's bypass switch, toggled, tries it again). The sound goes on
    (tests/test_effects.py::test_a_slot_that_raises_is_bypassed_and_reported)."""

    def __init__(self, sample_rate: int, slots: list[Slot]):
        self.sample_rate = int(sample_rate)
        self.slots = slots
        self.by_name = {s.name: s for s in slots}
        self.nonfinite_resets = 0
        self.failures: collections.deque[str] = collections.deque(maxlen=8)   # taken by the engine

    @classmethod
    def of_kinds(cls, sample_rate: int, kinds: tuple[str, ...]) -> "Rack":
        """A rack with one slot per kind, named after it, every slot bypassed; the plugin
        kind's slot starts empty."""
        slots = [Slot(k, None if k == "plugin" else make_effect(k, sample_rate)) for k in kinds]
        return cls(sample_rate, slots)

    def process(self, block: np.ndarray) -> np.ndarray:
        out = block
        for slot in self.slots:
            try:
                out = slot.process(out)
            except Exception as e:
                slot.bypass, slot._mix_now = True, 0.0
                self.failures.append(f"effect slot '{slot.name}' failed and is bypassed: {type(e).__name__}: "
                                     + " ".join(str(e).split()))
        if out is not block and not np.all(np.isfinite(out)):
            self.nonfinite_resets += 1
            self.reset()
            return block
        return out

    def reset(self) -> None:
        for slot in self.slots:
            slot.reset()


def calibrate_reverb(sample_rate: int = 48000, rooms: tuple[float, ...] = CALIBRATION_ROOM_SIZES,
                     seconds: float = 25.0) -> list[tuple[float, float]]:
    """(room_size, measured RT60 s) of the reverb as :class:`Reverb` builds it: the
    measurement :data:`REVERB_RT60_TABLE` holds."""
    out = []
    for room in rooms:
        plugin = _reverb_plugin(room)
        impulse = np.zeros((1, int(seconds * sample_rate)), np.float32)
        impulse[0, 0] = 1.0
        ir = plugin.process(impulse, sample_rate, reset=True)[0]
        out.append((room, round(measure_rt60(ir, sample_rate), 3)))
    return out


if __name__ == "__main__":      # prints the table REVERB_RT60_TABLE holds
    print(tuple(calibrate_reverb()))
