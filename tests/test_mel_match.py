"""Mel matching (core/mel_match.py), full and low-latency: streamed in any chunking it equals
one whole call; it lags its input by exactly ``delay`` samples; audio that already has the
requested mel passes unchanged; audio with the wrong level or spectral tilt comes out with
the requested mel."""
import numpy as np
import pytest
import torch

from core.mel import LogMel, MelConfig
from core.mel_match import MelMatch
from core.streaming import BatchSubset
from tests.conftest import chunkings

C = MelConfig()
SR, HOP = C.sample_rate, C.hop
T = 96                                          # frames: 1.1 s


def tone(f0: float, frames: int = T, tilt: float = 0.0, gain: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Harmonics 1-20 of ``f0`` with amplitude k^-(1 + tilt), a little noise: ``Tensor[frames*hop]``."""
    t = np.arange(frames * HOP) / SR
    rng = np.random.default_rng(seed)
    x = sum(k ** -(1.0 + tilt) * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
            for k in range(1, 21) if k * f0 < SR / 2)
    x = 0.2 * x + 1e-3 * rng.standard_normal(len(t))
    return torch.from_numpy(gain * x).float()


def stream(mm: MelMatch, audio: torch.Tensor, mel: torch.Tensor, sizes) -> torch.Tensor:
    mm.reset()
    out, i = [], 0
    for n in sizes:
        out.append(mm(audio[:, i * HOP:(i + n) * HOP], mel[:, :, i:i + n]))
        i += n
    return torch.cat(out, 1)


@pytest.mark.parametrize("low_latency", [False, True])
@pytest.mark.parametrize("audio_delay", [0, 100, 300])
def test_chunked_equals_whole(audio_delay, low_latency):
    audio = torch.stack([tone(196.0, tilt=1.0, gain=0.3), tone(440.0, seed=1)])
    mel = LogMel(C)(torch.stack([tone(196.0), tone(440.0, tilt=-0.5, seed=2)]))
    mm = MelMatch(C, audio_delay, low_latency=low_latency)
    whole = stream(mm, audio, mel, [T])
    assert whole.shape == audio.shape
    for name, sizes in chunkings(T):
        torch.testing.assert_close(stream(mm, audio, mel, sizes), whole, atol=1e-5, rtol=0, msg=name)


@pytest.mark.parametrize("low_latency", [False, True])
@pytest.mark.parametrize("audio_delay", [0, 100, 256, 300])
def test_audio_with_the_requested_mel_passes_unchanged_after_the_delay(audio_delay, low_latency):
    """The audio stream lags the mel by ``audio_delay`` samples (a vocoder's look-ahead); the
    output lags the audio stream by ``delay``: at delay 0, 896 samples (2 frames + 384), or
    384 for the low-latency filter (which synthesises only the window's last 2 hops)."""
    x = tone(261.6)
    mel = LogMel(C)(x)[None]
    audio = torch.cat((torch.zeros(audio_delay), x))[:len(x)][None]
    mm = MelMatch(C, audio_delay, low_latency=low_latency)
    if audio_delay == 0:
        assert 2 * HOP + (C.n_fft - HOP) // 2 == 896
        assert mm.delay == (384 if low_latency else 896)
    total = audio_delay + mm.delay
    y = stream(mm, audio, mel, [7] * (T // 7) + [T % 7])[0]
    # the stream's first frames are analysed with zeros before the start, as the mel's are
    # with its reflect padding: compare after the first window
    err = (y[total + C.n_fft:] - x[C.n_fft:len(x) - total]).abs().max()
    assert err < 2e-3 * x.abs().max()
    for lag in (total - 2, total + 2):          # and at no other lag
        assert (y[lag + C.n_fft:] - x[C.n_fft:len(x) - lag]).abs().max() > 20 * err


@pytest.mark.parametrize("low_latency", [False, True])
def test_a_wrong_level_and_tilt_come_out_with_the_requested_mel(low_latency):
    want = tone(220.0)                              # the audio the mel describes
    got = tone(220.0, tilt=0.2, gain=0.5)           # what a vocoder made: 6 dB low and dull (the
                                                    # 20th partial 11 dB low, within the 12 dB lift)
    lm = LogMel(C)
    mel = lm(want)[None]
    mm = MelMatch(C, low_latency=low_latency)
    y = stream(mm, got[None], mel, [T])[0]
    d = mm.delay
    frames = slice(8, T - 8)                         # away from the edges
    before = (lm(got)[:, frames] - mel[0][:, frames]).abs().mean()
    after = (lm(y[d:])[:, frames.start:frames.stop - 4] - mel[0][:, frames.start:frames.stop - 4]).abs().mean()
    assert before > 0.3 and after < 0.1 * before                       # log10
    seg = slice(8 * HOP, (T - 12) * HOP)
    level = 20 * torch.log10(y[d:][seg].pow(2).mean().sqrt() / want[seg].pow(2).mean().sqrt())
    assert abs(float(level)) < 0.5                   # dB


@pytest.mark.parametrize("low_latency", [False, True])
def test_rows_stepped_apart_equal_rows_stepped_together(low_latency):
    audio = torch.stack([tone(196.0, gain=0.5), tone(330.0, tilt=1.0, seed=3)])
    mel = LogMel(C)(torch.stack([tone(196.0), tone(330.0, seed=4)]))
    mm = MelMatch(C, low_latency=low_latency)
    together = stream(mm, audio, mel, [8] * (T // 8))
    mm.reset()
    apart = torch.zeros_like(together)
    for i in range(0, T, 8):                        # row 1, then row 0, each on its own
        for r in (1, 0):
            idx = torch.tensor([r])
            with BatchSubset(mm, idx, 2):
                apart[r, i * HOP:(i + 8) * HOP] = mm(audio[r:r + 1, i * HOP:(i + 8) * HOP], mel[r:r + 1, :, i:i + 8])[0]
    torch.testing.assert_close(apart, together, atol=1e-5, rtol=0)


def test_mismatched_audio_and_mel_are_refused():
    mm = MelMatch(C)
    with pytest.raises(ValueError, match="expected audio"):
        mm(torch.zeros(1, 3 * HOP + 1), torch.zeros(1, C.n_mels, 3))
