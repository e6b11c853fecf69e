"""Model registry: the thesis's waveform and log-mel models (Pons et al. 2018) and the
Short-chunk ResNet of Won et al. 2020.

Every entry knows what it eats (`input`: 'wave' -> float32 [B, samples] at 16 kHz, 'mel' ->
log-mel dB [B, n_mels, frames]) and how long its crops are (`crop_samples`, 59,049 samples =
3.69 s, the length the thesis and Won's recipe use). `width` scales every channel count, so the
CPU demo trains in minutes with width 0.125 while width 1.0 gives the published sizes.

    model = build("wave", n_tags=50, width=1.0)
    logits = model(x)            # [B, n_tags]; the loss applies the sigmoid
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
import torch.nn.functional as F

CROP_SAMPLES = 59_049        # 3**10 samples, 3.69 s at 16 kHz
N_MELS = 128


def _ch(n: int, width: float) -> int:
    return max(4, int(round(n * width)))


class PonsBackEnd(nn.Module):
    """Pons et al. 2018 back end, shared by the waveform and log-mel models.

    Three 1-D convolutions (width 7) over time with residual connections on the front end's
    feature sequence, then max- and mean-pooling over time, a dense layer and the output layer.
    """

    def __init__(self, in_ch: int, n_tags: int, width: float, dropout: float = 0.5):
        super().__init__()
        c = _ch(512, width)
        self.proj = nn.Sequential(nn.Conv1d(in_ch, c, 7, padding=3), nn.BatchNorm1d(c), nn.ReLU())
        self.res1 = nn.Sequential(nn.Conv1d(c, c, 7, padding=3), nn.BatchNorm1d(c), nn.ReLU())
        self.res2 = nn.Sequential(nn.Conv1d(c, c, 7, padding=3), nn.BatchNorm1d(c), nn.ReLU())
        hidden = _ch(500, width)
        # Max and mean pooling of all three layers' outputs, concatenated (as in Pons 2018).
        self.dense = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * 3 * c, hidden),
                                   nn.BatchNorm1d(hidden), nn.ReLU(), nn.Dropout(dropout))
        self.out = nn.Linear(hidden, n_tags)

    def forward(self, h: torch.Tensor) -> torch.Tensor:   # h: [B, C, T]
        h1 = self.proj(h)
        h2 = self.res1(h1) + h1
        h3 = self.res2(h2) + h2
        seq = torch.cat([h1, h2, h3], dim=1)
        pooled = torch.cat([seq.amax(dim=2), seq.mean(dim=2)], dim=1)
        return self.out(self.dense(pooled))


class PonsWaveform(nn.Module):
    """Sample-level front end (frames of 3 samples, then conv3 + max-pool 3 stacks) + back end."""

    def __init__(self, n_tags: int, width: float = 1.0, crop_samples: int = CROP_SAMPLES):
        super().__init__()
        chans = [_ch(c, width) for c in (64, 64, 64, 128, 128, 128, 256)]
        layers = [nn.Conv1d(1, chans[0], 3, stride=3), nn.BatchNorm1d(chans[0]), nn.ReLU()]
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv1d(c_in, c_out, 3, padding=1), nn.BatchNorm1d(c_out), nn.ReLU(), nn.MaxPool1d(3)]
        self.front = nn.Sequential(*layers)
        # 59,049 samples -> 19,683 frames -> 6 pools of 3 -> 27 steps for the back end.
        self.back = PonsBackEnd(chans[-1], n_tags, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # x: [B, samples]
        return self.back(self.front(x.unsqueeze(1)))


class PonsMel(nn.Module):
    """Musically motivated front end (Pons 2018) over 128 log-mel bands + the shared back end.

    Timbral branch: vertical filters spanning 70% and 40% of the mel axis, 7/3/1 frames wide,
    max-pooled over frequency. Temporal branch: horizontal filters of several lengths on the
    frequency-averaged spectrogram. Both give [B, C, frames] sequences for the back end.
    """

    TIME_WIDTHS = (7, 3, 1)
    FREQ_FRACTIONS = (0.7, 0.4)
    TEMPORAL_LENGTHS = (165, 128, 64, 32)

    def __init__(self, n_tags: int, width: float = 1.0, n_mels: int = N_MELS):
        super().__init__()
        self.input_bn = nn.BatchNorm2d(1)
        self.timbral = nn.ModuleList()
        for frac in self.FREQ_FRACTIONS:
            for tw in self.TIME_WIDTHS:
                c = _ch(32 if tw > 1 else 16, width)
                self.timbral.append(nn.Sequential(
                    nn.Conv2d(1, c, (int(frac * n_mels), tw), padding=(0, tw // 2)), nn.BatchNorm2d(c), nn.ReLU()))
        self.temporal = nn.ModuleList()
        for length in self.TEMPORAL_LENGTHS:
            c = _ch(16, width)
            self.temporal.append(nn.Sequential(
                nn.Conv1d(1, c, length, padding=length // 2), nn.BatchNorm1d(c), nn.ReLU()))
        in_ch = sum(m[0].out_channels for m in self.timbral) + sum(m[0].out_channels for m in self.temporal)
        self.back = PonsBackEnd(in_ch, n_tags, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # x: [B, n_mels, frames]
        h = self.input_bn(x.unsqueeze(1))
        feats = [branch(h).amax(dim=2) for branch in self.timbral]
        avg = h.mean(dim=2)                                   # [B, 1, frames]
        # Even filter lengths give one extra step with symmetric padding; trim to `frames`.
        feats += [branch(avg)[..., : x.shape[-1]] for branch in self.temporal]
        return self.back(torch.cat(feats, dim=1))


class _ResBlock2d(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.skip = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out))

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.skip(x))


class ShortChunkResNet(nn.Module):
    """Won et al. 2020 Short-chunk ResNet: 7 residual 3x3 blocks (stride 2) on 128-mel crops
    of 3.69 s, max over what is left of time, then a dense layer and the output layer."""

    def __init__(self, n_tags: int, width: float = 1.0, n_mels: int = N_MELS):
        super().__init__()
        chans = [_ch(c, width) for c in (128, 128, 128 * 2, 128 * 2, 128 * 2, 128 * 2, 128 * 4)]
        self.input_bn = nn.BatchNorm2d(1)
        blocks, c_in = [], 1
        for c in chans:
            blocks.append(_ResBlock2d(c_in, c))
            c_in = c
        self.blocks = nn.Sequential(*blocks)
        self.dense = nn.Sequential(nn.Linear(c_in, c_in), nn.BatchNorm1d(c_in), nn.ReLU(), nn.Dropout(0.5))
        self.out = nn.Linear(c_in, n_tags)

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # x: [B, n_mels, frames]
        h = self.blocks(self.input_bn(x.unsqueeze(1)))        # [B, C, F', T']
        h = h.amax(dim=2).amax(dim=2)
        return self.out(self.dense(h))


@dataclass(frozen=True)
class ModelSpec:
    name: str
    input: str                      # 'wave' | 'mel'
    crop_samples: int
    build: Callable[..., nn.Module]
    reference: str


REGISTRY: dict[str, ModelSpec] = {
    "wave": ModelSpec("wave", "wave", CROP_SAMPLES, lambda n_tags, width: PonsWaveform(n_tags, width),
                      "Pons et al. 2018, waveform (sample-level front end)"),
    "mel": ModelSpec("mel", "mel", CROP_SAMPLES, lambda n_tags, width: PonsMel(n_tags, width),
                     "Pons et al. 2018, log-mel (musically motivated front end)"),
    "shortchunk_resnet": ModelSpec("shortchunk_resnet", "mel", CROP_SAMPLES,
                                   lambda n_tags, width: ShortChunkResNet(n_tags, width),
                                   "Won et al. 2020, Short-chunk ResNet"),
}


def spec(name: str) -> ModelSpec:
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def build(name: str, n_tags: int, width: float = 1.0) -> nn.Module:
    if not 0 < width <= 4:
        raise ValueError(f"width must be in (0, 4], got {width}")
    return spec(name).build(n_tags, width)


def default_model_for(input_: str) -> str:
    """The thesis's model for an input kind ('wave' -> wave, 'mel' -> mel)."""
    if input_ not in ("wave", "mel"):
        raise ValueError(f"input must be 'wave' or 'mel', got {input_!r}")
    return input_
