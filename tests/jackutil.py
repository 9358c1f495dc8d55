"""A real JACK server (dummy driver) for tests, and a JACK client that captures audio."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid

import numpy as np


def _may_realtime() -> bool:
    """Whether this user may run jackd at FIFO 10: root, or an RLIMIT_RTPRIO soft limit above
    10 (unlimited reads as ``RLIM_INFINITY``, -1)."""
    try:
        import resource
        soft = resource.getrlimit(resource.RLIMIT_RTPRIO)[0]
        return os.geteuid() == 0 or soft == resource.RLIM_INFINITY or soft >= 11
    except (ImportError, AttributeError):
        return False


class JackServer:
    def __init__(self, rate: int = 48000, period: int = 1024):
        if shutil.which("jackd") is None:
            raise RuntimeError("jackd is not installed (apt-get install jackd2)")
        self.name = f"dwtest-{uuid.uuid4().hex[:8]}"
        self.rate, self.period = rate, period
        # the server's own messages (xruns, clients it drops) go to a file, for a failing test
        self.log_path = os.path.join(tempfile.gettempdir(), f"{self.name}.log")
        self._log = open(self.log_path, "wb")
        # real-time, as a user's JACK runs, where this user may (root, or RLIMIT_RTPRIO): the
        # engine thread asks for FIFO 5 and must stay below the server's threads (FIFO 10)
        self.realtime = _may_realtime()
        mode = ["-R", "-P", "10"] if self.realtime else ["--no-realtime"]
        self.proc = subprocess.Popen(
            ["jackd", "-n", self.name, *mode, "-d", "dummy", "-r", str(rate), "-p", str(period)],
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
        """Connects every audio output port of other clients (not system) to this client's input."""
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


def graph_errors_by_client(lines: list[str]) -> dict[str, int]:
    """Of the server's lines from :meth:`JackServer.graph_errors`: the cycles that did not
    finish (key ``"failed_cycles"``: its "Process error" lines) and, per client, how often
    the server named it as not finished in one (``client = NAME was not finished``)."""
    import re
    out: dict[str, int] = {"failed_cycles": sum("Process error" in line for line in lines)}
    for line in lines:
        m = re.search(r"client = (.+?) was not finished", line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0) + 1
    return out


class XrunCounter:
    """A JACK client that counts the server's xruns (JACK's xrun notification, which runs
    on the client's notification thread, never the process thread). It has no process
    callback, so no Python runs in the graph for it."""

    def __init__(self, server: JackServer, name: str = "xrun-counter"):
        import jack
        self.client = jack.Client(name, servername=server.name, no_start_server=True)
        self.count = 0
        self.client.set_xrun_callback(self._on_xrun)
        self.client.activate()

    def _on_xrun(self, delayed_usecs: float) -> None:
        self.count += 1

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


def playback_latency_frames(client, port_name: str) -> int:
    """The playback latency JACK reports for ``port_name`` (frames, the range's maximum):
    for ``system:playback_1``, what the driver adds between a cycle's output and the
    speaker. JACK-Client does not wrap ``jack_port_get_latency_range``; ctypes calls it on
    the port that ``client`` looks up."""
    import ctypes
    import ctypes.util

    import jack

    class Range(ctypes.Structure):
        _fields_ = [("min", ctypes.c_uint32), ("max", ctypes.c_uint32)]

    lib = ctypes.CDLL(ctypes.util.find_library("jack") or "libjack.so.0")
    lib.jack_port_get_latency_range.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(Range)]
    lib.jack_port_get_latency_range.restype = None
    port = client.get_port_by_name(port_name)
    r = Range()
    playback_mode = 1                   # JackPlaybackLatency (JackCaptureLatency is 0)
    lib.jack_port_get_latency_range(int(jack._ffi.cast("uintptr_t", port._ptr)), playback_mode, ctypes.byref(r))
    return int(r.max)


def _normal_priority() -> None:
    """In a child before exec: nice 0 where allowed (a niced parent may not lower it)."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    except OSError:
        pass


_BUSY_CHILD = r"""
import os, sys
parent = int(sys.argv[1])
while os.getppid() == parent:       # ends by itself if its parent dies without stopping it
    for _ in range(200000):
        pass
"""


class BusyCore:
    """A second process that keeps one core 100 % busy at normal priority (a Python busy
    loop, nice 0, SCHED_OTHER) until :meth:`stop`, the load a performer's laptop carries
    (another program computing). It checks its parent every few ms and ends if that is gone,
    so a benchmark killed without cleanup leaves no spinning process. A context manager."""

    def __init__(self):
        import sys
        self.proc = subprocess.Popen([sys.executable, "-c", _BUSY_CHILD, str(os.getpid())],
                                     preexec_fn=_normal_priority)
        self.t0 = time.monotonic()
        self.report: dict | None = None

    def cpu_seconds(self) -> float:
        """CPU time the busy process has used so far (user + system), seconds."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> dict:
        """Ends the load; returns what it did: ``ran``, ``seconds`` (wall), ``cpu_seconds``,
        ``cpu_share`` (cores it kept busy on average, 1.0 = one core all the time), ``nice``."""
        if self.report is not None:
            return self.report
        wall = time.monotonic() - self.t0
        try:
            cpu = self.cpu_seconds()
            nice = os.getpriority(os.PRIO_PROCESS, self.proc.pid)
        except (OSError, IndexError):       # it ended early: its CPU time is lost with it
            cpu, nice = None, None
        alive = self.proc.poll() is None
        self.proc.kill()
        self.proc.wait(5)
        self.report = {"ran": alive, "kind": "python busy loop, one process", "pid": self.proc.pid,
                       "nice": nice, "seconds": round(wall, 2),
                       "cpu_seconds": None if cpu is None else round(cpu, 2),
                       "cpu_share": None if cpu is None or wall <= 0 else round(cpu / wall, 3)}
        return self.report

    def __enter__(self) -> "BusyCore":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
