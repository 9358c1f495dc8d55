"""The engine thread asks for real-time scheduling and reports what it got."""
import os
import sys
import threading

import pytest

from realtime.priority import Priority, current, raise_priority


def in_a_thread(fn):
    out = []
    t = threading.Thread(target=lambda: out.append(fn()))
    t.start()
    t.join()
    return out[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux scheduling")
def test_raise_priority_changes_only_the_calling_thread_and_says_what_it_got():
    before = current()
    got, seen = in_a_thread(lambda: (raise_priority(), current()))
    assert current() == before                          # the caller's own thread is untouched
    assert isinstance(got, Priority)
    if got.kind == "realtime":
        assert seen == f"FIFO {got.level}" and str(got) == f"real-time (FIFO {got.level})"
    elif got.kind == "nice":
        assert seen == f"nice {got.level}" and got.level < 0
    else:
        assert got.kind == "normal" and got.note and seen == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux scheduling")
def test_without_realtime_rights_the_thread_still_runs_at_the_best_it_may_have():
    """A child process that gave up every right first (RLIMIT_RTPRIO and RLIMIT_NICE 0, and
    not root): the answer is 'normal' with a reason, never an exception."""
    import subprocess
    code = (
        "import os, resource, sys, threading\n"
        "from realtime.priority import raise_priority\n"       # imported before the rights go
        "resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))\n"
        "resource.setrlimit(resource.RLIMIT_NICE, (0, 0))\n"
        "if os.geteuid() == 0:\n"
        "    os.setgid(65534); os.setuid(65534)\n"
        "out = []\n"
        "t = threading.Thread(target=lambda: out.append(raise_priority())); t.start(); t.join()\n"
        "print(out[0].kind, '|', out[0].note)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert r.returncode == 0, r.stderr
    kind, note = r.stdout.strip().split(" | ")
    assert kind == "normal" and "audio" in note


def test_realtime_can_be_declined():
    got = in_a_thread(lambda: raise_priority(realtime=False))
    assert got.kind != "realtime"
