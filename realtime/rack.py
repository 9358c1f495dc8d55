"""The effects rack (core/effects.py) on the control bus, as the engine runs it.

Every user parameter of every slot is a bus parameter named ``fx_<slot>_<param>``, and every
slot has ``fx_<slot>_mix`` (0 dry .. 1 wet) and ``fx_<slot>_bypass``: MIDI learn, presets,
the window's sliders and OSC reach them as they reach any other parameter. Every slot starts
bypassed, so the default sound is the sound without the rack
(tests/test_effects.py::test_engine_with_the_rack_at_defaults_sounds_as_without_it).

The engine applies the rack after the output gain and before the safety limiter, taking the
values from its step's snapshot (:meth:`EngineRack.process`), and resets it on panic.

NB: the plugin slot's effect is built on the thread that calls :meth:`EngineRack.load_plugin`
(a plugin can take seconds to load: never the engine thread) and stored whole; the engine
reads it once per block (core.effects.Slot.process).
"""
from __future__ import annotations

import collections

import numpy as np

from core.effects import EFFECT_KINDS, Rack, make_effect

from .params import ParamSpec

# Slot order, first to last: tone, dynamics, modulation, echoes, space, then a plugin.
RACK_KINDS = ("highpass", "lowpass", "compressor", "chorus", "delay", "reverb", "plugin")
# The mix a slot has when it is taken out of bypass.
DEFAULT_MIX = {"reverb": 0.3, "delay": 0.3, "chorus": 0.5}
# Parameters that glide (one-pole, seconds): a mix or a filter corner moved by a knob.
SMOOTHING_S = {"mix": 0.05, "cutoff": 0.05}


FX_PREFIX = "fx_"


def param_name(slot: str, param: str) -> str:
    """The bus name of a slot's parameter: ``fx_reverb_rt60``."""
    return f"{FX_PREFIX}{slot}_{param}"


def is_rack_param(name: str) -> bool:
    return name.startswith(FX_PREFIX)


def display_name(name: str) -> str:
    """A rack parameter as the window labels it: ``fx_reverb_rt60`` -> ``reverb rt60``."""
    return name[len(FX_PREFIX):].replace("_", " ", 1) if is_rack_param(name) else name


def rack_specs(kinds: tuple[str, ...] = RACK_KINDS) -> tuple[ParamSpec, ...]:
    """The bus parameters of a rack with one slot per kind."""
    specs = []
    for kind in kinds:
        for p in EFFECT_KINDS[kind].params:
            specs.append(ParamSpec(param_name(kind, p.name), p.default, p.minimum, p.maximum, p.unit,
                                   SMOOTHING_S.get(p.name, 0.0), doc=f"{kind}: {p.doc}"))
        specs.append(ParamSpec(param_name(kind, "mix"), DEFAULT_MIX.get(kind, 1.0), 0.0, 1.0, "",
                               SMOOTHING_S["mix"], doc=f"{kind}: wet/dry (0 dry, 1 wet)"))
        specs.append(ParamSpec(param_name(kind, "bypass"), 1.0, 0.0, 1.0, "", 0.0, "bool",
                               doc=f"{kind}: bypass (the input passes untouched)"))
    return tuple(specs)


RACK_SPECS = rack_specs()


class EngineRack:
    """The engine's rack: ``process(block: ndarray[n] float32, values) -> ndarray[n]`` with
    ``values`` the step's snapshot values (bus name -> value); engine thread only, but for
    :meth:`load_plugin` / :meth:`clear_plugin` and :meth:`settings`. ``errors``: a deque
    that takes the line of each slot that fails (core.effects.Rack.failures; the engine's
    ``errors``)."""

    def __init__(self, sample_rate: int, kinds: tuple[str, ...] = RACK_KINDS,
                 errors: collections.deque | None = None):
        self.rack = Rack.of_kinds(sample_rate, kinds)
        if errors is not None:
            self.rack.failures = errors
        self.plugin_path: str | None = None
        self._last: dict[str, float] = {}       # the values apply() last carried over
        # (bus name, slot, effect parameter or "mix" / "bypass")
        self._bindings = []
        for slot in self.rack.slots:
            names = [p.name for p in EFFECT_KINDS[slot.name].params] + ["mix", "bypass"]
            self._bindings += [(param_name(slot.name, n), slot, n) for n in names]

    def apply(self, values: dict[str, float]) -> None:
        """Carries the bus values that changed since the last call over to the slots."""
        last = self._last
        for name, slot, param in self._bindings:
            v = values.get(name)
            if v is None or last.get(name) == v:
                continue
            last[name] = v
            if param == "mix":
                slot.mix = float(v)
            elif param == "bypass":
                slot.bypass = v >= 0.5
            elif slot.effect is not None:
                slot.effect.set(param, v)

    def process(self, block: np.ndarray, values: dict[str, float]) -> np.ndarray:
        self.apply(values)
        return self.rack.process(block)

    def reset(self) -> None:
        """Clears every effect's state (panic)."""
        self.rack.reset()

    @property
    def nonfinite_resets(self) -> int:
        return self.rack.nonfinite_resets

    def load_plugin(self, path: str) -> str:
        """Loads a VST3/AU plugin file into the plugin slot (any thread but the engine's; it
        may take seconds). A file that is not a plugin: core.effects.EffectError, one line,
        and the slot keeps what it had."""
        slot = self.rack.by_name["plugin"]
        slot.effect = make_effect("plugin", self.rack.sample_rate, path=path)
        self.plugin_path = str(path)
        return f"plugin '{path}' in the rack"

    def clear_plugin(self) -> None:
        self.rack.by_name["plugin"].effect = None
        self.plugin_path = None

    def settings(self) -> dict:
        """What a preset keeps of the rack beyond its bus parameters: the plugin file."""
        return {"plugin_path": self.plugin_path}

    def restore(self, settings: dict | None) -> None:
        """The rack as :meth:`settings` described it (loads the plugin file again)."""
        path = (settings or {}).get("plugin_path")
        if path is None:
            self.clear_plugin()
        elif path != self.plugin_path:
            self.load_plugin(path)
