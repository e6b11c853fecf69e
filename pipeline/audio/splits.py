"""Deterministic train/valid/test splits from a hash of the track id (or of the artist, so one
artist never spans two splits). Never directory-listing order, never Python's salted hash().

Two ways to turn hashes into splits:
- `hash` (default): each key's split depends only on its own hash, so a track keeps its split when
  the collection grows; ratios hold on average (a few groups can leave a split empty).
- `rank`: keys ordered by hash and cut at the cumulative ratios (by track count), with at least one
  group per split of non-zero ratio where there are enough groups; exact for a fixed set such as the
  demo dataset, but adding tracks can move the cuts.
"""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from tagfold.pipeline.errors import UserError

SPLITS = ("train", "valid", "test")


def _unit(key: str, seed: int) -> float:
    """A stable number in [0, 1) from a string and a seed (blake2b: same on every machine)."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def _rank_assign(units: np.ndarray, sizes: np.ndarray, ratios: tuple) -> np.ndarray:
    """Split index per group: groups in hash order fill train, then valid, then test."""
    order = np.argsort(units, kind="stable")
    bounds = np.cumsum(ratios) * sizes.sum()
    live = [s for s in range(3) if ratios[s] > 0]
    out = np.empty(len(units), np.int64)
    cum, si, filled = 0.0, 0, 0
    for r, g in enumerate(order):
        later = len(live) - 1 - si                  # splits still to come after the current one
        full = filled and cum + sizes[g] / 2 > bounds[live[si]]
        if later and filled and (full or len(order) - r <= later):
            si, filled = si + 1, 0
        out[g] = live[si]
        cum += sizes[g]
        filled += 1
    return out


def assign_splits(track_ids: Sequence[str], artists: Sequence[str | None] | None = None,
                  ratios: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0,
                  method: str = "hash") -> np.ndarray:
    """Split name per track. With `artists`, tracks of one (non-null) artist share a split."""
    ratios = tuple(float(r) for r in ratios)
    if len(ratios) != 3 or min(ratios) < 0 or abs(sum(ratios) - 1.0) > 1e-6:
        raise UserError(f"ratios must be 3 non-negative numbers summing to 1, got {ratios}")
    if artists is not None and len(artists) != len(track_ids):
        raise ValueError(f"{len(artists)} artists for {len(track_ids)} track ids")
    if method not in ("hash", "rank"):
        raise ValueError(f"method must be 'hash' or 'rank', got {method!r}")
    keys = [f"artist:{artists[i]}" if artists is not None and artists[i] else f"track:{t}"
            for i, t in enumerate(track_ids)]
    uniq, group = np.unique(np.array(keys, dtype=object), return_inverse=True) if keys else ([], np.zeros(0, int))
    units = np.array([_unit(k, seed) for k in uniq])
    if method == "hash":
        split_of = np.searchsorted(np.cumsum(ratios)[:2], units, side="right")
    else:
        split_of = _rank_assign(units, np.bincount(group, minlength=len(uniq)).astype(float), ratios)
    return np.array(SPLITS, dtype=object)[split_of[group]] if len(keys) else np.empty(0, dtype=object)
