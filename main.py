"""driftwave: a live instrument for neural audio generators. Run ``python main.py -h``."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# torch's OpenMP workers wait by sleeping, not spinning, between steps: spinning, they took
# the core the engine thread and the audio device need (set before torch loads)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from models import default_bundle_path

ROOT = Path(__file__).resolve().parent
DEFAULT_BUNDLE = default_bundle_path()              # package data: found from a checkout and an install
BENCHMARKS = ROOT / "benchmarks"                     # a source checkout's; not installed (they import tests/)


def _positive(kind):
    def parse(s: str):
        try:
            v = kind(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{s!r} is not a number") from None
        if not v > 0:
            raise argparse.ArgumentTypeError(f"{s!r} must be > 0")
        return v
    return parse


def _frames_per_step(s: str) -> int | str:
    from realtime.step_size import parse_frames_per_step
    try:
        return parse_frames_per_step(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _nonnegative_int(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not an integer") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{s!r} must be >= 0")
    return v


def _port(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a port number") from None
    if not 1 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"{s!r} must be within 1..65535")
    return v


def _unit(s: str) -> float:
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not a number") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"{s!r} must be within [0, 1]")
    return v


def _size(s: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{s!r} is not WIDTHxHEIGHT") from None
    if w < 320 or h < 240:
        raise argparse.ArgumentTypeError(f"{s!r} is too small")
    return w, h


def _compute_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--compute", default="auto", metavar="DEV",
                   help="where the models run: auto (a CUDA GPU, else MPS, else CPU), cpu, cuda, cuda:N, mps")


def _mel_match_option(p: argparse.ArgumentParser, default: str = "full") -> None:
    """Live play defaults to "zero-latency" (no look-ahead; docs/measurements.md has what each
    mode costs in quality), offline commands to "full"."""
    # core.mel_match.MODES (not imported here: it imports torch, and --help should not)
    p.add_argument("--mel-match", default=default, choices=["full", "low-latency", "zero-latency", "off"],
                   help="the post-filter that gives the vocoder's audio the requested mel (core/mel_match.py): "
                        "full (40.6 ms of latency), low-latency (17.4 ms), zero-latency (none, gains a frame late), off")


PITCH_FILTER_DEFAULT = 0.6     # core.pitch_filter.DEFAULT_STRENGTH (not imported: torch); tests/test_pitch_filter.py


def _pitch_filter_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pitch-filter", type=_unit, default=PITCH_FILTER_DEFAULT, metavar="S",
                   help="strength of the post-filter that takes the noise out from between each note's partials "
                        f"(core/pitch_filter.py; no latency): 0 (off) .. 1, default {PITCH_FILTER_DEFAULT}")


FRAME_NOTCH_DEFAULT = 0.2      # core.frame_notch.DEFAULT_RATE (not imported: torch); tests/test_frame_notch.py


def _frame_notch_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frame-notch", type=_unit, default=FRAME_NOTCH_DEFAULT, metavar="A",
                   help="rate of the notch that takes out the vocoder's buzz at the frame rate, 86 Hz and its "
                        f"multiples (core/frame_notch.py; no latency): 0 (off) .. 1, default {FRAME_NOTCH_DEFAULT}")


def _playback_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="output device (number or name); see 'devices'")
    p.add_argument("--samplerate", type=_positive(int), default=None, help="device rate wish")
    p.add_argument("--bundle", default=str(DEFAULT_BUNDLE))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames-per-step", type=_frames_per_step, default="auto",
                   help="mel frames per engine step (1 frame: 11.6 ms; more: less CPU, more delay); auto (the "
                        "default): the smallest of 1, 2, 4 whose measured cost suits --latency (realtime/step_size.py)")
    p.add_argument("--latency", default="normal", choices=["low", "normal", "safe"],
                   help="the ring buffer sized from the engine's measured step times: low (a quiet machine), "
                        "normal, safe (a loaded one)")
    p.add_argument("--latency-ms", type=_positive(float), default=None, help="a fixed ring-buffer fill instead")
    p.add_argument("--no-realtime", dest="realtime", action="store_false",
                   help="do not ask for real-time scheduling for the engine thread")
    p.add_argument("--threads", type=_positive(int), default=None, help="torch threads (default: cores - 1)")
    p.add_argument("--precision", choices=["float32", "bfloat16"], default="float32")
    _mel_match_option(p, "zero-latency")
    _pitch_filter_option(p)
    _frame_notch_option(p)
    _compute_option(p)
    p.add_argument("--compile", default="auto", choices=["auto", "on", "off"],
                   help="run the model's step as compiled graphs (core/compiled_step.py; about 11 s at start with "
                        "the kernels cached, more for each longer step --frames-per-step auto tries, minutes the "
                        "first time): auto = DRIFTWAVE_COMPILE (on/off) where set, "
                        "else on except on CUDA, which has CUDA graphs")
    p.add_argument("--midi", default=None, help="MIDI input port (number or name); see 'devices'")
    p.add_argument("--midi-virtual", default=None, metavar="NAME", help="open a virtual MIDI input port")
    p.add_argument("--midi-api", default="default", choices=["default", "alsa", "jack", "coremidi", "winmm"])
    p.add_argument("--voices", type=_positive(int), default=4, help="polyphony (1 = mono with legato)")
    p.add_argument("--reference", default=None, metavar="AUDIO",
                   help="token models: play the tokens of this audio file, looped (reference token mode)")
    p.add_argument("--plugin", default=None, metavar="FILE",
                   help="a VST3 or Audio Unit plugin in the effects rack's plugin slot, switched in (fx_plugin_mix, fx_plugin_bypass)")
    p.add_argument("--input", default=None, type=_device_arg, metavar="DEV",
                   help="live audio input device (number or name; see 'devices'; on JACK a port to connect): "
                        "token mode 'input' plays its tokens, pitch_follow its pitch")
    p.add_argument("--record-input", default=None, metavar="WAV", help="record the live input to this WAV")
    p.add_argument("--pitch-follow", action="store_true",
                   help="with --input: the input's tracked pitch sets the pitch (parameter pitch_follow)")
    p.add_argument("--osc", type=_port, default=None, metavar="PORT",
                   help="listen for OSC control on this UDP port (the addresses: README, 'OSC control'); off by default")
    p.add_argument("--osc-host", default="127.0.0.1", metavar="ADDR",
                   help="the address the OSC server listens on (default: localhost only; 0.0.0.0: every interface)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="main.py", description="driftwave: play neural audio generators live.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("render", help="render the generator + vocoder offline to a float WAV")
    r.add_argument("out", help="output WAV path")
    r.add_argument("--seconds", type=_positive(float), default=None,
                   help="length (required without --midi; with it: the file's length plus a 1 s tail)")
    r.add_argument("--midi", default=None, metavar="FILE",
                   help="play this MIDI file through the instrument, as live play would (realtime/offline.py)")
    r.add_argument("--voices", type=_positive(int), default=4, help="with --midi: polyphony (1 = mono with legato)")
    r.add_argument("--seed", type=int, default=0, help="seed of noise walk A")
    r.add_argument("--seed-b", type=int, default=None, help="seed of noise walk B (default seed+1)")
    r.add_argument("--morph", type=_unit, default=0.0, help="slerp from seed A (0) to seed B (1)")
    r.add_argument("--drift", type=_unit, default=0.05, help="noise wander per frame, 0..1")
    r.add_argument("--temperature", type=_positive(float), default=1.0)
    r.add_argument("--token", type=_nonnegative_int, default=None,
                   help="token to hold (token models; default: the bundle's default token, else 0)")
    r.add_argument("--reference", default=None, metavar="AUDIO",
                   help="token models: the tokens of this audio file, looped, instead of --token")
    r.add_argument("--pitch", type=float, nargs="+", default=None,
                   help="MIDI note(s) for pitch models; several play in turn (a scale)")
    r.add_argument("--morph-to", type=_unit, default=None, help="sweep the morph from --morph to this")
    r.add_argument("--chunk-frames", type=_nonnegative_int, default=None,
                   help="frames per streaming step (default 16; with --midi 64); 0 = whole sequence at once")
    r.add_argument("--bundle", default=str(DEFAULT_BUNDLE))
    r.add_argument("--threads", type=_positive(int), default=None)
    _mel_match_option(r)
    _pitch_filter_option(r)
    _frame_notch_option(r)
    _compute_option(r)

    p = sub.add_parser("play", help="play live on an audio device")
    p.add_argument("--headless", action="store_true", help="no window (without it: the GUI)")
    p.add_argument("--seconds", type=_positive(float), default=None, help="stop after S seconds")
    _playback_options(p)
    p.add_argument("--record", default=None, help="record what is played to this WAV")
    p.add_argument("--stats-json", default=None, help="write run statistics here at the end")
    p.add_argument("--quiet", action="store_true")

    g = sub.add_parser("gui", help="the window (default command)")
    _playback_options(g)
    g.add_argument("--screenshot", default=None, metavar="PNG", help="save a picture of the window")
    g.add_argument("--quit-after", type=_positive(float), default=None, metavar="S",
                   help="close after S seconds (the screenshot is taken then)")
    g.add_argument("--size", type=_size, default=(1280, 800), metavar="WxH")
    g.add_argument("--stats-json", default=None, help="write run statistics here when the window closes")

    sub.add_parser("devices", help="list audio devices and MIDI ports")

    c = sub.add_parser("corpus", help="render a labelled SoundFont corpus with FluidSynth")
    c.add_argument("out_dir")
    c.add_argument("--programs", type=int, nargs="+", default=[40, 0, 73, 89],
                   help="General MIDI programs (default: violin, piano, flute, warm pad)")
    c.add_argument("--low", type=int, default=48)
    c.add_argument("--high", type=int, default=84)
    c.add_argument("--step", type=_positive(int), default=1, help="semitones between single notes")
    c.add_argument("--phrases", type=_nonnegative_int, default=4)
    c.add_argument("--phrase-length", type=_positive(int), default=24)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--soundfont", default="/usr/share/sounds/sf2/FluidR3_GM.sf2")

    t = sub.add_parser("train", help="train a stage (a preset or JSON config), or 'all' into a bundle")
    t.add_argument("config", help="'all', a preset name or a JSON config file (see training/config.py)")
    t.add_argument("--data", required=True, help="folder of audio files (searched recursively)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. optim.steps=500")
    t.add_argument("--runs", default="runs", help="folder of run folders")
    t.add_argument("--no-resume", action="store_true", help="start over instead of resuming the run")
    t.add_argument("--out", default=None, help="with 'all' or --base: the bundle to write")
    t.add_argument("--base", default=None, metavar="BUNDLE",
                   help="with a vocoder or generator preset and --out: write BUNDLE with the trained model in place of its own")
    t.add_argument("--vqcpc", default="vqcpc", help="with 'all': VQCPC preset or config")
    t.add_argument("--vocoder", default="vocoder-stft", help="with 'all': vocoder preset or config")
    t.add_argument("--generator", default="generator-began", help="with 'all': generator preset or config")
    t.add_argument("--set-vqcpc", action="append", default=[], metavar="KEY=VALUE")
    t.add_argument("--set-vocoder", action="append", default=[], metavar="KEY=VALUE")
    t.add_argument("--set-generator", action="append", default=[], metavar="KEY=VALUE")
    t.add_argument("--name", default=None, help="with 'all' or --base: the bundle's name (--base: the base's name if not given)")
    t.add_argument("--parallel", action="store_true", help="with 'all': train the vocoder in a second process")
    t.add_argument("--vocoder-data", default=None, metavar="DIR",
                   help="with 'all': train the vocoder on this folder instead (it must not hold --data's held-out files)")
    t.add_argument("--run-dir", action="store_true",
                   help="print the run folder this configuration trains in (its name is a hash of it) and exit")

    e = sub.add_parser("eval", help="measure a bundle on held-out audio; prints JSON")
    e.add_argument("--bundle", default=str(DEFAULT_BUNDLE))
    e.add_argument("--data", default=None,
                   help="folder of audio (its validation split is held out); needed but for '--sections audible --heldout'")
    e.add_argument("--seconds", type=_positive(float), default=60.0, help="generated audio for NDB/JSD")
    e.add_argument("--stability-minutes", type=_positive(float), default=10.0)
    e.add_argument("--json", default=None, help="also write the JSON here")
    e.add_argument("--sections", nargs="+", default=None, choices=["vocoder", "generator", "stability", "audible"],
                   help="which measures (default: all)")
    e.add_argument("--heldout", default=None, metavar="DIR",
                   help="audible defects: a folder of labelled renders, every file held out (default: --data's validation split)")
    e.add_argument("--trained-programs", type=int, nargs="+", default=None, metavar="P",
                   help="audible defects: GM programs in the training set (default: those of --data's training split)")
    e.add_argument("--note-step", type=_positive(int), default=3, help="audible defects: semitones between analysed notes")
    e.add_argument("--crepe", choices=["full", "tiny"], default="full", help="audible defects: CREPE model size")
    e.add_argument("--seeds", type=int, nargs="+", default=[0], help="audible defects: seeds of the generated notes")
    e.add_argument("--midi-render", action="store_true",
                   help="audible defects: also compare render --midi of held-out phrases with their real render")
    _pitch_filter_option(e)
    _frame_notch_option(e)
    _compute_option(e)

    b = sub.add_parser("bench", help="run a benchmark of benchmarks/ (prints JSON); no NAME lists them",
                       description="Runs benchmarks/NAME.py with ARGS (as 'python -m benchmarks.NAME ARGS');"
                                   " 'main.py bench NAME --help' gives its options. Without NAME: the list.")
    b.add_argument("name", nargs="?", default=None, metavar="NAME")
    b.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")

    s = sub.add_parser("resynth", help="mel analysis + vocoder only (copy synthesis)")
    s.add_argument("input")
    s.add_argument("out")
    s.add_argument("--bundle", default=str(DEFAULT_BUNDLE))
    s.add_argument("--chunk-frames", type=_nonnegative_int, default=0)
    s.add_argument("--threads", type=_positive(int), default=None)
    _mel_match_option(s)
    _pitch_filter_option(s)
    _frame_notch_option(s)
    _compute_option(s)
    return ap


def unwritable(path: str) -> str | None:
    """Why ``path`` cannot be written as a new file, or None (checked before rendering, so
    that a bad path costs no render time)."""
    parent = Path(path).resolve().parent
    if Path(path).is_dir():
        return "it is a folder"
    if not parent.is_dir():
        return f"no folder '{parent}'"
    if not os.access(parent, os.W_OK) or (Path(path).exists() and not os.access(path, os.W_OK)):
        return "permission denied"
    return None


def cannot_write(path: str) -> bool:
    """True, after one line on stderr naming ``path`` and why, when it cannot be written."""
    why = unwritable(path)
    if why is not None:
        print(f"error: cannot write '{path}': {why}", file=sys.stderr)
    return why is not None


def write_wav(path: str, audio, rate: int) -> bool:
    """Writes a float WAV (the path checked by :func:`cannot_write` before the render); a
    failure prints one line naming the path (no libsndfile traceback) and returns False
    (``tests/test_play_cli.py::test_render_to_an_unwritable_path_says_so_in_one_line``)."""
    import soundfile as sf

    try:
        sf.write(path, audio, rate, subtype="FLOAT")
    except (RuntimeError, OSError) as e:          # soundfile's LibsndfileError is a RuntimeError
        print(f"error: cannot write '{path}': {e}", file=sys.stderr)
        return False
    return True


def cmd_render_midi(a) -> int:
    """``render --midi FILE``: the file through the instrument (:mod:`realtime.offline`)."""
    import torch

    from core.bundle import load_bundle
    from core.compute import compute_device
    from realtime.offline import CHUNK_FRAMES, MidiFileError, read_midi, render_events, TAIL_S

    unused = [f"--{k.replace('_', '-')}" for k in ("pitch", "morph_to", "reference") if getattr(a, k) is not None]
    if unused:
        print(f"error: --midi plays the file's notes; {', '.join(unused)} cannot be used with it", file=sys.stderr)
        return 2
    try:
        score = read_midi(a.midi)
    except MidiFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if cannot_write(a.out):             # before the render: a bad path costs no time
        return 1
    if a.threads:
        torch.set_num_threads(a.threads)
    bundle = load_bundle(a.bundle, compute_device(a.compute))
    params = {"morph": a.morph, "drift": a.drift, "temperature": a.temperature}
    if a.token is not None:
        params["token"] = a.token
    if a.seed_b is not None:
        params["seed_b"] = a.seed_b
    seconds = a.seconds if a.seconds is not None else score.length_s + TAIL_S
    audio, rate = render_events(bundle, score.events, seconds, voices=a.voices, seed=a.seed,
                                chunk_frames=CHUNK_FRAMES if a.chunk_frames is None else a.chunk_frames,
                                mel_match=a.mel_match, params=params, pitch_filter=a.pitch_filter)
    if not write_wav(a.out, audio, rate):
        return 1
    notes = f"{score.notes} notes" if score.notes else "no notes in the file: silence"
    print(f"wrote {a.out}: {len(audio) / rate:.2f} s at {rate} Hz ({notes}, {a.voices} voices), "
          f"peak {float(abs(audio).max()):.3f}")
    return 0


def cmd_render(a) -> int:
    if a.midi is not None:
        return cmd_render_midi(a)
    import torch

    from core.bundle import load_bundle
    from core.compute import compute_device
    from core.render import render

    if cannot_write(a.out):             # before the render: a bad path costs no time
        return 1
    if a.threads:
        torch.set_num_threads(a.threads)
    bundle = load_bundle(a.bundle, compute_device(a.compute))
    tokens = None
    if a.reference:
        from core.audio_io import read_mono
        from core.tokens import tokens_of_audio
        try:
            tokens = tokens_of_audio(bundle, read_mono(a.reference, bundle.sample_rate))
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    audio = render(bundle, a.seconds, seed=a.seed, seed_b=a.seed_b,
                   chunk_frames=16 if a.chunk_frames is None else a.chunk_frames,
                   morph=a.morph, drift=a.drift, temperature=a.temperature, token=a.token, pitch=a.pitch,
                   morph_to=a.morph_to, tokens=tokens, mel_match=a.mel_match, pitch_filter=a.pitch_filter)
    if not write_wav(a.out, audio, bundle.sample_rate):
        return 1
    peak = float(abs(audio).max())
    print(f"wrote {a.out}: {len(audio) / bundle.sample_rate:.2f} s at {bundle.sample_rate} Hz, peak {peak:.3f}")
    if peak > 1.0:
        print(f"warning: the peak is above full scale ({peak:.2f}); the float WAV keeps it, a player may clip it "
              f"(the live engine's limiter holds its output below 0.98)", file=sys.stderr)
    return 0


def cmd_resynth(a) -> int:
    import torch

    from core.audio_io import read_mono
    from core.bundle import load_bundle
    from core.compute import compute_device
    from core.resynth import resynthesize

    if cannot_write(a.out):             # before the render: a bad path costs no time
        return 1
    if a.threads:
        torch.set_num_threads(a.threads)
    bundle = load_bundle(a.bundle, compute_device(a.compute))
    audio = read_mono(a.input, bundle.sample_rate)
    out = resynthesize(bundle, audio, chunk_frames=a.chunk_frames, mel_match=a.mel_match,
                       pitch_filter=a.pitch_filter)
    if not write_wav(a.out, out, bundle.sample_rate):
        return 1
    print(f"wrote {a.out}: {len(out) / bundle.sample_rate:.2f} s at {bundle.sample_rate} Hz")
    return 0


def cmd_corpus(a) -> int:
    from training.corpus import CorpusError, render_corpus

    try:
        wavs = render_corpus(a.out_dir, a.programs, a.low, a.high, a.step, a.phrases, a.phrase_length,
                             a.seed, soundfont=a.soundfont)
    except CorpusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {len(wavs)} labelled files to {a.out_dir}")
    return 0


def cmd_train(a) -> int:
    from training.config import load_config
    from training.pipeline import open_corpus, run_stage, train_all

    try:
        if a.config == "all":
            if not a.out:
                print("error: 'train all' needs --out BUNDLE", file=sys.stderr)
                return 2
            path = train_all(a.data, a.out, a.runs, a.vqcpc, a.vocoder, a.generator,
                             {"vqcpc": a.set_vqcpc, "vocoder": a.set_vocoder, "generator": a.set_generator},
                             resume=not a.no_resume, name=a.name, parallel=a.parallel,
                             vocoder_data=a.vocoder_data)
            print(f"wrote bundle {path}")
            return 0
        cfg = load_config(a.config, a.set)
        if a.base:      # checked before training, so that a bad base or --out costs no training time
            if cfg.stage not in ("vocoder", "generator") or not a.out:
                print("error: --base takes a vocoder or generator preset and --out NEW.dwb", file=sys.stderr)
                return 2
            init = cfg.optim.get("init_from")
            if cfg.stage == "generator" and (not init or Path(str(init)).resolve() != Path(a.base).resolve()):
                # a generator trains on its base's normalisation and tokens only when it starts
                # from it (training/generator_base.py); tests/test_training.py::test_a_trained_vocoder_replaces...
                print(f"error: --base with a generator preset needs --set optim.init_from={a.base}", file=sys.stderr)
                return 2
            from core.bundle import load_bundle
            load_bundle(a.base)             # BundleError: one line, from main()
            if cannot_write(a.out):
                return 2
        if a.run_dir:
            from training.pipeline import generator_base
            print(Path(a.runs) / generator_base(cfg)[0].run_name)
            return 0
        run = run_stage(cfg, open_corpus(a.data, cfg), a.runs, resume=not a.no_resume)
        print(f"run {run.dir}")
        if a.base:
            from training.export import with_generator, with_vocoder
            swap = with_vocoder if cfg.stage == "vocoder" else with_generator
            print(f"wrote bundle {swap(a.base, run.dir, a.out, name=a.name)}")
        return 0
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def cmd_eval(a) -> int:
    import json

    from core.bundle import load_bundle
    from core.compute import compute_device
    from training.data import AudioCorpus
    from training.evaluate import SECTIONS, evaluate
    from training.pipeline import open_corpus

    sections = tuple(a.sections or SECTIONS)
    if a.data is None and (set(sections) != {"audible"} or a.heldout is None):
        print("error: --data is needed (all sections but '--sections audible --heldout DIR' read it)", file=sys.stderr)
        return 2
    try:
        corpus = open_corpus(a.data) if a.data else None
        heldout = AudioCorpus(a.heldout, val_fraction=0.0) if a.heldout else None
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    bundle = load_bundle(a.bundle, compute_device(a.compute))
    midi_render = None
    if a.midi_render:
        from realtime.offline import render_midi
        midi_render = lambda path: render_midi(bundle, path, pitch_filter=a.pitch_filter)[0]   # noqa: E731  (model rate)
    result = evaluate(bundle, corpus, a.seconds, a.stability_minutes, sections=sections, heldout=heldout,
                      trained_programs=set(a.trained_programs) if a.trained_programs else None,
                      note_step=a.note_step, crepe=a.crepe, seeds=tuple(a.seeds), midi_render=midi_render,
                      pitch_filter=a.pitch_filter)
    text = json.dumps(result, indent=1)
    print(text)
    if a.json:
        Path(a.json).write_text(text)
    return 0


def play_settings(a):
    """The playing options of ``a`` (``play`` or ``gui``) as :class:`realtime.settings.Settings`:
    the one place argparse's Namespace turns into the settings the session reads."""
    from realtime.settings import Settings

    return Settings(**{k: getattr(a, k) for k in Settings.names() if hasattr(a, k)})


def cmd_play(a) -> int:
    if not a.headless:
        from gui.app import run_gui

        return run_gui(play_settings(a), quit_after=a.seconds, stats_json=a.stats_json)
    from realtime.headless import run_headless

    return run_headless(play_settings(a), seconds=a.seconds, stats_json=a.stats_json, quiet=a.quiet)


def cmd_gui(a) -> int:
    from gui.app import run_gui

    return run_gui(play_settings(a), screenshot=a.screenshot, quit_after=a.quit_after, size=a.size,
                   stats_json=a.stats_json)


def cmd_devices(a) -> int:
    from realtime.session import describe_devices

    print("Audio devices:")
    print(describe_devices())
    from realtime.midi import list_ports

    print("\nMIDI input ports:")
    try:
        for api, ports in list_ports().items():
            print(f"  {api}:")
            for i, p in enumerate(ports):
                print(f"    {i}: {p}")
            if not ports:
                print("    (none)")
    except Exception as e:
        print(f"  (cannot list MIDI ports: {e})")
    return 0


def benchmarks() -> dict[str, str]:
    """Benchmark module name -> the first sentence of its docstring (read without importing it)."""
    import ast

    out = {}
    for f in sorted(BENCHMARKS.glob("*.py")):
        if f.stem != "__init__":
            doc = ast.get_docstring(ast.parse(f.read_text())) or ""
            first = " ".join(doc.strip().split("\n\n")[0].split())      # its first paragraph
            cut = first.find(". ")
            out[f.stem] = first[:cut + 1] if cut >= 0 else first
    return out


def cmd_bench(a) -> int:
    import runpy

    if not (BENCHMARKS / "run_all.sh").is_file():
        print("bench: benchmarks run from a source checkout (python main.py bench there); they are not installed",
              file=sys.stderr)
        return 1
    known = benchmarks()
    if a.name is None:
        for name, line in known.items():
            print(f"{name:18s} {line}")
        print("\nmain.py bench NAME [ARGS]; every one of them in turn, on a quiet machine: bash benchmarks/run_all.sh")
        return 0
    name = a.name if a.name in known else f"bench_{a.name}"
    if name not in known:
        print(f"main.py bench: error: no benchmark '{a.name}' (choose from {', '.join(known)})", file=sys.stderr)
        return 2
    sys.argv = [f"main.py bench {a.name}", *a.args]
    try:
        runpy.run_module(f"benchmarks.{name}", run_name="__main__")
    except SystemExit as e:              # argparse's usage errors (2) and --help (0)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return 0


def _device_arg(v):
    return int(v) if isinstance(v, str) and v.isdigit() else v


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv if argv is not None else (sys.argv[1:] or ["gui"]))
    if a.command == "render" and a.seconds is None and a.midi is None:
        ap.error("render needs --seconds (or --midi FILE)")      # exits 2 with the usage
    from core.audio_io import AudioReadError
    from core.bundle import BundleError
    from core.compute import ComputeUnavailable

    try:
        if getattr(a, "device", None) is not None:
            a.device = _device_arg(a.device)
        if getattr(a, "frame_notch", None) is not None:
            import core.frame_notch       # every Synth and resynthesis made from here on reads it
            core.frame_notch.RATE = a.frame_notch
        return {"render": cmd_render, "resynth": cmd_resynth, "play": cmd_play, "gui": cmd_gui,
                "devices": cmd_devices, "corpus": cmd_corpus, "train": cmd_train, "eval": cmd_eval,
                "bench": cmd_bench}[a.command](a)
    except (BundleError, AudioReadError, OSError, ComputeUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
