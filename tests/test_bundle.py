"""Bundle round trip, and a clear error for every kind of bad file."""
import json
import pickle
import struct

import pytest
import torch
from safetensors.torch import save_file

from core.bundle import META_KEY, BundleError, load_bundle, read_metadata, save_bundle
from core.mel import MelConfig
from core.synth import Synth
from tests.conftest import small_models


def _raw(path):
    """(tensors, metadata dict) of a bundle, to write tampered copies."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, json.loads(f.metadata()[META_KEY])


def _write(path, tensors, meta):
    save_file(tensors, str(path), metadata={META_KEY: json.dumps(meta)})
    return path


def _render(bundle, frames=12):
    s = Synth(bundle)
    s.reset()
    torch.manual_seed(5)
    return s.step(torch.randn(1, 20, frames), torch.ones(1, frames, dtype=torch.long),
                  torch.full((1, frames), 55.0))[0]


def test_round_trip_is_exact(small_bundle):
    b = load_bundle(small_bundle)
    gen, voc = small_models()
    assert b.name == "small test bundle" and b.sample_rate == 22050 and b.mel == MelConfig()
    assert b.generator.config == gen.config and b.vocoder.config == voc.config
    assert b.provenance == {"test": True}
    for k, v in gen.state_dict().items():
        assert torch.equal(b.generator.state_dict()[k], v)
    assert not b.generator.training and not b.vocoder.training
    assert torch.equal(_render(b), _render(load_bundle(small_bundle)))


def test_half_precision_round_trip(tmp_path, small_bundle):
    gen, voc = small_models()
    p = tmp_path / "half.dwb"
    save_bundle(p, name="h", generator=gen, vocoder=voc, mel=MelConfig(), mean=torch.zeros(80),
                std=torch.ones(80), half=True)
    assert p.stat().st_size < 0.6 * small_bundle.stat().st_size
    b = load_bundle(p)
    w = b.vocoder.model[1].weight
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, voc.model[1].weight, atol=1e-3, rtol=1e-3)


def _expect(path, *fragments):
    with pytest.raises(BundleError) as e:
        load_bundle(path)
    msg = str(e.value)
    assert str(path) in msg
    for f in fragments:
        assert f in msg, msg
    return msg


def test_missing_empty_and_garbage_files(tmp_path):
    _expect(tmp_path / "nope.dwb", "no such file")
    (tmp_path / "empty.dwb").write_bytes(b"")
    _expect(tmp_path / "empty.dwb", "truncated or empty")
    (tmp_path / "garbage.dwb").write_bytes(b"\xff" * 4096)
    _expect(tmp_path / "garbage.dwb", "not a readable safetensors file")
    # a header length pointing far past the end of the file
    (tmp_path / "hostile.dwb").write_bytes(struct.pack("<Q", 2 ** 40) + b"{}" * 20)
    _expect(tmp_path / "hostile.dwb", "not a readable safetensors file")


def test_truncated_file(tmp_path, small_bundle):
    data = small_bundle.read_bytes()
    for cut in (len(data) // 2, len(data) - 7):
        p = tmp_path / f"cut{cut}.dwb"
        p.write_bytes(data[:cut])
        _expect(p, "corrupt or truncated")


def test_pickle_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    p = tmp_path / "evil.dwb"
    p.write_bytes(pickle.dumps({"state_dict": Payload()}))
    _expect(p, "not a readable safetensors file")
    assert not marker.exists()


def test_not_a_bundle_and_bad_metadata(tmp_path, small_bundle):
    tensors, meta = _raw(small_bundle)
    plain = tmp_path / "plain.dwb"
    save_file(tensors, str(plain))
    _expect(plain, "no 'driftwave' metadata")
    bad_json = tmp_path / "badjson.dwb"
    save_file(tensors, str(bad_json), metadata={META_KEY: "{not json"})
    _expect(bad_json, "not valid JSON")
    _expect(_write(tmp_path / "fmt.dwb", tensors, {**meta, "format": "other"}), "not a driftwave bundle")


@pytest.mark.parametrize("version", [0, 3, "2", "1", None])
def test_wrong_version(tmp_path, small_bundle, version):
    tensors, meta = _raw(small_bundle)
    _expect(_write(tmp_path / "v.dwb", tensors, {**meta, "format_version": version}),
            "format version", "not supported")


def test_architecture_mismatch(tmp_path, small_bundle):
    tensors, meta = _raw(small_bundle)
    g = dict(meta["generator"], hidden=64)
    _expect(_write(tmp_path / "shape.dwb", tensors, {**meta, "generator": g}), "architecture mismatch", "shape")
    g = dict(meta["generator"], n_levels=3)
    _expect(_write(tmp_path / "missing.dwb", tensors, {**meta, "generator": g}), "architecture mismatch", "unexpected")
    g = dict(meta["generator"], wings=2)
    _expect(_write(tmp_path / "unknown.dwb", tensors, {**meta, "generator": g}), "unknown generator argument")
    less = {k: v for k, v in tensors.items() if k != "vocoder.model.1.bias"}
    _expect(_write(tmp_path / "less.dwb", less, meta), "missing", "model.1.bias")
    _expect(_write(tmp_path / "ratios.dwb", tensors, {**meta, "vocoder": dict(meta["vocoder"], ratios=[8, 8, 2])}),
            "upsamples x128", "hop is 256")


def test_the_header_names_the_vocoder_kind(tmp_path, small_bundle):
    """Version 2 names the vocoder's kind; an unknown kind or none is an error naming the
    file; a version-1 header (no kind) holds MelGAN and plays as the version-2 file does."""
    tensors, meta = _raw(small_bundle)
    assert meta["format_version"] == 2 and meta["vocoder_kind"] == "melgan"
    _expect(_write(tmp_path / "kind.dwb", tensors, {**meta, "vocoder_kind": "theremin"}),
            "unknown vocoder kind 'theremin'", "melgan")
    _expect(_write(tmp_path / "kind2.dwb", tensors, {**meta, "vocoder_kind": ["melgan"]}), "names no vocoder kind")
    no_kind = {k: v for k, v in meta.items() if k != "vocoder_kind"}
    _expect(_write(tmp_path / "nokind.dwb", tensors, no_kind), "names no vocoder kind")
    v1 = load_bundle(_write(tmp_path / "v1.dwb", tensors, {**no_kind, "format_version": 1}))
    assert v1.vocoder_kind == "melgan" and read_metadata(tmp_path / "v1.dwb")["vocoder_kind"] == "melgan"
    assert torch.equal(_render(v1), _render(load_bundle(small_bundle)))


def test_hostile_sizes_are_refused_before_allocating(tmp_path, small_bundle):
    tensors, meta = _raw(small_bundle)
    g = dict(meta["generator"], hidden=10 ** 9)
    _expect(_write(tmp_path / "huge.dwb", tensors, {**meta, "generator": g}), "hidden", "not an integer in")
    v = dict(meta["vocoder"], ngf="32")
    _expect(_write(tmp_path / "str.dwb", tensors, {**meta, "vocoder": v}), "ngf")


def test_nan_weights_and_bad_normalization(tmp_path, small_bundle):
    tensors, meta = _raw(small_bundle)
    t = dict(tensors)
    t["vocoder.model.1.weight"] = t["vocoder.model.1.weight"].clone()
    t["vocoder.model.1.weight"][0, 0, 0] = float("nan")
    _expect(_write(tmp_path / "nan.dwb", t, meta), "NaN")
    t = dict(tensors, **{"norm.std": torch.zeros(80)})
    _expect(_write(tmp_path / "std.dwb", t, meta), "std")


def test_read_metadata_reads_header_only(small_bundle):
    meta = read_metadata(small_bundle)
    assert meta["generator"]["n_tokens"] == 4 and meta["format_version"] == 2 and meta["vocoder_kind"] == "melgan"


def test_shipped_default_bundle_loads():
    from main import DEFAULT_BUNDLE
    b = load_bundle(DEFAULT_BUNDLE)
    assert b.sample_rate == 22050 and b.vocoder.hop == 256


def test_multiband_vocoder_round_trip_streams_the_same(tmp_path):
    from core.vocoder import MelGANVocoder, VocoderConfig
    gen, _ = small_models()
    torch.manual_seed(7)
    voc = MelGANVocoder(VocoderConfig(ngf=8, bands=4, ratios=(8, 4, 2), causal=True)).eval()
    p = tmp_path / "mb.dwb"
    save_bundle(p, name="mb", generator=gen, vocoder=voc, mel=MelConfig(), mean=torch.zeros(80), std=torch.ones(80))
    b = load_bundle(p)
    assert b.vocoder.config.bands == 4 and b.hop == 256 and b.vocoder.delay == 31
    mel = torch.randn(1, 80, 10) - 3
    with torch.no_grad():
        voc.reset()
        b.vocoder.reset()
        torch.testing.assert_close(b.vocoder(mel), voc(mel), atol=0, rtol=0)
    tensors, meta = _raw(p)
    _expect(_write(tmp_path / "bands.dwb", tensors, {**meta, "vocoder": dict(meta["vocoder"], bands=2)}),
            "upsamples x128", "hop is 256")


def test_note_conditioned_generator_round_trip(tmp_path):
    from core.generator import GeneratorConfig, StreamingUNAGAN
    from core.notes import NOTE_DIM, note_clock, note_features
    _, voc = small_models()
    torch.manual_seed(3)
    gen = StreamingUNAGAN(GeneratorConfig(hidden=32, pitch_min=40, pitch_max=80, note_dim=NOTE_DIM)).eval()
    for lin in gen.note_in:
        torch.nn.init.normal_(lin.weight, std=0.5)
    p = tmp_path / "notes.dwb"
    save_bundle(p, name="notes", generator=gen, vocoder=voc, mel=MelConfig(), mean=torch.zeros(80) - 3, std=torch.ones(80))
    b = load_bundle(p)
    assert b.generator.config.note_dim == NOTE_DIM
    z, pit = torch.randn(1, 20, 12), torch.full((1, 12), 55.0)
    note = torch.from_numpy(note_features(*note_clock([(2, 8)], 12)))[None]
    with torch.no_grad():
        gen.reset()
        b.generator.reset()
        torch.testing.assert_close(b.generator(z, None, pit, note), gen(z, None, pit, note), atol=0, rtol=0)
    tensors, meta = _raw(p)
    _expect(_write(tmp_path / "dim.dwb", tensors, {**meta, "generator": dict(meta["generator"], note_dim=3)}),
            "note condition has 3 features", f"makes {NOTE_DIM}")


def test_the_engine_starts_on_the_bundles_default_token(tmp_path):
    """Some tokens stand for silence: a bundle names the token to start on, and the engine
    (at start and on a hot swap) sets the token parameter to it."""
    from realtime.engine import Engine
    gen, voc = small_models()
    paths = []
    for default in (3, 1):
        p = tmp_path / f"tok{default}.dwb"
        save_bundle(p, name="tok", generator=gen, vocoder=voc, mel=MelConfig(), mean=torch.zeros(80) - 3,
                    std=torch.ones(80), token_stats={"transitions": [[0.25] * 4] * 4, "default": default})
        paths.append(p)
    engine = Engine(load_bundle(paths[0]), 48000, threads=1)
    assert engine.bus.get("token") == 3
    engine.load_bundle(str(paths[1])).join(30)
    assert engine.bus.get("token") == 1
    tensors, meta = _raw(paths[0])
    for bad in (4, -1, "3", 2.5):      # not one of the model's 4 tokens: start on 0
        meta["token_stats"]["default"] = bad
        assert load_bundle(_write(tmp_path / "bad.dwb", tensors, meta)).default_token == 0


def test_the_token_knob_spans_the_models_own_tokens_and_follows_a_hot_swap(tmp_path):
    """A 16-token model on a 0..4095 knob left a MIDI knob one useful step (CC 0: token 0,
    CC 1 and up: the last token). The token range is the loaded bundle's."""
    from realtime.engine import Engine
    from realtime.midi_parse import MidiEvent
    paths = {}
    for n in (4, 9):
        gen, voc = small_models(n_tokens=n)
        paths[n] = tmp_path / f"t{n}.dwb"
        save_bundle(paths[n], name=f"t{n}", generator=gen, vocoder=voc, mel=MelConfig(),
                    mean=torch.zeros(80) - 3, std=torch.ones(80))
    engine = Engine(load_bundle(paths[9]), 48000, threads=1)
    spec = engine.bus.specs["token"]
    assert (spec.minimum, spec.maximum) == (0, 8)
    for cc, token in ((0, 0), (16, 1), (64, 4), (112, 7), (127, 8)):     # CC73: the token knob
        engine.controller.handle(engine, MidiEvent("cc", 0, 73, cc, 0.0))
        assert engine.bus.get("token") == token, cc
    engine.bus.set("token", 100)
    assert engine.bus.get("token") == 8
    engine.load_bundle(str(paths[4])).join(30)             # fewer tokens: the knob and its value shrink
    assert engine.bus.specs["token"].maximum == 3 and engine.bus.get("token") == 0
    engine.bus.set_normalized("token", 1.0)
    assert engine.bus.get("token") == 3
    assert engine.bus.normalized("token") == 1.0


def _encoder_bundle(tmp_path, n_tokens=4):
    from core.tokens import TokenEncoder, TokenEncoderConfig
    gen, voc = small_models(n_tokens=n_tokens)
    torch.manual_seed(9)
    enc = TokenEncoder(TokenEncoderConfig(channels=(24, 16), code_dim=8, n_codes=n_tokens))
    for p in enc.parameters():
        torch.nn.init.normal_(p, 0.0, 0.5)
    path = tmp_path / "enc.dwb"
    save_bundle(path, name="enc", generator=gen, vocoder=voc, mel=MelConfig(), mean=torch.zeros(80) - 3,
                std=torch.ones(80), encoder=enc)
    return path, enc


def test_a_token_encoder_round_trips_and_names_audio_frames(tmp_path):
    import numpy as np

    from core.tokens import tokens_of_audio
    path, enc = _encoder_bundle(tmp_path)
    b = load_bundle(path)
    assert b.encoder is not None and read_metadata(path)["encoder"]["n_codes"] == 4
    mel = torch.randn(2, 80, 50)
    assert torch.equal(b.encoder(mel), enc(mel))
    sr = 22050
    t = np.arange(sr) / sr
    audio = np.concatenate([0.3 * np.sin(2 * np.pi * 220 * t), 0.3 * np.random.default_rng(0).standard_normal(sr)])
    toks = tokens_of_audio(b, audio.astype(np.float32))
    assert toks.dtype == np.int64 and len(toks) == len(audio) // 256 and toks.min() >= 0 and toks.max() < 4
    from core.mel import LogMel        # what training did: log-mel, standardized, encoded
    mel = LogMel(MelConfig())(torch.from_numpy(audio.astype(np.float32)))
    assert np.array_equal(toks, enc(((mel + 3) / 1)[None])[0].numpy())
    gen, voc = small_models()
    plain = tmp_path / "plain.dwb"
    save_bundle(plain, name="plain", generator=gen, vocoder=voc, mel=MelConfig(), mean=torch.zeros(80),
                std=torch.ones(80))
    with pytest.raises(ValueError, match="carries no token encoder"):
        tokens_of_audio(load_bundle(plain), audio)


def test_a_bad_token_encoder_is_refused_with_a_message(tmp_path):
    path, _ = _encoder_bundle(tmp_path)
    tensors, meta = _raw(path)
    _expect(_write(tmp_path / "codes.dwb", tensors, {**meta, "encoder": dict(meta["encoder"], n_codes=5)}),
            "names 5 tokens", "takes 4 tokens")
    _expect(_write(tmp_path / "chans.dwb", tensors, {**meta, "encoder": dict(meta["encoder"], channels=[0])}),
            "encoder argument channels")
    _expect(_write(tmp_path / "huge.dwb", tensors, {**meta, "encoder": dict(meta["encoder"], code_dim=10 ** 6)}),
            "code_dim")
    _expect(_write(tmp_path / "nohead.dwb", tensors, {**meta, "encoder": None}), "without an 'encoder' header")
    short = {k: v for k, v in tensors.items() if k != "encoder.codebook"}
    _expect(_write(tmp_path / "short.dwb", short, meta), "architecture mismatch in encoder", "codebook")


def test_reference_token_mode_plays_a_files_tokens_and_survives_a_hot_swap(tmp_path):
    import numpy as np
    import soundfile as sf

    from core.tokens import tokens_of_audio
    from realtime.engine import Engine
    from realtime.params import TOKEN_MODES
    path, _ = _encoder_bundle(tmp_path)
    sr = 22050
    rng = np.random.default_rng(1)
    audio = (0.2 * rng.standard_normal(sr) * np.repeat(rng.uniform(0, 1, 22), sr // 22 + 1)[:sr]).astype(np.float32)
    wav = tmp_path / "ref.wav"
    sf.write(str(wav), audio, sr)
    engine = Engine(load_bundle(path), 48000, threads=1)
    engine.load_reference(str(tmp_path / "missing.wav")).join(30)
    assert "cannot read audio file" in engine.errors.popleft()
    assert engine.bus.get("token_mode") == TOKEN_MODES.index("hold")      # unchanged
    engine.load_reference(str(wav)).join(30)
    assert not engine.errors and engine.bus.get("token_mode") == TOKEN_MODES.index("reference")
    expected = tokens_of_audio(engine.player.bundle, audio)
    assert np.array_equal(engine.player.tokens.reference, expected)
    played = []
    for _ in range(20):
        engine._step()
        played.extend(engine.player.last_tokens.tolist())
    assert played == expected[np.arange(len(played)) % len(expected)].tolist()
    engine.load_bundle(str(path)).join(30)                                 # a hot swap re-reads the file
    assert np.array_equal(engine._incoming.tokens.reference, expected)
    gen, voc = small_models()
    plain = tmp_path / "plain.dwb"
    save_bundle(plain, name="plain", generator=gen, vocoder=voc, mel=MelConfig(), mean=torch.zeros(80),
                std=torch.ones(80))
    engine.load_bundle(str(plain)).join(30)                                # no encoder: it says so
    assert "carries no token encoder" in engine.errors.popleft()
    other = Engine(load_bundle(plain), 48000, threads=1)
    other.load_reference(str(wav)).join(30)
    assert "carries no token encoder" in other.errors.popleft()


def test_render_plays_a_reference_files_tokens(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np
    import soundfile as sf

    from core.render import render
    from core.tokens import tokens_of_audio
    path, _ = _encoder_bundle(tmp_path)
    rng = np.random.default_rng(2)
    audio = (0.3 * rng.standard_normal(11025)).astype(np.float32)
    sf.write(str(tmp_path / "ref.wav"), audio, 22050)
    root = Path(__file__).resolve().parent.parent
    out = tmp_path / "r.wav"
    p = subprocess.run([sys.executable, str(root / "main.py"), "render", str(out), "--seconds", "0.5",
                        "--bundle", str(path), "--reference", str(tmp_path / "ref.wav"), "--compute", "cpu"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    b = load_bundle(path)
    expected = render(b, 0.5, tokens=tokens_of_audio(b, audio), chunk_frames=16)
    got, _ = sf.read(str(out), dtype="float32")
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert not np.allclose(got, render(b, 0.5, token=0, chunk_frames=16), atol=1e-4)
