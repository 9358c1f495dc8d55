"""Noise sources: slerp geometry, chunk-invariant streams, drift keeps the prior."""
import numpy as np
import pytest

from core.latent import NoiseSource, SeedWalk, slerp
from tests.conftest import chunkings


def test_slerp_endpoints_and_norm():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(20), rng.standard_normal(20)
    b *= np.linalg.norm(a) / np.linalg.norm(b)
    np.testing.assert_allclose(slerp(a, b, 0.0), a, atol=1e-12)
    np.testing.assert_allclose(slerp(a, b, 1.0), b, atol=1e-12)
    for t in np.linspace(0, 1, 11):   # equal norms: slerp stays on the sphere, lerp does not
        assert abs(np.linalg.norm(slerp(a, b, t)) - np.linalg.norm(a)) < 1e-9
    assert np.linalg.norm(0.5 * a + 0.5 * b) < 0.9 * np.linalg.norm(a)


def test_slerp_guards_parallel_vectors():
    a = np.ones(20)
    for b in (a.copy(), a * (1 + 1e-12), 2 * a):
        out = slerp(a, b, 0.3)
        assert np.all(np.isfinite(out))
        np.testing.assert_allclose(out, 0.7 * a + 0.3 * b, atol=1e-9)


def test_noise_stream_is_identical_for_any_chunking():
    whole = NoiseSource(20, 3, 4).next(100, morph=0.3, drift=0.2, temperature=0.9)
    for name, sizes in chunkings(100):
        src = NoiseSource(20, 3, 4)
        got = np.concatenate([src.next(n, morph=0.3, drift=0.2, temperature=0.9) for n in sizes])
        np.testing.assert_array_equal(got, whole, err_msg=name)


def test_drift_keeps_the_prior_marginal():
    w = SeedWalk(20, 7)
    z = w.advance(20000, drift=0.3)
    assert abs(z.mean()) < 0.05
    assert abs(z.std() - 1.0) < 0.05
    assert abs(np.linalg.norm(z, axis=1).mean() - np.sqrt(20 - 0.5)) < 0.1   # E|z| for chi(20)


def test_drift_zero_and_freeze_hold_the_vector():
    src = NoiseSource(20, 1, 2)
    a = src.next(5, drift=0.0)
    assert np.all(a == a[0])
    b = src.next(5, drift=0.5, freeze=True)
    assert np.all(b == a[0])
    c = src.next(5, drift=0.5)
    assert not np.allclose(c[-1], a[0])


def test_drift_one_gives_fresh_noise_each_frame():
    z = SeedWalk(20, 3).advance(2000, drift=1.0)
    corr = np.mean(np.sum(z[1:] * z[:-1], 1)) / 20
    assert abs(corr) < 0.05


def test_morph_and_temperature():
    src_a, src_b = NoiseSource(20, 1, 2), NoiseSource(20, 1, 2)
    za = src_a.next(1, morph=0.0)[0]
    zb = src_b.next(1, morph=1.0, temperature=0.5)[0]
    np.testing.assert_allclose(za, SeedWalk(20, 1).advance(1, 0)[0], rtol=1e-6)
    np.testing.assert_allclose(zb, 0.5 * SeedWalk(20, 2).advance(1, 0)[0], rtol=1e-6)
    with pytest.raises(ValueError):
        src_a.reseed("c", 3)
