"""Where the engine's time went when it stalled: the kernel's clocks of every thread of this
process, sampled on a timer, read around the stalls a soak found.

Each sample holds, per thread, ``/proc/self/task/<tid>/schedstat``: nanoseconds on a CPU and
nanoseconds runnable but waiting for one (preempted, or the hypervisor's steal as the guest
sees it), and the machine's steal time from ``/proc/stat``, and the engine's step count. A
stall is a stretch of samples over which the engine made no step. Over a stall, a thread that
neither ran nor waited to run was asleep (for the engine: waiting for the GIL or a sleep); one
that waited was runnable and kept off a CPU; the other threads' run time says who held the
CPU (and, for Python threads, possibly the GIL) meanwhile.

The sampler is a Python thread: while another thread holds the GIL it cannot wake, so its
samples space out; the kernel's clocks still cover the gap, and ``sampler_gap_ms`` says how
long it was.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import numpy as np

_TASKS = "/proc/self/task"


def _steal_ticks() -> int:
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return int(fields[8]) if len(fields) > 8 else 0


def _schedstat(tid: int) -> tuple[int, int] | None:
    try:
        with open(f"{_TASKS}/{tid}/schedstat") as f:
            run, wait, _ = f.read().split()
        return int(run), int(wait)
    except (OSError, ValueError):
        return None          # the thread ended


def thread_names() -> dict[int, str]:
    """Native thread id -> name: Python's name for Python threads, the kernel's ``comm``
    (torch's, JACK's, PortAudio's threads) for the others."""
    names = {}
    for tid in map(int, os.listdir(_TASKS)):
        try:
            with open(f"{_TASKS}/{tid}/comm") as f:
                names[tid] = f.read().strip()
        except OSError:
            pass
    for t in threading.enumerate():
        if t.native_id in names:
            names[t.native_id] = t.name
    return names


class ThreadClocks:
    """Samples every ``every_s`` s until :meth:`stop`; ``progress()`` is the engine's step
    count (read without a lock: an int)."""

    def __init__(self, progress: Callable[[], int], every_s: float = 0.02):
        self.progress, self.every_s = progress, every_s
        self.tick_ms = 1e3 / os.sysconf("SC_CLK_TCK")
        self.samples: list[tuple[float, int, int, dict[int, tuple[int, int]]]] = []
        self.priority: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-thread-clocks", daemon=True)

    def start(self) -> "ThreadClocks":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2.0)

    def _run(self) -> None:
        # it takes the GIL: preempted while holding it, it would stall the engine (a normal
        # thread on a busy machine), so it runs at the headless main loop's real-time priority
        from realtime.priority import MAIN_LOOP_PRIORITY, raise_priority
        self.priority = str(raise_priority(True, rt_priority=MAIN_LOOP_PRIORITY))
        while not self._stop.wait(self.every_s):
            clocks = {}
            for tid in map(int, os.listdir(_TASKS)):
                v = _schedstat(tid)
                if v is not None:
                    clocks[tid] = v
            self.samples.append((time.monotonic(), self.progress(), _steal_ticks(), clocks))

    def stalls(self, min_s: float = 0.1) -> list[tuple[int, int]]:
        """Sample index pairs (a, b): the engine's step count at b equals that at a, and a
        stretch of at least ``min_s`` s."""
        out, a = [], 0
        steps = [s[1] for s in self.samples]
        for i in range(1, len(steps) + 1):
            if i == len(steps) or steps[i] != steps[a]:
                if i - 1 > a and self.samples[i - 1][0] - self.samples[a][0] >= min_s:
                    out.append((a, i - 1))
                a = i
        return out

    def report(self, a: int, b: int, names: dict[int, str], t0: float, top: int = 8) -> dict:
        """Per thread run and runnable-wait time (ms) between samples ``a`` and ``b``, the
        busiest ``top`` first; the machine's steal; the sampler's longest gap."""
        ta, steps_a, steal_a, ca = self.samples[a]
        tb, steps_b, steal_b, cb = self.samples[b]
        rows = []
        for tid, (run_b, wait_b) in cb.items():
            # a thread absent at ``a`` was born after it: its clocks count from zero at birth
            # (tests/test_benchmarks_smoke.py::test_thread_clocks_find_a_stall_and_who_ran_in_it
            # starts its spinning thread inside the stall)
            run_a, wait_a = ca.get(tid, (0, 0))
            rows.append((names.get(tid, str(tid)), (run_b - run_a) / 1e6, (wait_b - wait_a) / 1e6))
        rows.sort(key=lambda r: -(r[1] + r[2]))
        gaps = np.diff([s[0] for s in self.samples[a:b + 1]]) if b > a else np.zeros(1)
        return {"from_s": round(ta - t0, 3), "to_s": round(tb - t0, 3), "ms": round(1e3 * (tb - ta), 1),
                "engine_steps": steps_b - steps_a,
                "steal_ms": round((steal_b - steal_a) * self.tick_ms, 1),
                "sampler_gap_ms": round(1e3 * float(gaps.max()), 1),
                "threads_run_wait_ms": [[n, round(r, 1), round(w, 1)] for n, r, w in rows[:top]]}

    def before(self, times_s: list[float], t0: float, names: dict[int, str], span_s: float = 1.0,
               cluster_s: float = 1.0) -> list[dict]:
        """:meth:`report` over the ``span_s`` s before the first underrun of each cluster
        (underruns ``times_s`` s after ``t0``, a cluster ending at a gap over ``cluster_s``)."""
        starts = [t for i, t in enumerate(times_s) if i == 0 or t - times_s[i - 1] > cluster_s]
        when = np.array([s[0] for s in self.samples]) - t0
        out = []
        for t in starts:
            a, b = int(np.searchsorted(when, t - span_s)), int(np.searchsorted(when, t))
            b = min(b, len(self.samples) - 1)
            if b > a:
                out.append({"underrun_at_s": t, **self.report(a, b, names, t0)})
        return out

    def per_second(self, t0: float, engine_tid: int | None) -> dict:
        """Per whole second after ``t0``: the machine's steal (ms, both CPUs together) and
        the engine thread's CPU time per step (ms): how much CPU a step took that second."""
        when = np.array([s[0] for s in self.samples]) - t0
        steal, per_step = [], []
        for k in range(int(when[-1]) if len(when) else 0):
            a, b = int(np.searchsorted(when, k)), int(np.searchsorted(when, k + 1))
            b = min(b, len(self.samples) - 1)
            if b <= a:
                steal.append(None), per_step.append(None)
                continue
            steal.append(round((self.samples[b][2] - self.samples[a][2]) * self.tick_ms, 1))
            steps = self.samples[b][1] - self.samples[a][1]
            run = (self.samples[b][3].get(engine_tid, (0, 0))[0]
                   - self.samples[a][3].get(engine_tid, (0, 0))[0]) / 1e6
            per_step.append(round(run / steps, 2) if steps else None)
        return {"steal_ms": steal, "engine_cpu_ms_per_step": per_step}

    def typical(self, names: dict[int, str], t0: float, span_s: float = 0.5) -> dict:
        """The same figures over an ordinary ``span_s`` stretch from the middle of the run:
        what the threads do while nothing stalls."""
        mid = len(self.samples) // 2
        b = mid
        while b < len(self.samples) - 1 and self.samples[b][0] - self.samples[mid][0] < span_s:
            b += 1
        return self.report(mid, b, names, t0)


def summarize(soak: dict, steal_ms: float = 50.0) -> dict:
    """From a soak's JSON (``engine_stalls``): the steal and the engine's CPU per step in the
    second before each underrun cluster, against every second of the run; how many clusters
    followed a second with at least ``steal_ms`` of steal, and how many seconds had that much."""
    st = soak["engine_stalls"]
    per = st["per_second"]
    steal = np.array([v for v in per["steal_ms"] if v is not None])
    cpu = np.array([v for v in per["engine_cpu_ms_per_step"] if v is not None])
    before = st["before_underruns"]
    b_steal = np.array([b["steal_ms"] for b in before])
    b_cpu = np.array([b["threads_run_wait_ms"][0][1] / b["engine_steps"] for b in before
                      if b["engine_steps"] and b["threads_run_wait_ms"][0][0] == "driftwave-engine"])
    return {"underruns": soak["underruns"], "clusters": len(before), "seconds": len(steal),
            "steal_ms_before_clusters": {"median": float(np.median(b_steal)) if len(b_steal) else None,
                                         "values": b_steal.tolist()},
            "steal_ms_every_second": {"median": float(np.median(steal)), "p99": float(np.percentile(steal, 99)),
                                      "max": float(steal.max())},
            f"clusters_after_steal_of_{steal_ms:g}_ms": int((b_steal >= steal_ms).sum()),
            f"seconds_with_steal_of_{steal_ms:g}_ms": int((steal >= steal_ms).sum()),
            "engine_cpu_ms_per_step_before_clusters": {"median": float(np.median(b_cpu)) if len(b_cpu) else None},
            "engine_cpu_ms_per_step_every_second": {"median": float(np.median(cpu)), "p99": float(np.percentile(cpu, 99))},
            "engine_waits_ms_before_clusters": [b["threads_run_wait_ms"][0][2] for b in before]}


if __name__ == "__main__":
    import json
    import sys
    for path in sys.argv[1:]:
        with open(path) as f:
            print(json.dumps({"file": path, **summarize(json.load(f))}, indent=1))
