import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# sessions (`main.py play`, the window, Session(Settings(...))) compile the model's step by
# default (core/compiled_step.py), 8 s or more at every start; with this, "auto" means off in
# the tests, which run it eagerly unless they ask ("on")
# (tests/test_compiled.py tests the compiled step, and a JACK test plays it)
os.environ.setdefault("DRIFTWAVE_COMPILE", "off")

import numpy as np
import pytest
import torch

from core.bundle import save_bundle
from core.generator import GeneratorConfig, StreamingUNAGAN
from core.mel import MelConfig
from core.vocoder import MelGANVocoder, VocoderConfig

torch.set_num_threads(1)

# Chunk sizes every streaming test uses, plus random chunkings.
CHUNKS = [1, 2, 3, 7, 16]


def random_chunking(total: int, rng: np.random.Generator, max_size: int = 20) -> list[int]:
    sizes = []
    while sum(sizes) < total:
        sizes.append(int(min(rng.integers(1, max_size + 1), total - sum(sizes))))
    return sizes


def chunkings(total: int, seed: int = 0, n_random: int = 3):
    """(name, list of chunk sizes) for the fixed sizes and a few random chunkings."""
    rng = np.random.default_rng(seed)
    out = [(f"k{k}", [k] * (total // k) + ([total % k] if total % k else [])) for k in CHUNKS]
    out += [(f"random{i}", random_chunking(total, rng)) for i in range(n_random)]
    return out


def run_in_frames(layer, audio, frames, chunks: int | list[int] = 0, hop: int = 256) -> np.ndarray:
    """A post-filter ``layer(audio, controls)`` streamed in frames: audio ``[B x n*hop]`` and its
    per-frame controls ``frames [B x ... x n]`` (frames last: a mel, an f0) in chunks of
    ``chunks`` frames (a list: those sizes in turn; 0: one call) -> the output ``ndarray[B x
    n*hop]``."""
    xt, ft = torch.as_tensor(audio, dtype=torch.float32), torch.as_tensor(frames, dtype=torch.float32)
    n = ft.shape[-1]
    sizes = chunks if isinstance(chunks, list) else [chunks or n] * n
    out, start = [], 0
    for k in sizes:
        if start >= n:
            break
        out.append(layer(xt[:, start * hop:(start + k) * hop], ft[..., start:start + k]))
        start += k
    return torch.cat(out, 1).numpy()


def small_models(n_tokens=4, pitch=(40, 80), hidden=32, ngf=8, seed=0, harmonics=0):
    """A small generator and vocoder with random weights; ``harmonics`` > 0: a vocoder with
    harmonic excitation (it takes f0, so the synth's pitch post-filter runs too)."""
    torch.manual_seed(seed)
    gen = StreamingUNAGAN(GeneratorConfig(hidden=hidden, n_tokens=n_tokens,
                                          pitch_min=pitch[0], pitch_max=pitch[1])).eval()
    voc = MelGANVocoder(VocoderConfig(ngf=ngf, harmonics=harmonics))
    for m in voc.modules():
        if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d)):
            torch.nn.init.normal_(m.weight, 0.0, 0.3 / (m.weight[0].numel() ** 0.5) * 3)
    return gen, voc.eval()


@pytest.fixture
def small_bundle(tmp_path):
    gen, voc = small_models()
    path = tmp_path / "small.dwb"
    mel = MelConfig()
    save_bundle(path, name="small test bundle", generator=gen, vocoder=voc, mel=mel,
                mean=torch.linspace(-4, -1, 80), std=torch.full((80,), 1.5),
                provenance={"test": True})
    return path


@pytest.fixture(scope="module")
def jack_server():
    from tests.jackutil import JackServer
    server = JackServer(rate=48000, period=1024)
    yield server
    server.stop()
