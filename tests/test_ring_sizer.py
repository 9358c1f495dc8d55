"""The ring sizer (realtime/ring_sizer.py): warm-up, the window of dips, growth, bounds."""
from realtime.ring_sizer import RingSizer


def sizer(**kw) -> RingSizer:
    args = dict(margin=100, floor=600, ceiling=3000, warmup=3000, grow_by=256, window_s=20, warmup_s=20)
    args.update(kw)
    return RingSizer(**args)


def test_holds_the_warmup_fill_until_a_whole_window_has_been_seen():
    s = sizer()
    for t in range(20):
        s.observe(100.0 + t, 800)
        assert s.update(100.0 + t + 0.5) == 3000 and not s.settled
    s.observe(120.0, 800)
    assert s.update(120.5) == 900 and s.settled          # the deepest dip plus the margin


def test_follows_the_deepest_dip_of_the_window_and_forgets_it_after_the_window():
    s = sizer()
    for t in range(25):
        s.observe(float(t), 1500 if t == 22 else 700)
    assert s.update(24.9) == 1600
    for t in range(25, 42):
        s.observe(float(t), 700)
    assert s.update(41.9) == 1600        # second 22 is one of the last 20 (22..41)
    s.observe(42.0, 700)
    assert s.update(42.0) == 800         # now it is not (23..42)


def test_an_underrun_grows_the_target_for_good_within_the_ceiling():
    s = sizer()
    for t in range(21):
        s.observe(float(t), 700)
    assert s.update(21.0) == 800
    s.underrun()
    assert s.update(21.5) == 800 + 256
    for t in range(22, 80):
        s.observe(float(t), 700)
    assert s.update(80.0) == 800 + 256   # the growth outlives the window
    for _ in range(20):
        s.underrun()
    assert s.update(80.5) == 3000


def test_never_below_the_floor_nor_above_the_ceiling():
    s = sizer()
    for t in range(21):
        s.observe(float(t), 10)
    assert s.update(21.0) == 600
    s.observe(21.0, 10_000)
    assert s.update(21.1) == 3000
    assert s.deepest == 10_000


def test_a_silent_window_keeps_the_floor():
    s = sizer()
    s.observe(0.0, 700)
    assert s.update(25.0) == 600         # settled; no dip in the last 20 s
    assert s.window_depth(25.0) == 0


def test_a_warmup_shorter_than_the_window_settles_on_what_it_has_seen():
    s = sizer(warmup_s=5, window_s=120)
    for t in range(5):
        s.observe(float(t), 1200 if t == 1 else 700)
        assert s.update(t + 0.5) == 3000
    assert s.update(5.0) == 1300 and s.settled
    for t in range(5, 121):
        s.observe(float(t), 700)
    assert s.update(120.5) == 1300       # second 1 is one of the last 120 (1..120)
    s.observe(121.0, 700)
    assert s.update(121.0) == 800
