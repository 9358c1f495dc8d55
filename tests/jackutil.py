"""A real JACK server (dummy driver) for tests, and a JACK client that captures audio."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid

import numpy as np


class JackServer:
    def __init__(self, rate: int = 48000, period: int = 1024):
        if shutil.which("jackd") is None:
            raise RuntimeError("jackd is not installed (apt-get install jackd2)")
        self.name = f"dwtest-{uuid.uuid4().hex[:8]}"
        self.rate, self.period = rate, period
        # the server's own messages (xruns, clients it drops) go to a file, for a failing test
        self.log_path = os.path.join(tempfile.gettempdir(), f"{self.name}.log")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            ["jackd", "-n", self.name, "--no-realtime", "-d", "dummy", "-r", str(rate), "-p", str(period)],
            stdout=self._log, stderr=subprocess.STDOUT)
        self.env = {"JACK_DEFAULT_SERVER": self.name, "JACK_NO_START_SERVER": "1"}
        os.environ.update(self.env)
        import jack
        deadline = time.monotonic() + 10
        while True:
            try:
                c = jack.Client("probe", servername=self.name, no_start_server=True)
                c.close()
                break
            except jack.JackError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("jackd did not start")
                time.sleep(0.1)
        _reinit_portaudio()

    def stop(self) -> None:
        _terminate_portaudio()      # PortAudio must let go before the server goes
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for k in self.env:
            os.environ.pop(k, None)
        self._log.close()
        os.unlink(self.log_path)

    def log_size(self) -> int:
        return os.path.getsize(self.log_path)

    def log_text(self, start: int = 0) -> str:
        """What the server printed from byte ``start`` on (see :meth:`log_size`)."""
        with open(self.log_path, "rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace")

    def graph_errors(self, start: int = 0) -> list[str]:
        """The server's lines, from byte ``start`` on, saying that a cycle of its graph did
        not finish: a client (here, this process's PortAudio stream) stuck or too slow."""
        return [line for line in self.log_text(start).splitlines()
                if "Process error" in line or "was not finished" in line]


def _terminate_portaudio():
    import sounddevice as sd
    try:
        sd._terminate()
    except sd.PortAudioError:   # already terminated
        pass


def _reinit_portaudio():
    """PortAudio lists JACK devices only if a server ran when it initialised."""
    import sounddevice as sd
    _terminate_portaudio()
    sd._initialize()


class Capture:
    """A JACK client with one input port that records what it receives. The buffer holds
    ``seconds``; with ``ring=True`` it wraps and keeps the most recent audio (long runs)."""

    def __init__(self, server: JackServer, seconds: float = 60.0, name: str = "capture", ring: bool = False):
        import jack
        self.client = jack.Client(name, servername=server.name, no_start_server=True)
        self.rate = self.client.samplerate
        self.port = self.client.inports.register("in")
        self.buf = np.zeros(int(seconds * self.rate), np.float32)
        self.n = 0
        self.ring = ring
        self.marks: list[tuple[float, int]] = []    # (monotonic time at callback, frames before)
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames: int) -> None:
        data = self.port.get_array()
        self.marks.append((time.monotonic(), self.n))
        if self.ring:
            if len(self.marks) > 4000:
                del self.marks[:2000]
            i = self.n % len(self.buf)
            k = min(frames, len(self.buf) - i)
            self.buf[i:i + k] = data[:k]
            self.buf[:frames - k] = data[k:]
            self.n += frames
            return
        k = min(frames, len(self.buf) - self.n)
        self.buf[self.n:self.n + k] = data[:k]
        self.n += k

    def segment(self, start: int, stop: int) -> np.ndarray:
        """Captured frames [start, stop) (in ring mode, only the most recent ones exist)."""
        if not self.ring:
            return self.buf[start:stop].copy()
        return self.buf[np.arange(start, stop) % len(self.buf)]

    def connect_program_outputs(self, timeout: float = 5.0) -> list[str]:
        """Connects every audio output port of other clients (not system) to our input."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ports = [p.name for p in self.client.get_ports(is_audio=True, is_output=True)
                     if not p.name.startswith(("system:", self.client.name + ":"))]
            if ports:
                for p in ports[:1]:      # the first channel; all channels carry the same mono
                    self.client.connect(p, self.port)
                return ports
            time.sleep(0.05)
        raise RuntimeError("no program output port appeared")

    def audio(self) -> np.ndarray:
        return self.buf[:self.n].copy()

    def time_of_frame(self, i: int) -> float:
        """Monotonic time at which captured frame ``i`` was delivered (interpolated)."""
        marks = list(self.marks)
        t = np.array([m[0] for m in marks])
        f = np.array([m[1] for m in marks])
        return float(np.interp(i, f, t))

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


def wait_until(cond, timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return cond()


_CAPTURE_CHILD = r"""
import sys, time
import numpy as np
import jack
server, seconds, path = sys.argv[1], float(sys.argv[2]), sys.argv[3]
client = jack.Client("capture-process", servername=server, no_start_server=True)
port = client.inports.register("in")
buf = np.zeros(int(seconds * client.samplerate), np.float32)
n = [0]

@client.set_process_callback
def process(frames):
    k = min(frames, len(buf) - n[0])
    buf[n[0]:n[0] + k] = port.get_array()[:k]
    n[0] += k

client.activate()
deadline = time.monotonic() + 5
while True:
    ports = [p.name for p in client.get_ports(is_audio=True, is_output=True)
             if not p.name.startswith(("system:", client.name + ":"))]
    if ports or time.monotonic() > deadline:
        break
    time.sleep(0.05)
client.connect(ports[0], port)          # the first channel; every channel carries the mono
print("connected", ports[0], flush=True)
sys.stdin.readline()                    # until the parent says stop
client.deactivate()
np.save(path, buf[:n[0]])
client.close()
print("saved", flush=True)
"""


class CaptureProcess:
    """Like :class:`Capture`, in a child process: its JACK callback runs Python under the
    child's own GIL, so this process holding its GIL cannot starve the capture. Connects
    the first audio output port of another client (this process's stream) on start."""

    def __init__(self, server: JackServer, seconds: float = 10.0):
        import sys
        self._dir = tempfile.mkdtemp(prefix="dwcapture-")
        self.path = os.path.join(self._dir, "audio.npy")
        self.proc = subprocess.Popen([sys.executable, "-c", _CAPTURE_CHILD, server.name, str(seconds), self.path],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=dict(os.environ, **server.env))
        line = self.proc.stdout.readline()
        if not line.startswith("connected"):
            self.proc.kill()
            raise RuntimeError(f"the capture process did not connect: {line!r}")
        self.source = line.split()[1]

    def stop(self) -> np.ndarray:
        """Stops capturing; returns what it captured (float32 ``[frames]``)."""
        try:
            self.proc.communicate("stop\n", timeout=10)
            return np.load(self.path)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            shutil.rmtree(self._dir, ignore_errors=True)
