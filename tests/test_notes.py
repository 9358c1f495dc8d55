"""The note condition: the clock of a score, its features, and the generator that hears it."""
import numpy as np
import pytest
import torch

from core.generator import GeneratorConfig, StreamingUNAGAN
from core.notes import HELD_AGE_MAX, NOTE_DIM, ONSET_TAUS, RELEASE_TAU, held_note, note_clock, note_features
from tests.conftest import chunkings

T = 70


def test_note_clock_of_a_score():
    # a note at 2..5, silence, a note at 8..12 overlapped by one at 10..14
    held, on, off = note_clock([(2, 5), (8, 12), (10, 14)], 17)
    assert list(held) == [0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0]
    assert np.isinf(on[:2]).all() and list(on[2:8]) == [0, 1, 2, 3, 4, 5]
    assert list(on[8:12]) == [0, 1, 0, 1]                          # the latest onset counts
    assert np.isinf(off[:2]).all() and list(off[2:5]) == [0, 0, 0] and list(off[5:8]) == [0, 1, 2]
    assert list(off[14:]) == [0, 1, 2]                             # from the last release


def test_note_features_values():
    f = note_features(np.array([1.0, 0.0, 0.0]), np.array([0.0, 40.0, np.inf]), np.array([0.0, 8.0, np.inf]))
    assert f.shape == (3, NOTE_DIM) and f.dtype == np.float32
    assert list(f[0]) == [1, 1, 1, 1, 0]                           # struck now, held
    assert f[1, 0] == 0 and f[1, 1:4] == pytest.approx(np.exp(-40.0 / np.array(ONSET_TAUS)))
    assert f[1, 4] == pytest.approx(np.exp(-8.0 / RELEASE_TAU))     # released 8 frames ago
    assert np.all(f[2] == 0)                                        # silence, long ago
    # a key held past HELD_AGE_MAX stays in its sustain; the drone is such a note
    sustain = np.concatenate(([1.0], np.exp(-HELD_AGE_MAX / np.array(ONSET_TAUS)), [0.0])).astype(np.float32)
    long = note_features(np.ones(3), np.array([HELD_AGE_MAX, 500.0, np.inf]), np.zeros(3))
    assert np.allclose(long, sustain) and np.allclose(held_note((2,)), sustain)
    # released, the onset age runs on
    assert note_features(np.zeros(1), np.array([500.0]), np.array([3.0]))[0, 3] == pytest.approx(np.exp(-2.5))


def _make():
    torch.manual_seed(0)
    return StreamingUNAGAN(GeneratorConfig(hidden=32, n_tokens=4, pitch_min=40, pitch_max=80, note_dim=NOTE_DIM)).eval()


def _run(g, z, tok, pit, note, sizes):
    g.reset()
    outs, i = [], 0
    for n in sizes:
        outs.append(g(z[:, :, i:i + n], tok[:, i:i + n], pit[:, i:i + n], note[:, i:i + n]))
        i += n
    return torch.cat(outs, 2)


@torch.no_grad()
def test_note_conditioned_generator_streams_exactly():
    g = _make()
    for lin in g.note_in:                      # as if trained: the condition must matter
        torch.nn.init.normal_(lin.weight, std=0.5)
    torch.manual_seed(1)
    z, tok, pit = torch.randn(2, 20, T), torch.randint(0, 4, (2, T)), 40 + 40 * torch.rand(2, T)
    note = torch.from_numpy(note_features(*note_clock([(3, 20), (25, 60)], T)))[None].expand(2, -1, -1)
    whole = _run(g, z, tok, pit, note, [T])
    held = _run(g, z, tok, pit, torch.from_numpy(held_note((2, T))), [T])
    assert (whole - held).abs().max() > 1e-2                       # the notes change the output
    for name, sizes in chunkings(T, seed=3):
        torch.testing.assert_close(_run(g, z, tok, pit, note, sizes), whole, atol=1e-5, rtol=0, msg=name)
    # causal: a later onset leaves the frames before it as they were, and acts at once
    note2 = torch.from_numpy(note_features(*note_clock([(3, 20), (40, 60)], T)))[None].expand(2, -1, -1)
    other = _run(g, z, tok, pit, note2, [T])
    assert torch.equal(other[:, :, :25], whole[:, :, :25]) and (other[:, :, 25] - whole[:, :, 25]).abs().max() > 1e-3
    # no note given: a long-held note
    torch.testing.assert_close(_run(g, z, tok, pit, torch.from_numpy(held_note((2, T))), [T]),
                               (g.reset(), g(z, tok, pit))[1], atol=0, rtol=0)


@torch.no_grad()
def test_warm_start_without_notes_begins_where_it_was():
    """The note projections start at zero: a model warm-started from one without the note
    condition (strict=False, as training's init_from) makes exactly its output."""
    torch.manual_seed(0)
    old = StreamingUNAGAN(GeneratorConfig(hidden=32, pitch_min=40, pitch_max=80)).eval()
    new = StreamingUNAGAN(GeneratorConfig(hidden=32, pitch_min=40, pitch_max=80, note_dim=NOTE_DIM)).eval()
    missing = new.load_state_dict(old.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("note_in.") for k in missing)
    z, pit = torch.randn(1, 20, 40), torch.full((1, 40), 60.0)
    note = torch.from_numpy(note_features(*note_clock([(5, 30)], 40)))[None]
    old.reset()
    new.reset()
    assert torch.equal(new(z, None, pit, note), old(z, None, pit))


def test_the_player_gives_each_voice_its_note_clock(tmp_path):
    """A note-conditioned bundle in the player: the generator hears each sounding voice's
    note (struck, held, released) as the voice bank clocks it."""
    from core.bundle import load_bundle, save_bundle
    from core.mel import MelConfig
    from realtime.params import ControlBus
    from realtime.player import BundlePlayer
    from realtime.voices import VoiceBank
    from tests.conftest import small_models
    _, voc = small_models()
    gen = StreamingUNAGAN(GeneratorConfig(hidden=32, pitch_min=40, pitch_max=80, note_dim=NOTE_DIM)).eval()
    p = tmp_path / "notes.dwb"
    save_bundle(p, name="notes", generator=gen, vocoder=voc, mel=MelConfig(), mean=torch.zeros(80) - 3,
                std=torch.ones(80))
    player = BundlePlayer(load_bundle(p), 22050, n_voices=2)
    heard = []
    step_rows = player.synth.step_rows
    player.synth.step_rows = lambda rows, b, z, tok, pit, note: heard.append((rows, note)) or step_rows(rows, b, z, tok, pit, note)
    bus, voices = ControlBus(), VoiceBank(2, player.frame_rate)
    snap = bus.snapshot(0.01)

    def step(n=4):
        player.render(n, snap, voices, voices.render(n, 60.0, 0.0, 0.01, 0.05))
        return heard[-1]

    rows, note = step()                                # no key: voice 0 drones, a note held for ever
    assert rows == [0] and np.array_equal(note[0].numpy(), held_note((4,)))
    voices.note_on(64, 100)
    rows, note = step()
    assert rows == [0] and np.allclose(note[0].numpy(), note_features(np.ones(4), np.arange(4), np.zeros(4)))
    voices.note_on(67, 100)
    voices.note_off(64)
    rows, note = step()
    assert rows == [0, 1]
    assert np.allclose(note[0].numpy(), note_features(np.zeros(4), np.arange(4, 8), np.arange(4)))
    assert np.allclose(note[1].numpy(), note_features(np.ones(4), np.arange(4), np.zeros(4)))
