"""The one inference path, shared by `tagfold evaluate` (prepped tracks) and `tagfold predict`
(audio files): where the chunks of a track lie, how a file is decoded into them, and how chunks
are batched through a model.

- Chunks: `n_chunks` crops of `crop` samples at 16 kHz, evenly spaced from the start to the end
  (Won et al. 2020 average 16): start i = floor(i * (length - crop) / (n_chunks - 1)), so the first
  starts at 0 and the last ends at the end; a single chunk is the centre crop (as the loaders'
  validation crop). Audio shorter than the crop gives crops starting at 0, zero-padded at the end.
  Integer arithmetic: no rounding mode to disagree about.
- Files: `tagfold.pipeline.decode.read_windows`, the decoder prep-audio uses, with its refusals
  (missing, not a regular file, empty, undecodable, NaN/Inf, silent); only the chunks' windows are
  decoded, so memory is bounded by the crops, not by the file's length.
- Batching: the mean of the chunks' sigmoids per track, a few tracks per forward pass; the result
  does not depend on the batch size.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np

from tagfold.pipeline.decode import Rejected, read_windows  # noqa: F401  (Rejected: what callers catch)


def chunk_starts(length: int, n_chunks: int, crop: int) -> np.ndarray:
    """int64 [n_chunks] start samples of the evenly spaced crops of a `length`-sample track."""
    if n_chunks < 1 or crop < 1:
        raise ValueError(f"n_chunks and crop must be >= 1, got {n_chunks}, {crop}")
    span = max(0, int(length) - crop)
    if n_chunks == 1:
        return np.array([span // 2], np.int64)
    return np.arange(n_chunks, dtype=np.int64) * span // (n_chunks - 1)


def chunks_from_wave(wave: np.ndarray, n_chunks: int, crop: int) -> np.ndarray:
    """float32 [n_chunks, crop] chunks of a decoded waveform (zero-padded past its end)."""
    out = np.zeros((n_chunks, crop), np.float32)
    for i, s in enumerate(chunk_starts(len(wave), n_chunks, crop)):
        piece = wave[s:s + crop]
        out[i, :len(piece)] = piece
    return out


def file_chunks(path: str | Path, n_chunks: int, crop: int) -> np.ndarray:
    """float32 [n_chunks, crop] chunks of an audio file, decoding only their windows; Rejected
    (with the same reasons as prep-audio) for a file that cannot be used."""
    return read_windows(path, lambda length: chunk_starts(length, n_chunks, crop), crop)


def predict_tracks(model, featurize: Callable, chunks_of: Callable, track_ids, *, batch_tracks=4,
                   device="cpu", desc="predict", progress=True) -> np.ndarray:
    """Mean sigmoid over each track's chunks; `chunks_of(track_id)` -> float32 [n_chunks, samples]."""
    import torch
    from tqdm import tqdm

    dev = torch.device(device)
    out = []
    with torch.no_grad():
        for start in tqdm(range(0, len(track_ids), batch_tracks), desc=desc, file=sys.stderr, leave=False,
                          disable=not progress):
            group = [np.asarray(chunks_of(t), dtype=np.float32) for t in track_ids[start:start + batch_tracks]]
            sizes = [len(g) for g in group]
            x = torch.from_numpy(np.concatenate(group)).to(dev)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                p = torch.sigmoid(model(featurize(x)).float())
            # SYNC: one copy back per batch of tracks.
            p = p.cpu().numpy()
            for piece in np.split(p, np.cumsum(sizes)[:-1]):
                out.append(piece.mean(axis=0))
    return np.stack(out) if out else np.zeros((0, 0), np.float32)
