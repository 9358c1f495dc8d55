"""Live audio input: the streaming analysis against the offline one, the pitch tracker on
synthetic tones, and (JACK) the engine playing the tokens and pitch of what a client plays
into its input port."""
import numpy as np
import pytest
import torch

from core.bundle import load_bundle, save_bundle
from core.input_analysis import InputAnalyzer, analyse_offline
from core.mel import LogMel, MelConfig
from core.pitch import yin_pitch
from core.resample import LowDelayResampler
from core.stream_mel import StreamingLogMel
from core.stream_pitch import StreamingYin, hz_to_midi
from tests.conftest import small_models

SR = 22050
CHUNKINGS = ("1", "7", "256", "random")


def chunks(x: np.ndarray, how: str, seed: int = 0):
    """``x`` cut into pieces of 1, 7 or 256 samples, or of random sizes 1..700."""
    if how == "random":
        rng = np.random.default_rng(seed)
        i = 0
        while i < len(x):
            k = int(rng.integers(1, 701))
            yield x[i:i + k]
            i += k
        return
    k = int(how)
    for i in range(0, len(x), k):
        yield x[i:i + k]


def phrase(sr: int, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """Harmonic notes, a glide, noise and silence: ``ndarray[sr * seconds]`` float32."""
    rng = np.random.default_rng(seed)
    n = int(sr * seconds)
    t = np.arange(n) / sr
    f = np.where(t < 0.3, 220.0, np.where(t < 0.5, 220.0 * 2 ** ((t - 0.3) / 0.2), 330.0))
    phase = 2 * np.pi * np.cumsum(f) / sr
    x = sum(0.3 / k * np.sin(k * phase) for k in range(1, 5))
    x[int(0.75 * n):int(0.85 * n)] = 0.2 * rng.standard_normal(int(0.85 * n) - int(0.75 * n))
    x[int(0.85 * n):] = 0.0
    return x.astype(np.float32)


def encoder_bundle(tmp_path, n_tokens=4, harmonics=0):
    """A small token bundle with a random token encoder (``n_tokens`` codes)."""
    from core.tokens import TokenEncoder, TokenEncoderConfig
    from core.vocoder import MelGANVocoder, VocoderConfig
    gen, voc = small_models(n_tokens=n_tokens)
    if harmonics:
        torch.manual_seed(3)
        voc = MelGANVocoder(VocoderConfig(ngf=8, harmonics=harmonics)).eval()
    torch.manual_seed(1)        # a seed whose codes split the test phrases into 3 tokens
    enc = TokenEncoder(TokenEncoderConfig(channels=(24, 16), code_dim=8, n_codes=n_tokens))
    for p in enc.parameters():
        torch.nn.init.normal_(p, 0.0, 0.5)
    path = tmp_path / "enc.dwb"
    save_bundle(path, name="enc", generator=gen, vocoder=voc, mel=MelConfig(),
                mean=torch.zeros(80) - 3, std=torch.ones(80), encoder=enc)
    return path


@pytest.mark.parametrize("how", CHUNKINGS)
def test_streaming_mel_is_the_offline_mel_frame_for_frame(how):
    x = phrase(SR, 0.6)
    whole = LogMel(MelConfig())(torch.from_numpy(x)).numpy()          # [80 x L/hop]
    s = StreamingLogMel(MelConfig())
    got = np.concatenate([s.process(c).numpy() for c in chunks(x, how)], axis=1)
    # every frame whose window lies within the audio: (L - hop - pad) // hop + 1
    assert got.shape[1] == (len(x) - 256 - 384) // 256 + 1 >= whole.shape[1] - 2
    np.testing.assert_allclose(got, whole[:, :got.shape[1]], atol=2e-5, rtol=0)
    assert np.ptp(whole) > 3       # not a flat spectrogram


@pytest.mark.parametrize("how", CHUNKINGS)
def test_streaming_yin_is_the_offline_yin_frame_for_frame(how):
    x = phrase(SR, 0.6)
    f0, voiced = yin_pitch(x, SR)
    s = StreamingYin(SR)
    parts = [s.process(c) for c in chunks(x, how)]
    got_f0 = np.concatenate([p[0] for p in parts])
    got_v = np.concatenate([p[1] for p in parts])
    assert len(got_f0) == (len(x) - 512) // 256 + 1
    np.testing.assert_array_equal(got_v, voiced[:len(got_v)])
    np.testing.assert_allclose(got_f0, f0[:len(got_f0)], rtol=1e-9, equal_nan=True)
    assert got_v.sum() > 10 and (~got_v).sum() > 5


@pytest.mark.parametrize("how", CHUNKINGS)
def test_input_analysis_streamed_from_48k_gives_the_offline_tokens_and_pitch(tmp_path, how):
    bundle = load_bundle(encoder_bundle(tmp_path))
    x = phrase(48000, 1.0, seed=1)
    ref = analyse_offline(bundle, x, 48000)
    a = InputAnalyzer(bundle, 48000)
    frames = [a.process(c) for c in chunks(x, how, seed=2)]
    tokens = np.concatenate([f.tokens for f in frames])
    midi = np.concatenate([f.midi for f in frames])
    voiced = np.concatenate([f.voiced for f in frames])
    n_model = LowDelayResampler(48000, SR).output_count(len(x))
    assert len(tokens) == (n_model - 640) // 256 + 1 >= len(ref) - 3
    np.testing.assert_array_equal(tokens, ref.tokens[:len(tokens)])       # frame for frame, no delay
    assert len(set(tokens.tolist())) >= 2                                # the phrase uses several tokens
    np.testing.assert_array_equal(voiced, ref.voiced[:len(voiced)])
    np.testing.assert_allclose(midi, ref.midi[:len(midi)], atol=1e-6, equal_nan=True)


def harmonic_tone(f0: float, seconds: float = 0.5, sr: int = SR, harmonics: int = 6) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return sum(0.5 / k * np.sin(2 * np.pi * k * f0 * t + k) for k in range(1, harmonics + 1)).astype(np.float32)


@pytest.mark.parametrize("f0", [82.4, 110.0, 196.0, 261.6, 440.0, 659.3, 880.0])
def test_yin_reads_harmonic_tones_within_10_cents(f0):
    s = StreamingYin(SR)
    f, voiced = s.process(harmonic_tone(f0))
    steady = slice(3, len(f))            # the first frames reach into the zero padding
    assert voiced[steady].all()
    cents = 1200 * np.log2(f[steady] / f0)
    assert np.max(np.abs(cents)) < 10, np.max(np.abs(cents))


def test_yin_says_unvoiced_on_noise_and_silence():
    rng = np.random.default_rng(4)
    s = StreamingYin(SR)
    _, v_noise = s.process((0.3 * rng.standard_normal(SR // 2)).astype(np.float32))
    s.reset()
    _, v_silence = s.process(np.zeros(SR // 2, np.float32))
    assert len(v_noise) > 30 and not v_noise[2:].any()
    assert not v_silence.any()


def test_hz_to_midi():
    np.testing.assert_allclose(hz_to_midi(np.array([440.0, 261.6256, 880.0])), [69.0, 60.0, 81.0], atol=1e-4)
    assert np.isnan(hz_to_midi(np.array([np.nan])))[0]


# ---- the engine's side: LiveInput and token mode "input" ---------------------------------

class FakeInput:
    """Stands for an AudioInput: ``read`` hands out every chunk that :meth:`arrive` queued."""
    device_name, samplerate, latency_s, block_frames = "fake", 48000, 0.0, 1024
    overruns = input_overflows = input_underflows = 0

    def __init__(self, chunks=()):
        self.chunks = list(chunks)

    def arrive(self, chunk):
        self.chunks.append(chunk)

    def read(self):
        out, self.chunks = np.concatenate(self.chunks or [np.zeros(0, np.float32)]), []
        return out


class FakePlayer:
    def __init__(self, bundle):
        from realtime.sources import TokenSource
        self.bundle = bundle
        self.tokens = TokenSource(bundle.generator.config.n_tokens)


def test_live_input_hands_each_generated_frame_the_next_analysed_frame(tmp_path):
    from realtime.live_input import LiveInput
    from realtime.params import TOKEN_MODES
    bundle = load_bundle(encoder_bundle(tmp_path))
    x = phrase(48000, 1.0, seed=1)
    blocks = [x[i:i + 1024] for i in range(0, len(x), 1024)]        # JACK periods of 1024 frames
    # the output side takes ~1.84 frames per period too: 2 steps of 1 frame, then 1, ...
    live, player = LiveInput(FakeInput(), bundle), FakePlayer(bundle)
    mode = TOKEN_MODES.index("input")
    played = []
    for k in range(len(blocks) + 20):
        if k < len(blocks):
            live.input.arrive(blocks[k])
        for _ in range(2 if k % 6 else 1):
            pitch = live.feed(player, 1, 60.0, follow=True)
            played.append((player.tokens.next(1, mode, 0, 8.0)[0], pitch))
    ref = analyse_offline(bundle, x, 48000)
    idx, tok, asked = live.taps()
    used = idx >= 0
    assert used.sum() >= len(ref) - 3 and live.dropped_frames == 0
    assert np.array_equal(np.diff(idx[used]), np.ones(used.sum() - 1, np.int64))      # frame for frame
    np.testing.assert_array_equal(tok[used], ref.tokens[idx[used]])
    toks = np.array([t for t, _ in played])
    np.testing.assert_array_equal(toks[used], ref.tokens[idx[used]])     # what the token source played
    voiced = used.copy()
    voiced[used] = ref.voiced[idx[used]]
    np.testing.assert_allclose(asked[voiced], ref.midi[idx[voiced]], atol=1e-4)    # pitch follows
    held = used & ~voiced
    assert held.any()
    # unvoiced frames hold the last voiced pitch
    last = [asked[np.flatnonzero(voiced[:i])[-1]] for i in np.flatnonzero(held) if voiced[:i].any()]
    np.testing.assert_allclose(asked[held][-len(last):], last, atol=1e-6)
    assert live.starved_frames >= 1          # the input ended: the frames after it found none


def test_live_input_drops_a_backlog_and_counts_it(tmp_path):
    from realtime.live_input import LiveInput
    bundle = load_bundle(encoder_bundle(tmp_path))
    x = phrase(48000, 1.0, seed=1)
    live, player = LiveInput(FakeInput([x[:4096]]), bundle), FakePlayer(bundle)
    live.feed(player, 1, 60.0, follow=False)
    live.feed(player, 1, 60.0, follow=False)
    assert live.dropped_frames == 0 and live.prebuffer == 3     # ceil(1024 / 557.3) + 1 frames
    live.input.arrive(x[4096:])                                 # a stalled engine's backlog: 1 s
    live.feed(player, 1, 60.0, follow=False)
    live.feed(player, 1, 60.0, follow=False)
    idx, _, asked = live.taps()
    assert live.dropped_frames > 70 and (asked == 60.0).all()
    assert idx[1] - idx[0] == 1 and idx[2] - idx[1] > 70 and idx[3] - idx[2] == 1    # skipped the backlog


def test_token_mode_input_without_input_plays_the_token_knob():
    from realtime.params import TOKEN_MODES
    from realtime.sources import TokenSource
    s = TokenSource(8)
    mode = TOKEN_MODES.index("input")
    assert TOKEN_MODES[-1] == "input"
    assert list(s.next(3, mode, 5, 8.0)) == [5, 5, 5]
    s.input_tokens = np.array([2, -1, 7])
    assert list(s.next(3, mode, 5, 8.0)) == [2, 2, 7]


# ---- JACK: a FluidSynth phrase into driftwave's input port ---------------------------------

RATE = 48000
SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
PHRASE_NOTES = (60, 64, 67, 72, 69, 65, 62)     # MIDI, 0.45 s each (flute)


def fluidsynth_phrase(tmp_path, rate: int = RATE) -> np.ndarray:
    """:data:`PHRASE_NOTES` rendered by FluidSynth (General MIDI flute), mono float32."""
    import shutil

    import soundfile as sf

    from training.corpus import render_file, write_midi
    if shutil.which("fluidsynth") is None or not __import__("os").path.exists(SOUNDFONT):
        pytest.skip("fluidsynth or its General MIDI soundfont is missing")
    notes = [{"onset": 0.1 + 0.45 * i, "offset": 0.1 + 0.45 * i + 0.42, "pitch": p, "velocity": 100}
             for i, p in enumerate(PHRASE_NOTES)]
    write_midi(tmp_path / "phrase.mid", notes, program=73)
    render_file(tmp_path / "phrase.mid", tmp_path / "phrase.wav", SOUNDFONT, rate)
    audio, sr = sf.read(tmp_path / "phrase.wav", dtype="float32", always_2d=True)
    assert sr == rate
    return audio.mean(1)


class Player:
    """A JACK client whose output port plays ``audio`` once, from :meth:`play` on."""

    def __init__(self, server, audio: np.ndarray, name: str = "phrase-player"):
        import jack
        self.client = jack.Client(name, servername=server.name, no_start_server=True)
        self.port = self.client.outports.register("out")
        self.audio, self.pos, self.playing = audio, 0, False
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames: int) -> None:
        out = self.port.get_array()
        out[:] = 0.0
        if self.playing and self.pos < len(self.audio):
            k = min(frames, len(self.audio) - self.pos)
            out[:k] = self.audio[self.pos:self.pos + k]
            self.pos += k

    def connect_to_input(self, timeout: float = 5.0) -> str:
        """Connects to the first audio input port of another client (driftwave's)."""
        import time
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ports = [p.name for p in self.client.get_ports(is_audio=True, is_input=True)
                     if not p.name.startswith(("system:", self.client.name + ":", "capture:"))]
            if ports:
                self.client.connect(self.port, ports[0])
                return ports[0]
            time.sleep(0.05)
        raise RuntimeError("no input port of driftwave appeared")

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


def pitch_error_cents(out_midi: np.ndarray, in_midi: np.ndarray, max_lag: int) -> tuple[float, int, int]:
    """Median |output - input| pitch (cents) over the frames voiced in both, at the frame
    lag of the output against the input (-max_lag..max_lag: the two recordings start at
    different times) where it is least; (cents, lag, frames compared)."""
    best = (np.inf, 0, 0)
    for lag in range(-max_lag, max_lag + 1):
        a, b = (out_midi[lag:], in_midi) if lag >= 0 else (out_midi, in_midi[-lag:])
        n = min(len(a), len(b))
        ok = np.isfinite(a[:n]) & np.isfinite(b[:n])
        if ok.sum() > 100:
            best = min(best, (float(np.median(np.abs(100 * (a[:n][ok] - b[:n][ok])))), lag, int(ok.sum())))
    return best


def test_jack_input_tokens_and_pitch_follow_what_is_played_in(jack_server, tmp_path):
    """A FluidSynth phrase played into driftwave's JACK input port: the tokens the engine
    used are the offline analysis's tokens of the input it consumed, frame for frame, and
    with pitch_follow the output's pitch follows the phrase's."""
    from realtime.audio_input import AudioInput
    from realtime.audio_output import AudioOutput
    from realtime.engine import Engine
    from tests.jackutil import Capture, wait_until
    audio = fluidsynth_phrase(tmp_path)
    bundle = load_bundle(encoder_bundle(tmp_path, harmonics=4))
    engine = Engine(bundle, RATE, threads=1, voices=1, target_fill_s=None, frames_per_step=1)
    # (the random test vocoder's partials are quiet, about -60 dBFS at unity gain, once its
    # offset is taken off: core/silence_offset.py; +12 dB lifts them above YIN's -60 dBFS gate)
    for name, value in (("gain", 12.0), ("token_mode", "input"), ("pitch_follow", 1), ("glide", 0.0)):
        engine.bus.jump(name, value)
    out = AudioOutput(engine.ring, samplerate=RATE, latency="high")
    engine.attach_output(out)
    inp = AudioInput(None, samplerate=RATE)
    inp.start()
    live = engine.attach_input(inp)
    live.keep(len(audio) / RATE + 6.0)
    cap = Capture(jack_server, seconds=20.0)
    player = Player(jack_server, audio)
    engine.start()
    out.start()
    try:
        cap.connect_program_outputs()
        player.connect_to_input()
        assert wait_until(lambda: live.kept_n > RATE // 2, 10)
        player.playing = True
        assert wait_until(lambda: player.pos >= len(audio) and live.kept_n > 0, 20)
        n_end = live.kept_n
        assert wait_until(lambda: live.kept_n > n_end + RATE // 2, 10)
    finally:
        player.close()
        cap.close()
        out.stop()
        engine.stop()
        inp.stop()
    stats = engine.stats()
    assert not stats["errors"] and stats["input_ring_overruns"] == 0
    consumed = live.kept_audio()
    assert np.max(np.abs(consumed)) > 0.05          # the phrase arrived
    ref = analyse_offline(bundle, consumed, RATE)
    idx, tok, asked = live.taps()
    used = (idx >= 0) & (idx < len(ref))
    # frame for frame: the token of each generated frame is the offline token of the analysed
    # frame it took, and it took them in order; frames are skipped only where the queue
    # dropped them (the start's backlog; a standing excess over the jitter buffer)
    sounding = np.flatnonzero(np.abs(consumed) > 1e-3)
    first, last = (int(sounding[i] * SR / RATE) // 256 for i in (0, -1))
    np.testing.assert_array_equal(tok[used], ref.tokens[idx[used]])
    phrase_frames = idx[used & (idx >= first)]
    steps = np.diff(phrase_frames)
    assert phrase_frames[0] <= first + 8 and phrase_frames[-1] >= last
    # (how many drops a busy machine causes is scheduling, not correctness: every skip must be a
    # counted drop, and most of the phrase must still be played frame by frame)
    assert (steps >= 1).all() and np.sum(steps - 1) <= live.dropped_frames, steps
    assert np.sum(steps - 1) <= 0.5 * len(phrase_frames), steps
    assert len(set(tok[used].tolist())) >= 2
    # the pitch asked for: the analysed frame's pitch while voiced
    voiced = used.copy()
    voiced[used] = ref.voiced[idx[used]]
    assert voiced.sum() > 0.5 * len(PHRASE_NOTES) * 0.42 * SR / 256
    np.testing.assert_allclose(asked[voiced], ref.midi[idx[voiced]], atol=1e-4)
    # the output's pitch follows the input's: YIN on both, frame for frame at the best lag
    got = cap.audio()
    # (the output is the random model's noise around the harmonic source's partials: YIN's
    # threshold is raised to 0.3 to call it voiced)
    hop = int(round(256 * RATE / SR))
    out_f0, _ = yin_pitch(got, RATE, hop=hop, frame=2048, threshold=0.3)
    in_f0, _ = yin_pitch(consumed, RATE, hop=hop, frame=2048)
    cents, lag, n = pitch_error_cents(hz_to_midi(out_f0), hz_to_midi(in_f0), max_lag=len(in_f0))
    assert n > 0.5 * voiced.sum() and cents < OUTPUT_PITCH_CENTS, (cents, lag, n)


OUTPUT_PITCH_CENTS = 50.0   # median over the frames voiced in both, a quarter tone


@pytest.mark.parametrize("switch", [0, 1000, 4801])
def test_the_latency_benchmarks_pitch_onset_is_never_early_and_late_by_under_a_window(switch):
    from benchmarks.input_latency import RUN, STEP, WINDOW, pitch_response_onset
    t = np.arange(RATE // 2) / RATE
    old, new = harmonic_tone(329.63, 0.5, RATE), harmonic_tone(220.0, 0.5, RATE)
    x = np.where(t < switch / RATE, old, new)
    k = pitch_response_onset(x, 220.0)
    assert switch <= k <= switch + WINDOW + RUN * STEP, k
    assert pitch_response_onset(old, 220.0) is None


def test_play_headless_with_an_input_and_with_a_bad_one(jack_server, tmp_path):
    import json
    import os
    import subprocess
    import sys

    from tests.jackutil import _terminate_portaudio
    _terminate_portaudio()          # this process plays nothing meanwhile
    bundle = encoder_bundle(tmp_path)
    env = dict(os.environ, **jack_server.env, DRIFTWAVE_CONFIG_DIR=str(tmp_path))
    play = [sys.executable, "main.py", "play", "--headless", "--quiet", "--bundle", str(bundle), "--voices", "1"]
    stats = tmp_path / "stats.json"
    r = subprocess.run(play + ["--input", "0", "--pitch-follow", "--seconds", "1.5", "--stats-json", str(stats),
                               "--record-input", str(tmp_path / "in.wav")], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-1000:]
    s = json.loads(stats.read_text())
    from realtime.params import TOKEN_MODES
    assert TOKEN_MODES[int(s["params"]["token_mode"])] == "input" and s["params"]["pitch_follow"] == 1.0
    assert s["input_frames_analysed"] > 50 and s["input_ring_overruns"] == 0 and s["input_to_output_ms"] > 0
    import soundfile as sf
    assert sf.info(str(tmp_path / "in.wav")).frames > RATE
    r = subprocess.run(play + ["--input", "99", "--seconds", "1"], env=env, capture_output=True, text=True, timeout=120)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert r.returncode == 1 and len(errors) == 1 and errors[0].startswith("error: no usable audio input device 99 ("), r.stderr


def test_a_full_rtmixer_action_queue_never_raises_on_the_engine_thread():
    """AudioInput.read with rtmixer's action queue full: it returns (no frames), holds no
    action it could not hand over, and starts the record action at the next read."""
    from realtime.audio_input import AudioInput, _ffi
    from realtime.ringbuffer import RingBuffer

    class Queue:
        def __init__(self):
            self.full, self.written = True, 0

        def write(self, req):
            if self.full:
                return 0
            self.written += 1
            return 1

        def readinto(self, res):
            return 0

    class Recorder:                 # what AudioInput touches of rtmixer.Recorder
        active = True
        _action_q, _result_q = Queue(), Queue()

    inp = AudioInput.__new__(AudioInput)
    inp.ring, inp._rec, inp._inflight = RingBuffer(1024), Recorder(), {}
    inp._req, inp._res = _ffi.new("struct action**"), _ffi.new("struct action**")
    inp._record = inp._fetch = None
    inp._fetch_t, inp.overruns, inp.frames_read = 0.0, 0, 0
    inp._out = np.zeros(len(inp.ring.buf), np.float32)
    assert len(inp.read()) == 0 and inp._record is None and inp._fetch is None and not inp._inflight
    Recorder._action_q.full = False
    inp.read()
    assert inp._record is not None and inp._fetch is not None and Recorder._action_q.written == 2


def test_nonfinite_input_is_analysed_as_silence_and_counted(tmp_path):
    """NaN and Inf samples from the device: counted, kept as zeros, and the tokens are the
    offline tokens of the input with zeros in their place (no NaN reaches the analysis)."""
    import warnings

    from realtime.live_input import LiveInput
    bundle = load_bundle(encoder_bundle(tmp_path))
    x = phrase(48000, 0.5, seed=1)
    dirty = x.copy()
    dirty[5000:5100], dirty[9000] = np.nan, -np.inf
    clean = np.where(np.isfinite(dirty), dirty, 0.0).astype(np.float32)
    live, player = LiveInput(FakeInput(), bundle), FakePlayer(bundle)
    live.keep(1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")              # no "invalid value" from the analysis
        for i in range(0, len(x), 1024):            # a device block, then two generated frames
            live.input.arrive(dirty[i:i + 1024])
            live.feed(player, 1, 60.0, follow=True)
            live.feed(player, 1, 60.0, follow=True)
    assert live.nonfinite_samples == 101 and live.stats()["input_nonfinite_samples"] == 101
    np.testing.assert_array_equal(live.kept_audio(), clean)
    idx, tok, asked = live.taps()
    used = idx >= 0
    ref = analyse_offline(bundle, clean, 48000)
    assert used.sum() > 30 and np.isfinite(asked).all()
    np.testing.assert_array_equal(tok[used], ref.tokens[idx[used]])


def test_an_input_that_opens_but_will_not_start_is_closed_and_one_line(small_bundle, monkeypatch):
    """Session.open_input: a device that opens but fails to start is stopped (its stream
    closed, not left registered with the server) and NoAudioDevice says why in one line."""
    from realtime import audio_input
    from realtime import session as session_module
    from realtime.engine import Engine

    engine = Engine(load_bundle(small_bundle), 22050, threads=1)

    class Output:
        def start(self):
            pass

        def stop(self):
            pass

    stopped = []

    class Refusing:
        def __init__(self, device, samplerate=None):
            pass

        def start(self):
            raise RuntimeError("Error starting stream:\nUnanticipated host error")

        def stop(self):
            stopped.append(True)

    monkeypatch.setattr(session_module, "build", lambda s: (engine, Output()))
    monkeypatch.setattr(audio_input, "AudioInput", Refusing)
    s = session_module.Session(session_module.Settings(bundle=str(small_bundle)))
    with pytest.raises(session_module.NoAudioDevice) as err:
        s.open_input(3)
    assert stopped == [True] and engine.live_input is None
    assert str(err.value) == "no usable audio input device 3 (Error starting stream: Unanticipated host error)"
    s.stop()
