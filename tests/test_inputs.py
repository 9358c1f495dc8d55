"""The one builder of per-frame model inputs (core/inputs.py): shapes, the conditions a
model has and only those, tokens modulo n_tokens, rows sharing one noise walk."""
import numpy as np
import pytest
import torch

from core.generator import GeneratorConfig
from core.inputs import frame_inputs
from core.notes import NOTE_DIM, note_clock, note_features

N = 6


def _z(n=N, z_dim=20, seed=0):
    return np.random.default_rng(seed).standard_normal((n, z_dim)).astype(np.float32)


def test_every_condition_of_a_model_that_has_them_all():
    cfg = GeneratorConfig(n_tokens=16, pitch_min=40, pitch_max=80, note_dim=NOTE_DIM)
    z = _z()
    note = note_features(*note_clock([(1, 4)], N))
    x = frame_inputs(cfg, z, np.array([0, 3, 15, 16, 17, 35]), np.linspace(50, 55, N), note, rows=3)
    assert x.rows == 3 and x.frames == N
    assert x.z.shape == (3, 20, N) and x.z.dtype == torch.float32
    for r in range(3):                                            # one walk for every row
        assert np.array_equal(x.z[r].numpy(), z.T)
    assert x.tokens.dtype == torch.long and x.tokens.tolist() == [[0, 3, 15, 0, 1, 3]] * 3
    assert x.pitch.dtype == torch.float32 and np.allclose(x.pitch.numpy(), np.linspace(50, 55, N)[None])
    assert x.note.shape == (3, N, NOTE_DIM) and np.array_equal(x.note[2].numpy(), note)


def test_held_values_and_per_row_values():
    cfg = GeneratorConfig(n_tokens=4, pitch_min=40, pitch_max=80)
    x = frame_inputs(cfg, _z(), 6, 61.5, rows=2)
    assert x.tokens.tolist() == [[2] * N] * 2 and torch.all(x.pitch == 61.5)
    per_row = np.array([[48.0] * N, [67.0] * N], np.float32)
    x = frame_inputs(cfg, _z(), np.arange(2 * N).reshape(2, N), per_row, rows=2)
    assert x.tokens.tolist() == [[0, 1, 2, 3, 0, 1], [2, 3, 0, 1, 2, 3]]
    assert np.array_equal(x.pitch.numpy(), per_row)
    sub = x.select([1])
    assert sub.rows == 1 and sub.tokens.tolist() == [[2, 3, 0, 1, 2, 3]] and torch.all(sub.pitch == 67.0)
    assert torch.equal(sub.z[0], x.z[1])
    per_row[:] = 0                                                # the inputs are copies
    assert torch.all(x.pitch[1] == 67.0)


def test_conditions_a_model_lacks_are_dropped():
    cfg = GeneratorConfig(n_tokens=0, pitch_min=0, pitch_max=0)
    assert not cfg.has_pitch and not cfg.note_dim
    x = frame_inputs(cfg, _z(), 3, 60.0, note_features(*note_clock([(0, 3)], N)))
    assert x.tokens is None and x.pitch is None and x.note is None and x.z.shape == (1, 20, N)
    x = frame_inputs(GeneratorConfig(n_tokens=8), _z())
    assert x.tokens is None                                       # None: the generator's default


def test_shapes_that_do_not_fit_are_refused():
    cfg = GeneratorConfig(n_tokens=4, pitch_min=40, pitch_max=80, note_dim=NOTE_DIM)
    with pytest.raises(ValueError, match="z must be"):
        frame_inputs(cfg, _z(z_dim=8))
    with pytest.raises(ValueError, match="per-frame values"):
        frame_inputs(cfg, _z(), np.zeros(N + 1, np.int64))
    with pytest.raises(ValueError, match="per-frame values"):
        frame_inputs(cfg, _z(), None, np.zeros((3, N)), rows=2)
    with pytest.raises(ValueError, match="note features"):
        frame_inputs(cfg, _z(), None, None, np.zeros((N, NOTE_DIM - 1), np.float32))
