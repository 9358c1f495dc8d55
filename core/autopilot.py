"""The token autopilot: a Markov chain over a token model's tokens, from the bundle's token
statistics, kept off the tokens that stand for silence.

Pure (no threads): the player's token source (:class:`realtime.sources.TokenSource`, the
``autopilot`` token mode) and evaluation (:func:`training.evaluate.generate`) walk the
same chain.
"""
from __future__ import annotations

import numpy as np


SILENT_BELOW_LOUDEST = 1.5     # log10 mel: a token this far below the loudest stands for silence


def autopilot_transitions(n_tokens: int, token_stats: dict | None) -> np.ndarray | None:
    """The autopilot's Markov matrix ``[n_tokens x n_tokens]`` (rows sum to 1), or None
    without usable statistics: the bundle's token transitions (``token_stats["transitions"]``,
    counted frame to frame on the training audio) with no move into a token whose frames
    are on average ``SILENT_BELOW_LOUDEST`` (log10 mel) quieter than the loudest token's
    (``token_stats["loudness"]``). Such tokens stand for the silence between notes; a walk
    into one held itself there (a self-transition near 1) and muted the autopilot for
    seconds at a time. A row left empty moves to any sounding token alike.
    Guarded by ``tests/test_realtime_units.py::test_the_autopilot_never_walks_into_a_token_that_stands_for_silence``."""
    if not token_stats or token_stats.get("transitions") is None:
        return None
    t = np.asarray(token_stats["transitions"], dtype=np.float64)
    if t.shape != (n_tokens, n_tokens) or not np.all(t >= 0) or not np.all(t.sum(1) > 0):
        return None
    loud = token_stats.get("loudness")
    if loud is not None and len(loud) == n_tokens:
        loud = np.asarray(loud, dtype=np.float64)
        sounding = loud >= loud.max() - SILENT_BELOW_LOUDEST
        t = t * sounding[None, :]
        t[t.sum(1) == 0] = sounding
    return t / t.sum(1, keepdims=True)


class AutopilotChain:
    """One move of the autopilot at a time: from token ``current`` to the next, drawn by
    ``rng`` from :func:`autopilot_transitions`, or uniformly among all tokens where the
    bundle has no usable statistics (:attr:`transitions` is None)."""

    def __init__(self, n_tokens: int, token_stats: dict | None, rng: np.random.Generator):
        self.n_tokens = n_tokens
        self.rng = rng
        self.transitions = autopilot_transitions(n_tokens, token_stats)

    def move(self, current: int) -> int:
        if self.transitions is not None:
            return int(self.rng.choice(self.n_tokens, p=self.transitions[current]))
        return int(self.rng.integers(self.n_tokens))
