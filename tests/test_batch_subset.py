"""Polyphony computes only the voices that sound: stepping a subset of batch rows."""
import torch

from core.bundle import load_bundle
from core.pitch import midi_to_hz
from core.synth import Synth


def run_rows_0_and_2(path, frames: int, spans, state_of_row_1):
    """Steps a 3-row stream (all rows for 5 frames, then rows 0 and 2 only over ``spans``)
    against a 2-row stream of just those rows; asserts equal output and returns
    (the 3-row synth, its inputs, ``state_of_row_1(synth)`` before and after the rest)."""
    full, pair = Synth(load_bundle(path)), Synth(load_bundle(path))
    full.reset()
    pair.reset()
    torch.manual_seed(0)
    z = torch.randn(3, 20, frames)
    tok = torch.randint(0, 4, (3, frames))
    pit = 40 + 40 * torch.rand(3, frames)
    full.step(z[:, :, :5], tok[:, :5], pit[:, :5])          # all three rows run at first
    pair.step(z[[0, 2], :, :5], tok[[0, 2], :5], pit[[0, 2], :5])
    before = state_of_row_1(full).clone()
    for a, b in spans:                                       # then row 1 rests
        got, _ = full.step_rows([0, 2], 3, z[[0, 2], :, a:b], tok[[0, 2], a:b], pit[[0, 2], a:b])
        want, _ = pair.step(z[[0, 2], :, a:b], tok[[0, 2], a:b], pit[[0, 2], a:b])
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    return full, (z, tok, pit), before, state_of_row_1(full)


def test_subset_rows_match_a_model_of_just_those_rows_and_others_keep_their_state(small_bundle):
    full, _, before, after = run_rows_0_and_2(small_bundle, 30, [(5, 6), (6, 9), (9, 16), (16, 30)],
                                              lambda s: s.vocoder.model[1]._cache[1])
    assert full.vocoder.model[1]._cache.shape[0] == 3
    assert torch.equal(after, before)                        # the resting row is untouched
    assert full.generator.frame == 30


def test_subset_rows_with_a_harmonic_vocoder_keep_each_voice_phase(tmp_path):
    """The excitation's phase is per voice state: resting rows keep theirs."""
    from core.bundle import save_bundle
    from core.frame_notch import FrameRateNotch
    from core.mel import MelConfig
    from core.mel_match import MelMatch
    from core.pitch_filter import PitchFilter
    from core.vocoder import MelGANVocoder, VocoderConfig
    from tests.conftest import small_models
    gen, _ = small_models()
    torch.manual_seed(1)
    voc = MelGANVocoder(VocoderConfig(ngf=8, harmonics=4, causal=True))
    torch.nn.init.normal_(voc.source_gate.weight, 0.0, 0.1)
    p = tmp_path / "h.dwb"
    save_bundle(p, name="h", generator=gen, vocoder=voc, mel=MelConfig(), mean=torch.zeros(80), std=torch.ones(80))
    full, (z, tok, pit), before, after = run_rows_0_and_2(p, 20, [(5, 6), (6, 13), (13, 20)],
                                                          lambda s: s.vocoder.source._phase[1])
    assert torch.equal(after, before)
    # and the requested pitch reaches the vocoder as its f0
    full.reset()
    audio, mel = full.step(z[:1, :, :8], tok[:1, :8], pit[:1, :8])
    with torch.no_grad():               # (mean 0, std 1: the mel is what the vocoder got)
        full.vocoder.reset()
        with_f0 = full.vocoder(mel, midi_to_hz(pit[:1, :8]))
        full.vocoder.reset()
        without = full.vocoder(mel)
        # the player takes the vocoder's offset in silence off (core/silence_offset.py),
        # notches the frame rate (core/frame_notch.py), mel-matches the vocoder's audio
        # (core/mel_match.py; bands between the partials of the f0 only cut), then combs it at
        # the f0 (core/pitch_filter.py; unvoiced: unchanged)
        match = MelMatch(MelConfig(), full.vocoder.delay)
        notched = FrameRateNotch(full.hop, lag=full.vocoder.delay)(with_f0 - full.offset, mel)
        f0 = midi_to_hz(pit[:1, :8])
        with_f0 = PitchFilter(full.hop, full.sample_rate, lag=match.delay)(match(notched, mel, f0), f0)
        without = MelMatch(MelConfig(), full.vocoder.delay)(FrameRateNotch(full.hop, lag=full.vocoder.delay)(without - full.offset, mel), mel)
    torch.testing.assert_close(audio, with_f0, atol=1e-5, rtol=0)
    assert (audio - without).abs().max() > 1e-3
