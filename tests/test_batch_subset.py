"""Polyphony computes only the voices that sound: stepping a subset of batch rows."""
import torch

from core.bundle import load_bundle
from core.synth import Synth


def test_subset_rows_match_a_model_of_just_those_rows_and_others_keep_their_state(small_bundle):
    full, pair = Synth(load_bundle(small_bundle)), Synth(load_bundle(small_bundle))
    full.reset()
    pair.reset()
    torch.manual_seed(0)
    z = torch.randn(3, 20, 30)
    tok = torch.randint(0, 4, (3, 30))
    pit = 40 + 40 * torch.rand(3, 30)
    full.step(z[:, :, :5], tok[:, :5], pit[:, :5])          # all three rows run at first
    pair.step(z[[0, 2], :, :5], tok[[0, 2], :5], pit[[0, 2], :5])
    row1_state = full.vocoder.model[1]._cache[1].clone()
    for a, b in [(5, 6), (6, 9), (9, 16), (16, 30)]:         # then row 1 rests
        got, _ = full.step_rows([0, 2], 3, z[[0, 2], :, a:b], tok[[0, 2], a:b], pit[[0, 2], a:b])
        want, _ = pair.step(z[[0, 2], :, a:b], tok[[0, 2], a:b], pit[[0, 2], a:b])
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert full.vocoder.model[1]._cache.shape[0] == 3
    assert torch.equal(full.vocoder.model[1]._cache[1], row1_state)   # the resting row is untouched
    assert full.generator.frame == 30
