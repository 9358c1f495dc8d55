"""Silence gate: where the mel asks for silence, the voice plays digital silence.

Asked for silence (every band of a mel frame within 20 dB of the floor, about -97 dBFS:
:func:`core.mel.asks_for_silence`), an inversion still plays what the floor stands for: the
vocoder about -98 dBFS, Griffin-Lim -99 dBFS. Under a quiet clip's notes (the vibraphone's
high notes peak near -40 dBFS) that is 59 dB below the clip, short of issue "sound"'s 70 dB
(docs/default-model.md "Silence gate and pitch at the fundamental"), and no inversion of that mel does better. The gate
closes there: each frame's gain is 1 where the mel sounds and 0 where it asks for silence,
and it moves linearly across a frame from the last frame's gain, so it opens and closes
without a click::

    g[n] = g_prev + (g_k - g_prev) * r,   r = 1/hop .. 1 across frame k
    y[n] = g[n] x[n]

Frame ``k``'s window covers the input samples ``k hop - 384 .. k hop + 640`` (MelGAN's
padding, :mod:`core.mel`), so a frame asking for silence had nothing of the input above that
threshold in the hop it plays, ``k hop .. (k + 1) hop`` (only sound under about -97 dBFS, or
under the window's tapered edges, can be there): a gate closing over that hop cuts nothing
above the threshold, and one opening over the hop after a silent frame is open before the
input's first sound over it can land (``tests/test_silence_gate.py``: copy synthesis of a
tone between silences changes no sample within 128 of the tone). No latency
(:attr:`SilenceGate.delay` is 0).

Streaming: ``forward(audio, logmel)`` takes the next ``n`` hops of audio ``Tensor[B x n*hop]``
and the ``n`` mel frames that made them; the audio may lag its frames by ``lag`` samples (the
look-ahead of the stages before the gate). The state is whether the stream has started
``Tensor[B]``, how closed the gate was after the last frame ``Tensor[B]`` (``1 - gain``) and,
with a lag, the per-sample closure the audio has not reached yet ``Tensor[B x lag]``. A stream
starts where its first frame asks: closed from its first sample when it starts in silence (the
vocoder's own start-up, -53 dBFS in the first hop, is cut with the rest), open when it starts
with sound. Zero state is a fresh stream, so a row :class:`core.streaming.BatchSubset` never
stepped starts the same way. Any chunking in whole hops gives the samples of one whole call.
"""
from __future__ import annotations

import torch
from torch import nn

from .mel import asks_for_silence
from .streaming import frame_ramp, keep_state

# core.synth.Synth and core.resynth.resynthesize build their gate when made while this is on;
# off: the chain without one (the baseline of benchmarks/bench_voices.py --silence-gate off and
# of tests/test_silence_gate.py)
ENABLED = True


class SilenceGate(nn.Module):
    """The gate of the module docstring for ``hop``-sample frames. ``lag``: samples by which
    the audio given lags the mel frames given with it; ``log_floor``: the mel's floor
    (linear, :class:`core.mel.MelConfig` ``log_floor``)."""

    state_attrs = (("_started", 0), ("_closed", 0), ("_lagged", 0))
    is_stream_state = True

    def __init__(self, hop: int, lag: int = 0, log_floor: float = 1e-5):
        super().__init__()
        if lag < 0:
            raise ValueError(f"silence gate lag must be at least 0, got {lag}")
        self.hop, self.lag, self.log_floor = int(hop), int(lag), float(log_floor)
        self._started: torch.Tensor | None = None   # [B] 1 once a row has played a frame, else 0
        self._closed: torch.Tensor | None = None    # [B] 1 - the last frame's gain
        self._lagged: torch.Tensor | None = None    # [B x lag] 1 - gain of samples not yet reached

    @property
    def delay(self) -> int:
        return 0

    def reset(self) -> None:
        self._started = self._closed = self._lagged = None

    def closure(self, logmel: torch.Tensor) -> torch.Tensor:
        """``1 - gain`` for each sample the frames of ``logmel Tensor[B x n_mels x n]`` make,
        before the lag: ``Tensor[B x n*hop]``, ramping across each frame from the frame
        before's value to its own (1 where silence is asked for, 0 where the mel sounds)."""
        b, n = logmel.shape[0], logmel.shape[2]
        closed = asks_for_silence(logmel.float(), self.log_floor).float()            # [B x n]
        last = self._fresh_or(self._closed, closed[:, 0])
        prev = torch.cat([last[:, None], closed[:, :-1]], 1)
        keep_state(self, "_closed", closed[:, -1])
        ramp = frame_ramp(self.hop, logmel.device)                                      # [hop]
        return (prev[..., None] + (closed - prev)[..., None] * ramp).reshape(b, n * self.hop)

    def _fresh_or(self, kept: torch.Tensor | None, first: torch.Tensor) -> torch.Tensor:
        """A state row ``kept`` where the row has started, else ``first`` (the value a fresh
        row starts from), broadcast along the state's trailing dimensions."""
        started = self._started
        if kept is None or started is None or started.shape[0] != first.shape[0]:
            return first
        on = started.view(-1, *([1] * (first.dim() - 1))) > 0
        return torch.where(on, kept, first)

    def forward(self, audio: torch.Tensor, logmel: torch.Tensor) -> torch.Tensor:
        """``audio Tensor[B x n*hop]`` and the mel frames that made it ``Tensor[B x n_mels x
        n]`` (log10) -> ``Tensor[B x n*hop]`` float32, silent where silence is asked for."""
        x = audio.float()
        shut = self.closure(logmel)
        if self.lag:
            lagged = self._fresh_or(self._lagged, shut[:, :1].expand(-1, self.lag))
            both = torch.cat([lagged, shut], 1)
            keep_state(self, "_lagged", both[:, both.shape[1] - self.lag:])
            shut = both[:, :shut.shape[1]]
        keep_state(self, "_started", shut.new_ones(x.shape[0]))
        return x * (1.0 - shut)
