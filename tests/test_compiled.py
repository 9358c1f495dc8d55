"""The compiled step (core/compiled.py, core/compiled_step.py) against the eager one.

One module-scoped pair of synths on a small model: compiling its seven graphs takes tens of
seconds without TorchInductor's cache (about 5 s with it), so every test here shares them.
"""
import numpy as np
import pytest
import torch

from core.bundle import load_bundle, save_bundle
from core.compiled import CompiledCall, NotReady, compiler_available
from core.inputs import frame_inputs
from core.latent import NoiseSource
from core.mel import MelConfig
from core.streaming import stream_states
from core.synth import Synth
from tests.conftest import chunkings, small_models

pytestmark = pytest.mark.skipif(compiler_available() is not None, reason=str(compiler_available()))

ROWS = 3
TOL = 1e-5


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory):
    # harmonic excitation: the vocoder takes f0, so the pitch post-filter is in the graphs too
    gen, voc = small_models(n_tokens=4, hidden=32, ngf=8, seed=3, harmonics=4)
    path = tmp_path_factory.mktemp("compiled") / "small.dwb"
    save_bundle(path, name="small", generator=gen, vocoder=voc, mel=MelConfig(),
                mean=torch.linspace(-4, -1, 80), std=torch.full((80,), 1.5), provenance={"test": True})
    return path


def _synth(path, compiled: bool) -> Synth:
    s = Synth(load_bundle(path), mel_match="zero-latency")
    s.settle(ROWS, frames=20)
    if compiled:
        s.prepare_compiled(ROWS, 1)
    return s


@pytest.fixture(scope="module")
def prepared(bundle_path):
    """A compiled synth, for tests that each start it again from the settled state."""
    return _synth(bundle_path, True)


def _fresh_pair(bundle_path, prepared):
    """(eager, compiled) synths in the same settled state; the compiled one reuses the
    module's prepared graphs (settling again resets its state, not its graphs)."""
    prepared.settle(ROWS, frames=20)
    return _synth(bundle_path, False), prepared


def _inputs(cfg, n_steps: int, seed: int = 5):
    noise = NoiseSource(cfg.z_dim, seed, seed + 1)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_steps):
        pitch = rng.uniform(cfg.pitch_min, cfg.pitch_max, size=(ROWS, 1))
        tokens = rng.integers(0, cfg.n_tokens, size=(ROWS, 1))
        out.append(frame_inputs(cfg, noise.next(1, drift=0.05), tokens, pitch, rows=ROWS))
    return out


def _step(s: Synth, x, rows):
    xs = x.select(rows)
    audio, mel = s.step_rows(rows, ROWS, xs.z, xs.tokens, xs.pitch, xs.note)
    return audio.numpy(), mel.numpy()


def test_compiled_steps_equal_eager_steps_for_every_set_of_sounding_rows(bundle_path, prepared):
    eager, compiled = _fresh_pair(bundle_path, prepared)
    before = [c.replays for c in compiled.compiled.calls]
    rng = np.random.default_rng(1)
    cfg = eager.generator.config
    for i, x in enumerate(_inputs(cfg, 64)):
        # every row for two clock cycles, then random subsets (voices starting and stopping)
        rows = list(range(ROWS)) if i < 32 else sorted(rng.choice(ROWS, size=int(rng.integers(1, ROWS + 1)),
                                                                  replace=False).tolist())
        a, ma = _step(eager, x, rows)
        b, mb = _step(compiled, x, rows)
        np.testing.assert_allclose(b, a, atol=TOL, err_msg=f"step {i}, rows {rows}")
        np.testing.assert_allclose(mb, ma, atol=TOL)
    after = [c.replays for c in compiled.compiled.calls]
    # every call ran compiled: the generator's five levels and inputs, the vocoder chain
    assert all(b > a for a, b in zip(before, after)), [c.name for c, a, b in zip(compiled.compiled.calls, before, after) if b <= a]


def test_one_sounding_row_runs_its_own_graphs_and_leaves_the_silent_rows_as_they_were(bundle_path, prepared):
    """A 1-row step runs the 1-row graphs (core/compiled_step.py "Fewer rows"), not the whole
    batch's: equal to the eager step, and the silent rows' states untouched."""
    eager, compiled = _fresh_pair(bundle_path, prepared)
    calls = compiled.compiled.calls
    before = [c.replays_by_rows.get(1, 0) for c in calls]
    cfg = eager.generator.config
    n = 2 * eager.generator.stride                          # every level runs at least twice
    for i, x in enumerate(_inputs(cfg, n, seed=13)):
        rows = [i % ROWS]                                  # a different single row each step
        a, ma = _step(eager, x, rows)
        b, mb = _step(compiled, x, rows)
        np.testing.assert_allclose(b, a, atol=TOL, err_msg=f"step {i}, rows {rows}")
        np.testing.assert_allclose(mb, ma, atol=TOL)
    after = [c.replays_by_rows.get(1, 0) for c in calls]
    assert all(b > a for a, b in zip(before, after)), [c.name for c, a, b in zip(calls, before, after) if b <= a]
    assert compiled.compiled.voice.replays_by_rows[1] - before[-1] == n
    # the same state, row for row, as the eager synth that narrowed with BatchSubset (a
    # state sums more terms than an output: 1e-4 relative)
    pairs = [(eager.generator, compiled.generator), (eager.vocoder, compiled.vocoder), (eager.mel_match, compiled.mel_match)]
    for model_e, model_c in pairs:
        for (me, attr, _, _), (mc, _, _, _) in zip(stream_states(model_e), stream_states(model_c)):
            ve, vc = getattr(me, attr), getattr(mc, attr)
            if ve is not None:
                torch.testing.assert_close(vc, ve, atol=TOL, rtol=1e-4, msg=attr)


def test_after_a_reset_steps_run_eagerly_then_compiled_again_and_stay_equal(bundle_path, prepared):
    eager, compiled = _fresh_pair(bundle_path, prepared)
    cfg = eager.generator.config
    xs = _inputs(cfg, 40, seed=9)
    rows = [0, 2]
    voice = compiled.compiled.voice
    for i, x in enumerate(xs):
        if i == 10:
            eager.reset()
            compiled.reset()
            replays_at_reset = voice.replays
        a, _ = _step(eager, x, rows)
        b, _ = _step(compiled, x, rows)
        np.testing.assert_allclose(b, a, atol=TOL, err_msg=f"step {i}")
    assert voice.replays > replays_at_reset        # compiled again once every state exists


@pytest.mark.parametrize("name,sizes", chunkings(48, seed=4, n_random=1))
def test_chunked_with_compiled_one_frame_steps_equals_whole(bundle_path, prepared, name, sizes):
    """Chunks of one frame run compiled, others eagerly: together they equal one whole call."""
    eager, compiled = _fresh_pair(bundle_path, prepared)
    cfg = eager.generator.config
    x = frame_inputs(cfg, NoiseSource(cfg.z_dim, 2, 3).next(48, drift=0.05), 1,
                     np.linspace(50, 70, 48)[None].repeat(ROWS, 0), rows=ROWS)
    whole, _ = eager.step(x.z, x.tokens, x.pitch, x.note)
    replays = compiled.compiled.voice.replays
    parts, at = [], 0
    for k in sizes:
        frames = slice(at, at + k)
        tokens, pitch = (None if t is None else t[:, frames] for t in (x.tokens, x.pitch))
        note = None if x.note is None else x.note[:, frames]
        parts.append(compiled.step(x.z[:, :, frames], tokens, pitch, note)[0])
        at += k
    np.testing.assert_allclose(torch.cat(parts, 1).numpy(), whole.numpy(), atol=TOL)
    # every 1-frame chunk (the prepared shape) ran compiled, every other one eagerly
    assert compiled.compiled.voice.replays - replays == sizes.count(1)


def test_an_unprepared_signature_is_not_compiled_on_the_fly():
    lin = torch.nn.Linear(4, 4)
    call = CompiledCall(lambda x: (lin(x),), [], "linear")
    with pytest.raises(NotReady):
        call(torch.zeros(2, 4))
    assert call.graphs == {}


def test_a_call_that_cannot_be_traced_fails_once_and_says_why():
    def broken(x):
        raise RuntimeError("no graph here")
    call = CompiledCall(broken, [], "broken")
    call.preparing = True
    with pytest.raises(NotReady):
        call(torch.ones(3, 2))
    assert call.failed == "broken: RuntimeError: no graph here"
    with pytest.raises(NotReady):                          # eager from then on, without retrying
        call(torch.ones(3, 2))


def test_a_second_player_of_the_same_model_reuses_the_compiled_graphs(bundle_path, prepared):
    """A device switch or a hot swap of the same architecture builds a new synth: its graphs
    are this process's already (the weights are inputs, not part of a graph)."""
    import core.compiled as compiled_module

    known = len(compiled_module._COMPILED)
    other = _synth(bundle_path, True)
    assert len(compiled_module._COMPILED) == known
    eager = _synth(bundle_path, False)
    for x in _inputs(eager.generator.config, 20, seed=11):
        a, _ = _step(eager, x, [0, 1, 2])
        b, _ = _step(other, x, [0, 1, 2])
        np.testing.assert_allclose(b, a, atol=TOL)
    assert other.compiled.voice.replays >= 20
