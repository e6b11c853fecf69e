"""Model registry: the waveform and log-mel models of Pons et al. 2018 ("End-to-end learning for
music audio tagging at scale", ISMIR) and the Short-chunk ResNet of Won et al. 2020 ("Evaluation of
CNN-based automatic music tagging models", SMC).

Every entry knows what it eats (`input`: 'wave' -> float32 [B, samples] at 16 kHz, 'mel' ->
log-mel dB [B, n_mels, frames]) and how long its crops are (`crop_samples`, 59,049 samples =
3.69 s, the length Won's recipe uses). `width` scales every channel count, so the CPU demo
trains in minutes with width 0.125 while width 1.0 gives the published sizes.

The Pons models follow the authors' code for the paper (github.com/jordipons/
music-audio-tagging-at-scale-models, models.py: `wave_frontend`, `spec_frontend(num_filt=16)`,
`backend(num_units=500)`) layer for layer: the same filter shapes and counts, 'valid' or 'same'
padding as there, conv -> ReLU -> BatchNorm order, the back end's max-pool by 2 and its global
max + mean pooling of the last layer only. Where tagfold differs, and why:
- Input: tagfold's shared front end gives 128 log-mel bands in dB over 3.69 s (231 frames, Won's
  recipe). The Pons code takes the band count as a parameter and its timbral filters span 0.9
  and 0.4 of it: 115 and 51 bands at 128 (86 and 38 at musicnn's 96).
- `mel` normalises its dB input with one BatchNorm (2 parameters), as musicnn does; the at-scale
  code feeds its log-mel to the filters directly.
- The back end zero-pads sequences shorter than 8 steps (its 7-wide 'valid' convolution and
  pool by 2 need 8): the published crop gives 20 steps (wave) and 225 (mel), so it never pads
  there; tests and tiny crops do.
- Weights start from PyTorch's default initialisation, not TensorFlow's variance scaling; the
  output layer gives logits (the loss applies the sigmoid the TF code puts in the model).

    model = build("wave", n_tags=50, width=1.0)
    logits = model(x)            # [B, n_tags]
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
import torch.nn.functional as F

from tagfold.pipeline.constants import CROP_SAMPLES
N_MELS = 128


def _ch(n: int, width: float) -> int:
    return max(4, int(round(n * width)))


def _conv_relu_bn(conv: nn.Module, c: int, bn=nn.BatchNorm1d) -> nn.Sequential:
    # The at-scale code applies ReLU inside the convolution and BatchNorm after it.
    return nn.Sequential(conv, nn.ReLU(), bn(c))


class PonsBackEnd(nn.Module):
    """Pons et al. 2018 back end (`backend` in the authors' models.py), shared by both front ends.

    conv 7 'valid' -> ReLU -> BN; conv 7 'same' -> ReLU -> BN + residual; max-pool 2 over time;
    conv 7 'same' -> ReLU -> BN + residual; global max and mean over time of that last layer
    (2 x 512 features); dropout 0.5, dense 500 -> ReLU -> BN, dropout 0.5, output layer.
    """

    MIN_STEPS = 8     # the 'valid' 7-wide convolution leaves T - 6 steps, the pool needs 2

    def __init__(self, in_ch: int, n_tags: int, width: float, dropout: float = 0.5):
        super().__init__()
        c = _ch(512, width)
        self.conv1 = _conv_relu_bn(nn.Conv1d(in_ch, c, 7), c)
        self.conv2 = _conv_relu_bn(nn.Conv1d(c, c, 7, padding=3), c)
        self.pool = nn.MaxPool1d(2)
        self.conv3 = _conv_relu_bn(nn.Conv1d(c, c, 7, padding=3), c)
        hidden = _ch(500, width)
        self.dense = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * c, hidden), nn.ReLU(),
                                   nn.BatchNorm1d(hidden), nn.Dropout(dropout))
        self.out = nn.Linear(hidden, n_tags)

    def forward(self, h: torch.Tensor) -> torch.Tensor:   # h: [B, C, T]
        short = self.MIN_STEPS - h.shape[-1]
        if short > 0:    # crops shorter than the published ones (see the module docstring)
            h = F.pad(h, (short // 2, short - short // 2))
        h1 = self.conv1(h)
        h2 = self.pool(self.conv2(h1) + h1)
        h3 = self.conv3(h2) + h2
        pooled = torch.cat([h3.amax(dim=2), h3.mean(dim=2)], dim=1)
        return self.out(self.dense(pooled))


class PonsWaveform(nn.Module):
    """Sample-level front end (Lee et al. 2017, as `wave_frontend` in the at-scale code) + back end.

    A strided conv of 3 samples (64 filters), then six 'valid' conv3 -> ReLU -> BN -> max-pool 3
    stages (64, 64, 128, 128, 128, 256 filters): 59,049 samples -> 19,683 frames -> 26 steps.
    """

    CHANNELS = (64, 64, 64, 128, 128, 128, 256)

    def __init__(self, n_tags: int, width: float = 1.0):
        super().__init__()
        chans = [_ch(c, width) for c in self.CHANNELS]
        layers = list(_conv_relu_bn(nn.Conv1d(1, chans[0], 3, stride=3), chans[0]))
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            layers += [*_conv_relu_bn(nn.Conv1d(c_in, c_out, 3), c_out), nn.MaxPool1d(3)]
        self.front = nn.Sequential(*layers)
        self.back = PonsBackEnd(chans[-1], n_tags, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # x: [B, samples]
        return self.back(self.front(x.unsqueeze(1)))


class PonsMel(nn.Module):
    """Musically motivated log-mel front end of the at-scale paper (`spec_frontend`, num_filt 16)
    + the shared back end: 464 feature channels per frame.

    Timbral branch: filters 7, 3 and 1 frames wide (16, 32, 64 filters) spanning 0.9 and then 0.4
    of the mel axis ('valid' over frequency, 'same' over time), each max-pooled over what is left
    of frequency. Temporal branch: the mel axis averaged to one energy curve, then 'same' 1-D
    filters of 165, 128, 64 and 32 frames (16, 32, 64, 128 filters).
    """

    TIMBRAL = tuple((frac, frames, filters) for frac in (0.9, 0.4)
                    for frames, filters in ((7, 16), (3, 32), (1, 64)))
    TEMPORAL = ((165, 16), (128, 32), (64, 64), (32, 128))

    def __init__(self, n_tags: int, width: float = 1.0, n_mels: int = N_MELS):
        super().__init__()
        self.input_bn = nn.BatchNorm2d(1)
        self.timbral = nn.ModuleList(
            _conv_relu_bn(nn.Conv2d(1, _ch(f, width), (int(frac * n_mels), frames), padding=(0, frames // 2)),
                          _ch(f, width), nn.BatchNorm2d)
            for frac, frames, f in self.TIMBRAL)
        # TensorFlow's 'same' for even lengths pads one more frame after than before.
        self.temporal = nn.ModuleList(
            nn.Sequential(nn.ConstantPad1d(((length - 1) // 2, length // 2), 0.0),
                          *_conv_relu_bn(nn.Conv1d(1, _ch(f, width), length), _ch(f, width)))
            for length, f in self.TEMPORAL)
        in_ch = sum(m[-1].num_features for m in (*self.timbral, *self.temporal))
        self.back = PonsBackEnd(in_ch, n_tags, width)

    def front(self, x: torch.Tensor) -> torch.Tensor:       # [B, n_mels, frames] -> [B, 464, frames]
        h = self.input_bn(x.unsqueeze(1))
        feats = [branch(h).amax(dim=2) for branch in self.timbral]
        energy = h.mean(dim=2)                                 # [B, 1, frames]
        feats += [branch(energy) for branch in self.temporal]
        return torch.cat(feats, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:   # x: [B, n_mels, frames]
        return self.back(self.front(x))


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
