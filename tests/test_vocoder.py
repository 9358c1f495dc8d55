"""MelGAN vocoder: reference-checkpoint keys, reference equivalence, exact streaming."""
import pytest
import torch

from core.vocoder import MelGANVocoder, VocoderConfig, fold_weight_norm, load_reference_state_dict
from tests.conftest import chunkings
from tests.reference_melgan import ReferenceGenerator



@pytest.fixture(autouse=True)
def _no_grad():
    """Inference only here; a module-level switch would leak into other test modules."""
    with torch.no_grad():
        yield


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    ref = ReferenceGenerator().eval()
    voc = MelGANVocoder().eval()
    load_reference_state_dict(voc, ref.state_dict())
    return ref, voc


def test_paper_size_and_delay(pair):
    _, voc = pair
    n = sum(p.numel() for p in voc.parameters())
    assert 4.25e6 < n < 4.28e6           # paper: 4.26M; REFERENCE.md: about 4.27M
    assert voc.hop == 256
    # look-ahead: 3 frames at the first conv plus the residual and transposed-conv halves
    assert voc.delay == 3 * 256 + 4 * 32 + 13 * 32 + 4 * 4 + 13 * 4 + 1 * 2 + 13 * 2 + 1 + 13 + 3


def test_reference_keys_are_the_legacy_weight_norm_names(pair):
    ref, _ = pair
    keys = set(ref.state_dict())
    for k in ["model.1.weight_g", "model.1.weight_v", "model.3.weight_g", "model.8.weight_v",
              "model.4.block.2.weight_g", "model.4.block.4.weight_v", "model.4.shortcut.weight_g",
              "model.21.block.2.weight_v", "model.24.weight_g", "model.24.bias"]:
        assert k in keys


def test_parametrization_keys_load_too():
    torch.manual_seed(3)
    ref = ReferenceGenerator(ngf=8).eval()
    sd = {}
    for k, v in ref.state_dict().items():  # rename legacy keys to the new parametrization names
        k = k.replace(".weight_g", ".parametrizations.weight.original0").replace(
            ".weight_v", ".parametrizations.weight.original1")
        sd["module." + k] = v
    voc = MelGANVocoder(VocoderConfig(ngf=8)).eval()
    load_reference_state_dict(voc, sd)
    mel = torch.randn(1, 80, 30)
    voc.reset()
    d = voc.delay
    torch.testing.assert_close(voc(mel)[:, d + 2000:], ref(mel)[:, 0, 2000:-d], atol=1e-5, rtol=0)


def test_missing_half_of_weight_norm_is_an_error():
    with pytest.raises(ValueError, match="model.1"):
        fold_weight_norm({"model.1.weight_g": torch.ones(2, 1, 1)})


def test_stream_equals_reference_after_the_delay(pair):
    ref, voc = pair
    torch.manual_seed(1)
    mel = torch.randn(1, 80, 40) - 3
    r = ref(mel)[:, 0]
    voc.reset()
    s = voc(mel)
    assert s.shape == r.shape == (1, 40 * 256)
    d = voc.delay
    edge = 8 * 256   # the reference reflect-pads at the start; the stream starts from zeros
    torch.testing.assert_close(s[:, d + edge:], r[:, edge:r.shape[1] - d], atol=1e-5, rtol=0)
    assert r[:, edge:].abs().max() > 0.05   # a real signal, not all zeros


@pytest.mark.parametrize("causal", [False, True])
def test_chunked_equals_whole(pair, causal):
    if causal:
        torch.manual_seed(2)
        voc = MelGANVocoder(VocoderConfig(causal=True)).eval()
        assert voc.delay == 0
    else:
        voc = pair[1]
    mel = torch.randn(2, 80, 48)
    voc.reset()
    whole = voc(mel)
    for name, sizes in chunkings(48, seed=1, n_random=2):
        voc.reset()
        outs, i = [], 0
        for n in sizes:
            outs.append(voc(mel[:, :, i:i + n]))
            i += n
        torch.testing.assert_close(torch.cat(outs, 1), whole, atol=1e-5, rtol=0, msg=name)
