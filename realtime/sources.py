"""The per-frame token source for token models (pitch comes from the voices, voices.py).

Owned by the engine thread; it reads parameter values and returns ``n`` frames of tokens.
Deterministic from its seed.
"""
from __future__ import annotations

import numpy as np

from core.autopilot import SILENT_BELOW_LOUDEST, AutopilotChain, autopilot_transitions  # noqa: F401 (re-exported)

from .params import TOKEN_MODES


class TokenSource:
    """Token per frame for token models. Modes (parameter ``token_mode``):

    * hold: the ``token`` parameter;
    * sequence: steps through ``sequence`` every ``token_rate`` frames, looping;
    * autopilot: a Markov walk over the bundle's token transition matrix, kept off the
      tokens that stand for silence (:class:`core.autopilot.AutopilotChain`), one move every
      ``token_rate`` frames;
    * reference: a token array (e.g. extracted from a reference file), looped, one per frame;
    * input: the live input's tokens, one per frame (:attr:`input_tokens`, which the engine
      sets before each call, :mod:`realtime.live_input`; -1: the token holds; no input: the
      ``token`` parameter).

    Synced to a tempo (:attr:`slots` set, core/tempo.py), sequence and autopilot move at the
    first frame of each beat slot instead of every ``token_rate`` frames (the sequence's
    step is the slot number, so a MIDI Start restarts it) and hold while the slot is -1;
    :attr:`slots` None (free tempo) is the ``token_rate`` behaviour exactly
    (``tests/test_tempo.py::test_free_tempo_gives_the_token_rate_tokens``).
    """

    def __init__(self, n_tokens: int, token_stats: dict | None = None, seed: int = 0):
        self.n_tokens = n_tokens
        self.sequence: list[int] = list(range(min(n_tokens, 4))) or [0]
        self.reference: np.ndarray | None = None
        self.rng = np.random.default_rng(seed)
        self.autopilot = AutopilotChain(n_tokens, token_stats, self.rng)
        self.frame = 0
        self.current = 0
        self.input_tokens: np.ndarray | None = None   # live input's tokens for the next call (engine)
        self.slots: np.ndarray | None = None     # beat slot per frame of the next call (engine), or None
        self._slot = -1                         # the slot of the last synced frame

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
        live = self.input_tokens
        slots = self.slots           # this step's beat slots (core/tempo.py), None: free tempo
        if slots is not None and len(slots) != n:
            raise ValueError(f"{len(slots)} beat slots for {n} frames")
        for i in range(n):
            f = self.frame + i
            if name == "hold":
                self.current = int(token)
            elif name == "sequence" and slots is not None:
                if slots[i] >= 0:
                    self.current = self.sequence[int(slots[i]) % len(self.sequence)]
            elif name == "sequence":
                self.current = self.sequence[(f // rate) % len(self.sequence)]
            elif name == "autopilot" and slots is not None:
                if slots[i] >= 0 and slots[i] != self._slot:
                    self.current = self.autopilot.move(self.current)
            elif name == "autopilot":
                if f % rate == 0:
                    self.current = self.autopilot.move(self.current)
            elif name == "reference" and ref is not None:
                self.current = int(ref[f % len(ref)])
            elif name == "input" and live is not None:
                if i < len(live) and live[i] >= 0:
                    self.current = int(live[i])
            else:
                self.current = int(token)
            out[i] = self.current
            if slots is not None:
                self._slot = int(slots[i])
        self.frame += n
        return np.clip(out, 0, max(self.n_tokens - 1, 0))
