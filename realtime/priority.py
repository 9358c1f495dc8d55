"""The engine thread's claim on the CPU: the scheduling audio software normally asks for.

:func:`raise_priority` is called by the engine thread on itself. It tries, in order:

1. real-time FIFO scheduling (Linux ``SCHED_FIFO``), as JACK and DAWs give their audio
   threads, at :data:`RT_PRIORITY` clipped to what the user may have (``RLIMIT_RTPRIO``;
   root or a member of the ``audio`` group with limits from ``/etc/security/limits.d``);
2. a lower nice value for this thread alone (Linux, ``RLIMIT_NICE``), down to :data:`NICE`;
3. Windows: ``THREAD_PRIORITY_TIME_CRITICAL`` for the thread (``SetThreadPriority``);
4. nothing: the thread keeps the normal priority, and the sound plays as before.

It never raises; it returns a :class:`Priority` that says what was granted, which the
engine's stats and the status line show (``tests/test_priority.py``).

A SCHED_FIFO thread that never sleeps would starve every normal thread; the engine sleeps
whenever the ring holds its target, and Linux keeps 5 % of each second for normal threads
(``kernel.sched_rt_runtime_us``) should it ever fall behind.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass

try:        # imported here, not on the engine thread (tests/test_realtime_units.py: no imports once started)
    import resource
except ImportError:     # Windows
    resource = None

RT_PRIORITY = 5      # above every normal thread, below the device's own real-time thread (jackd -P 10 by default)
WATCHER_PRIORITY = RT_PRIORITY - 1   # the audio watcher: it takes the GIL, so never a normal thread
MAIN_LOOP_PRIORITY = 1               # the headless main loop: takes the GIL now and then, lowest real-time
NICE = -11           # what many distributions' audio limits allow (e.g. rtkit's floor)


@dataclass(frozen=True)
class Priority:
    kind: str            # "realtime", "nice", "windows", "normal"
    level: int | None    # the FIFO priority, the nice value, the Windows priority; None for normal
    note: str            # why nothing better was granted, if it was not

    def __str__(self) -> str:
        if self.kind == "realtime":
            return f"real-time (FIFO {self.level})"
        if self.kind == "nice":
            return f"nice {self.level}"
        if self.kind == "windows":
            return "time-critical"
        return "normal"


def _linux_realtime(wanted: int) -> Priority | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_RTPRIO)
    allowed = wanted if os.geteuid() == 0 or soft == resource.RLIM_INFINITY else min(wanted, int(soft))
    if allowed < 1:
        return None
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(allowed))   # 0: the calling thread
    except OSError:
        return None
    return Priority("realtime", allowed, "")


def _linux_nice(wanted: int) -> Priority | None:
    tid = getattr(os, "gettid", lambda: 0)()
    now = os.getpriority(os.PRIO_PROCESS, tid)
    soft, _ = resource.getrlimit(resource.RLIMIT_NICE)
    floor = wanted if os.geteuid() == 0 or soft == resource.RLIM_INFINITY else 20 - int(soft)
    target = max(wanted, floor)
    if target >= now:
        return None
    try:
        os.setpriority(os.PRIO_PROCESS, tid, target)   # on Linux a thread id names that thread alone
    except OSError:
        return None
    return Priority("nice", target, "")


def _windows() -> Priority | None:
    try:
        import ctypes
        k32 = ctypes.windll.kernel32
        if k32.SetThreadPriority(k32.GetCurrentThread(), 15):     # THREAD_PRIORITY_TIME_CRITICAL
            return Priority("windows", 15, "")
    except Exception:
        pass
    return None


def raise_priority(realtime: bool = True, rt_priority: int = RT_PRIORITY, nice: int = NICE) -> Priority:
    """The best scheduling the OS grants the calling thread (see the module docstring).
    ``realtime=False`` skips step 1 (``--no-realtime``)."""
    if sys.platform.startswith("linux"):
        got = (_linux_realtime(rt_priority) if realtime else None) or _linux_nice(nice)
        if got is not None:
            return got
        return Priority("normal", None, "no real-time or nice rights (RLIMIT_RTPRIO/RLIMIT_NICE are 0; "
                                        "add the user to the 'audio' group with JACK's limits)")
    if os.name == "nt":
        return _windows() or Priority("normal", None, "SetThreadPriority refused")
    return Priority("normal", None, f"not asked for on {sys.platform}")


def current() -> str:
    """The calling thread's scheduling as the OS reports it (for tests and stats)."""
    if sys.platform.startswith("linux"):
        policy = os.sched_getscheduler(0)
        if policy == os.SCHED_FIFO:
            return f"FIFO {os.sched_getparam(0).sched_priority}"
        tid = getattr(os, "gettid", lambda: 0)()
        return f"nice {os.getpriority(os.PRIO_PROCESS, tid)}"
    return "unknown"
