"""Training data: every audio file soundfile can read below a folder, as mono at the model
rate, peak-normalised to 0.95 (as MelGAN does), with cached log-mels, optional note labels
(a ``NAME.json`` beside ``NAME.wav`` holding ``{"notes": [{"pitch", "onset", "offset", ...}]}``,
as the SoundFont corpus renderer writes) and a train/validation split by file.

Unreadable files are skipped with a warning and counted (``corpus.skipped``). Batches are a
pure function of (seed, step, rank), so a resumed run sees exactly the batches it would have.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from core.audio_io import AudioReadError, read_mono
from core.mel import LogMel, MelConfig
from core.notes import held_note, note_clock, note_features


@dataclass
class AudioItem:
    path: str
    audio: np.ndarray                 # float32 [L], peak 0.95
    notes: list[dict] | None = None   # {"pitch", "onset", "offset", ...} seconds
    mel: np.ndarray | None = field(default=None, repr=False)   # log10 mel [T x 80], cached


def audio_extensions() -> set[str]:
    exts = {k.lower() for k in sf.available_formats()}
    return {"." + e for e in exts} | {".aif", ".oga", ".opus"}


class AudioCorpus:
    def __init__(self, folder: str | Path, mel: MelConfig = MelConfig(), val_fraction: float = 0.1,
                 min_seconds: float = 0.1):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ValueError(f"training folder '{folder}' does not exist")
        self.mel_config = mel
        self.sample_rate = mel.sample_rate
        self.skipped: list[tuple[str, str]] = []
        exts = audio_extensions()
        items = []
        for p in sorted(self.folder.rglob("*")):
            if not p.is_file() or p.suffix.lower() not in exts:
                continue
            try:
                audio = read_mono(str(p), self.sample_rate)
                if len(audio) < min_seconds * self.sample_rate:
                    raise AudioReadError(f"shorter than {min_seconds} s")
                if not np.all(np.isfinite(audio)):
                    raise AudioReadError("contains NaN or Inf")
            except AudioReadError as e:
                warnings.warn(f"skipping '{p}': {e}")
                self.skipped.append((str(p), str(e)))
                continue
            peak = float(np.max(np.abs(audio)))
            if peak > 0:
                audio = (audio * (0.95 / peak)).astype(np.float32)
            items.append(AudioItem(str(p), audio, self._labels(p)))
        if not items:
            raise ValueError(f"no readable audio in '{folder}' ({len(self.skipped)} files skipped)")
        ranked = sorted(items, key=lambda it: hashlib.sha1(str(Path(it.path).relative_to(self.folder)).encode()).hexdigest())
        n_val = int(round(len(items) * val_fraction)) if len(items) > 1 else 0
        if val_fraction > 0 and len(items) > 1:
            n_val = max(1, n_val)
        self.val = ranked[:n_val]
        self.train = ranked[n_val:]
        self._logmel = LogMel(mel)

    @staticmethod
    def _labels(path: Path) -> list[dict] | None:
        lab = path.with_suffix(".json")
        if not lab.exists():
            return None
        try:
            notes = json.loads(lab.read_text())["notes"]
            return [n for n in notes if {"pitch", "onset", "offset"} <= set(n)]
        except (ValueError, KeyError, TypeError) as e:
            warnings.warn(f"ignoring labels '{lab}': {e}")
            return None

    @property
    def seconds(self) -> float:
        return sum(len(it.audio) for it in self.train + self.val) / self.sample_rate

    def mel_of(self, item: AudioItem) -> np.ndarray:
        """Cached log10 mel of the whole file, ``ndarray[T x n_mels]``."""
        if item.mel is None:
            hop = self.mel_config.hop
            n = len(item.audio) // hop * hop
            with torch.no_grad():
                item.mel = self._logmel(torch.from_numpy(item.audio[:n])).T.numpy().copy()
        return item.mel

    def normalization(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-bin mean and std of the log-mel over all training frames."""
        frames = np.concatenate([self.mel_of(it) for it in self.train])
        return frames.mean(0).astype(np.float32), np.maximum(frames.std(0), 1e-3).astype(np.float32)

    def frame_pitch(self, item: AudioItem) -> np.ndarray:
        """MIDI pitch per mel frame from the labels (the most recent note sounding; silent
        frames take the nearest note's pitch); NaN everywhere if the file has no labels."""
        t = len(self.mel_of(item))
        out = np.full(t, np.nan, np.float32)
        if not item.notes:
            return out
        fr = self.sample_rate / self.mel_config.hop
        for n in sorted(item.notes, key=lambda n: n["onset"]):
            a, b = int(n["onset"] * fr), int(np.ceil(n["offset"] * fr))
            out[max(a, 0):min(b, t)] = n["pitch"]
        idx = np.flatnonzero(~np.isnan(out))
        if len(idx):
            nearest = idx[np.clip(np.searchsorted(idx, np.arange(t)), 0, len(idx) - 1)]
            out = np.where(np.isnan(out), out[nearest], out)
        return out

    def frame_notes(self, item: AudioItem) -> np.ndarray:
        """The note condition per mel frame (:mod:`core.notes`), ``ndarray[T x NOTE_DIM]``,
        from the labels; a file without labels reads as one long-held note."""
        t = len(self.mel_of(item))
        if not item.notes:
            return held_note((t,))
        return note_features(*note_clock(self.note_frames(item), t))

    def note_frames(self, item: AudioItem) -> list[tuple[int, int]]:
        fr = self.sample_rate / self.mel_config.hop
        return [(int(n["onset"] * fr), int(n["offset"] * fr)) for n in (item.notes or [])]


def batch_rng(seed: int, step: int, rank: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, step, rank])


def _pick(items: list[AudioItem], lengths: np.ndarray, need: int, rng: np.random.Generator):
    ok = np.flatnonzero(lengths >= need)
    if not len(ok):
        raise ValueError(f"no training file is long enough for a segment of {need}")
    w = lengths[ok] / lengths[ok].sum()
    i = int(ok[rng.choice(len(ok), p=w)])
    return i, int(rng.integers(0, lengths[i] - need + 1))


def vocoder_batch(corpus: AudioCorpus, batch: int, segment: int, rng: np.random.Generator,
                  items: list[AudioItem] | None = None, min_rms: float = 3e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Audio ``Tensor[B x segment]`` with random gain U(0.3, 1) and its log-mel
    ``Tensor[B x 80 x segment/hop]``. Segments that are nearly silent (RMS < ``min_rms``)
    are drawn again (up to 20 times): a batch of silence teaches a vocoder nothing."""
    items = items or corpus.train
    lengths = np.array([len(it.audio) for it in items])
    out = np.empty((batch, segment), np.float32)
    for b in range(batch):
        for _ in range(20):
            i, start = _pick(items, lengths, segment, rng)
            seg = items[i].audio[start:start + segment]
            if float(np.sqrt(np.mean(seg * seg))) >= min_rms:
                break
        out[b] = seg * rng.uniform(0.3, 1.0)
    audio = torch.from_numpy(out)
    with torch.no_grad():
        mel = corpus._logmel(audio)
    return audio, mel


def mel_batch(corpus: AudioCorpus, batch: int, frames: int, rng: np.random.Generator,
              mean: np.ndarray, std: np.ndarray, items: list[AudioItem] | None = None):
    """Standardized mel ``Tensor[B x 80 x frames]``, pitch ``Tensor[B x frames]`` (NaN if
    unlabelled) and (item index, start frame) of each row (:func:`note_batch` reads the
    note condition of the same rows)."""
    items = items or corpus.train
    lengths = np.array([len(corpus.mel_of(it)) for it in items])
    mel = np.empty((batch, corpus.mel_config.n_mels, frames), np.float32)
    pitch = np.empty((batch, frames), np.float32)
    where = []
    for b in range(batch):
        i, start = _pick(items, lengths, frames, rng)
        m = corpus.mel_of(items[i])[start:start + frames]
        mel[b] = ((m - mean) / std).T
        pitch[b] = corpus.frame_pitch(items[i])[start:start + frames]
        where.append((i, start))
    return torch.from_numpy(mel), torch.from_numpy(pitch), where


def note_batch(corpus: AudioCorpus, where: list[tuple[int, int]], frames: int,
               items: list[AudioItem] | None = None) -> torch.Tensor:
    """The note condition ``Tensor[B x frames x NOTE_DIM]`` of the rows :func:`mel_batch`
    drew (its ``where``)."""
    items = items or corpus.train
    return torch.from_numpy(np.stack([corpus.frame_notes(items[i])[s:s + frames] for i, s in where]))
