"""Mel matching (core/mel_match.py), full, low-latency and zero-latency: streamed in any
chunking it equals one whole call; it lags its input by exactly ``delay`` samples; audio that
already has the requested mel passes unchanged; audio with the wrong level or spectral tilt
comes out with the requested mel; an attack after silence is neither boosted nor muted."""
import math

import numpy as np
import pytest
import torch

from core.mel import LogMel, MelConfig
from core.mel_match import MODES, CausalMelMatch, MelMatch, mel_matcher
from core.streaming import BatchSubset
from tests.conftest import chunkings

C = MelConfig()
SR, HOP = C.sample_rate, C.hop
T = 96                                          # frames: 1.1 s
MATCHERS = ("full", "low-latency", "zero-latency", "causal-110")


def matcher(kind: str, audio_delay: int = 0) -> MelMatch:
    """The filter of a mode; "causal-110": zero-latency's design with 110 samples of delay."""
    if kind == "causal-110":
        return CausalMelMatch(C, audio_delay, output_delay=110)
    return mel_matcher(kind, C, audio_delay)


def tone(f0: float, frames: int = T, tilt: float = 0.0, gain: float = 1.0, seed: int = 0,
         noise: float = 1e-3) -> torch.Tensor:
    """Harmonics 1-20 of ``f0`` with amplitude k^-(1 + tilt), white noise of RMS ``0.2 *
    noise``: ``Tensor[frames*hop]``."""
    t = np.arange(frames * HOP) / SR
    rng = np.random.default_rng(seed)
    x = sum(k ** -(1.0 + tilt) * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi))
            for k in range(1, 21) if k * f0 < SR / 2)
    x = 0.2 * x + noise * rng.standard_normal(len(t))
    return torch.from_numpy(gain * x).float()


# repeats every hop exactly (3 periods): zero-latency's short windows, which compare the
# newest block with one a few hops back, see no change in it
PERIODIC_F0 = 3 * SR / HOP                      # 258.4 Hz


def stream(mm: MelMatch, audio: torch.Tensor, mel: torch.Tensor, sizes, f0: torch.Tensor | None = None) -> torch.Tensor:
    mm.reset()
    out, i = [], 0
    for n in sizes:
        out.append(mm(audio[:, i * HOP:(i + n) * HOP], mel[:, :, i:i + n], None if f0 is None else f0[:, i:i + n]))
        i += n
    return torch.cat(out, 1)


def test_the_modes_and_their_delays():
    assert MODES == ("full", "low-latency", "zero-latency", "off")
    assert mel_matcher("off", C, 0) is None
    assert [mel_matcher(m, C, 0).delay for m in MODES[:3]] == [896, 384, 0]
    assert isinstance(mel_matcher("zero-latency", C, 300), CausalMelMatch)
    assert mel_matcher("zero-latency", C, 300).delay == 0
    with pytest.raises(ValueError, match="must be one of"):
        mel_matcher("causal", C, 0)


@pytest.mark.parametrize("kind", MATCHERS)
@pytest.mark.parametrize("audio_delay", [0, 100, 300])
@pytest.mark.parametrize("with_f0", [False, True])
def test_chunked_equals_whole(audio_delay, kind, with_f0):
    audio = torch.stack([tone(196.0, tilt=1.0, gain=0.3), tone(440.0, seed=1)])
    mel = LogMel(C)(torch.stack([tone(196.0), tone(440.0, tilt=-0.5, seed=2)]))
    # f0 that changes (and goes unvoiced) along the stream, so every frame's own f0 matters
    f0 = torch.stack([torch.full((T,), 196.0), torch.linspace(300.0, 600.0, T)]) if with_f0 else None
    if f0 is not None:
        f0[1, 40:50] = 0.0
    mm = matcher(kind, audio_delay)
    whole = stream(mm, audio, mel, [T], f0)
    assert whole.shape == audio.shape
    for name, sizes in chunkings(T):
        torch.testing.assert_close(stream(mm, audio, mel, sizes, f0), whole, atol=1e-5, rtol=0, msg=name)


def test_the_bands_without_a_partial_are_those_no_multiple_of_f0_falls_in():
    mm = MelMatch(C)
    lo, hi = mm.band_edges
    f0 = torch.tensor([[440.0, 0.0, 97.0]])
    free = mm._without_partials(f0)[0]                                       # 3 x mels
    for j, f in enumerate((440.0, 0.0, 97.0)):
        for b in range(C.n_mels):
            has = f <= 0 or max(1, math.ceil(float(lo[b]) / f)) <= math.floor(float(hi[b]) / f)
            assert bool(free[j, b]) == (not has), (f, b)
    assert free[0, 0] == 1 and free[1].sum() == 0             # below the fundamental; unvoiced: none
    assert free[2].sum() < free[0].sum()                      # a low note: fewer bands are that narrow


@pytest.mark.parametrize("kind", MATCHERS)
def test_bands_between_partials_are_cut_but_not_lifted(kind):
    """A 660 Hz tone asked for 10 dB more in every band: given its f0, the bands that hold
    one of its partials rise as before and the bands between them much less; a band between
    partials asked for less is still cut."""
    f0_hz = 660.0
    audio = tone(f0_hz, noise=3e-3)[None]
    mel = LogMel(C)(audio)
    f0 = torch.full((1, T), f0_hz)
    free = MelMatch(C)._without_partials(f0)[0, 0].bool()
    assert free.sum() >= 8                                     # low bands narrower than 660 Hz
    lm = LogMel(C)

    def rise_db(out: torch.Tensor) -> torch.Tensor:
        """Each band's level change (dB) over the second half, against the input."""
        half = slice(T // 2, T - 4)
        return 20 * (lm(out)[0, :, half] - mel[0, :, half]).mean(1)

    up_free, up_held = {}, {}                                   # keyed "without f0" / "with f0"
    for name, given in (("without f0", None), ("with f0", f0)):
        rise = rise_db(stream(matcher(kind), audio, mel + 0.5, [T], given))
        up_free[name], up_held[name] = rise[free].median(), rise[~free].median()
    assert up_held["without f0"] > 8 and abs(up_held["with f0"] - up_held["without f0"]) < 1.5
    assert up_free["without f0"] > 8 and up_free["with f0"] < up_free["without f0"] - 5
    down = rise_db(stream(matcher(kind), audio, mel - 0.5, [T], f0))
    assert down[free].median() < -6                         # asked -10 (zero-latency smooths its gains)


@pytest.mark.parametrize("kind", MATCHERS)
@pytest.mark.parametrize("audio_delay", [0, 100, 256, 300])
def test_audio_with_the_requested_mel_passes_unchanged_after_the_delay(audio_delay, kind):
    """The audio stream lags the mel by ``audio_delay`` samples (a vocoder's look-ahead); the
    output lags the audio stream by ``delay``: at delay 0, 896 samples (2 frames + 384), or
    384 for the low-latency filter (which synthesises only the window's last 2 hops), 0 for
    zero-latency (110 when asked for)."""
    x = tone(PERIODIC_F0, noise=0.0)
    mel = LogMel(C)(x)[None]
    audio = torch.cat((torch.zeros(audio_delay), x))[:len(x)][None]
    mm = matcher(kind, audio_delay)
    if audio_delay == 0:
        assert 2 * HOP + (C.n_fft - HOP) // 2 == 896
        assert mm.delay == {"full": 896, "low-latency": 384, "zero-latency": 0, "causal-110": 110}[kind]
    total = audio_delay + mm.delay
    y = stream(mm, audio, mel, [7] * (T // 7) + [T % 7])[0]
    # the stream's first frames are analysed with zeros before the start, as the mel's are
    # with its reflect padding: compare after the first window (zero-latency applies those
    # frames' gains a few blocks later: after two). Zero-latency also plays the mel's last
    # frames, reflect-padded at its end, at once: not the last window either.
    causal = isinstance(mm, CausalMelMatch)
    skip, end = C.n_fft * (2 if causal else 1), len(x) - (C.n_fft if causal else 0)
    err = (y[total + skip:end] - x[skip:end - total]).abs().max()
    assert err < 2e-3 * x.abs().max()
    for lag in (total - 2, total + 2):          # and at no other lag
        assert (y[lag + skip:end] - x[skip:end - lag]).abs().max() > 20 * err


@pytest.mark.parametrize("kind, tolerance", [("full", 0.1), ("low-latency", 0.1), ("zero-latency", 0.15),
                                             ("causal-110", 0.15)])
def test_a_wrong_level_and_tilt_come_out_with_the_requested_mel(kind, tolerance):
    """Zero-latency leaves more: its short windows over a steady aperiodic tone (noise and
    20 partials) fluctuate from block to block by about 1 dB per band (residual 0.10 of the
    error; 0.02 on a tone that repeats every hop, test_a_steady_tilt_is_removed)."""
    want = tone(220.0)                              # the audio the mel describes
    got = tone(220.0, tilt=0.2, gain=0.5)           # what a vocoder made: 6 dB low and dull (the
                                                    # 20th partial 11 dB low, within the 12 dB lift)
    lm = LogMel(C)
    mel = lm(want)[None]
    mm = matcher(kind)
    y = stream(mm, got[None], mel, [T])[0]
    d = mm.delay
    frames = slice(8, T - 8)                         # away from the edges
    before = (lm(got)[:, frames] - mel[0][:, frames]).abs().mean()
    after = (lm(y[d:])[:, frames.start:frames.stop - 4] - mel[0][:, frames.start:frames.stop - 4]).abs().mean()
    assert before > 0.3 and after < tolerance * before                 # log10
    seg = slice(8 * HOP, (T - 12) * HOP)
    level = 20 * torch.log10(y[d:][seg].pow(2).mean().sqrt() / want[seg].pow(2).mean().sqrt())
    assert abs(float(level)) < 0.5                   # dB


def tilt_db_per_octave(err_db: torch.Tensor, f0: float) -> float:
    """Least-squares slope of a per-band error ``Tensor[n_mels]`` (dB) against log2 of the
    band's centre frequency, over the bands from f0 to the 20th partial."""
    from core.mel import hz_to_mel_slaney, mel_to_hz_slaney
    edges = mel_to_hz_slaney(np.linspace(hz_to_mel_slaney(np.array(C.fmin)), hz_to_mel_slaney(np.array(C.fmax or SR / 2)),
                                         C.n_mels + 2))
    centre = torch.from_numpy(edges[1:-1])
    use = (centre >= f0) & (centre <= 20 * f0)
    octave = torch.log2(centre[use]).double()
    e = err_db[use].double()
    return float(((octave - octave.mean()) * (e - e.mean())).sum() / ((octave - octave.mean()) ** 2).sum())


@pytest.mark.parametrize("f0, noise, left", [(PERIODIC_F0, 0.0, 0.05), (220.0, 1e-3, 0.2)])
def test_a_steady_tilt_is_removed(f0, noise, left):
    """The vocoder's audio is the requested tone with a steady tilt (partial k at k^-0.3:
    -1.8 dB per octave in its partials, -1.8 to -2.7 in these tones' log-mels) and 3 dB low.
    Zero-latency mel matching leaves at most ``left`` of the tilt and of the mean log-mel
    error: 5 % on a tone that repeats every hop (it leaves 0.5 %), 20 % on an aperiodic one
    with noise, whose short windows fluctuate (it leaves 12 % of the tilt, 14 % of the
    error); and the level within 0.5 dB."""
    want = tone(f0, noise=noise)
    got = tone(f0, tilt=0.3, gain=10 ** (-3 / 20), noise=noise)
    lm = LogMel(C)
    mel = lm(want)[None]
    y = stream(mel_matcher("zero-latency", C, 0), got[None], mel, [T])[0]
    frames = slice(12, T - 4)
    err = lambda a: 20 * (lm(a)[:, frames] - mel[0][:, frames])               # noqa: E731  dB
    tilt_before, tilt_after = tilt_db_per_octave(err(got).mean(1), f0), tilt_db_per_octave(err(y).mean(1), f0)
    assert -3.2 < tilt_before < -1.5
    assert abs(tilt_after) < left * abs(tilt_before)
    assert err(y).abs().mean() < left * err(got).abs().mean()
    seg = slice(12 * HOP, (T - 4) * HOP)
    level = 20 * torch.log10(y[seg].pow(2).mean().sqrt() / want[seg].pow(2).mean().sqrt())
    assert abs(float(level)) < 0.5


@pytest.mark.parametrize("kind", MATCHERS)
def test_an_onset_is_neither_boosted_nor_muted(kind):
    """Before the note the vocoder plays its noise 20 dB below the requested noise (mel
    matching lifts it the 12 dB it may); then the note, exactly as requested. The attack's
    first five blocks keep their level within 1.5 dB (zero-latency without its onset guard:
    +7 dB, then -24 dB)."""
    onset = 48
    rng = np.random.default_rng(5)
    sounding = torch.zeros(T * HOP)
    sounding[onset * HOP:] = 1
    note = tone(220.0)
    want = torch.from_numpy(1e-3 * rng.standard_normal(T * HOP)).float() * (1 - sounding) + note * sounding
    got = torch.from_numpy(1e-4 * rng.standard_normal(T * HOP)).float() * (1 - sounding) + note * sounding
    mm = matcher(kind)
    y = stream(mm, got[None], LogMel(C)(want)[None], [T])[0][mm.delay:]
    rms_db = lambda a: 20 * torch.log10(a.pow(2).mean().sqrt())               # noqa: E731
    for k in range(onset, onset + 5):
        block = slice(k * HOP, (k + 1) * HOP)
        assert abs(float(rms_db(y[block]) - rms_db(got[block]))) < 1.5, k - onset


@pytest.mark.parametrize("kind", MATCHERS)
def test_rows_stepped_apart_equal_rows_stepped_together(kind):
    audio = torch.stack([tone(196.0, gain=0.5), tone(330.0, tilt=1.0, seed=3)])
    mel = LogMel(C)(torch.stack([tone(196.0), tone(330.0, seed=4)]))
    mm = matcher(kind)
    together = stream(mm, audio, mel, [8] * (T // 8))
    mm.reset()
    apart = torch.zeros_like(together)
    for i in range(0, T, 8):                        # row 1, then row 0, each on its own
        for r in (1, 0):
            idx = torch.tensor([r])
            with BatchSubset(mm, idx, 2):
                apart[r, i * HOP:(i + 8) * HOP] = mm(audio[r:r + 1, i * HOP:(i + 8) * HOP], mel[r:r + 1, :, i:i + 8])[0]
    torch.testing.assert_close(apart, together, atol=1e-5, rtol=0)


def test_the_filter_is_minimum_phase_and_short():
    """For random band gains within the clamp (-24..+12 dB): the filter's magnitude is the
    gain curve (mean error under 0.3 dB, the cepstrum's cut smooths it), its taps past
    ``fir_len`` (which overlap-save would wrap onto the block) hold less than -33 dB of its
    energy, and its energy comes at least as early as that of the linear-phase filter with
    the same magnitude, at every tap (minimum phase: the least delay for a magnitude)."""
    mm = CausalMelMatch(C)
    g = torch.Generator().manual_seed(0)
    band_gain = (torch.rand(64, C.n_mels, generator=g, dtype=torch.float64) * 36 - 24) / 20 * math.log(10)
    log_mag = band_gain @ mm.spread_conv.double()
    spec = mm._min_phase(log_mag, mm.fold.double())
    assert (spec.abs().log() - log_mag).abs().mean() / math.log(10) * 20 < 0.3
    taps = torch.fft.irfft(spec, n=mm.conv_len)
    energy = taps.pow(2).sum(1)
    assert float((taps[:, mm.fir_len:].pow(2).sum(1) / energy).max()) < 10 ** (-33 / 10)
    linear = torch.roll(torch.fft.irfft(spec.abs().to(spec.dtype), n=mm.conv_len), mm.conv_len // 2, 1)
    early = taps.pow(2).cumsum(1) / energy[:, None]
    assert bool((early >= linear.pow(2).cumsum(1) / energy[:, None] - 1e-3).all())


@pytest.mark.parametrize("kind", MATCHERS)
def test_mismatched_audio_and_mel_are_refused(kind):
    with pytest.raises(ValueError, match="expected audio"):
        matcher(kind)(torch.zeros(1, 3 * HOP + 1), torch.zeros(1, C.n_mels, 3))


def test_the_synth_hands_mel_matching_each_voice_s_f0_and_the_engine_says_so(small_bundle, tmp_path, monkeypatch):
    """With a vocoder that takes f0 and core.mel_match.CUT_ONLY_BETWEEN_PARTIALS on (read when a
    Synth is made), the synth's mel matching gets its voices' f0, which changes what it plays;
    the engine's stats say whether it does. A vocoder without f0 input gives the chain no f0,
    and the stats say the rule is off."""
    import core.mel_match as matching
    from core.bundle import load_bundle, save_bundle
    from core.synth import Synth
    from realtime.engine import Engine
    from tests.conftest import small_models
    gen, voc = small_models(harmonics=8)
    harmonic = tmp_path / "h.dwb"
    save_bundle(harmonic, name="h", generator=gen, vocoder=voc, mel=MelConfig(),
                mean=torch.linspace(-4, -1, 80), std=torch.full((80,), 1.5), provenance={})
    torch.manual_seed(0)
    z, tok, pitch = torch.randn(1, 20, 24), torch.zeros(1, 24, dtype=torch.long), torch.full((1, 24), 72.0)
    played = {}
    for on in (True, False):
        monkeypatch.setattr(matching, "CUT_ONLY_BETWEEN_PARTIALS", on)
        synth = Synth(load_bundle(harmonic), mel_match="zero-latency")
        assert synth.match_f0 is on
        synth.reset()
        played[on], _ = synth.step(z, tok, pitch)
        assert Engine(load_bundle(harmonic), 48000, threads=1).stats()["mel_match_cut_only_between_partials"] is on
    assert (played[True] - played[False]).abs().max() > 1e-4
    monkeypatch.setattr(matching, "CUT_ONLY_BETWEEN_PARTIALS", True)
    assert Engine(load_bundle(small_bundle), 48000, threads=1).stats()["mel_match_cut_only_between_partials"] is False
