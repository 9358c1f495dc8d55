"""Latent (noise) sources: deterministic per-frame noise streams for the generator.

Each seed drives an AR(1) random walk ``w[t] = a w[t-1] + sqrt(1 - a^2) e[t]``,
``e ~ N(0, I)``, started at ``w[0] ~ N(0, I)``: every frame's marginal stays the prior
N(0, I) (so ``|w|`` stays on the prior's shell, about sqrt(z_dim)) whatever the drift.
``drift`` in [0, 1] sets ``sqrt(1 - a^2)``: 0 holds the vector, 1 draws fresh noise each
frame. Two walks (seed A, seed B) are blended by spherical interpolation (``morph``),
scaled by ``temperature``; ``freeze`` stops both walks.

Draws come from numpy's PCG64 one frame at a time, so the stream is identical for any
chunking of the frames (tested).
"""
from __future__ import annotations

import numpy as np


def slerp(p0: np.ndarray, p1: np.ndarray, t: float | np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Spherical interpolation along the last axis (GANSynth). Falls back to linear
    interpolation when the angle is near 0 (or pi), where sin(omega) vanishes."""
    p0 = np.asarray(p0, dtype=np.float64)
    p1 = np.asarray(p1, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)[..., None] if np.ndim(t) else float(t)
    n0 = np.linalg.norm(p0, axis=-1, keepdims=True)
    n1 = np.linalg.norm(p1, axis=-1, keepdims=True)
    cos = np.clip(np.sum(p0 * p1, -1, keepdims=True) / np.maximum(n0 * n1, 1e-30), -1.0, 1.0)
    omega = np.arccos(cos)
    so = np.sin(omega)
    safe = so > eps
    so_safe = np.where(safe, so, 1.0)
    a = np.where(safe, np.sin((1 - t) * omega) / so_safe, 1 - t)
    b = np.where(safe, np.sin(t * omega) / so_safe, t)
    return a * p0 + b * p1


class SeedWalk:
    """One AR(1) walk from a seed; ``advance(n, drift)`` -> ``ndarray[n x dim]``."""

    def __init__(self, dim: int, seed: int):
        self.dim, self.seed = dim, int(seed)
        self.rng = np.random.Generator(np.random.PCG64(self.seed))
        self.w = self.rng.standard_normal(dim)
        self.started = False

    def advance(self, n: int, drift: float, frozen: bool = False) -> np.ndarray:
        out = np.empty((n, self.dim))
        b = float(np.clip(drift, 0.0, 1.0))
        a = np.sqrt(1.0 - b * b)
        for i in range(n):
            if self.started and not frozen and b > 0:
                self.w = a * self.w + b * self.rng.standard_normal(self.dim)
            self.started = True
            out[i] = self.w
        return out


class NoiseSource:
    """Per-frame noise ``ndarray[n x dim]`` (float32): slerp(walk A, walk B, morph) * temperature.
    ``morph`` is one number or one per frame (``ndarray[n]``, a sweep)."""

    def __init__(self, dim: int, seed_a: int = 0, seed_b: int = 1):
        self.dim = dim
        self.a = SeedWalk(dim, seed_a)
        self.b = SeedWalk(dim, seed_b)

    def reseed(self, which: str, seed: int) -> None:
        if which not in ("a", "b"):
            raise ValueError("which must be 'a' or 'b'")
        setattr(self, which, SeedWalk(self.dim, seed))

    def next(self, n: int, morph: float = 0.0, drift: float = 0.0, temperature: float = 1.0,
             freeze: bool = False) -> np.ndarray:
        za = self.a.advance(n, drift, freeze)
        zb = self.b.advance(n, drift, freeze)
        m = np.clip(np.asarray(morph, dtype=np.float64), 0, 1)
        if m.ndim and m.shape != (n,):
            raise ValueError(f"morph needs one value or {n}, got shape {m.shape}")
        return (slerp(za, zb, m if m.ndim else float(m)) * temperature).astype(np.float32)
