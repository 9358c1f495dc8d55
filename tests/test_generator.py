"""Streamable UNAGAN generator: chunked equals whole, conditions act at once, reset."""
import pytest
import torch

from core.generator import GeneratorConfig, StreamingUNAGAN, pitch_features
from tests.conftest import chunkings



@pytest.fixture(autouse=True)
def _no_grad():
    """Inference only here; a module-level switch would leak into other test modules."""
    with torch.no_grad():
        yield
T = 70


def make(**kw):
    torch.manual_seed(0)
    return StreamingUNAGAN(GeneratorConfig(hidden=32, **kw)).eval()


def run(g, z, tok, pit, sizes):
    g.reset()
    outs, i = [], 0
    for n in sizes:
        outs.append(g(z[:, :, i:i + n], None if tok is None else tok[:, i:i + n],
                      None if pit is None else pit[:, i:i + n]))
        i += n
    return torch.cat(outs, 2)


def test_paper_size():
    n = sum(p.numel() for p in StreamingUNAGAN().parameters())
    # reference 24.5M with bidirectional GRUs; unidirectional GRUs halve the GRU weights
    assert 15e6 < n < 18e6


@pytest.mark.parametrize("conds", ["none", "tokens+pitch"])
def test_chunked_equals_whole(conds):
    kw = dict(n_tokens=8, pitch_min=40, pitch_max=80) if conds != "none" else {}
    g = make(**kw)
    torch.manual_seed(1)
    z = torch.randn(2, 20, T)
    tok = torch.randint(0, 8, (2, T)) if kw else None
    pit = 40 + 40 * torch.rand(2, T) if kw else None
    whole = run(g, z, tok, pit, [T])
    assert whole.shape == (2, 80, T)
    for name, sizes in chunkings(T, seed=2):
        torch.testing.assert_close(run(g, z, tok, pit, sizes), whole, atol=1e-5, rtol=0, msg=name)


def test_causal_and_conditions_act_on_the_same_frame():
    g = make(n_tokens=8, pitch_min=40, pitch_max=80)
    torch.manual_seed(2)
    z = torch.randn(1, 20, 40)
    tok = torch.zeros(1, 40, dtype=torch.long)
    pit = torch.full((1, 40), 60.0)
    base = run(g, z, tok, pit, [40])
    for change_at in (5, 21):        # one frame inside a 16-frame noise step, one just after
        tok2, pit2, z2 = tok.clone(), pit.clone(), z.clone()
        tok2[:, change_at:] = 5
        out = run(g, z, tok2, pit, [40])
        assert torch.equal(out[:, :, :change_at], base[:, :, :change_at])    # causal
        assert (out[:, :, change_at] - base[:, :, change_at]).abs().max() > 1e-3  # acts at once
        pit2[:, change_at:] = 72
        out = run(g, z, tok, pit2, [40])
        assert torch.equal(out[:, :, :change_at], base[:, :, :change_at])
        assert (out[:, :, change_at] - base[:, :, change_at]).abs().max() > 1e-3
        z2[:, :, change_at:] = torch.randn(1, 20, 40 - change_at)
        out = run(g, z2, tok, pit, [40])
        assert torch.equal(out[:, :, :change_at], base[:, :, :change_at])
        assert (out[:, :, change_at] - base[:, :, change_at]).abs().max() > 1e-3


def test_reset_restores_the_initial_state():
    g = make()
    z = torch.randn(1, 20, 20)
    first = run(g, z, None, None, [20])
    g(torch.randn(1, 20, 13))
    g.reset()
    assert torch.equal(g(z), first)


def test_pitch_features_interpolate_between_semitones():
    f = pitch_features(torch.tensor([[40.0, 60.25, 200.0]]), 40, 80)
    assert f.shape == (1, 3, 41)
    assert f[0, 0, 0] == 1 and f[0, 0].sum() == 1
    assert torch.allclose(f[0, 1, 20:22], torch.tensor([0.75, 0.25]))
    assert f[0, 2, 40] == 1      # clamped to the range
