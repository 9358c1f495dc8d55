"""Crash-safe WAV recorder on its own thread.

The engine thread hands blocks over with :meth:`Recorder.push` (a queue; never blocks, a
full queue drops the block and counts it). The recorder thread writes them with soundfile
and makes libsndfile rewrite the WAV header at least once a second
(``SFC_UPDATE_HEADER_NOW``), so a crash or a SIGKILL loses at most about a second: the file
on disk is always a valid WAV whose header covers what was written up to the last update.
A write error (disk full, unwritable path) stops the recording, keeps the file valid as
far as it got, and leaves the message in :attr:`Recorder.error`.

Threads: ``driftwave-recorder`` (this one) owns the file. NB: ``error``, ``frames_written``
and ``dropped`` are single values replaced atomically under the GIL; other threads only read
them (``dropped`` is written by the engine thread alone).
"""
from __future__ import annotations

import queue
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

SFC_UPDATE_HEADER_NOW = 0x1060


def _update_header(f: sf.SoundFile) -> None:
    # soundfile exposes no wrapper for this libsndfile command; its cffi handle does.
    sf._snd.sf_command(f._file, SFC_UPDATE_HEADER_NOW, sf._ffi.NULL, 0)


class Recorder:
    def __init__(self, path: str | Path, sample_rate: int, channels: int = 1,
                 subtype: str = "FLOAT", header_interval_s: float = 0.5, max_queue: int = 512):
        self.path = str(path)
        self.sample_rate = sample_rate
        self.channels = channels
        self.header_interval_s = header_interval_s
        self._q: queue.Queue = queue.Queue(maxsize=max_queue)
        self.frames_written = 0
        self.dropped = 0
        self.error: str | None = None
        self._running = True
        try:
            self._file = sf.SoundFile(self.path, "w", samplerate=sample_rate, channels=channels,
                                      format="WAV", subtype=subtype)
            _update_header(self._file)
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            raise OSError(f"cannot record to '{self.path}': {e}") from None
        self._thread = threading.Thread(target=self._run, name="driftwave-recorder", daemon=True)
        self._thread.start()

    @property
    def active(self) -> bool:
        return self._running and self.error is None

    @property
    def seconds(self) -> float:
        return self.frames_written / self.sample_rate

    def push(self, block: np.ndarray) -> None:
        """Engine thread: queue a block (copied); never blocks."""
        if not self.active:
            return
        try:
            self._q.put_nowait(np.array(block, dtype=np.float32, copy=True))
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        last_header = time.monotonic()
        f = self._file
        while True:
            try:
                block = self._q.get(timeout=0.1)
            except queue.Empty:
                block = None
            if block is None and not self._running:
                break
            try:
                if block is not None:
                    f.write(block)
                    self.frames_written += len(block)
                now = time.monotonic()
                if now - last_header >= self.header_interval_s:
                    _update_header(f)
                    f.flush()
                    last_header = now
            except (sf.LibsndfileError, RuntimeError, OSError) as e:
                self.error = f"recording to '{self.path}' stopped: {e}"
                break
        try:
            f.close()
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            if self.error is None:
                self.error = f"recording to '{self.path}' could not be closed cleanly: {e}"

    def stop(self, timeout: float = 5.0) -> None:
        """Writes what is queued, finalises the file."""
        self._running = False
        self._thread.join(timeout)
