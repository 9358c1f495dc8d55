"""Critics for training: MelGAN's multi-scale waveform discriminator, UNAGAN's BEGAN
autoencoder discriminator, and UNAGAN's cycle encoder (mel -> noise)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm


def _wn(m: nn.Module) -> nn.Module:
    return weight_norm(m)


class NLayerDiscriminator(nn.Module):
    """One MelGAN scale: ``Tensor[B x 1 x L]`` -> list of feature maps, the last is the score."""

    def __init__(self, ndf: int = 16, n_layers: int = 4, downsampling: int = 4):
        super().__init__()
        layers = [nn.Sequential(nn.ReflectionPad1d(7), _wn(nn.Conv1d(1, ndf, 15)), nn.LeakyReLU(0.2))]
        nf = ndf
        for _ in range(n_layers):
            nf_prev, nf = nf, min(nf * downsampling, 1024)
            layers.append(nn.Sequential(
                _wn(nn.Conv1d(nf_prev, nf, downsampling * 10 + 1, stride=downsampling, padding=downsampling * 5,
                              groups=max(1, nf_prev // 4))),
                nn.LeakyReLU(0.2)))
        nf2 = min(nf * 2, 1024)
        layers.append(nn.Sequential(_wn(nn.Conv1d(nf, nf2, 5, padding=2)), nn.LeakyReLU(0.2)))
        layers.append(_wn(nn.Conv1d(nf2, 1, 3, padding=1)))
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class MultiScaleDiscriminator(nn.Module):
    """Three scales, AvgPool1d(4, 2, padding 1, count_include_pad False) between them."""

    def __init__(self, ndf: int = 16, scales: int = 3):
        super().__init__()
        self.discs = nn.ModuleList(NLayerDiscriminator(ndf) for _ in range(scales))
        self.pool = nn.AvgPool1d(4, stride=2, padding=1, count_include_pad=False)

    def forward(self, audio: torch.Tensor) -> list[list[torch.Tensor]]:
        x = audio[:, None] if audio.dim() == 2 else audio
        out = []
        for d in self.discs:
            out.append(d(x))
            x = self.pool(x)
        return out


class Front2d(nn.Module):
    """UNAGAN's 2-D front: ``Tensor[B x 80 x T]`` -> ``Tensor[B x 640 x T]`` (frequency
    strided by 2 three times, time dilations 2, 4, 8)."""

    def __init__(self, n_mels: int = 80):
        super().__init__()
        chans = [1, 4, 16, 64]
        layers = []
        for i, d in enumerate((2, 4, 8)):
            layers += [spectral_norm(nn.Conv2d(chans[i], chans[i + 1], 3, stride=(2, 1), padding=(1, d), dilation=(1, d))),
                       nn.BatchNorm2d(chans[i + 1]), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*layers)
        f = n_mels
        for _ in range(3):
            f = (f - 1) // 2 + 1
        self.out_channels = 64 * f

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.net(mel[:, None])
        return x.flatten(1, 2)


class BEGANDiscriminator(nn.Module):
    """An autoencoder that reconstructs its input mel; ``cond_dim`` extra per-frame
    channels (one-hot token, pitch) join after the 2-D front; ``note_dim`` note-condition
    channels are added to the front's output through a zero-initialised 1x1 conv (so a
    critic warm-started from one without them begins where it was)."""

    def __init__(self, n_mels: int = 80, channels: int = 512, cond_dim: int = 0, note_dim: int = 0):
        super().__init__()
        self.front = Front2d(n_mels)
        self.note_in = None
        if note_dim:
            self.note_in = nn.Conv1d(note_dim, self.front.out_channels, 1)
            nn.init.zeros_(self.note_in.weight)
            nn.init.zeros_(self.note_in.bias)
        layers, c_in = [], self.front.out_channels + cond_dim
        for d in (1, 16, 32, 64, 128):
            layers += [spectral_norm(nn.Conv1d(c_in, channels, 3, padding=d, dilation=d)),
                       nn.BatchNorm1d(channels), nn.LeakyReLU(0.2)]
            c_in = channels
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv1d(channels, n_mels, 3, padding=1)

    def forward(self, mel: torch.Tensor, cond: torch.Tensor | None = None,
                note: torch.Tensor | None = None) -> torch.Tensor:
        """``note``: ``Tensor[B x note_dim x T]`` (channels first, as ``cond``)."""
        h = self.front(mel)
        if self.note_in is not None and note is not None:
            h = h + self.note_in(note)
        if cond is not None:
            h = torch.cat((h, cond), 1)
        return self.head(self.body(h))


class CycleEncoder(nn.Module):
    """Mel ``Tensor[B x 80 x T]`` -> noise ``Tensor[B x z_dim x T/16]`` (4 strided convs)."""

    def __init__(self, n_mels: int = 80, z_dim: int = 20, channels: int = 512, n_down: int = 4):
        super().__init__()
        self.front = Front2d(n_mels)
        layers = [nn.Conv1d(self.front.out_channels, channels, 3, padding=1), nn.BatchNorm1d(channels), nn.LeakyReLU(0.2)]
        for _ in range(n_down):
            layers += [nn.Conv1d(channels, channels, 4, stride=2, padding=1), nn.BatchNorm1d(channels), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv1d(channels, z_dim, 3, padding=1)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.front(mel)))


class PitchClassifier(nn.Module):
    """Frame-wise pitch of a standardized mel: ``Tensor[B x 80 x T]`` -> logits
    ``Tensor[B x n_classes x T]`` (class i = MIDI ``pitch_min + i``). Trained on labelled
    real frames; its cross-entropy on generated frames against the requested pitch is the
    generator's auxiliary pitch loss (AC-GAN, as GANSynth conditions on pitch)."""

    def __init__(self, n_mels: int = 80, n_classes: int = 37, channels: int = 256):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(n_mels, channels, 5, padding=2), nn.LeakyReLU(0.2),
            nn.Conv1d(channels, channels, 5, padding=2), nn.LeakyReLU(0.2),
            nn.Conv1d(channels, channels, 5, padding=4, dilation=2), nn.LeakyReLU(0.2),
            nn.Conv1d(channels, n_classes, 1))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.net(mel)
