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


def assert_vocoder_streams_exactly(voc, mel, f0=None, seed=0):
    """The vocoder's output for every chunking (sizes 1, 2, 3, 7, 16 and random) equals one
    whole call, within 1e-5."""
    voc.reset()
    whole = voc(mel, f0)
    for name, sizes in chunkings(mel.shape[2], seed=seed, n_random=2):
        voc.reset()
        outs, i = [], 0
        for n in sizes:
            outs.append(voc(mel[:, :, i:i + n], None if f0 is None else f0[:, i:i + n]))
            i += n
        torch.testing.assert_close(torch.cat(outs, 1), whole, atol=1e-5, rtol=0, msg=name)


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
    assert_vocoder_streams_exactly(voc, torch.randn(2, 80, 48), seed=1)


# ----------------------------------------------------------------------------- multi-band (PQMF)

def _snr_db(x, y):
    return float(10 * torch.log10((x ** 2).mean() / ((y - x) ** 2).mean()))


def test_pqmf_analysis_then_synthesis_reconstructs():
    from core.pqmf import analysis, synthesis
    torch.manual_seed(0)
    x = torch.randn(2, 8192)
    edge = 100                      # zero padding at the ends is not part of the signal
    assert _snr_db(x[:, edge:-edge], synthesis(analysis(x))[:, edge:-edge]) > 55   # measured 63.9 dB
    t = torch.arange(8192) / 22050
    for f in (100.0, 1000.0, 2756.0, 5000.0, 9000.0):   # across every band and a band edge
        s = torch.sin(2 * torch.pi * f * t)[None]
        assert _snr_db(s[:, edge:-edge], synthesis(analysis(s))[:, edge:-edge]) > 55, f


@pytest.mark.parametrize("freq,band", [(1000.0, 0), (4000.0, 1), (7000.0, 2), (10000.0, 3)])
def test_pqmf_puts_a_sine_in_its_band(freq, band):
    from core.pqmf import analysis
    t = torch.arange(8192) / 22050
    sub = analysis(torch.sin(2 * torch.pi * freq * t)[None])[0, :, 50:-50]
    energy = (sub ** 2).sum(1)
    assert energy[band] / energy.sum() > 0.99      # bands are 2756 Hz wide at 22050 Hz


def test_pqmf_synthesis_streams_exactly():
    from core.pqmf import PQMFSynthesis, analysis, synthesis
    torch.manual_seed(1)
    sb = analysis(torch.randn(2, 64 * 4))                 # [2 x 4 x 64]
    layer = PQMFSynthesis(4)
    assert layer.delay == 31 and len(layer.state_dict()) == 0   # nothing to store in a bundle
    whole = synthesis(sb)
    x = sb.transpose(1, 2)
    for name, sizes in chunkings(64, seed=2):
        layer.reset()
        outs, i = [], 0
        for n in sizes:
            outs.append(layer(x[:, i:i + n])[:, :, 0])
            i += n
        s = torch.cat(outs, 1)
        torch.testing.assert_close(s[:, 31:], whole[:, :-31], atol=1e-5, rtol=0, msg=name)


MB = dict(ngf=8, bands=4, ratios=(8, 4, 2), n_residual_layers=4)


def test_multiband_stream_equals_reference_after_the_delay():
    from core.pqmf import synthesis
    torch.manual_seed(4)
    ref = ReferenceGenerator(ngf=8, n_residual_layers=4, ratios=(8, 4, 2), bands=4).eval()
    voc = MelGANVocoder(VocoderConfig(**MB)).eval()
    load_reference_state_dict(voc, ref.state_dict())
    assert voc.hop == 256
    # first conv 3 frames, residual halves (1+3+9+27 per rate), transposed-conv paddings, last
    # conv 3 sub-band samples, then the PQMF's 31 samples
    assert voc.delay == 3 * 256 + 4 * 32 + 40 * 32 + 2 * 8 + 40 * 8 + 1 * 4 + 40 * 4 + 3 * 4 + 31
    mel = torch.randn(1, 80, 48) - 3
    r = synthesis(ref(mel))
    voc.reset()
    s = voc(mel)
    assert s.shape == r.shape == (1, 48 * 256)
    d, edge = voc.delay, 16 * 256      # the reference reflect-pads: its start differs for a receptive field
    # rtol too: on another CPU (an H100 host, torch 2.11) one sample of ~1.2 differed by 1.01e-5
    torch.testing.assert_close(s[:, d + edge:], r[:, edge:r.shape[1] - d], atol=1e-5, rtol=1e-5)
    assert r[:, edge:].abs().max() > 0.01


@pytest.mark.parametrize("causal", [False, True])
def test_multiband_chunked_equals_whole(causal):
    torch.manual_seed(5)
    voc = MelGANVocoder(VocoderConfig(**MB, causal=causal)).eval()
    if causal:
        assert voc.delay == 31            # only the synthesis filters look ahead
    assert_vocoder_streams_exactly(voc, torch.randn(2, 80, 24), seed=3)


# ----------------------------------------------------------------------------- harmonic excitation

def test_harmonic_source_is_the_requested_sine_and_streams():
    from core.vocoder import HarmonicSource
    src = HarmonicSource(256, 22050, 4)
    f0 = torch.tensor([[220.0] * 16 + [0.0] * 4 + [3000.0] * 12])        # voiced, unvoiced, high
    whole = src(f0)
    assert whole.shape == (1, 32 * 256, 4)
    x = whole[0, :16 * 256, 0].numpy()
    spec = abs(torch.fft.rfft(torch.from_numpy(x * __import__("numpy").hanning(len(x)))))
    peak_hz = float(spec.argmax()) * 22050 / len(x)
    assert abs(peak_hz - 220.0) < 22050 / len(x)                         # within one FFT bin
    assert whole[0, 16 * 256:20 * 256].abs().max() == 0                  # unvoiced: silent
    high = whole[0, 20 * 256:]
    assert high[:, :3].abs().max() > 0.99 and high[:, 3].abs().max() == 0   # 4 x 3000 Hz > Nyquist
    for name, sizes in chunkings(32, seed=4):
        src.reset()
        outs, i = [], 0
        for n in sizes:
            outs.append(src(f0[:, i:i + n]))
            i += n
        torch.testing.assert_close(torch.cat(outs, 1), whole, atol=1e-6, rtol=0, msg=name)


def test_harmonic_phase_in_float32_tracks_float64_over_ten_minutes():
    """Apple's MPS has no float64: there the frame starts are integrated in float32. Over ten
    minutes of frames (f0 jumping anywhere in 50-2000 Hz each frame) each frame's advance stays
    within 1e-4 rad of the float64 integration's (a frequency error below 0.001 Hz), and the
    float32 stream is chunk-invariant to 1e-3 rad."""
    import math
    from core.vocoder import HarmonicSource
    hop, sr, frames = 256, 22050, 52000                    # 52000 frames of 256 = 10.06 min
    g = torch.Generator().manual_seed(0)
    f0 = 50 * 2 ** (torch.rand(1, frames, generator=g) * math.log2(2000 / 50))
    p64 = HarmonicSource(hop, sr, 1).phase(f0, torch.float64)
    src32 = HarmonicSource(hop, sr, 1)
    p32 = src32.phase(f0, torch.float32)
    err = torch.angle(torch.polar(torch.ones_like(p32), p32 - p64))[0, ::hop].double()   # at frame starts
    assert err.diff().abs().max() < 1e-4
    assert err.abs().max() < 1.0
    # the within-frame part is float32 in both: a frame's samples step by 2 pi f0 / sr
    torch.testing.assert_close(p32[0, 1:hop] - p32[0, :hop - 1],
                               torch.full((hop - 1,), 2 * math.pi * float(f0[0, 0]) / sr), atol=1e-4, rtol=0)
    for name, sizes in chunkings(600, seed=5):
        src32.reset()
        parts, i = [], 0
        for n in sizes:
            parts.append(src32.phase(f0[:, i:i + n], torch.float32))
            i += n
        d = torch.cat(parts, 1) - p32[:, :600 * hop]
        assert torch.angle(torch.polar(torch.ones_like(d), d)).abs().max() < 1e-3, name


def _harmonic_vocoder(causal, seed=6):
    torch.manual_seed(seed)
    voc = MelGANVocoder(VocoderConfig(ngf=8, harmonics=4, causal=causal)).eval()
    torch.nn.init.normal_(voc.source_gate.weight, 0.0, 0.1)       # a trained gate is not zero
    return voc


def test_harmonic_vocoder_stream_equals_a_whole_reference_pass():
    """A centred, non-streaming pass (the reference MelGAN with the same excitation added at the
    same layer, no delays anywhere) equals the stream after the vocoder's delay: the
    excitation meets the features of its own frames."""
    from core.vocoder import HarmonicSource
    voc = _harmonic_vocoder(causal=False)
    ref = ReferenceGenerator(ngf=8).eval()
    sd = {k: v for k, v in voc.state_dict().items() if not k.startswith("source")}
    ref_sd = ref.state_dict()
    # the reference has weight-norm pairs; give it the vocoder's plain weights instead
    for k in list(ref_sd):
        if k.endswith(".weight_g"):
            base = k[:-len(".weight_g")]
            w = sd[base + ".weight"]
            ref_sd[base + ".weight_v"] = w.clone()
            ref_sd[base + ".weight_g"] = w.flatten(1).norm(dim=1).view(-1, *[1] * (w.dim() - 1))
        elif k in sd:
            ref_sd[k] = sd[k]
    ref.load_state_dict(ref_sd)
    mel = torch.randn(1, 80, 40) - 3
    f0 = torch.linspace(150, 600, 40)[None]
    e = HarmonicSource(256, 22050, 4)(f0)                                  # [1 x L x 4]
    x = mel
    for i, m in enumerate(ref.model):
        x = m(x)
        if i == voc.inject_at:
            h = x.transpose(1, 2)
            x = (h + voc.source_proj(e) * (1 + voc.source_gate(h))).transpose(1, 2)
    r = x[:, 0]
    voc.reset()
    s = voc(mel, f0)
    d, edge = voc.delay, 8 * 256
    torch.testing.assert_close(s[:, d + edge:], r[:, edge:r.shape[1] - d], atol=1e-5, rtol=0)
    voc.reset()
    assert (voc(mel, f0 * 1.5) - s).abs().max() > 1e-3                    # the pitch matters


@pytest.mark.parametrize("causal", [False, True])
def test_harmonic_vocoder_chunked_equals_whole(causal):
    voc = _harmonic_vocoder(causal)
    f0 = torch.cat([torch.linspace(100, 900, 24)[None], torch.zeros(1, 24)])
    assert_vocoder_streams_exactly(voc, torch.randn(2, 80, 24), f0, seed=7)
