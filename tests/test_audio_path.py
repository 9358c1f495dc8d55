"""The audio path: ring buffer -> rtmixer's C callback -> a real JACK device (dummy driver).

What a listener would notice: a thread holding the GIL cannot starve the device; a starved
device plays zeros (never stale audio) and every short callback is counted; the frames
arrive in the order written, sample for sample, whatever the write sizes.
"""
import ctypes
import threading
import time

import numpy as np
import pytest

from realtime.audio_output import AudioOutput
from realtime.ringbuffer import RingBuffer
from tests.jackutil import CaptureProcess, wait_until

RATE = 48000
PERIOD = 1024       # conftest's jack_server: the device's block


def known_signal(n: int, seed: int = 0) -> np.ndarray:
    """float32 ``[n]``, every sample in [0.1, 0.9): never zero, so a gap shows as zeros."""
    return (0.1 + 0.8 * np.random.default_rng(seed).random(n)).astype(np.float32)


def played(captured: np.ndarray) -> np.ndarray:
    """The capture from the first sample the stream sent (before it: silence)."""
    nz = np.flatnonzero(captured)
    assert len(nz), "nothing was played"
    return captured[nz[0]:]


def ticks_during(fn) -> int:
    """How often a Python thread that ticks every millisecond ran while ``fn()`` ran (0 or 1
    when ``fn`` held the GIL: only the moment before the call)."""
    ticks = [0]
    stop = threading.Event()

    def tick():
        while not stop.is_set():
            ticks[0] += 1
            time.sleep(0.001)

    t = threading.Thread(target=tick, daemon=True)
    t.start()
    time.sleep(0.05)
    before = ticks[0]
    fn()
    during = ticks[0] - before
    stop.set()
    t.join()
    return during


def hold_gil(seconds: float) -> int:
    """Holds the GIL for ``seconds`` in the calling thread (a C call through ``PyDLL`` keeps
    it); returns :func:`ticks_during` of it."""
    usleep = ctypes.PyDLL(None).usleep
    return ticks_during(lambda: usleep(int(seconds * 1e6)))


def play_through_gil_hold(server, make_ring, make_output, hold_s: float = 0.2, fill_s: float = 0.8) -> dict:
    """Fills a ring with ``fill_s`` of a known signal, starts the output, and holds the GIL
    in another thread for ``hold_s`` while it plays; a capture in a child process records.
    Returns the counts, the ticks seen during the hold, the signal and what was played."""
    ring = make_ring(RATE)
    out = make_output(ring)
    cap = CaptureProcess(server, seconds=3.0)
    try:
        sig = known_signal(int(fill_s * RATE))
        assert ring.write(sig) == len(sig)
        out.start()
        assert wait_until(lambda: out.callbacks >= 2, 5)
        result = {}
        holder = threading.Thread(target=lambda: result.update(ticks=hold_gil(hold_s)))
        holder.start()
        holder.join()
        left_after_hold = ring.available()
        time.sleep(0.1)                          # the watcher would have restarted by now
        result.update(underruns_while_filled=out.underruns, left_after_hold=left_after_hold,
                      restarts_while_filled=out.restarts)
        assert wait_until(lambda: ring.available() == 0, 5)
        time.sleep(0.1)
    finally:
        captured = cap.stop()
        out.stop()
    result.update(xruns=out.xruns, signal=sig, played=played(captured))
    return result


def test_a_thread_holding_the_gil_200ms_does_not_starve_the_device(jack_server):
    log_start = jack_server.log_size()
    r = play_through_gil_hold(jack_server, RingBuffer, lambda ring: AudioOutput(ring, samplerate=RATE))
    assert r["ticks"] <= 2, "the GIL was not held"
    assert r["left_after_hold"] > 0.1 * RATE            # the ring held more than the hold
    assert r["underruns_while_filled"] == 0 and r["restarts_while_filled"] == 0
    sig, got = r["signal"], r["played"]
    assert len(got) >= len(sig)
    np.testing.assert_array_equal(got[:len(sig)], sig)   # no gap, nothing doubled or lost
    assert not jack_server.graph_errors(log_start)       # JACK never waited for this process


def test_the_gil_check_sees_a_gil_that_is_not_held():
    """The check above can fail: a thread that sleeps (releasing the GIL) lets the ticker run."""
    assert ticks_during(lambda: time.sleep(0.2)) > 2


def test_a_starved_device_plays_zeros_and_counts_every_short_callback(jack_server):
    ring = RingBuffer(RATE)
    out = AudioOutput(ring, samplerate=RATE)
    cap = CaptureProcess(jack_server, seconds=4.0)
    first, second = known_signal(5000, seed=1), known_signal(7000, seed=2)
    try:
        ring.write(first)                        # 4 whole blocks and part of a fifth
        out.start()
        assert wait_until(lambda: out.callbacks >= 20, 5)       # starved for 15 and more
        assert out.underruns >= 10                              # counted while it plays
        ring.write(second)                                      # the sound comes back
        assert wait_until(lambda: ring.available() == 0, 5)
        assert wait_until(lambda: out.callbacks >= 40, 5)
        out.pause()                                             # counts exact while stopped
        # every callback not filled from the ring is an underrun (a write is published
        # whole, so the second signal starts a block: its frames fill whole blocks first)
        full_blocks = len(first) // PERIOD + len(second) // PERIOD
        assert out.underruns == out.callbacks - full_blocks, (out.underruns, out.callbacks)
        assert out.frames_played == out.callbacks * PERIOD
        assert out.xruns == 0
    finally:
        captured = cap.stop()
        out.stop()
    got = played(captured)
    np.testing.assert_array_equal(got[:len(first)], first)
    rest = got[len(first):]
    start2 = np.flatnonzero(rest)[0]
    assert start2 >= PERIOD - len(first) % PERIOD            # at least the rest of a block silent
    assert not np.any(rest[:start2])                          # zeros, not the stale ring
    np.testing.assert_array_equal(rest[start2:start2 + len(second)], second)
    assert not np.any(rest[start2 + len(second):])


CHUNKINGS = ["1", "7", "256", "random"]


def chunk_sizes(name: str, total: int, seed: int = 0) -> list[int]:
    if name == "random":
        rng = np.random.default_rng(seed)
        sizes = []
        while sum(sizes) < total:
            sizes.append(int(min(rng.integers(1, 600), total - sum(sizes))))
        return sizes
    k = int(name)
    return [k] * (total // k) + ([total % k] if total % k else [])


@pytest.mark.parametrize("chunking", CHUNKINGS)
@pytest.mark.parametrize("channels", [1, 2])
def test_chunked_writes_and_reads_keep_every_sample_in_order(chunking, channels):
    """The ring alone (a Python reader): capacity 1000 on a 1024-frame storage wraps often."""
    ring = RingBuffer(1000)
    ring.set_channels(channels)
    sig = known_signal(20_000, seed=3)
    writes = chunk_sizes(chunking, len(sig), seed=4)
    reads = chunk_sizes("random", 10 * len(sig), seed=5)
    got, i, r = [], 0, 0
    for size in writes:
        block = sig[i:i + size]
        while len(block):
            n = ring.write(block)
            block, i = block[n:], i + n
            if n == 0 or ring.space() < 300:         # read some, as the device would
                out = np.zeros((reads[r], channels), np.float32)
                r += 1
                got.append(out[:ring.read_into(out)].copy())
    out = np.zeros((ring.available(), channels), np.float32)
    got.append(out[:ring.read_into(out)].copy())
    got = np.concatenate(got)
    assert len(got) == len(sig) and ring.written == len(sig)
    for c in range(channels):                        # a mono block goes to every channel
        np.testing.assert_array_equal(got[:, c], sig)


@pytest.mark.parametrize("chunking", CHUNKINGS)
def test_chunked_writes_while_the_device_plays_arrive_sample_for_sample(jack_server, chunking):
    ring = RingBuffer(RATE)
    out = AudioOutput(ring, samplerate=RATE)
    cap = CaptureProcess(jack_server, seconds=4.0)
    sig = known_signal(int(0.6 * RATE), seed=6)
    sizes = chunk_sizes(chunking, len(sig), seed=7)
    prefill = int(0.4 * RATE)        # the device starts once this much is written
    try:
        i = 0
        for size in sizes:
            block = sig[i:i + size]
            while len(block):
                n = ring.write(block)
                block, i = block[n:], i + n
                if n == 0:
                    time.sleep(0.001)
            if i >= prefill and not out.active:
                out.start()
        if not out.active:
            out.start()
        assert wait_until(lambda: ring.available() == 0, 5)
        time.sleep(0.1)
        out.pause()
        assert out.underruns >= 1                     # the end: the ring ran empty
        underruns_at_end = out.underruns
        assert underruns_at_end == out.callbacks - len(sig) // PERIOD
    finally:
        captured = cap.stop()
        out.stop()
    got = played(captured)
    np.testing.assert_array_equal(got[:len(sig)], sig)
    assert not np.any(got[len(sig):])


def test_panic_drops_what_was_written_before_it_and_keeps_what_came_after(jack_server):
    ring = RingBuffer(RATE)
    out = AudioOutput(ring, samplerate=RATE)
    cap = CaptureProcess(jack_server, seconds=4.0)
    old, new = known_signal(int(0.5 * RATE), seed=8), known_signal(int(0.3 * RATE), seed=9)
    try:
        ring.write(old)
        out.start()
        assert wait_until(lambda: out.callbacks >= 3, 5)
        out.flush_requested = True                   # as the engine's panic: then it writes on
        ring.write(new)
        assert wait_until(lambda: not out.flush_requested, 5)
        assert wait_until(lambda: ring.available() == 0, 5)
        time.sleep(0.1)
        out.pause()
    finally:
        captured = cap.stop()
        out.stop()
    got = played(captured)
    # some of the old signal played (from its start), then a short silence, then all of the new
    k = int(np.flatnonzero(got[:len(old)] != old)[0])
    assert PERIOD <= k < len(old) // 2
    rest = got[k:]
    start = int(np.flatnonzero(rest)[0])
    assert start < 4 * PERIOD                         # the flush took a few blocks at most
    np.testing.assert_array_equal(rest[start:start + len(new)], new)
    assert not np.any(rest[start + len(new):])
