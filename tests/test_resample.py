"""The low-delay resampler (core.resample): chunked == whole, images and aliases at least
70 dB down, unity passband, and a holdback that the stream's measured lag confirms.

Measurements (tone fits, Blackman spectra, group delay from tone pairs) are the ones
benchmarks/resampler.py reports; test_spur_measure_sees_a_spur shows they can fail."""
import numpy as np
import pytest

from benchmarks.resampler import (DELAY_TONES_HZ, IN_RATE, group_delays_s, rejection_db, sine_fit,
                                  spectrum_n, spur_db, stream, tones)
from core.resample import HOLDBACK_BAND, LowDelayResampler

DEVICE_RATES = [48000, 44100]
OTHER_RATES = [96000, 16000, 44101]        # an odd downsampling and a cycle too long to be dense
REQUIRED_REJECTION_DB = 70.0
BLACKMAN_SCALLOP_DB = 1.1                  # a component between bins reads up to this much low
LAG_TOLERANCE_S = 2e-6                     # 0.1 output sample at 48 kHz


def chunkings(total: int, seed: int = 0):
    """(name, chunk sizes): 1, 7, 256 and random sizes 0-700 (empty calls included)."""
    rng = np.random.default_rng(seed)
    out = [(f"k{k}", [k] * (total // k) + [total % k]) for k in (1, 7, 256)]
    for i in range(2):
        sizes = []
        while sum(sizes) < total:
            sizes.append(int(min(rng.integers(0, 701), total - sum(sizes))))
        out.append((f"random{i}", sizes))
    return out


@pytest.mark.parametrize("out_rate", DEVICE_RATES + OTHER_RATES)
def test_chunked_equals_whole_and_nothing_is_held_back(out_rate):
    x = np.random.default_rng(1).uniform(-1, 1, 6000).astype(np.float32)
    r = LowDelayResampler(IN_RATE, out_rate)
    whole = r.process(x)
    assert whole.dtype == np.float32 and len(whole) == r.output_count(len(x))
    for name, sizes in chunkings(len(x)):
        r.reset()
        parts, fed = [], 0
        for n in sizes:
            parts.append(r.process(x[fed:fed + n]))
            fed += n
            # every output whose inputs have arrived comes out at once: ceil(N * out / in)
            assert sum(map(len, parts)) == -(-fed * out_rate // IN_RATE), name
        chunked = np.concatenate(parts)
        # the cycle product's summation order follows BLAS blocking: equal to float32 rounding
        np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-6, err_msg=name)


def test_reset_starts_a_new_stream():
    x = np.random.default_rng(2).uniform(-1, 1, 3000).astype(np.float32)
    r = LowDelayResampler(IN_RATE, 48000)
    first = r.process(x)
    r.process(x[:123])
    r.reset()
    np.testing.assert_array_equal(r.process(x), first)


def test_identity_passes_through():
    x = np.random.default_rng(3).uniform(-1, 1, 1000).astype(np.float32)
    r = LowDelayResampler(IN_RATE, IN_RATE)
    assert r.ratio == 1 and r.holdback_s == 0.0
    np.testing.assert_array_equal(np.concatenate([r.process(x[:7]), r.process(x[7:])]), x)


@pytest.mark.parametrize("out_rate", DEVICE_RATES + [96000, 44101])
def test_images_rejected_near_nyquist(out_rate):
    """Sines just below the passband edge and in the transition band up to 11 kHz (whose
    images land from 11.05 kHz on): every other component at least 70 dB under the tone's
    input level (Blackman spectrum, the tone's own +-25 Hz left out; the margin covers the
    window's scalloping loss)."""
    rej = rejection_db(lambda: LowDelayResampler(IN_RATE, out_rate).process, out_rate)
    assert set(rej) >= {"9900", "10500", "11000"}
    for f, db in rej.items():
        assert db >= REQUIRED_REJECTION_DB + BLACKMAN_SCALLOP_DB, (f, db)


@pytest.mark.parametrize("tone_hz", [6000.0, 9000.0, 10500.0])
def test_aliases_rejected_when_downsampling(tone_hz):
    """22050 -> 16000 Hz: a passband tone keeps clean, tones above 8 kHz fold back at least
    70 dB down (what is left of them, everywhere in the output, against their input level)."""
    out_rate = 16000
    n = int((spectrum_n(out_rate) / out_rate + 0.3) * IN_RATE)
    y = stream(LowDelayResampler(IN_RATE, out_rate).process, tones([tone_hz], n, IN_RATE, 0.5))
    assert -spur_db(y, out_rate, tone_hz, 0.5) >= REQUIRED_REJECTION_DB + BLACKMAN_SCALLOP_DB


@pytest.mark.parametrize("spur_hz", [11550.0, 10530.0])
def test_spur_measure_sees_a_spur(spur_hz):
    """The rejection measure is not blind: a component 60 dB under a 10.5 kHz tone, at its
    image frequency or 30 Hz from it, reads -60 dB, at most the Blackman window's
    scalloping loss low."""
    rate, n = 48000, spectrum_n(48000)
    t = np.arange(n) / rate
    y = 0.5 * np.sin(2 * np.pi * 10500 * t) + 0.5e-3 * np.sin(2 * np.pi * spur_hz * t)
    assert -60.0 - BLACKMAN_SCALLOP_DB - 0.05 <= spur_db(y, rate, 10500.0, 0.5) <= -60.0 + 0.05


@pytest.mark.parametrize("out_rate", DEVICE_RATES)
def test_passband_tone_keeps_frequency_and_level(out_rate):
    """1 kHz in, 1 kHz out at its level within 0.1 dB; 8 kHz within 0.1 dB of it."""
    x = tones([1000.0, 8000.0], 2 * IN_RATE, IN_RATE, 0.25)
    y = stream(LowDelayResampler(IN_RATE, out_rate).process, x)
    n = spectrum_n(out_rate)
    mag = np.abs(np.fft.rfft(y[-n:] * np.blackman(n)))
    f = np.fft.rfftfreq(n, 1 / out_rate)
    peak = f[np.argmax(mag * (f < 4000))]
    assert abs(peak - 1000.0) <= out_rate / n                  # one bin
    amp, _ = sine_fit(y, out_rate, [1000.0, 8000.0], int(0.1 * out_rate))
    level = 20 * np.log10(amp / 0.25)
    assert abs(level[0]) <= 0.1
    assert abs(level[1] - level[0]) <= 0.1


@pytest.mark.parametrize("out_rate", DEVICE_RATES)
def test_holdback_is_the_measured_lag(out_rate):
    """Through the stream, the lag of tone pairs behind the output timeline (group delay)
    equals the design's at each frequency, and the largest over 100 Hz - 5 kHz equals the
    reported holdback, within 2 us; the holdback is at most 2 ms."""
    r = LowDelayResampler(IN_RATE, out_rate)
    measured = group_delays_s(r.process, out_rate, DELAY_TONES_HZ)
    np.testing.assert_allclose(measured, r.group_delay_s(DELAY_TONES_HZ), rtol=0, atol=LAG_TOLERANCE_S)
    lo, hi = HOLDBACK_BAND
    in_band = [(lo <= f <= hi) for f in DELAY_TONES_HZ]
    assert max(measured[in_band]) == pytest.approx(r.holdback_s, abs=LAG_TOLERANCE_S)
    assert 0 < r.holdback_s <= 2e-3
