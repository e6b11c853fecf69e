"""Log-mel front end: torchaudio (runs on the training device) and a plain NumPy reference of the
same STFT + filter bank + dB, to test the torch one against.

Defaults (Won et al. 2020 recipe): 16 kHz, n_fft 512, hop 256, 128 mels (HTK scale, no norm,
0..8000 Hz), power spectrogram, periodic Hann window, centred frames with reflect padding,
dB = 10*log10(max(power, 1e-10)) with no top_db clipping. A crop of 59,049 samples gives
1 + 59049 // 256 = 231 frames. With 257 FFT bins some of the 128 low mel filters are empty
(torchaudio's warning about it is silenced); those rows are constant -100 dB, as in Won et al.'s setup."""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import torch
import torchaudio

from tagfold.pipeline.constants import SAMPLE_RATE


@dataclasses.dataclass(frozen=True)
class MelConfig:
    sample_rate: int = SAMPLE_RATE
    n_fft: int = 512
    hop_length: int = 256
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float = 8000.0
    amin: float = 1e-10


def n_frames(samples: int, cfg: MelConfig = MelConfig()) -> int:
    return 1 + samples // cfg.hop_length


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filter_bank(cfg: MelConfig = MelConfig()) -> np.ndarray:
    """[n_fft//2+1, n_mels] triangular HTK filters, unnormalised (torchaudio's melscale_fbanks)."""
    freqs = np.linspace(0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)
    pts = _mel_to_hz(np.linspace(_hz_to_mel(cfg.f_min), _hz_to_mel(cfg.f_max), cfg.n_mels + 2))
    lower = (freqs[:, None] - pts[None, :-2]) / (pts[1:-1] - pts[:-2])[None, :]
    upper = (pts[None, 2:] - freqs[:, None]) / (pts[2:] - pts[1:-1])[None, :]
    return np.maximum(0.0, np.minimum(lower, upper))


def log_mel_numpy(x: np.ndarray, cfg: MelConfig = MelConfig()) -> np.ndarray:
    """Reference: x [..., samples] -> [..., n_mels, frames] dB, float64 arithmetic."""
    x = np.asarray(x, dtype=np.float64)
    pad = cfg.n_fft // 2
    xp = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    frames = n_frames(x.shape[-1], cfg)
    starts = np.arange(frames) * cfg.hop_length
    seg = xp[..., starts[:, None] + np.arange(cfg.n_fft)[None, :]]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(cfg.n_fft) / cfg.n_fft)  # periodic Hann
    power = np.abs(np.fft.rfft(seg * window, axis=-1)) ** 2  # [..., frames, bins]
    mel = power @ mel_filter_bank(cfg)  # [..., frames, mels]
    return np.swapaxes(10.0 * np.log10(np.maximum(mel, cfg.amin)), -1, -2)


class LogMel(torch.nn.Module):
    """[B, samples] float32 -> [B, n_mels, frames] log-mel dB, on whatever device it is moved to."""

    def __init__(self, cfg: MelConfig = MelConfig()):
        super().__init__()
        self.cfg = cfg
        with warnings.catch_warnings():
            # 257 FFT bins cannot fill 128 HTK mels: the lowest filters are empty by design
            # (module docstring), so torchaudio's warning about it is expected noise
            warnings.filterwarnings("ignore", message="At least one mel filterbank has all zero values")
            self.mel = torchaudio.transforms.MelSpectrogram(
                sample_rate=cfg.sample_rate, n_fft=cfg.n_fft, hop_length=cfg.hop_length,
                f_min=cfg.f_min, f_max=cfg.f_max, n_mels=cfg.n_mels, power=2.0,
                center=True, pad_mode="reflect", norm=None, mel_scale="htk")
        self.db = torchaudio.transforms.AmplitudeToDB(stype="power", top_db=None)
        self.db.amin = cfg.amin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.db(self.mel(x))
