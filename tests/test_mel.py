"""Mel analysis against an independent computation of MelGAN's formula (librosa + numpy)."""
import librosa
import numpy as np
import torch

from core.mel import LogMel, MelConfig, mel_filterbank


def test_filterbank_matches_librosa_slaney():
    ours = mel_filterbank(22050, 1024, 80, 0.0, None)
    ref = librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=0.0, fmax=None)
    assert ours.shape == (80, 513)
    np.testing.assert_allclose(ours, ref, atol=1e-7, rtol=0)


def _reference_logmel(y: np.ndarray) -> np.ndarray:
    y = np.pad(y, (384, 384), mode="reflect")
    spec = np.abs(librosa.stft(y, n_fft=1024, hop_length=256, win_length=1024, window="hann", center=False))
    mel = librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80) @ spec
    return np.log10(np.maximum(mel, 1e-5))


def test_logmel_matches_independent_formula():
    rng = np.random.default_rng(0)
    t = np.arange(22050) / 22050
    y = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    ours = LogMel()(torch.from_numpy(y)).numpy()
    ref = _reference_logmel(y.astype(np.float64))
    assert ours.shape == ref.shape == (80, 22050 // 256)
    np.testing.assert_allclose(ours, ref, atol=2e-4)


def test_frame_count_is_length_over_hop_and_batches():
    x = torch.randn(3, 256 * 37) * 0.1
    m = LogMel()(x)
    assert m.shape == (3, 80, 37)
    torch.testing.assert_close(m[1], LogMel()(x[1]))


def test_sine_peaks_in_the_right_band_and_silence_hits_the_floor():
    sr = 22050
    t = torch.arange(sr) / sr
    m = LogMel()(0.5 * torch.sin(2 * np.pi * 1000 * t))
    fb = mel_filterbank(sr, 1024, 80)
    centre_hz = (fb * np.linspace(0, sr / 2, 513)).sum(1) / fb.sum(1)
    peak_bin = int(m[:, 10:-10].mean(1).argmax())
    assert abs(centre_hz[peak_bin] - 1000) < 60
    assert torch.all(LogMel()(torch.zeros(2560)) == np.log10(MelConfig().log_floor))
