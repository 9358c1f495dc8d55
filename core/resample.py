"""Streaming low-delay resampling from the model rate to a device rate (any rational ratio).

A polyphase FIR: conceptually the input is zero-stuffed up by ``L``, low-pass filtered at
``L * in_rate`` and kept at every ``M``-th sample (``out_rate / in_rate = L / M`` in lowest
terms: 320 / 147 for 22050 -> 48000 Hz, 2 / 1 for 22050 -> 44100 Hz). Only the products
that land on kept samples are computed: output ``k`` is the dot product of phase
``(k * M) mod L`` of the filter with the newest inputs up to ``floor(k * M / L)``.

The filter: a Kaiser-windowed low-pass (:data:`STOPBAND_DB` = 80 dB design rejection, 109
taps at 22050 Hz) turned minimum-phase (homomorphic, magnitude kept). A linear-phase filter
of that magnitude delays everything by half its length (2.5 ms); the minimum-phase one has
its energy at the start and delays the passband by 0.13-0.16 ms (100 Hz - 5 kHz; 0.25 ms at
8 kHz, 0.5 ms at 9.5 kHz for 22050 -> 48000 Hz). Its phase is not linear: the delay
differs by 0.03 ms across 100 Hz - 5 kHz and 0.4 ms up to 9.5 kHz, under the 1-2 ms of
group-delay difference that listening tests find audible (Blauert and Laws 1978). The passband runs
to :data:`PASSBAND_FRACTION` of the lower Nyquist and the stopband starts at that Nyquist
(10.0 kHz and 11025 Hz from 22050 Hz): the model's log-mel spans 0 Hz to its Nyquist
(``MelConfig.fmax`` None -> 11025 Hz), so the passband reaches as near 11025 Hz as the
taps allow; the 80 dB leave 10 dB over the 70 dB that images and aliases must stay below.

Holdback, as :attr:`LowDelayResampler.holdback_s` reports it: the time from an input sample
entering :meth:`~LowDelayResampler.process` to its sound leaving it. The stream keeps no
output back waiting for a block: every call returns every output sample whose inputs have
all arrived (after ``N`` inputs in all, ``ceil(N * out_rate / in_rate)`` outputs; output
``k`` stands for time ``k / out_rate``, the last one before ``N / in_rate``). What remains
is the filter's group delay, and ``holdback_s`` is its largest value over
:data:`HOLDBACK_BAND` (100 Hz - 5 kHz), computed from the designed taps
(``tests/test_resample.py`` measures it through the stream).

Computation per call: one matrix product. The outputs of one cycle (``S * L`` outputs from
``S * M`` inputs, ``S`` whole ratio periods) read a window of ``S * M + taps - 1`` inputs,
and a window starts every ``S * M`` inputs, so the windows of a call are a strided view and
``windows @ cycle_matrix`` gives every output of the cycles it touches (``cycle_matrix``:
``[S * M + taps - 1 x S * L]``, phase ``(r * M) mod L`` placed where output ``r`` reads).
``S`` is 1 unless ``M`` is small against ``taps`` (28 for 2 / 1), so that neighbouring
windows do not overlap by nearly all their length. Blocks are cut so that one product
stays under :data:`MAX_PRODUCT` multiply-adds, or touches at most 3 cycles where one cycle
is larger than a third of that (96 kHz: 3 x 165120): OpenBLAS runs products of that size
on the calling thread (``benchmarks/resampler.py`` reports other threads' CPU time during
its timing; OpenBLAS woke its workers for 8 x 258 x 640 = 1.3 M). Ratios whose cycle matrix would be too large
(:data:`MAX_CYCLE_MATRIX`, e.g. 22050 -> 44101) gather each output's inputs instead.

``in_rate == out_rate`` passes the input through unchanged (holdback 0).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy import signal

STOPBAND_DB = 80.0                 # design rejection; the requirement is 70 dB (test_resample)
PASSBAND_FRACTION = 10000 / 11025  # passband edge / lower Nyquist (10 kHz for 22050 Hz input)
HOLDBACK_BAND = (100.0, 5000.0)    # Hz: the band whose largest group delay is the holdback
MAX_OVERSAMPLE = 512               # prototype rate at most this x in_rate; finer phases interpolated
MAX_CYCLE_MATRIX = 1 << 21         # float32 entries; larger cycles gather per output
MAX_BLOCK_OUT = 2048               # outputs one gathering block computes, about
MAX_PRODUCT = 1 << 18              # multiply-adds of one block's product (see the module notes)


@dataclass(frozen=True)
class PolyphaseDesign:
    """The minimum-phase low-pass of ``in_rate -> in_rate * up / down`` cut into ``up`` phases.

    ``phases``: ``ndarray[up x taps]`` float32, time-reversed: output ``k`` is
    ``phases[(k * down) % up] @ x[i - taps + 1 : i + 1]`` with ``i = (k * down) // up``.
    ``prototype``: the low-pass at ``oversample * in_rate``, gain ``oversample`` (each phase
    sums to about 1). A cycle: ``cycle_out = S * up`` outputs from ``cycle_in = S * down``
    inputs, ``S`` whole ratio periods (more than 1 where ``down`` is small against
    ``taps``, so that the cycle matrix is mostly taps, not zeros). ``cycle_matrix``:
    ``ndarray[cycle_in + taps - 1 x cycle_out]`` float32 (see the module notes), None where
    it would exceed :data:`MAX_CYCLE_MATRIX` entries (then ``S`` is 1).
    """

    in_rate: int
    up: int
    down: int
    taps: int
    passband_hz: float
    stopband_hz: float
    oversample: int
    prototype: np.ndarray
    phases: np.ndarray
    cycle_in: int
    cycle_out: int
    cycle_matrix: np.ndarray | None

    def _dft(self, freqs_hz, weight: np.ndarray) -> np.ndarray:
        """``sum_n weight[n] exp(-2 pi j f n / rate)`` at each of ``freqs_hz``, in bounded memory."""
        rate = self.oversample * self.in_rate
        f = np.atleast_1d(np.asarray(freqs_hz, np.float64))
        n = np.arange(len(weight), dtype=np.float64)
        out = np.empty(len(f), np.complex128)
        step = max(1, (1 << 22) // len(n))
        for i in range(0, len(f), step):
            out[i:i + step] = np.exp(-2j * np.pi * np.outer(f[i:i + step] / rate, n)) @ weight
        return out

    def group_delay_s(self, freqs_hz) -> np.ndarray:
        """Group delay at ``freqs_hz`` (``ndarray[f]`` Hz), seconds."""
        h = self.prototype
        ratio = self._dft(freqs_hz, np.arange(len(h)) * h) / self._dft(freqs_hz, h)
        return np.real(ratio) / (self.oversample * self.in_rate)

    def response_db(self, freqs_hz) -> np.ndarray:
        """Magnitude response at ``freqs_hz`` relative to unity gain, dB."""
        mag = np.abs(self._dft(freqs_hz, self.prototype)) / self.oversample
        return 20 * np.log10(np.maximum(mag, 1e-300))


def minimum_phase_lowpass(in_rate: int, passband_hz: float, stopband_hz: float,
                          oversample: int) -> tuple[np.ndarray, int]:
    """Kaiser low-pass at ``oversample * in_rate`` turned minimum-phase with its magnitude
    kept: ``(ndarray[taps * oversample] float64 with gain oversample, taps)``, ``taps`` the
    length in input samples that :data:`STOPBAND_DB` over the transition band needs."""
    taps, beta = signal.kaiserord(STOPBAND_DB, (stopband_hz - passband_hz) / (0.5 * in_rate))
    n = taps * oversample
    linear = signal.firwin(n, 0.5 * (passband_hz + stopband_hz), window=("kaiser", beta),
                           fs=oversample * in_rate) * oversample
    n_fft = 1 << max(16, math.ceil(math.log2(8 * n)))   # 8x zero padding: 4x loses 3 dB of the 80
    return signal.minimum_phase(linear, "homomorphic", half=False, n_fft=n_fft), taps


def cycle_matrix(phases: np.ndarray, up: int, down: int, periods: int = 1) -> np.ndarray:
    """``ndarray[periods * down + taps - 1 x periods * up]``: column ``r`` holds phase
    ``(r * down) % up`` at rows ``(r * down) // up + j``, the inputs output ``r`` of a cycle
    reads from the cycle's window."""
    taps = phases.shape[1]
    g = np.zeros((periods * down + taps - 1, periods * up), np.float32)
    r = np.arange(periods * up)
    rows = (r * down) // up
    g[rows[None, :] + np.arange(taps)[:, None], r[None, :]] = phases[(r * down) % up].T
    return g


@functools.lru_cache(maxsize=16)
def design(in_rate: int, out_rate: int) -> PolyphaseDesign:
    """The filter of ``in_rate -> out_rate`` (cached: a new stream costs nothing)."""
    g = math.gcd(in_rate, out_rate)
    up, down = out_rate // g, in_rate // g
    nyquist = 0.5 * min(in_rate, out_rate)
    passband = PASSBAND_FRACTION * nyquist
    oversample = min(up, MAX_OVERSAMPLE)
    proto, taps = minimum_phase_lowpass(in_rate, passband, nyquist, oversample)
    # phase p, tap j sits at j + p / up input samples: exact samples of the prototype when
    # oversample == up; otherwise linear interpolation, whose error at 512x (below -100 dB
    # up to 11 kHz) stays under the stopband
    pos = (np.arange(taps)[None, :] * up + np.arange(up)[:, None]) * (oversample / up)
    phases = np.ascontiguousarray(np.interp(pos, np.arange(len(proto)), proto, right=0.0)[:, ::-1],
                                  dtype=np.float32)
    periods = -(-taps // (4 * down))    # a cycle advances >= taps / 4 inputs; its columns stay ~4/5 taps
    if periods * up * (periods * down + taps - 1) > MAX_CYCLE_MATRIX:
        periods = 1
    dense = up * (down + taps - 1) <= MAX_CYCLE_MATRIX
    matrix = cycle_matrix(phases, up, down, periods) if dense else None
    for a in (proto, phases, matrix):
        if a is not None:
            a.setflags(write=False)
    return PolyphaseDesign(in_rate, up, down, taps, passband, nyquist, oversample, proto, phases,
                           periods * down, periods * up, matrix)


class LowDelayResampler:
    """Streaming ``in_rate -> out_rate`` resampler with a minimum-phase polyphase filter.

    ``process(x: ndarray[n] float32) -> ndarray[m] float32``; the state carries across
    calls, so any chunking gives the output of one whole call (``test_resample``). After
    ``N`` inputs in all, ``ceil(N * out_rate / in_rate)`` outputs have come out
    (:meth:`output_count`): every one whose inputs have arrived, none held back.
    ``ratio``: ``out_rate / in_rate`` as a :class:`~fractions.Fraction` in lowest terms.
    """

    def __init__(self, in_rate: int, out_rate: int):
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError("sample rates must be positive")
        self.in_rate, self.out_rate = int(in_rate), int(out_rate)
        self.ratio = Fraction(self.out_rate, self.in_rate)
        self.design = None if self.ratio == 1 else design(self.in_rate, self.out_rate)
        if self.design is not None:
            d = self.design
            self._block_in = self._inputs_per_block(d)
            # _work: a margin of `cycle_in` inputs (a cycle's window may start that far
            # before the history), taps - 1 past inputs, the block, then `cycle_in` zeros
            # (the last cycle's window reads past the newest input, where its columns are 0)
            self._head = d.cycle_in + d.taps - 1
            self._work = np.zeros(self._head + self._block_in + d.cycle_in, np.float32)
        self.reset()

    @staticmethod
    def _inputs_per_block(d: PolyphaseDesign) -> int:
        """Inputs one vectorised block takes. Dense: a block of ``(c - 1) * cycle_in`` inputs
        touches at most ``c`` cycles, ``c`` the most that keep one product under
        :data:`MAX_PRODUCT` multiply-adds, and at least 3 (256 inputs at 48 kHz)."""
        if d.cycle_matrix is None:
            return max(1, MAX_BLOCK_OUT * d.down // d.up)
        cycles = max(3, MAX_PRODUCT // d.cycle_matrix.size)
        return (cycles - 1) * d.cycle_in

    @property
    def holdback_s(self) -> float:
        """Seconds from a sample entering to its sound leaving: the filter's largest group
        delay over :data:`HOLDBACK_BAND` (the stream itself keeps nothing back); 0 for
        equal rates."""
        return 0.0 if self.design is None else _holdback_s(self.in_rate, self.out_rate)

    def group_delay_s(self, freqs_hz) -> np.ndarray:
        """Group delay at ``freqs_hz`` (``ndarray[f]`` Hz), seconds."""
        if self.design is None:
            return np.zeros(np.size(freqs_hz))
        return self.design.group_delay_s(freqs_hz)

    def output_count(self, n_in: int) -> int:
        """Outputs after ``n_in`` inputs in all: ``ceil(n_in * out_rate / in_rate)``."""
        return -((-n_in * self.ratio.numerator) // self.ratio.denominator)

    def reset(self) -> None:
        """Forgets all input: the next call starts as a new stream (the design is kept)."""
        if self.design is not None:
            self._work[:] = 0.0
        self._n_in = 0      # inputs and outputs so far, both reduced by whole filter cycles
        self._n_out = 0

    def process(self, x: np.ndarray) -> np.ndarray:
        """Resamples the next ``ndarray[n]`` (float32, mono); returns ``ndarray[m]`` float32."""
        x = np.asarray(x, np.float32).reshape(-1)
        if self.design is None:
            return x.copy()
        if len(x) <= self._block_in:
            return self._process_block(x)
        return np.concatenate([self._process_block(x[i:i + self._block_in])
                               for i in range(0, len(x), self._block_in)])

    def _process_block(self, x: np.ndarray) -> np.ndarray:
        d, n, head = self.design, len(x), self._head
        work = self._work
        work[head:head + n] = x
        work[head + n:head + n + d.cycle_in] = 0.0     # stale samples past the newest stay out
        total = self._n_in + n
        end = -((-total * d.up) // d.down)
        cycle, r0 = divmod(self._n_out, d.cycle_out)
        # cycle c's window starts at input c * cycle_in - taps + 1, in work at
        # head + c * cycle_in - taps + 1 - n_in (>= 1: n_out = ceil(n_in * up / down))
        start = head - d.taps + 1 + cycle * d.cycle_in - self._n_in
        if d.cycle_matrix is not None:
            n_cycles = -(-(end - cycle * d.cycle_out) // d.cycle_out)
            windows = np.ndarray((n_cycles, d.cycle_in + d.taps - 1), np.float32, work,
                                 start * 4, (d.cycle_in * 4, 4))        # a strided view of work
            y = np.dot(windows, d.cycle_matrix).reshape(-1)[r0:r0 + end - self._n_out]
        else:
            y = self._gathered(start, r0, end - self._n_out)
        keep = d.taps - 1
        work[head - keep:head] = work[head - keep + n:head + n]
        whole = min(total // d.cycle_in, end // d.cycle_out)        # keep the counters small
        self._n_in, self._n_out = total - whole * d.cycle_in, end - whole * d.cycle_out
        return y

    def _gathered(self, start: int, r0: int, m: int) -> np.ndarray:
        """Outputs ``r0 .. r0 + m`` of the cycle whose window starts at ``_work[start]``."""
        d = self.design
        r = np.arange(r0, r0 + m)
        first = start + (r // d.up) * d.down + (r % d.up) * d.down // d.up
        taken = self._work[first[:, None] + np.arange(d.taps)]                  # [m x taps]
        return np.einsum("ij,ij->i", d.phases[(r * d.down) % d.up], taken)


@functools.lru_cache(maxsize=16)
def _holdback_s(in_rate: int, out_rate: int) -> float:
    d = design(in_rate, out_rate)
    lo, hi = HOLDBACK_BAND
    hi = min(hi, 0.5 * d.passband_hz)        # a passband edge's rise is not the holdback
    return float(np.max(d.group_delay_s(np.linspace(lo, hi, 50))))
