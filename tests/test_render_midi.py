"""``render --midi``: a MIDI file through the instrument offline (realtime/offline.py) is what
the engine's own step loop plays fed the same events before the same steps, for every chunk
size; notes, velocities, note-offs, polyphony, pitch bend and the default CC mapping act as
they do live."""
import math

import mido
import numpy as np
import pytest
import soundfile as sf

from core.bundle import load_bundle
from core.synth import Synth
from realtime.engine import Engine
from realtime.midi_parse import MidiEvent
from realtime.offline import (MidiFileError, events_by_frame, read_midi, render_events, render_midi,
                              TAIL_S)

TICKS = 480                 # per beat
TEMPO = 500000              # us per beat: 120 bpm, a tick is 1/960 s
# Chunked synthesis against 1-frame steps: batched conv/GRU maths rounds differently; measured
# 3.6e-7 (test bundle, 1.6 s) and 1.6e-6 (default bundle, a 12 s phrase) at peaks ~0.5-1.
CHUNK_ATOL = 1e-5


def write_score(path, messages, tempo=TEMPO, end_s=0.0):
    """A type-1 file: a tempo track and one track of ``(seconds, mido.Message)``, in order."""
    mid = mido.MidiFile(ticks_per_beat=TICKS)
    meta, track = mido.MidiTrack(), mido.MidiTrack()
    mid.tracks += [meta, track]
    meta.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    now = 0
    for t, msg in messages:
        tick = round(t * 1e6 / tempo * TICKS)
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=round(end_s * 1e6 / tempo * TICKS)))
    mid.save(str(path))
    return path


def on(t, note, vel=100):
    return t, mido.Message("note_on", note=note, velocity=vel)


def off(t, note):
    return t, mido.Message("note_off", note=note, velocity=0)


def cc(t, number, value):
    return t, mido.Message("control_change", control=number, value=value)


def bend(t, value):
    return t, mido.Message("pitchwheel", pitch=value)


# notes (five over four voices: one steals), velocities, a bend, CC 7 (gain) and CC 70 (morph),
# note-offs, the release after them
PHRASE = [on(0.05, 60, 100), on(0.12, 64, 70), cc(0.12, 7, 90), bend(0.25, 4000), off(0.35, 60),
          on(0.45, 67, 50), on(0.45, 71, 120), on(0.46, 74, 80), on(0.5, 77, 90), cc(0.5, 70, 100),
          bend(0.6, -3000), off(0.7, 64), off(0.7, 67), off(0.72, 71), off(0.75, 74), off(0.8, 77)]


def engine_step_loop(bundle_path, events, seconds, rate, voices=4, mel_match="full"):
    """What an Engine (not started, no output) plays: the events of each model frame pushed
    before its step, one frame per step, the ring read after each; aligned for the look-ahead."""
    engine = Engine(load_bundle(bundle_path), rate, frames_per_step=1, voices=voices, mel_match=mel_match)
    engine.voices.gated = True            # as render_midi starts: silent until the first note
    frame_rate = engine.model_rate / engine.player.bundle.hop
    by_frame = events_by_frame(events, frame_rate)
    delay = round(engine.player.delay_s * rate)
    n = round(seconds * rate)
    pieces = []
    for frame in range(math.ceil((n + delay) / rate * frame_rate) + 2):
        for ev in by_frame.get(frame, ()):
            engine.events.put(ev)
        engine._step()
        block = np.zeros(engine.ring.available(), np.float32)
        engine.ring.read_into(block)
        pieces.append(block)
    return np.concatenate(pieces)[delay:delay + n]


def test_read_midi_merges_tracks_follows_tempo_changes_and_gives_seconds(tmp_path):
    mid = mido.MidiFile(ticks_per_beat=TICKS)
    meta, a, b = mido.MidiTrack(), mido.MidiTrack(), mido.MidiTrack()
    mid.tracks += [meta, a, b]
    meta += [mido.MetaMessage("set_tempo", tempo=500000, time=0),          # 0.5 s a beat, then
             mido.MetaMessage("set_tempo", tempo=250000, time=2 * TICKS)]  # from 1.0 s: 0.25 s a beat
    a += [mido.Message("note_on", note=60, velocity=90, time=TICKS),       # 0.5 s
          mido.Message("note_on", note=60, velocity=0, time=2 * TICKS)]    # 1.0 s + 1 beat = 1.25 s
    b += [mido.Message("pitchwheel", pitch=-8192, channel=3, time=3 * TICKS // 2),  # 0.75 s
          mido.Message("control_change", control=7, value=5, time=TICKS),           # 1.125 s
          mido.Message("program_change", program=3, time=0),
          mido.MetaMessage("end_of_track", time=4 * TICKS)]                          # 2.125 s
    mid.save(str(tmp_path / "t.mid"))
    score = read_midi(tmp_path / "t.mid")
    assert [(e.kind, e.channel, e.a, e.b) for e in score.events] == [
        ("note_on", 0, 60, 90), ("pitchbend", 3, -8192, 0), ("cc", 0, 7, 5), ("program", 0, 3, 0),
        ("note_off", 0, 60, 0)]
    assert np.allclose([e.time for e in score.events], [0.5, 0.75, 1.125, 1.125, 1.25])
    assert score.length_s == pytest.approx(2.125) and score.notes == 1
    # an event lands on the model frame its time falls in (22050 / 256 = 86.13 frames a second)
    assert sorted(events_by_frame(score.events, 22050 / 256)) == [43, 64, 96, 107]


@pytest.mark.parametrize("rate", [22050, 48000])
def test_render_midi_is_the_engine_step_loop_sample_for_sample(small_bundle, tmp_path, rate):
    path = write_score(tmp_path / "phrase.mid", PHRASE, end_s=0.2)
    score = read_midi(path)
    seconds = score.length_s + 0.3
    engine = engine_step_loop(small_bundle, score.events, seconds, rate)
    one, r = render_midi(load_bundle(small_bundle), path, chunk_frames=1, out_rate=rate, tail_s=0.3)
    assert r == rate and len(one) == len(engine) == round(seconds * rate)
    # it plays (a random vocoder's sound is mostly what repeats every hop, which the frame-rate
    # notch takes out: core/frame_notch.py)
    assert np.abs(engine).max() > 0.02
    assert np.array_equal(one, engine)                       # 1-frame model calls: bit-exact
    if rate == 48000:       # chunked: the engine's samples within rounding (every chunking: below)
        seven, _ = render_midi(load_bundle(small_bundle), path, chunk_frames=7, out_rate=rate, tail_s=0.3)
        assert np.abs(seven - engine).max() < CHUNK_ATOL


def test_every_chunk_size_gives_the_same_samples(small_bundle, monkeypatch):
    events = read_events(PHRASE)
    calls = []
    step_rows = Synth.step_rows

    def recording(self, rows, full, z, *rest):
        calls.append((list(rows), z.shape[2]))
        return step_rows(self, rows, full, z, *rest)

    monkeypatch.setattr(Synth, "step_rows", recording)
    one, _ = render_events(load_bundle(small_bundle), events, 1.2, chunk_frames=1)
    frames_computed = sum(n for _, n in calls)
    rng = np.random.default_rng(4)
    for chunks in (7, 256, list(rng.integers(1, 40, 20)), 0):
        calls.clear()
        out, _ = render_events(load_bundle(small_bundle), events, 1.2, chunk_frames=chunks)
        assert np.abs(out - one).max() < CHUNK_ATOL, chunks
        # the same frames computed, in fewer calls: runs stop where the sounding voices change
        assert sum(n for _, n in calls) == frames_computed
        assert len(calls) < frames_computed / 2


# notes below and above the small model's pitch range (40-80), one bent further out
WIDE = [on(0.05, 30, 100), on(0.1, 92, 90), bend(0.3, 8000), off(0.5, 30), on(0.55, 60, 80), off(0.7, 92),
        off(0.8, 60)]


def test_notes_beyond_the_pitch_range_play_moved_and_the_same_in_every_chunking(small_bundle, monkeypatch):
    """core/mel_transpose.py in the instrument: notes outside the generator's range are
    moved (they differ from the clamped pitch's sound), the engine's step loop plays them
    sample for sample as render does, and every chunking gives the same samples."""
    import core.synth
    events = read_events(WIDE)
    seconds = 1.1
    one, _ = render_events(load_bundle(small_bundle), events, seconds, chunk_frames=1)
    engine = engine_step_loop(small_bundle, events, seconds, 22050)
    assert np.abs(one).max() > 0.05 and np.array_equal(one, engine)
    for chunks in (7, 256, 0):
        out, _ = render_events(load_bundle(small_bundle), events, seconds, chunk_frames=chunks)
        assert np.abs(out - one).max() < CHUNK_ATOL, chunks
    monkeypatch.setattr(core.synth, "TRANSPOSE_OUT_OF_RANGE", False)
    unmoved, _ = render_events(load_bundle(small_bundle), events, seconds, chunk_frames=1)
    # the first note (MIDI 30, 10 semitones below the range) is moved; the in-range note
    # after both wide ones ended is not
    first, late = slice(int(0.1 * 22050), int(0.45 * 22050)), slice(int(0.75 * 22050), int(0.8 * 22050))
    assert np.abs(unmoved[first] - one[first]).max() > 1e-3
    assert np.abs(unmoved[late] - one[late]).max() < 0.5 * np.abs(unmoved[first] - one[first]).max()


def read_events(messages):
    """``(seconds, mido.Message)`` -> MidiEvents, as read_midi makes them."""
    from realtime.midi_parse import parse_message
    return [parse_message(m.bytes(), t) for t, m in messages]


def test_a_pitch_bend_moves_the_pitch_by_the_bend_range():
    """The default bundle's sound, measured: a held C4 bent up by the whole wheel, then down
    (bend range 2 semitones: +8191 is +1.99976, -8192 is -2)."""
    from main import DEFAULT_BUNDLE
    events = [MidiEvent("note_on", 0, 60, 100, 0.0), MidiEvent("pitchbend", 0, 8191, 0, 1.0),
              MidiEvent("pitchbend", 0, -8192, 0, 2.0)]
    audio, rate = render_events(load_bundle(DEFAULT_BUNDLE), events, 3.0, voices=1)

    def peak_hz(x, near):
        spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), 1 << 17))
        f = np.fft.rfftfreq(1 << 17, 1 / rate)
        return f[np.argmax(spec * ((f > near / 1.1) & (f < near * 1.1)))]

    c4 = 440 * 2 ** ((60 - 69) / 12)
    for start, semitones in ((0.4, 0.0), (1.4, 2 * 8191 / 8192), (2.4, -2.0)):    # after the glide
        want = c4 * 2 ** (semitones / 12)
        got = peak_hz(audio[int(start * rate):int((start + 0.55) * rate)], want)
        assert abs(1200 * np.log2(got / want)) < 5, (semitones, got, want)       # measured within 0.7 cents


def test_a_cc_of_the_default_mapping_moves_its_parameter(small_bundle):
    """CC 7 is the gain (0.25..1 of -60..+12 dB): two renders apart only in CC 7 differ by
    the gain ratio, sample for sample, once the gain's glide settled; CC 70 sets the morph."""
    def gain_db(value):
        return -60 + 72 * (0.25 + 0.75 * value / 127)

    renders = {}
    for value in (100, 40):
        events = [MidiEvent("cc", 0, 7, value, 0.0), MidiEvent("note_on", 0, 60, 100, 0.05)]
        renders[value], rate = render_events(load_bundle(small_bundle), events, 1.5)
    tail = slice(int(1.0 * rate), None)           # the 50 ms glide within 1e-6 dB by 0.9 s
    loud, quiet = renders[100][tail], renders[40][tail]
    assert np.abs(loud).max() > 0.02          # (a random vocoder: see the step-loop test)
    assert np.allclose(loud, quiet * 10 ** ((gain_db(100) - gain_db(40)) / 20), rtol=1e-4, atol=1e-7)

    from realtime.offline import OfflineInstrument
    inst = OfflineInstrument(load_bundle(small_bundle), 22050)
    inst.step([MidiEvent("cc", 0, 70, 127, 0.0), MidiEvent("cc", 0, 72, 0, 0.0)])
    assert inst.engine.bus.get("morph") == 1.0 and inst.engine.bus.get("temperature") == 0.0


@pytest.mark.parametrize("notch", [0.0, 0.2])
def test_note_offs_release_and_then_nothing_sounds(small_bundle, monkeypatch, notch):
    """A random vocoder's sound is mostly what repeats every hop, which the frame-rate notch
    (core/frame_notch.py) takes out while the mel holds still and lets through as it moves:
    the release's shape is read with the notch off; with it on, the release still ends in
    silence on time."""
    from core import frame_notch
    monkeypatch.setattr(frame_notch, "RATE", notch)
    held = [MidiEvent("note_on", 0, 62, 110, 0.1)]
    released = held + [MidiEvent("note_off", 0, 62, 0, 0.4)]
    out = {}
    for name, events in (("held", held), ("released", released)):
        out[name], rate = render_events(load_bundle(small_bundle), events, 1.3)
    rms = lambda x: np.sqrt(np.mean(x ** 2))        # noqa: E731
    during = out["released"][int(0.15 * rate):int(0.4 * rate)]
    assert rms(during) > (0.01 if notch == 0 else 0.003)
    # the 0.3 s release: -43 dB at 0.3 s; below 1e-4 (idle, not computed) 0.55 s after the
    # note-off at velocity 110
    if notch == 0:
        early = rms(out["released"][int(0.4 * rate):int(0.45 * rate)])
        late = rms(out["released"][int(0.65 * rate):int(0.7 * rate)])
        assert late < early / 10
    assert not out["released"][int(1.0 * rate):].any()
    assert rms(out["held"][int(1.0 * rate):]) > (0.01 if notch == 0 else 0.003)     # held, it goes on
    # silent before the first note, and the note starts on its frame (aligned for the look-ahead)
    first = np.flatnonzero(out["released"])[0]
    assert first == math.floor(0.1 * rate / 256) * 256


def test_polyphony_up_to_the_voice_count_and_more_notes_steal_the_oldest(small_bundle, monkeypatch):
    heard = []
    step_rows = Synth.step_rows

    def recording(self, rows, full, z, tokens, pitch, *rest):
        heard.append((list(rows), sorted(pitch[:, -1].numpy().round(1))))
        return step_rows(self, rows, full, z, tokens, pitch, *rest)

    monkeypatch.setattr(Synth, "step_rows", recording)
    chord = [MidiEvent("note_on", 0, n, 90, 0.1) for n in (60, 64, 67, 71)]
    steal = [MidiEvent("note_on", 0, 74, 90, 0.4)]
    render_events(load_bundle(small_bundle), chord + steal, 0.8, chunk_frames=1)
    # nothing is computed before the chord; then the four notes, each on its own voice
    assert heard[0] == ([0, 1, 2, 3], [60, 64, 67, 71])
    # the fifth note takes the oldest voice (60's), which glides there (50 ms glide)
    assert heard[-1] == ([0, 1, 2, 3], [64, 67, 71, 74])
    assert all(len(rows) == 4 for rows, _ in heard)
    two = []
    monkeypatch.setattr(Synth, "step_rows", lambda self, rows, *a: two.append(list(rows)) or step_rows(self, rows, *a))
    render_events(load_bundle(small_bundle), chord, 0.3, voices=2, chunk_frames=1)
    assert two and all(rows == [0, 1] for rows in two)


def test_a_midi_file_without_notes_renders_silence_of_its_length_plus_the_tail(small_bundle, tmp_path, capsys):
    import main
    path = write_score(tmp_path / "quiet.mid", [cc(0.2, 70, 50), bend(0.3, 100)], end_s=0.5)
    wav = tmp_path / "quiet.wav"
    assert main.main(["render", "--midi", str(path), str(wav), "--bundle", str(small_bundle)]) == 0
    assert "no notes" in capsys.readouterr().out
    audio, rate = sf.read(str(wav), dtype="float32")
    assert len(audio) == round((0.8 + TAIL_S) * rate) and not audio.any()


@pytest.mark.parametrize("content", [None, b"not a MIDI file", b"MThd\x00\x00\x00\x06\x00\x01\x00\x01\x01\xe0MTrk"])
def test_a_missing_or_broken_midi_file_says_so_in_one_line(small_bundle, tmp_path, capsys, content):
    import main
    path = tmp_path / "in.mid"
    if content is not None:
        path.write_bytes(content)
    assert main.main(["render", "--midi", str(path), str(tmp_path / "out.wav"), "--bundle", str(small_bundle)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(path) in err and "Traceback" not in err
    assert not (tmp_path / "out.wav").exists()
    with pytest.raises(MidiFileError):
        read_midi(path)


def test_render_without_midi_still_needs_its_length(tmp_path, capsys):
    import main
    with pytest.raises(SystemExit) as e:
        main.main(["render", str(tmp_path / "out.wav")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "usage" in err and "--seconds" in err
