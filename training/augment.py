"""Waveform augmentation for small training sets: random gain, circular time shift, and mixing two
clips of a batch with both clips' labels.

Applied by the torch loader to each training batch of 16 kHz crops before any log-mel, so wave and
mel models see the same augmented audio. Every draw comes from a NumPy generator seeded by the
loader's (seed, epoch): a resumed run sees exactly the augmentation an uninterrupted one would.
All off by default (`Augment()` is the identity).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Augment:
    gain_db: float = 0.0     # each clip scaled by a gain drawn uniformly in [-gain_db, +gain_db] dB
    shift: float = 0.0       # each clip rolled (circularly) by up to this fraction of its length
    mix: float = 0.0         # share of clips mixed with another clip of the batch

    def __post_init__(self):
        if self.gain_db < 0 or not 0 <= self.shift <= 1 or not 0 <= self.mix <= 1:
            raise ValueError(f"augmentation: gain_db must be >= 0, shift and mix in [0, 1]; got "
                             f"gain_db={self.gain_db}, shift={self.shift}, mix={self.mix}")

    @property
    def active(self) -> bool:
        return self.gain_db > 0 or self.shift > 0 or self.mix > 0

    def apply(self, x, y, rng: np.random.Generator):
        """x float [B, samples], y float [B, tags] (torch, any device) -> augmented copies.

        Mixing: a chosen clip becomes lam * itself + (1 - lam) * a partner drawn from the batch,
        lam uniform in [0.5, 1) so the clip stays the louder one; its labels become the union of
        both clips' labels (a tag of either clip is audible in the mix, and binary targets keep
        the training metrics defined)."""
        import torch

        b, n = x.shape
        dev = x.device
        x = x.clone()
        if self.gain_db > 0:
            db = rng.uniform(-self.gain_db, self.gain_db, b)
            x *= torch.as_tensor(10 ** (db / 20), dtype=x.dtype, device=dev)[:, None]
        if self.shift > 0:
            shifts = rng.integers(-int(self.shift * n), int(self.shift * n) + 1, b)
            idx = (torch.arange(n, device=dev)[None, :] - torch.as_tensor(shifts, device=dev)[:, None]) % n
            x = torch.gather(x, 1, idx)
        if self.mix > 0 and b > 1:
            chosen = rng.random(b) < self.mix
            partner = (np.arange(b) + rng.integers(1, b, b)) % b        # never the clip itself
            lam = rng.uniform(0.5, 1.0, b)
            if chosen.any():
                rows = torch.as_tensor(np.flatnonzero(chosen), device=dev)
                other = torch.as_tensor(partner[chosen], device=dev)
                lam_t = torch.as_tensor(lam[chosen], dtype=x.dtype, device=dev)[:, None]
                x[rows] = lam_t * x[rows] + (1 - lam_t) * x[other]
                y = y.clone()
                y[rows] = torch.maximum(y[rows], y[other])
        return x, y
