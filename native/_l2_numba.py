"""Numba kernels behind tagfold.native.l2 (imported on first use: importing numba costs ~0.5 s)."""
import numba
import numpy as np


@numba.njit(parallel=True, fastmath=False, cache=True)
def l2_kernel(X, Tt):
    """X float32 (n, d), Tt float32 (d, k) -> float32 (n, k) Euclidean distances."""
    n, d = X.shape
    k = Tt.shape[1]
    out = np.empty((n, k), dtype=np.float32)
    for i in numba.prange(n):
        acc = np.zeros(k, dtype=np.float64)
        # Innermost loop runs over targets (independent accumulators), so it vectorises without
        # reassociating any sum: the result does not depend on threads or SIMD width.
        for j in range(d):
            x = np.float64(X[i, j])
            for t in range(k):
                diff = x - np.float64(Tt[j, t])
                acc[t] += diff * diff
        for t in range(k):
            out[i, t] = np.float32(np.sqrt(acc[t]))
    return out


@numba.njit(parallel=True, fastmath=False, cache=True)
def nearest_kernel(D, cuts):
    """Nearest column per row (ties -> lowest), and whether it is under that column's cut."""
    n, k = D.shape
    target = np.empty(n, dtype=np.int32)
    distance = np.empty(n, dtype=np.float32)
    for i in numba.prange(n):
        best = np.inf
        best_t = 0  # a row of +inf distances: the nearest is column 0, as np.argmin says
        for t in range(k):
            if D[i, t] < best:  # strict: ties keep the lowest column
                best = D[i, t]
                best_t = t
        if k == 0:
            target[i] = -1
            distance[i] = np.inf
            continue
        distance[i] = D[i, best_t]
        target[i] = best_t if np.float64(D[i, best_t]) < cuts[best_t] else -1
    return target, distance
