"""Audio output: a sounddevice stream whose callback only copies from the ring buffer.

The callback runs on PortAudio's thread. It copies, zero-fills what the ring cannot give,
and counts: nothing else (no allocation beyond numpy views, no lock, no log, no torch).

NB: ``underruns``, ``xruns``, ``frames_played`` and ``callbacks`` are ints written by the
callback alone and read by others (atomic under the GIL). ``flush_requested`` is set by
other threads and cleared by the callback, which then drops the ring's unread audio
itself, so the ring keeps exactly one consumer.
"""
from __future__ import annotations

import contextlib

import numpy as np

from .ringbuffer import RingBuffer


def pick_samplerate(device, wanted: float | None) -> int:
    """``wanted`` if the device takes it, else the device's default rate."""
    import sounddevice as sd

    info = sd.query_devices(device, "output")
    if wanted:
        try:
            sd.check_output_settings(device=device, samplerate=wanted, channels=1, dtype="float32")
            return int(wanted)
        except Exception:
            pass
    return int(info["default_samplerate"])


class AudioOutput:
    def __init__(self, ring: RingBuffer, device=None, samplerate: int | None = None,
                 blocksize: int = 0, latency: str | float = "high", channels: int | None = None):
        import sounddevice as sd

        info = sd.query_devices(device, "output")
        self.device_name = info["name"]
        self.host_api = sd.query_hostapis(info["hostapi"])["name"]
        self.samplerate = pick_samplerate(device, samplerate)
        self.channels = channels or min(2, int(info["max_output_channels"]))
        self.ring = ring
        self.underruns = 0
        self.xruns = 0
        self.frames_played = 0
        self.callbacks = 0
        self.flush_requested = False
        self._stream = sd.OutputStream(device=device, samplerate=self.samplerate, blocksize=blocksize,
                                       latency=latency, channels=self.channels, dtype="float32",
                                       callback=self._callback)

    def _callback(self, outdata: np.ndarray, frames: int, time_info, status) -> None:
        if status.output_underflow:
            self.xruns += 1
        if self.flush_requested:
            self.ring.clear()
            self.flush_requested = False
        n = self.ring.read_into(outdata)
        if n < frames:
            outdata[n:] = 0.0
            self.underruns += 1
        self.frames_played += frames
        self.callbacks += 1

    @property
    def latency_s(self) -> float:
        return float(self._stream.latency)

    @property
    def cpu_load(self) -> float:
        return float(self._stream.cpu_load)

    @property
    def active(self) -> bool:
        return bool(self._stream.active)

    def start(self) -> None:
        self._stream.start()

    def pause(self) -> None:
        """Transport stop: the device stops pulling; the stream stays open."""
        if self._stream.active:
            self._stream.stop()

    def resume(self) -> None:
        if not self._stream.active:
            self._stream.start()

    @property
    def on_jack(self) -> bool:
        return "JACK" in self.host_api

    @contextlib.contextmanager
    def paused_if_jack(self):
        """Pauses a JACK stream for the duration (and starts it again after), for JACK server
        calls made while holding the GIL: python-rtmidi's open, connect and close.

        JACK finishes such a call only after its current process cycle, and that cycle waits
        for this stream's callback, which waits for the GIL: a deadlock that froze the audio,
        the JACK server's graph and the app for good (reproduced with rtmidi JACK clients
        opened and closed while a JACK stream played: stuck within 25-41 tries, never in 200
        with the stream paused). A paused stream's callback is not called. The pause is heard
        as a short gap; other host APIs play on."""
        pause = self.on_jack and self._stream.active
        if pause:
            self._stream.stop()
        try:
            yield
        finally:
            if pause:
                self._stream.start()

    def stop(self) -> None:
        try:
            self._stream.stop()
        finally:
            self._stream.close()


def list_devices() -> str:
    import sounddevice as sd

    return str(sd.query_devices())
