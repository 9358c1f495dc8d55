"""The fast paths of the model step give the eager step's output: the static-buffer step of
the CUDA graphs (on the CPU without recording, on a GPU recorded), and BatchSubset's views
for a run of rows."""
import numpy as np
import pytest
import torch

from core.bundle import load_bundle
from core.synth import Synth
from tests.conftest import chunkings

FRAMES = 40
# which of 3 rows sound at each step: all, a run (views), a gather, one, a run again
ROW_PATTERN = [[0, 1, 2], [1, 2], [0, 2], [1], [0, 1], [0, 1, 2], [2]]


def inputs(frames: int, rows: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(rows, 20, frames, generator=g)
    tok = torch.randint(0, 4, (rows, frames), generator=g)
    pit = 40 + 40 * torch.rand(rows, frames, generator=g)
    return z, tok, pit


def play(synth: Synth, sizes: list[int], z, tok, pit, settle: bool = True):
    """Steps ``synth`` (3 rows) through ``sizes`` with ROW_PATTERN's rows; returns the audio
    of every step and row, rows that rest as zeros: ``Tensor[3 x samples]``."""
    if settle:
        synth.settle(3, frames=20)
    else:
        synth.reset()
    out, i = [], 0
    for k, n in enumerate(sizes):
        rows = ROW_PATTERN[k % len(ROW_PATTERN)]
        audio, mel = synth.step_rows(rows, 3, z[rows, :, i:i + n], tok[rows, i:i + n], pit[rows, i:i + n])
        full = torch.zeros(3, n * synth.hop)
        full[rows] = audio.cpu()
        out.append(full)
        i += n
    return torch.cat(out, 1)


@pytest.mark.parametrize("mel_match", ["full", "zero-latency", "off"])
def test_static_buffer_step_equals_the_eager_step_for_any_rows_and_chunking(small_bundle, mel_match):
    z, tok, pit = inputs(FRAMES)
    eager = Synth(load_bundle(small_bundle), mel_match=mel_match, graphs=False)
    static = Synth(load_bundle(small_bundle), mel_match=mel_match, graphs=True)
    for name, sizes in chunkings(FRAMES, seed=4, n_random=2):
        want = play(eager, sizes, z, tok, pit)
        got = play(static, sizes, z, tok, pit)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0, msg=name)
        assert static.graphs is not None and static.graphs.failed is None, name
        assert static.graphs.replays >= len(sizes) - 1, name      # every step after the first ran static
        assert static.generator.frame == eager.generator.frame == 20 + FRAMES


def test_static_buffer_step_waits_for_the_steady_state_and_restarts_after_a_reset(small_bundle):
    """From a reset (no state yet) the first frames run eagerly; a reset drops the buffers."""
    z, tok, pit = inputs(FRAMES)
    eager = Synth(load_bundle(small_bundle), graphs=False)
    static = Synth(load_bundle(small_bundle), graphs=True)
    sizes = [1] * 20 + [3] * 6 + [2]
    want = play(eager, sizes, z, tok, pit, settle=False)
    got = play(static, sizes, z, tok, pit, settle=False)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert static.graphs.replays == len(sizes) - 16      # frames 0..15 eager (the frame clock's stride)
    static.reset()
    assert static.graphs is None
    torch.testing.assert_close(play(static, sizes, z, tok, pit, settle=False), want, atol=1e-5, rtol=0)


def test_a_run_of_rows_steps_as_views_and_the_rest_keep_their_state(small_bundle):
    full, pair = Synth(load_bundle(small_bundle)), Synth(load_bundle(small_bundle))
    full.reset()
    pair.reset()
    z, tok, pit = inputs(20)
    full.step(z[:, :, :5], tok[:, :5], pit[:, :5])
    pair.step(z[1:, :, :5], tok[1:, :5], pit[1:, :5])
    before = full.vocoder.model[1]._cache[0].clone()
    for a, b in [(5, 6), (6, 9), (9, 20)]:
        got, _ = full.step_rows([1, 2], 3, z[1:, :, a:b], tok[1:, a:b], pit[1:, a:b])
        want, _ = pair.step(z[1:, :, a:b], tok[1:, a:b], pit[1:, a:b])
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    assert torch.equal(full.vocoder.model[1]._cache[0], before)


def test_a_step_returns_tensors_that_later_steps_do_not_change(small_bundle):
    """Outputs may share memory with the state (a mel with the generator's held samples);
    later steps, of all rows or some, must not write into them."""
    s = Synth(load_bundle(small_bundle), graphs=True)
    s.settle(3, frames=20)
    z, tok, pit = inputs(12)
    audio, mel = s.step(z[:, :, :4], tok[:, :4], pit[:, :4])
    kept = audio.clone(), mel.clone()
    s.step_rows([0, 1], 3, z[:2, :, 4:8], tok[:2, 4:8], pit[:2, 4:8])
    s.step(z[:, :, 8:], tok[:, 8:], pit[:, 8:])
    assert torch.equal(audio, kept[0]) and torch.equal(mel, kept[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
@pytest.mark.parametrize("mel_match", ["full", "zero-latency"])
def test_cuda_graph_step_equals_the_eager_step_on_the_gpu(small_bundle, mel_match):
    dev = torch.device("cuda")
    z, tok, pit = inputs(FRAMES)
    eager = Synth(load_bundle(small_bundle, dev), mel_match=mel_match, graphs=False)
    graphs = Synth(load_bundle(small_bundle, dev), mel_match=mel_match)   # on by default with CUDA
    assert graphs.use_graphs
    for name, sizes in chunkings(FRAMES, seed=5, n_random=1):
        want = play(eager, sizes, z, tok, pit)
        got = play(graphs, sizes, z, tok, pit)
        assert graphs.graphs.failed is None, graphs.graphs.failed
        assert graphs.graphs.record and graphs.graphs.replays >= len(sizes) - 1, name
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0, msg=name)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA GPU")
def test_cuda_graph_step_of_the_default_bundle_with_four_voices():
    """The shipped bundle at 1-frame steps, 4 voices, some resting: graphs == eager."""
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "models" / "default.dwb"
    dev = torch.device("cuda")
    z = torch.randn(4, 20, 48, generator=torch.Generator().manual_seed(7))
    pit = torch.full((4, 48), 60.0) + torch.arange(4.0)[:, None] * 5
    outs = []
    for on in (False, True):
        s = Synth(load_bundle(path, dev), mel_match="low-latency", graphs=on)
        s.settle(4)
        got = []
        for i in range(48):
            rows = [0, 1, 2, 3] if i % 5 else [0, 2]
            a, _ = s.step_rows(rows, 4, z[rows, :, i:i + 1], None, pit[rows, i:i + 1])
            got.append(np.asarray(a.cpu()))
        outs.append(got)
        if on:
            assert s.graphs.failed is None and s.graphs.replays == 48
    for a, b in zip(*outs):
        np.testing.assert_allclose(b, a, atol=1e-5, rtol=0)


def test_conditions_left_out_take_the_generator_defaults_in_the_static_step(tmp_path):
    """A step without tokens after one with them (of the same frame clock phase): the static
    inputs fall back to token 0."""
    from core.bundle import save_bundle
    from core.mel import MelConfig
    from tests.conftest import small_models
    gen, voc = small_models()
    with torch.no_grad():                  # make the token condition audible
        for lin in gen.inject:
            lin.weight[:, 20:24] *= 300
    path = tmp_path / "tokens.dwb"
    save_bundle(path, name="t", generator=gen, vocoder=voc, mel=MelConfig(), mean=torch.full((80,), -3.0),
                std=torch.ones(80))
    z, tok, pit = inputs(24)
    tok = 1 + tok % 3                      # never the default token 0
    outs = []
    for on in (False, True):
        s = Synth(load_bundle(path), graphs=on)
        s.settle(3, frames=20)
        got = [s.step(z[:, :, i:i + 2], tok[:, i:i + 2] if i % 6 else None, pit[:, i:i + 2])[0]
               for i in range(0, 24, 2)]
        outs.append(torch.cat(got, 1))
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=0)
    assert s.graphs.replays == 12
