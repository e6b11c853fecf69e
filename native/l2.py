"""L2 distances from every tag vector to the selected-tag vectors, and the nearest target under its cut.

Native: Numba, parallel over rows, accumulating in float64 so the float32 result is the
correctly rounded distance whatever the thread count. Reference: plain NumPy broadcasting.
`impl` / $TAGFOLD_IMPL picks one (see dispatch.py).
"""
from __future__ import annotations

import numpy as np

from tagfold.native.dispatch import resolve_impl

# Rows per reference broadcasting block: bounds the (rows, k, d) temporary to ~100 MB.
REF_BLOCK = 8192


def _check_vectors(X, T) -> tuple[np.ndarray, np.ndarray]:
    X = np.ascontiguousarray(X, dtype=np.float32)
    T = np.ascontiguousarray(T, dtype=np.float32)
    if X.ndim != 2 or T.ndim != 2:
        raise ValueError(f"l2_distances: expected 2-D X (n, d) and T (k, d), got shapes {X.shape} and {T.shape}")
    if X.shape[1] != T.shape[1]:
        raise ValueError(f"l2_distances: X has {X.shape[1]} dimensions but T has {T.shape[1]}")
    return X, T


def _check_cut_inputs(D, cuts) -> tuple[np.ndarray, np.ndarray]:
    D = np.ascontiguousarray(D, dtype=np.float32)
    cuts = np.ascontiguousarray(cuts, dtype=np.float64)
    if D.ndim != 2 or cuts.ndim != 1 or cuts.shape[0] != D.shape[1]:
        raise ValueError(f"nearest_under_cut: expected D (n, k) and cuts (k,), got shapes {D.shape} and {cuts.shape}")
    if np.isnan(D).any():
        row = int(np.nonzero(np.isnan(D).any(axis=1))[0][0])
        raise ValueError(f"nearest_under_cut: D has NaN distances (first in row {row}); a nearest target is undefined")
    return D, cuts




def l2_distances(X, T, *, impl: str | None = None) -> np.ndarray:
    """Euclidean (not squared) distances, float32[n, k], from each row of X to each row of T."""
    X, T = _check_vectors(X, T)
    if resolve_impl(impl, native_module="numba") == "native":
        from tagfold.native._l2_numba import l2_kernel

        return l2_kernel(X, np.ascontiguousarray(T.T))
    out = np.empty((X.shape[0], T.shape[0]), dtype=np.float32)
    for lo in range(0, X.shape[0], REF_BLOCK):
        diff = X[lo:lo + REF_BLOCK, None, :] - T[None, :, :]
        out[lo:lo + REF_BLOCK] = np.sqrt((diff * diff).sum(axis=2))
    return out


def nearest_under_cut(D, cuts, *, impl: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest target per row of D (ties -> lowest index): (target int32[n], distance float32[n]).

    target is -1 when the nearest distance is not < cuts[nearest]; distance is always the
    nearest distance (+inf when there are no targets). NaN distances are an error.
    """
    D, cuts = _check_cut_inputs(D, cuts)
    n, k = D.shape
    if resolve_impl(impl, native_module="numba") == "native":
        from tagfold.native._l2_numba import nearest_kernel

        return nearest_kernel(D, cuts)
    if k == 0:
        return np.full(n, -1, dtype=np.int32), np.full(n, np.inf, dtype=np.float32)
    nearest = D.argmin(axis=1)  # first minimum = lowest index
    distance = D[np.arange(n), nearest]
    target = np.where(distance < cuts[nearest], nearest, -1).astype(np.int32)
    return target, distance.astype(np.float32)
