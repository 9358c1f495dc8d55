"""The effects rack (core/effects.py, realtime/rack.py): per-stream state (chunked == whole,
bit-exact), the reverb's RT60 and the delay's echo time measured on an impulse, bypass as a
bit-exact passthrough, the limiter after the rack at every maximum, presets, panic, and a
plugin file that does not load. No VST3/AU plugin exists on the test machine: the plugin
slot is tested for its error and, with pedalboard's loader stubbed, for the preset's path."""
from __future__ import annotations

import numpy as np
import pedalboard
import pytest

from core.effects import (EFFECT_KINDS, PREPARED_BLOCK, Effect, EffectError, Rack, Slot, make_effect,
                          measure_rt60)
from core.limiter import SafetyLimiter
from realtime.params import DEFAULT_SPECS, ControlBus
from realtime.rack import RACK_KINDS, RACK_SPECS, EngineRack, param_name
from tests.conftest import random_chunking

RATE = 48000
BUILT_IN = [k for k in RACK_KINDS if k != "plugin"]
# settings that make every effect audible (values away from the defaults)
AUDIBLE = {"highpass": {"cutoff": 300.0}, "lowpass": {"cutoff": 2000.0},
           "compressor": {"threshold": -30.0, "ratio": 6.0, "attack": 2.0, "makeup": 6.0},
           "chorus": {"rate": 2.0, "depth": 0.6, "feedback": 0.3}, "delay": {"ms": 12.3, "feedback": 0.6},
           "reverb": {"rt60": 1.5}}


def signal(n: int, seed: int = 0) -> np.ndarray:
    """Noise at 0.3 with a few clicks: ``ndarray[n]`` float32."""
    rng = np.random.default_rng(seed)
    x = 0.3 * rng.standard_normal(n)
    x[rng.integers(0, n, 8)] = 0.9
    return x.astype(np.float32)


def rack_of(kinds, mix: float = 0.7, settings=AUDIBLE) -> Rack:
    rack = Rack(RATE, [Slot(k, make_effect(k, RATE), mix=mix, bypass=False) for k in kinds])
    for slot in rack.slots:
        for name, v in settings.get(slot.name, {}).items():
            slot.effect.set(name, v)
    rack.process(np.zeros(64, np.float32))    # the slots fade in over their first block
    return rack


def run_chunked(rack: Rack, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    out, i = [], 0
    for n in sizes:
        out.append(rack.process(x[i:i + n].copy()))
        i += n
    return np.concatenate(out)


def chunkings(total: int):
    rng = np.random.default_rng(7)
    fixed = [(k, [k] * (total // k) + ([total % k] if total % k else [])) for k in (1, 7, 256)]
    # random sizes up to past PREPARED_BLOCK: a block larger than any before must not clear a plugin
    return fixed + [("random", random_chunking(total, rng, max_size=PREPARED_BLOCK + 1500))]


@pytest.mark.parametrize("kinds", [[k] for k in BUILT_IN] + [BUILT_IN], ids=lambda k: "+".join(k))
def test_chunked_equals_whole(kinds):
    """Fed in chunks of 1, 7, 256 or random sizes, each effect (and the whole rack in series)
    gives what it gives fed the signal whole, bit for bit (parameters held still)."""
    x = signal(6000 if len(kinds) == 1 else 12000)
    whole = rack_of(kinds).process(x.copy())
    assert np.max(np.abs(whole - x)) > 1e-3          # the effects do something
    for name, sizes in chunkings(len(x)):
        np.testing.assert_array_equal(run_chunked(rack_of(kinds), x, sizes), whole, err_msg=f"chunks {name}")


def impulse_response(kind: str, settings: dict, seconds: float, rate: int = RATE, mix: float = 1.0) -> np.ndarray:
    """The wet response of one slot to a unit impulse, fed as the engine feeds it (557-frame
    blocks: one model frame at 48 kHz)."""
    rack = Rack(rate, [Slot(kind, make_effect(kind, rate), mix=mix, bypass=False)])
    for name, v in settings.items():
        rack.slots[0].effect.set(name, v)
    rack.process(np.zeros(64, np.float32))
    x = np.zeros(int(seconds * rate), np.float32)
    x[0] = 1.0
    return run_chunked(rack, x, [557] * (len(x) // 557 + 1))


@pytest.mark.parametrize("rate", [48000, 44100])
@pytest.mark.parametrize("rt60", [0.6, 0.75, 1.0, 1.4, 2.0, 3.2, 4.5, 6.0, 7.0, 9.0])
def test_reverb_rt60_matches_the_setting(rt60, rate):
    """An impulse's tail (Schroeder backward integration, T30 fit) decays 60 dB in the RT60
    the parameter says, within 5 %, over the whole range and between the calibration points."""
    ir = impulse_response("reverb", {"rt60": rt60}, 1.2 * rt60 + 0.5, rate)
    assert measure_rt60(ir, rate) == pytest.approx(rt60, rel=0.05)


def test_rt60_measure_on_a_known_exponential():
    """measure_rt60 itself: noise under an exp envelope that falls 60 dB in 1.7 s."""
    t = np.arange(3 * RATE) / RATE
    ir = np.random.default_rng(0).standard_normal(len(t)) * 10 ** (-3 * t / 1.7)
    assert measure_rt60(ir, RATE) == pytest.approx(1.7, rel=0.01)


@pytest.mark.parametrize("ms", [1.0, 10.0, 123.4, 350.0, 1000.0, 2000.0])
def test_delay_echo_time_matches_the_setting(ms):
    """The first echo of an impulse lands ``ms`` after it (within 5 %, and within the one
    half sample it rounds to); the second one ``2 ms``, at ``feedback`` of the first."""
    ir = impulse_response("delay", {"ms": ms, "feedback": 0.5}, 2.2 * ms / 1e3 + 0.01)
    peaks = np.nonzero(np.abs(ir) > 0.1)[0]
    first, second = peaks[0] / RATE * 1e3, peaks[1] / RATE * 1e3
    assert first == pytest.approx(ms, rel=0.05) and abs(peaks[0] - ms / 1e3 * RATE) <= 0.5
    assert second == pytest.approx(2 * ms, rel=0.05)
    assert ir[peaks[1]] == pytest.approx(0.5 * ir[peaks[0]], rel=1e-3)


def test_wet_dry_mix():
    """mix 0.25: the impulse itself at 0.75, its first echo at 0.25."""
    ir = impulse_response("delay", {"ms": 10.0, "feedback": 0.0}, 0.05, mix=0.25)
    assert ir[0] == pytest.approx(0.75, abs=1e-6)
    assert ir[480] == pytest.approx(0.25, abs=1e-6)


def test_bypass_is_bit_exact():
    """A rack with every slot bypassed hands the block on as it came; bypassing an effect
    between active ones equals the rack without it; after the one-block fade-out, a slot
    that goes to bypass passes its input untouched."""
    x = signal(4000)
    every_slot = Rack.of_kinds(RATE, RACK_KINDS)
    assert every_slot.process(x) is x
    with_bypassed = rack_of(["highpass", "delay", "reverb"])
    with_bypassed.by_name["delay"].bypass = True
    with_bypassed.process(np.zeros(64, np.float32))      # the delay fades out over this block
    np.testing.assert_array_equal(with_bypassed.process(x.copy()), rack_of(["highpass", "reverb"]).process(x.copy()))
    one = rack_of(["chorus"])
    one.process(x[:500].copy())
    one.slots[0].bypass = True
    faded = one.process(x[500:1000].copy())
    assert np.max(np.abs(faded - x[500:1000])) > 1e-3   # the fade-out block still carries the wet part
    np.testing.assert_array_equal(one.process(x[1000:].copy()), x[1000:])


def all_at_maximum(bus: ControlBus) -> None:
    """Every rack effect in, at full wet, every parameter at its maximum (the loudest: the
    compressor's threshold at 0 dB, its makeup at +24 dB, the longest tail, the most
    feedback), but the high-pass corner, which at its maximum would take nearly all away;
    the output gain at its maximum too."""
    for spec in RACK_SPECS:
        bus.set(spec.name, 0.0 if spec.name.endswith("_bypass") else spec.maximum)
    bus.set("fx_highpass_cutoff", bus.specs["fx_highpass_cutoff"].minimum)
    bus.set("gain", bus.specs["gain"].maximum)


def test_limiter_holds_every_effect_at_maximum():
    """A loud input (noise at 4, clicks at 20) through the gain, the rack with every effect
    at maximum and the limiter, as the engine calls them: finite and below full scale."""
    bus = ControlBus(DEFAULT_SPECS + RACK_SPECS)
    all_at_maximum(bus)
    rack, limiter = EngineRack(RATE), SafetyLimiter(RATE)
    rng = np.random.default_rng(3)
    peak_in, peak_out = 0.0, 0.0
    for _ in range(int(3 * RATE / 557)):
        block = (4.0 * rng.standard_normal(557)).astype(np.float32)
        block[rng.integers(0, 557, 3)] = 20.0
        v = bus.snapshot(557 / RATE).values
        block = block * np.float32(10.0 ** (v["gain"] / 20.0))
        block = rack.process(block, v)
        peak_in = max(peak_in, float(np.max(np.abs(block))))
        limiter.process(block)
        assert np.all(np.isfinite(block))
        peak_out = max(peak_out, float(np.max(np.abs(block))))
    assert peak_in > 10.0                      # the rack did make it loud
    assert peak_out <= np.float32(limiter.ceiling) < 1.0     # the ceiling as float32 rounds it


def new_engine(bundle_path, seed: int = 0):
    from core.bundle import load_bundle
    from realtime.engine import Engine
    return Engine(load_bundle(bundle_path), RATE, threads=1, seed=seed)


def engine_output(engine, steps: int) -> np.ndarray:
    """``steps`` engine steps (no threads, no device), what they wrote to the ring."""
    out = []
    for _ in range(steps):
        engine._step()
        buf = np.zeros(engine.ring.available(), np.float32)
        engine.ring.read_into(buf)
        out.append(buf)
    return np.concatenate(out)


def test_engine_output_stays_below_full_scale_with_every_effect_at_maximum(small_bundle):
    """The engine's own path, with its synth's output made 400 times louder (a random
    vocoder, most of whose sound the frame-rate notch takes out) and every effect at maximum:
    what reaches the limiter is far over full scale, what leaves the engine is not."""
    engine = new_engine(small_bundle)
    all_at_maximum(engine.bus)
    engine.voices.note_on(60, 127)
    take = engine.player.take
    engine.player.take = lambda n: take(n) * np.float32(400.0)
    into_limiter = []
    limit = engine.limiter.process
    engine.limiter.process = lambda block: (into_limiter.append(float(np.max(np.abs(block)))), limit(block))[1]
    out = engine_output(engine, 60)
    assert max(into_limiter) > 4.0
    assert np.all(np.isfinite(out)) and np.max(np.abs(out)) < 1.0


def test_engine_with_the_rack_at_defaults_sounds_as_without_it(small_bundle):
    """The rack at its defaults changes nothing: the engine's output equals, bit for bit, that
    of an engine whose rack step is taken out; with the reverb in, it differs."""
    outs = []
    for variant in ("defaults", "no rack", "reverb in"):
        engine = new_engine(small_bundle, seed=5)
        engine.voices.note_on(62, 100)
        if variant == "no rack":
            engine.rack.process = lambda block, values: block
        elif variant == "reverb in":
            engine.bus.set("fx_reverb_bypass", 0)
        outs.append(engine_output(engine, 30))
    np.testing.assert_array_equal(outs[0], outs[1])
    assert np.max(np.abs(outs[2] - outs[0])) > 1e-4


def test_panic_resets_the_rack(small_bundle):
    """After reset a used rack gives what an unused one gives after reset, bit for bit
    (no tail, no LFO phase, no compressor gain left over); the engine's panic resets its rack."""
    x = signal(3000)
    used, unused = rack_of(BUILT_IN), rack_of(BUILT_IN)
    used.process(signal(5000, seed=1))
    used.reset()
    unused.reset()
    np.testing.assert_array_equal(used.process(x.copy()), unused.process(x.copy()))
    engine = new_engine(small_bundle)
    resets = []
    engine.rack.reset = lambda: resets.append(1)
    engine._step()
    engine.bus.trigger("panic")
    engine._step()
    assert resets == [1]


class _Exploding(Effect):
    kind = "exploding"

    def process(self, block):
        return np.full_like(block, np.nan)

    def reset(self):
        pass


def test_a_nonfinite_block_is_replaced_by_the_input_and_the_rack_reset():
    rack = Rack(RATE, [Slot("exploding", _Exploding(RATE), mix=0.5, bypass=False)])
    x = signal(256)
    np.testing.assert_array_equal(rack.process(x), x)
    assert rack.nonfinite_resets == 1


class _Raising(Effect):
    kind = "raising"

    def process(self, block):
        raise RuntimeError("plugin crashed\nin its process call")

    def reset(self):
        pass


def test_a_slot_that_raises_is_bypassed_and_reported(small_bundle):
    """A slot whose effect raises passes its block on dry, goes to bypass and leaves one line;
    the slots after it still play; in the engine the line lands in ``errors`` and the steps
    go on (no "engine step failed")."""
    delay = Slot("delay", make_effect("delay", RATE), mix=0.5, bypass=False)
    rack = Rack(RATE, [Slot("raising", _Raising(RATE), mix=1.0, bypass=False), delay])
    alone = Rack(RATE, [Slot("delay", make_effect("delay", RATE), mix=0.5, bypass=False)])
    x = signal(2000)
    np.testing.assert_array_equal(rack.process(x.copy()), alone.process(x.copy()))
    assert rack.slots[0].bypass and list(rack.failures) == [
        "effect slot 'raising' failed and is bypassed: RuntimeError: plugin crashed in its process call"]
    np.testing.assert_array_equal(rack.process(x.copy()), alone.process(x.copy()))
    assert len(rack.failures) == 1                        # bypassed: not run again
    engine = new_engine(small_bundle)
    engine.voices.note_on(60, 100)
    engine.rack.rack.by_name["plugin"].effect = _Raising(RATE)
    engine.bus.set("fx_plugin_bypass", 0)
    out = engine_output(engine, 5)
    assert np.all(np.isfinite(out)) and engine.steps == 5
    assert [e for e in engine.errors if "'plugin' failed" in e] and not [e for e in engine.errors if "step failed" in e]


def test_every_parameter_is_on_the_bus_and_a_preset_restores_it(tmp_path, monkeypatch):
    """Every effect parameter, mix and bypass is a bus parameter; a preset saved with each at
    a value other than its default restores every one; the plugin slot's file goes with it."""
    monkeypatch.setenv("DRIFTWAVE_CONFIG_DIR", str(tmp_path))
    from realtime.presets import load_preset, save_preset
    names = {s.name for s in RACK_SPECS}
    for kind in RACK_KINDS:
        declared = [p.name for p in EFFECT_KINDS[kind].params] + ["mix", "bypass"]
        assert {param_name(kind, p) for p in declared} <= names
    bus = ControlBus(DEFAULT_SPECS + RACK_SPECS)
    wanted = {}
    for spec in RACK_SPECS:
        v = (1.0 - spec.default) if spec.kind == "bool" else spec.minimum + 0.37 * (spec.maximum - spec.minimum)
        wanted[spec.name] = bus.set(spec.name, v)
        assert wanted[spec.name] != spec.default
    fake = tmp_path / "fake.vst3"
    fake.write_text("not a plugin: pedalboard's loader is stubbed below")
    monkeypatch.setattr(pedalboard, "load_plugin", lambda path: pedalboard.Gain(gain_db=-6.0))
    rack = EngineRack(RATE)
    rack.load_plugin(str(fake))
    save_preset("fx", bus, rack=rack)
    bus2, rack2 = ControlBus(DEFAULT_SPECS + RACK_SPECS), EngineRack(RATE)
    load_preset("fx", bus2, rack=rack2)
    assert {n: bus2.get(n) for n in names} == wanted
    assert rack2.plugin_path == str(fake) and rack2.rack.by_name["plugin"].effect is not None


@pytest.mark.parametrize("content", [None, "junk", "folder"])
def test_a_bad_plugin_file_gives_one_line_and_the_rack_plays_on(tmp_path, content):
    """A missing file, a file that is no plugin, a folder named like a VST3 bundle: one
    line naming the file; the slot stays as it was and the rack goes on."""
    path = tmp_path / "bad.vst3"
    if content == "junk":
        path.write_text("junk")
    elif content == "folder":
        path.mkdir()
    rack = EngineRack(RATE)
    with pytest.raises(EffectError) as err:
        rack.load_plugin(str(path))
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and msg.startswith("cannot load plugin")
    assert rack.plugin_path is None and rack.rack.by_name["plugin"].effect is None
    x = signal(512)
    assert rack.process(x, {"fx_plugin_bypass": 0.0, "fx_plugin_mix": 1.0}) is x
    with pytest.raises(EffectError, match="no effect kind"):
        make_effect("no such kind", RATE)


@pytest.mark.parametrize("bad", [[1, 2], "room.vst3", {"plugin_path": 7}])
def test_a_preset_with_a_malformed_rack_is_one_line_and_changes_nothing(tmp_path, monkeypatch, bad):
    """A preset file whose "rack" is not {"plugin_path": a file or null}: ValueError, one line
    naming the file, and neither the bus nor the rack changed."""
    import json

    monkeypatch.setenv("DRIFTWAVE_CONFIG_DIR", str(tmp_path))
    from realtime.presets import load_preset, preset_path, save_preset
    bus, rack = ControlBus(DEFAULT_SPECS + RACK_SPECS), EngineRack(RATE)
    bus.set("fx_reverb_rt60", 5.0)
    save_preset("odd", bus, rack=rack)
    data = json.loads(preset_path("odd").read_text())
    data["rack"] = bad
    preset_path("odd").write_text(json.dumps(data))
    fresh = ControlBus(DEFAULT_SPECS + RACK_SPECS)
    with pytest.raises(ValueError) as err:
        load_preset("odd", fresh, rack=rack)
    assert "\n" not in str(err.value) and "odd.json" in str(err.value) and "'rack'" in str(err.value)
    assert fresh.state() == ControlBus(DEFAULT_SPECS + RACK_SPECS).state() and rack.plugin_path is None
