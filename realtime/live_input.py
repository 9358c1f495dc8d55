"""Live input on the engine thread: what the input device delivered, analysed, handed to the
generator one frame per generated frame.

Each engine step :meth:`LiveInput.feed` reads the :class:`~realtime.audio_input.AudioInput`
(never waits), runs the streaming analysis (:class:`core.input_analysis.InputAnalyzer`:
token and pitch per model frame) and appends the frames to a queue. Every generated frame
takes the next analysed frame: its token goes to the token source (token mode "input",
:class:`~realtime.sources.TokenSource`), its pitch (while voiced; the last voiced pitch is
held when unvoiced) to the voices when ``pitch_follow`` is on. Input and output run on
their own clocks and blocks (JACK: the same clock, a block each per period), so the queue
first fills to :attr:`LiveInput.prebuffer` frames (one device block's worth, plus one) before
frames are taken: the jitter buffer. A generated frame that finds the queue empty takes no
frame (its token and pitch hold; counted in ``starved_frames``) and the queue fills again; a
queue grown past twice the jitter buffer plus :data:`SLACK_FRAMES` (a stalled engine's
backlog) drops its oldest frames back to the jitter buffer (``dropped_frames``), and a queue
that never fell to the jitter buffer for :data:`TRIM_AFTER_FRAMES` generated frames (the
start's backlog, an input clock faster than the output's) drops what it held beyond it
(``dropped_frames`` too): what waits in the queue is latency.

Input samples that are NaN or infinite (a client's fault) are analysed, kept and recorded as
zeros and counted (``nonfinite_samples``): the analysis state is never poisoned.

Taps (engine thread writes, others read by value): per generated frame, the index of the
analysed frame it took (-1: none), its token and the pitch asked for, in circular arrays of
:data:`TAP_FRAMES`; the input level (peak, RMS, dBFS). For tests, :meth:`LiveInput.keep`
stores the input consumed (device rate) in a preallocated array; ``--record-input WAV``
hands it to a :class:`~realtime.recorder.Recorder`.

Owned by the engine thread, except ``keep`` / ``recorder``, set before the engine starts
(or a reference replaced whole).
"""
from __future__ import annotations

import math

import numpy as np

from core.input_analysis import InputAnalyzer, no_frames

TAP_FRAMES = 1 << 16        # 12.7 minutes of frames at 22050 / 256
SLACK_FRAMES = 4
TRIM_AFTER_FRAMES = 86      # one second of frames at 22050 / 256
FLOOR_DBFS = -120.0


def dbfs(x: float) -> float:
    return 20.0 * math.log10(x) if x > 10 ** (FLOOR_DBFS / 20) else FLOOR_DBFS


def input_status(stats: dict, sep: str = "  ") -> str:
    """The live input's part of a status line from engine ``stats`` (empty without one):
    level, overruns, input-to-output latency."""
    if "input_peak_dbfs" not in stats:
        return ""
    return (f"{sep}input {stats['input_peak_dbfs']:.0f} dBFS ({stats['input_rms_dbfs']:.0f} rms)  "
            f"overruns {stats['input_overruns']}  in-to-out {stats['input_to_output_ms']:.0f} ms")


class LiveInput:
    def __init__(self, audio_input, bundle):
        self.input = audio_input
        self.analyzer = InputAnalyzer(bundle, audio_input.samplerate)
        self.frame_s = bundle.hop / bundle.sample_rate
        self._q_tok = np.zeros(0, np.int64)
        self._q_midi = np.zeros(0)
        self._q_idx = np.zeros(0, np.int64)
        self.frames_analysed = 0
        self.prebuffer = 2
        self._primed = False
        self.starved_frames = 0
        self.dropped_frames = 0
        self.nonfinite_samples = 0      # NaN/Inf input samples, analysed (and kept) as zeros
        self.held_pitch: float | None = None
        self.peak_dbfs = FLOOR_DBFS
        self.rms_dbfs = FLOOR_DBFS
        self.used_frame = np.full(TAP_FRAMES, -1, np.int64)
        self.used_token = np.full(TAP_FRAMES, -1, np.int64)
        self.used_pitch = np.full(TAP_FRAMES, np.nan, np.float32)
        self.tap_written = 0
        self.queue_frames: float | None = None     # the queue's length, a moving mean over ~1 s
        self._least = None              # the shortest queue since the last trim check
        self._since_trim = 0
        self.kept: np.ndarray | None = None
        self.kept_n = 0
        self.recorder = None

    def keep(self, seconds: float) -> None:
        """Stores the first ``seconds`` of consumed input in :attr:`kept` (device rate)."""
        self.kept = np.zeros(int(seconds * self.input.samplerate), np.float32)
        self.kept_n = 0

    def kept_audio(self) -> np.ndarray:
        return self.kept[:self.kept_n].copy() if self.kept is not None else np.zeros(0, np.float32)

    def latency_parts_ms(self) -> dict[str, float]:
        """Input device (buffer + one block), analysis (mel window centre to token), and the
        frames waiting in the queue (its recent mean), ms."""
        waiting = self.prebuffer if self.queue_frames is None else self.queue_frames
        return {"input_device_ms": 1e3 * self.input.latency_s,        # buffer + one block
                "input_analysis_ms": 1e3 * self.analyzer.delay_s,
                "input_queue_ms": 1e3 * waiting * self.frame_s}

    def _take_input(self, bundle) -> None:
        x = self.input.read()
        bad = ~np.isfinite(x)
        if bad.any():               # a client's NaN/Inf: silence in their place, counted
            self.nonfinite_samples += int(bad.sum())
            x = np.where(bad, np.float32(0.0), x)
        if bundle is not self.analyzer.bundle:       # a hot swap: the new bundle's tokens
            self.analyzer = InputAnalyzer(bundle, self.input.samplerate)
        if len(x):
            self.peak_dbfs = dbfs(float(np.max(np.abs(x))))
            self.rms_dbfs = dbfs(float(np.sqrt(np.mean(x * x))))
            block = self.input.block_frames * bundle.sample_rate / self.input.samplerate / bundle.hop
            self.prebuffer = max(2, int(math.ceil(block)) + 1)
            if self.kept is not None and self.kept_n < len(self.kept):
                k = min(len(x), len(self.kept) - self.kept_n)
                self.kept[self.kept_n:self.kept_n + k] = x[:k]
                self.kept_n += k
            rec = self.recorder
            if rec is not None:
                rec.push(x)             # push copies it
        f = self.analyzer.process(x) if len(x) else no_frames()
        if len(f):
            idx = np.arange(self.frames_analysed, self.frames_analysed + len(f))
            self.frames_analysed += len(f)
            self._q_tok = np.concatenate((self._q_tok, f.tokens))
            self._q_midi = np.concatenate((self._q_midi, np.where(f.voiced, f.midi, np.nan)))
            self._q_idx = np.concatenate((self._q_idx, idx))

    def feed(self, player, n: int, pitch: float, follow: bool) -> float:
        """Engine thread, once a step of ``n`` frames: reads and analyses the input, gives
        ``player``'s token source the step's input tokens (-1: hold), returns the pitch for
        the voices (``pitch``, or with ``follow`` the input's last voiced pitch)."""
        self._take_input(player.bundle)
        excess = len(self._q_tok) - (2 * self.prebuffer + SLACK_FRAMES)
        if excess > 0:            # a backlog (a stalled engine): the newest frames play
            self._drop_oldest(len(self._q_tok) - self.prebuffer)
        q = len(self._q_tok)
        a = min(1.0, n / TRIM_AFTER_FRAMES)
        self.queue_frames = q if self.queue_frames is None else self.queue_frames + a * (q - self.queue_frames)
        if not self._primed and q >= self.prebuffer:
            self._primed = True
        take = min(n, q) if self._primed else 0
        toks = np.full(n, -1, np.int64)
        idx = np.full(n, -1, np.int64)
        midi = np.full(n, np.nan)
        toks[:take], midi[:take], idx[:take] = self._q_tok[:take], self._q_midi[:take], self._q_idx[:take]
        self._q_tok, self._q_midi, self._q_idx = self._q_tok[take:], self._q_midi[take:], self._q_idx[take:]
        if take < n and self._primed:
            self.starved_frames += n - take
            self._primed = False          # fill the jitter buffer again
        if self._primed:
            self._trim(n)
        if player.tokens is not None:
            player.tokens.input_tokens = toks
        voiced = midi[np.isfinite(midi)]
        if len(voiced):
            self.held_pitch = float(voiced[-1])
        out = self.held_pitch if follow and self.held_pitch is not None else pitch
        self._tap(idx, toks, out)
        return out

    def _drop_oldest(self, k: int) -> None:
        self.dropped_frames += k
        self._q_tok, self._q_midi, self._q_idx = self._q_tok[k:], self._q_midi[k:], self._q_idx[k:]

    def _trim(self, n: int) -> None:
        """Drops the queue's standing excess over the jitter buffer, checked every
        :data:`TRIM_AFTER_FRAMES` generated frames."""
        q = len(self._q_tok)
        self._least = q if self._least is None else min(self._least, q)
        self._since_trim += n
        if self._since_trim >= TRIM_AFTER_FRAMES:
            if self._least > self.prebuffer:
                self._drop_oldest(self._least - self.prebuffer)
            self._least, self._since_trim = None, 0

    def _tap(self, idx: np.ndarray, toks: np.ndarray, pitch: float) -> None:
        i = (self.tap_written + np.arange(len(idx))) % TAP_FRAMES
        self.used_frame[i], self.used_token[i], self.used_pitch[i] = idx, toks, pitch
        self.tap_written += len(idx)

    def taps(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The last (up to :data:`TAP_FRAMES`) generated frames' (analysed frame index,
        token, pitch asked for), oldest first (copies)."""
        n = min(self.tap_written, TAP_FRAMES)
        i = (self.tap_written - n + np.arange(n)) % TAP_FRAMES
        return self.used_frame[i].copy(), self.used_token[i].copy(), self.used_pitch[i].copy()

    def stats(self) -> dict:
        inp = self.input
        return {"input_device": inp.device_name, "input_rate": inp.samplerate,
                "input_peak_dbfs": round(self.peak_dbfs, 1), "input_rms_dbfs": round(self.rms_dbfs, 1),
                "input_overruns": inp.overruns + inp.input_overflows, "input_ring_overruns": inp.overruns,
                "input_underflows": inp.input_underflows,
                "input_starved_frames": self.starved_frames, "input_dropped_frames": self.dropped_frames,
                "input_frames_analysed": self.frames_analysed,
                "input_nonfinite_samples": self.nonfinite_samples, "input_jitter_frames": self.prebuffer}
