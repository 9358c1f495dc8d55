"""``benchmarks/noise_floor.py`` against its closed form: two independent realizations of
the same Gaussian noise are ``sqrt(2 - pi/2) + ln 2`` = 1.348 apart on eval's
multi-resolution STFT distance (white noise); the log term is ``ln 2`` whatever the noise's
spectrum; a copy of the very same waveform is 0 apart."""
import numpy as np
import pytest

from benchmarks.noise_floor import PROCESSES, THEORY_LOG, THEORY_SC, measure
from training.metrics import mr_stft_distance, mr_stft_parts


@pytest.mark.parametrize("process", ["white", "pink"])
def test_independent_realizations_of_a_noise_are_as_far_apart_as_rayleigh_magnitudes_predict(process):
    rng = np.random.default_rng(3)
    parts = np.array([mr_stft_parts(PROCESSES[process](rng), PROCESSES[process](rng)) for _ in range(3)])
    sc, lg = parts.mean(0)
    print(process, sc, lg)
    assert abs(lg - THEORY_LOG) < 0.02          # every bin weighs alike: each is Rayleigh
    if process == "white":
        assert abs(sc - THEORY_SC) < 0.02
    else:   # pink's energy sits in a few low bins, the DC bin's real (half-normal) among them
        assert THEORY_SC < sc < 0.85


def test_the_same_waveform_is_zero_apart_and_a_level_error_costs_what_its_log_says():
    x = PROCESSES["white"](np.random.default_rng(4))
    assert mr_stft_parts(x, x) == (0.0, 0.0)
    sc, lg = mr_stft_parts(x, 0.5 * x)                  # every magnitude halved
    assert abs(sc - 0.5) < 1e-4 and abs(lg - np.log(2)) < 1e-3
    assert abs(mr_stft_distance(x, 0.5 * x) - (sc + lg)) < 1e-9


def test_the_measure_reports_every_process_and_the_closed_form():
    out = measure(None, clips=1)
    assert set(out) == {*PROCESSES, "theory_independent"}
    for name in PROCESSES:
        row = out[name]["independent"]
        assert abs(row["distance"] - row["spectral_convergence"] - row["log_term"]) < 1e-9
        assert 0 < out[name]["griffin_lim"]["distance"] < 3
