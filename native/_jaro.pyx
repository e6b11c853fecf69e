# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Bulk Jaro-Winkler over code points (first version: plain O(n*m) per pair, OpenMP over queries).

Strings arrive as one uint32 buffer of code points plus int64 offsets, so the loops run
without the GIL and never touch Python objects.
"""
from cython.parallel cimport parallel, prange
from libc.stdlib cimport calloc, free
from libc.string cimport memset
cimport numpy as cnp
import numpy as np

cnp.import_array()


cdef double jaro_winkler_pair(const cnp.uint32_t* a, Py_ssize_t la,
                              const cnp.uint32_t* b, Py_ssize_t lb,
                              double prefix_weight,
                              unsigned char* fa, unsigned char* fb) noexcept nogil:
    cdef Py_ssize_t i, j, lo, hi, bound, k, prefix
    cdef Py_ssize_t m = 0, t = 0
    cdef double sim
    if la == 0 and lb == 0:
        return 1.0
    if la == 0 or lb == 0:
        return 0.0
    bound = (la if la > lb else lb) // 2 - 1
    if bound < 0:
        bound = 0
    memset(fa, 0, la)
    memset(fb, 0, lb)
    for i in range(la):
        lo = i - bound if i > bound else 0
        hi = i + bound + 1
        if hi > lb:
            hi = lb
        for j in range(lo, hi):
            if not fb[j] and a[i] == b[j]:
                fa[i] = 1
                fb[j] = 1
                m += 1
                break
    if m == 0:
        return 0.0
    k = 0
    for i in range(la):
        if fa[i]:
            while not fb[k]:
                k += 1
            if a[i] != b[k]:
                t += 1
            k += 1
    sim = (<double>m / la + <double>m / lb + <double>(m - t // 2) / m) / 3.0
    if sim > 0.7:
        prefix = 0
        while prefix < 4 and prefix < la and prefix < lb and a[prefix] == b[prefix]:
            prefix += 1
        sim += prefix * prefix_weight * (1.0 - sim)
    return sim


def best_match(const cnp.uint32_t[::1] q_buf, const cnp.int64_t[::1] q_off,
               const cnp.uint32_t[::1] v_buf, const cnp.int64_t[::1] v_off,
               double score_cutoff, double prefix_weight, int threads):
    """For each query the first vocabulary entry with the highest score >= score_cutoff."""
    cdef Py_ssize_t nq = q_off.shape[0] - 1, nv = v_off.shape[0] - 1
    cdef Py_ssize_t max_len = 1, qi, vi
    cdef double s, best
    cdef int best_i
    cdef unsigned char* scratch
    best_idx = np.full(nq, -1, dtype=np.int32)
    best_score = np.zeros(nq, dtype=np.float64)
    cdef cnp.int32_t[::1] out_i = best_idx
    cdef cnp.float64_t[::1] out_s = best_score
    for qi in range(nq):
        max_len = max(max_len, q_off[qi + 1] - q_off[qi])
    for vi in range(nv):
        max_len = max(max_len, v_off[vi + 1] - v_off[vi])
    with nogil, parallel(num_threads=threads):
        scratch = <unsigned char*> calloc(2 * max_len, 1)
        for qi in prange(nq, schedule="dynamic", chunksize=64):
            best = -1.0
            best_i = -1
            for vi in range(nv):
                s = jaro_winkler_pair(&q_buf[q_off[qi]], q_off[qi + 1] - q_off[qi],
                                      &v_buf[v_off[vi]], v_off[vi + 1] - v_off[vi],
                                      prefix_weight, scratch, scratch + max_len)
                if s >= score_cutoff and s > best:
                    best = s
                    best_i = <int> vi
            out_i[qi] = best_i
            out_s[qi] = best if best_i >= 0 else 0.0
        free(scratch)
    return best_idx, best_score
