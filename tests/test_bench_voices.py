"""benchmarks/bench_voices.py: the players it steps in turn are independent instruments.

A Synth's stream states and its generator's frame clock live on the bundle's modules; two
players built from one loaded bundle would step one generator in turn (the first of each
round taking the even frames, where more levels run, so it read slower whichever it was).
"""
import numpy as np
from realtime.params import ControlBus

from benchmarks.bench_voices import build_players

KIND = ("eager", 0.6, 0.2, True, True)     # step kind, pitch filter, notch, gate, cut only


def _step(player, bank, bus):
    ctl = bank.render(1, 60.0, 0.05, 0.01, 0.3)
    player.render(1, bus.snapshot(0.02), bank, ctl)
    return player.take(len(player.pending))


def test_players_stepped_in_turn_play_what_one_alone_plays(small_bundle):
    (a, b), (bank_a, bank_b) = build_players(str(small_bundle), [KIND, KIND], 2, 1, "float32", "cpu",
                                             "zero-latency", 2)
    assert a.synth.generator is not b.synth.generator
    assert a.synth.vocoder is not b.synth.vocoder
    bus = ControlBus()
    start = a.synth.generator.frame, b.synth.generator.frame
    out_a, out_b = [], []
    for _ in range(20):
        out_a.append(_step(a, bank_a, bus))
        out_b.append(_step(b, bank_b, bus))
    assert (a.synth.generator.frame - start[0], b.synth.generator.frame - start[1]) == (20, 20)
    (alone,), (bank,) = build_players(str(small_bundle), [KIND], 2, 1, "float32", "cpu", "zero-latency", 2)
    out = [_step(alone, bank, bus) for _ in range(20)]
    whole = np.concatenate(out)
    assert np.abs(whole).max() > 0
    np.testing.assert_allclose(np.concatenate(out_a), whole, atol=1e-6)
    np.testing.assert_allclose(np.concatenate(out_b), whole, atol=1e-6)
