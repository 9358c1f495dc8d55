"""The per-frame token source for token models (pitch comes from the voices, voices.py).

Owned by the engine thread; it reads parameter values and returns ``n`` frames of tokens.
Deterministic from its seed.
"""
from __future__ import annotations

import numpy as np

from .params import TOKEN_MODES


SILENT_BELOW_LOUDEST = 1.5     # log10 mel: a token this far below the loudest stands for silence


def autopilot_transitions(n_tokens: int, token_stats: dict | None) -> np.ndarray | None:
    """The autopilot's Markov matrix ``[n_tokens x n_tokens]`` (rows sum to 1), or None
    without usable statistics: the bundle's token transitions (``token_stats["transitions"]``,
    counted frame to frame on the training audio) with no move into a token whose frames
    are on average ``SILENT_BELOW_LOUDEST`` (log10 mel) quieter than the loudest token's
    (``token_stats["loudness"]``). Such tokens stand for the silence between notes (the
    default bundle's token 14: -4.47 against -3.16 to -2.04 for the others); a walk into one
    muted the autopilot for about 1.5 s at a time (its self-transition is 0.94). A row left
    empty moves to any sounding token alike."""
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


class TokenSource:
    """Token per frame for token models. Modes (parameter ``token_mode``):

    * hold: the ``token`` parameter;
    * sequence: steps through ``sequence`` every ``token_rate`` frames, looping;
    * autopilot: a Markov walk over the bundle's token transition matrix, kept off the
      tokens that stand for silence (:func:`autopilot_transitions`), one move every
      ``token_rate`` frames;
    * reference: a token array (e.g. extracted from a reference file), looped, one per frame.
    """

    def __init__(self, n_tokens: int, token_stats: dict | None = None, seed: int = 0):
        self.n_tokens = n_tokens
        self.sequence: list[int] = list(range(min(n_tokens, 4))) or [0]
        self.reference: np.ndarray | None = None
        self.rng = np.random.default_rng(seed)
        self.transitions = autopilot_transitions(n_tokens, token_stats)
        self.frame = 0
        self.current = 0

    def set_sequence(self, tokens: list[int]) -> None:
        if not tokens:
            raise ValueError("a token sequence needs at least one token")
        self.sequence = [int(t) % max(self.n_tokens, 1) for t in tokens]

    def set_reference(self, tokens: np.ndarray) -> None:
        tokens = np.asarray(tokens, dtype=np.int64).ravel()
        if tokens.size == 0:
            raise ValueError("empty reference token sequence")
        self.reference = tokens % max(self.n_tokens, 1)

    def next(self, n: int, mode: int, token: int, rate: float) -> np.ndarray:
        out = np.empty(n, dtype=np.int64)
        rate = max(1, int(round(rate)))
        name = TOKEN_MODES[int(mode)]
        ref = self.reference         # read once: another thread may replace it whole
        for i in range(n):
            f = self.frame + i
            if name == "hold":
                self.current = int(token)
            elif name == "sequence":
                self.current = self.sequence[(f // rate) % len(self.sequence)]
            elif name == "autopilot":
                if f % rate == 0:
                    if self.transitions is not None:
                        self.current = int(self.rng.choice(self.n_tokens, p=self.transitions[self.current]))
                    else:
                        self.current = int(self.rng.integers(self.n_tokens))
            elif name == "reference" and ref is not None:
                self.current = int(ref[f % len(ref)])
            else:
                self.current = int(token)
            out[i] = self.current
        self.frame += n
        return np.clip(out, 0, max(self.n_tokens - 1, 0))
