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


def test_subset_rows_with_a_harmonic_vocoder_keep_each_voice_phase(tmp_path):
    """The excitation's phase is per voice state: resting rows keep theirs."""
    from core.bundle import save_bundle
    from core.mel import MelConfig
    from core.vocoder import MelGANVocoder, VocoderConfig
    from tests.conftest import small_models
    gen, _ = small_models()
    torch.manual_seed(1)
    voc = MelGANVocoder(VocoderConfig(ngf=8, harmonics=4, causal=True))
    torch.nn.init.normal_(voc.source_gate.weight, 0.0, 0.1)
    p = tmp_path / "h.dwb"
    save_bundle(p, name="h", generator=gen, vocoder=voc, mel=MelConfig(), mean=torch.zeros(80), std=torch.ones(80))
    full, pair = Synth(load_bundle(p)), Synth(load_bundle(p))
    full.reset()
    pair.reset()
    torch.manual_seed(0)
    z = torch.randn(3, 20, 20)
    tok = torch.randint(0, 4, (3, 20))
    pit = 40 + 40 * torch.rand(3, 20)
    full.step(z[:, :, :5], tok[:, :5], pit[:, :5])
    pair.step(z[[0, 2], :, :5], tok[[0, 2], :5], pit[[0, 2], :5])
    phase1 = full.vocoder.source._phase[1].clone()
    for a, b in [(5, 6), (6, 13), (13, 20)]:
        got, _ = full.step_rows([0, 2], 3, z[[0, 2], :, a:b], tok[[0, 2], a:b], pit[[0, 2], a:b])
        want, _ = pair.step(z[[0, 2], :, a:b], tok[[0, 2], a:b], pit[[0, 2], a:b])
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert torch.equal(full.vocoder.source._phase[1], phase1)
    # and the requested pitch reaches the vocoder as its f0
    full.reset()
    audio, mel = full.step(z[:1, :, :8], tok[:1, :8], pit[:1, :8])
    with torch.no_grad():               # (mean 0, std 1: the mel is what the vocoder got)
        full.vocoder.reset()
        with_f0 = full.vocoder(mel, 440 * 2 ** ((pit[:1, :8] - 69) / 12))
        full.vocoder.reset()
        without = full.vocoder(mel)
    torch.testing.assert_close(audio, with_f0, atol=1e-5, rtol=0)
    assert (audio - without).abs().max() > 1e-3
