"""Bulk Jaro-Winkler: many queries against one vocabulary, with a score cutoff.

Semantics are rapidfuzz's `JaroWinkler.similarity` over Unicode code points (prefix weight
0.1, common prefix of at most 4, boost only when Jaro > 0.7; empty vs empty = 1.0, empty vs
non-empty = 0.0), including how a score that sits exactly on the cutoff is treated: rapidfuzz
compares against the cutoff rounded to float32 (see _effective_cutoff), and so does this module.
The native kernel (Cython, native/_jaro.pyx) and the reference (rapidfuzz `process.cdist`)
give identical results; `impl` / $TAGFOLD_IMPL picks one (see dispatch.py).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np

from tagfold.native.dispatch import resolve_impl

# Queries per reference cdist call: bounds its float64 score matrix to ~chunk x vocabulary.
REF_CHUNK = 2048
# Queries per native kernel call: the GIL-free loop checks for Ctrl-C only between calls.
NATIVE_CHUNK = 1 << 16


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _check(score_cutoff: float, prefix_weight: float, threads: int | None) -> int:
    if not 0.0 <= prefix_weight <= 0.25:
        # rapidfuzz accepts up to 1.0, but above 0.25 a 4-character prefix pushes scores over 1.
        raise ValueError(f"prefix_weight={prefix_weight}: expected 0.0 <= prefix_weight <= 0.25")
    if not 0.0 <= score_cutoff <= 1.0:
        raise ValueError(f"score_cutoff={score_cutoff}: expected 0.0 <= score_cutoff <= 1.0")
    if threads is None:
        return default_threads()
    if threads < 1:
        raise ValueError(f"threads={threads}: expected a positive thread count or None (all cores)")
    return int(threads)


def _effective_cutoff(score_cutoff: float) -> float:
    """The cutoff as rapidfuzz applies it: rounded to float32 first.

    Measured on rapidfuzz 3.14 (1.5M pairs, cutoffs at, next to and within 1e-7 of the score):
    a score s passes a cutoff c exactly when s >= float32(c). So a score a few 1e-8 below c can
    pass (0.8999999999999999 passes 0.9) and one equal to c can fail (0.85 fails 0.85).
    """
    return float(np.float32(score_cutoff))


def _require_str(strings: Sequence, what: str) -> None:
    # rapidfuzz (the reference) scores None, bytes and NaN as "no match"; both implementations
    # refuse them instead, so a stray non-string never passes silently as an unmatched tag.
    for i, s in enumerate(strings):
        if not isinstance(s, str):
            raise TypeError(f"{what}[{i}] is {type(s).__name__}, expected str")


def _code_points(strings: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """All strings as one uint32 code-point buffer plus int64 offsets (n + 1)."""
    strings = list(strings)
    lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
    off = np.zeros(len(strings) + 1, dtype=np.int64)
    np.cumsum(lengths, out=off[1:])
    # surrogatepass: a str may hold lone surrogates (e.g. from surrogateescape); they are code
    # points like any other for rapidfuzz, so they must survive the encoding.
    buf = np.frombuffer("".join(strings).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return buf, off


def _encode_vocab(vocab: Sequence[str], threads: int):
    """Vocabulary ids (ranks in its own sorted alphabet), offsets, lengths, masks, 1/length."""
    from tagfold.native import _jaro

    v_buf, v_off = _code_points(vocab)
    alphabet = np.unique(v_buf)
    v_ids = _jaro.to_ids(v_buf, alphabet, threads)
    v_len = np.diff(v_off)
    if len(v_len) and v_len.max() > np.iinfo(np.int32).max:
        raise ValueError("vocab: a word longer than 2**31 - 1 characters")
    v_inv_len = np.divide(1.0, v_len, out=np.zeros(len(v_len)), where=v_len > 0)
    return alphabet, (v_ids, v_off, v_len.astype(np.int32), _jaro.char_masks(v_ids, v_off), v_inv_len)


def _encode_queries(queries: Sequence[str], alphabet: np.ndarray, threads: int):
    """Query ids in the vocabulary's alphabet; a character the vocabulary lacks gets
    len(alphabet), which never equals a vocabulary id, so it can never match."""
    from tagfold.native import _jaro

    q_buf, q_off = _code_points(queries)
    q_ids = _jaro.to_ids(q_buf, alphabet, threads)
    return q_ids, q_off, _jaro.char_masks(q_ids, q_off)


def _chunks(n: int, chunk_size: int | None):
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size}: expected a positive number of queries or None")
    step = n if not chunk_size else chunk_size
    return [(lo, min(lo + step, n)) for lo in range(0, n, max(step, 1))]


def _native(kind: str, queries, vocab, score_cutoff, prefix_weight, threads, chunk_size, on_chunk=None):
    from tagfold.native import _jaro

    kernel = _jaro.best_match if kind == "best" else _jaro.all_matches
    alphabet, vocab_arrays = _encode_vocab(vocab, threads)
    parts = []
    for lo, hi in _chunks(len(queries), chunk_size or NATIVE_CHUNK):
        out = kernel(*_encode_queries(queries[lo:hi], alphabet, threads), *vocab_arrays, len(alphabet),
                     _effective_cutoff(score_cutoff), float(prefix_weight), threads)
        if kind == "all":
            out = (out[0] + lo, out[1], out[2])
        parts.append(out)
        if on_chunk is not None:
            on_chunk(hi - lo)
    return parts


def _ref_scores(queries, vocab, score_cutoff, prefix_weight, threads, chunk_size, on_chunk=None):
    """Yield (first query index, float64 score matrix) per chunk, from rapidfuzz cdist."""
    from rapidfuzz import process
    from rapidfuzz.distance import JaroWinkler

    for lo, hi in _chunks(len(queries), chunk_size or REF_CHUNK):
        yield lo, process.cdist(
            queries[lo:hi], vocab, scorer=JaroWinkler.similarity, score_cutoff=score_cutoff,
            scorer_kwargs={"prefix_weight": prefix_weight}, dtype=np.float64, workers=threads,
        )
        if on_chunk is not None:
            on_chunk(hi - lo)


def _strict_floor(score_cutoff: float) -> float:
    """The largest float32 at or below `score_cutoff`: as a (float32-rounded) kernel cutoff it
    loses no score above `score_cutoff`, whichever way float32 rounding went."""
    floor = np.float32(score_cutoff)
    if floor > score_cutoff:
        floor = np.nextafter(floor, np.float32(-1))
    return float(floor)


def best_match(queries: Sequence[str], vocab: Sequence[str], score_cutoff: float = 0.0, *,
               prefix_weight: float = 0.1, threads: int | None = None, impl: str | None = None,
               chunk_size: int | None = None, strict: bool = False,
               on_chunk: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Best vocabulary entry per query: (idx int32[n], score float64[n]).

    idx is the lowest index among the highest-scoring entries with score >= score_cutoff
    (rapidfuzz `process.extractOne` over a list), -1 with score 0.0 when none reaches it.
    strict: keep only scores strictly above score_cutoff, compared exactly (the thesis's
    `> score_level`), instead of rapidfuzz's `>= float32(cutoff)`.
    chunk_size: queries per kernel call (default 65,536 native, 2,048 reference); bounds memory
    and Ctrl-C latency, never changes the result. on_chunk(n) is called after each chunk with
    the number of queries it held (a progress bar's update). threads: None = every core this
    process may use.
    """
    if strict:
        idx, score = best_match(queries, vocab, _strict_floor(score_cutoff), prefix_weight=prefix_weight,
                                threads=threads, impl=impl, chunk_size=chunk_size, on_chunk=on_chunk)
        # the best entry above the cutoff is the best entry overall, when that one is above it
        miss = score <= score_cutoff
        idx[miss], score[miss] = -1, 0.0
        return idx, score
    queries, vocab = list(queries), list(vocab)
    threads = _check(score_cutoff, prefix_weight, threads)
    _require_str(queries, "queries")
    _require_str(vocab, "vocab")
    native = resolve_impl(impl) == "native"  # first, so a missing extension fails even on empty input
    n = len(queries)
    if n == 0 or not vocab:
        return np.full(n, -1, dtype=np.int32), np.zeros(n, dtype=np.float64)
    if native:
        parts = _native("best", queries, vocab, score_cutoff, prefix_weight, threads, chunk_size, on_chunk)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    idx = np.full(n, -1, dtype=np.int32)
    score = np.zeros(n, dtype=np.float64)
    for lo, scores in _ref_scores(queries, vocab, score_cutoff, prefix_weight, threads, chunk_size, on_chunk):
        best = scores.argmax(axis=1)  # first maximum = lowest vocabulary index
        best_score = scores[np.arange(len(best)), best]
        hit = best_score >= _effective_cutoff(score_cutoff)
        idx[lo:lo + len(best)] = np.where(hit, best, -1)
        score[lo:lo + len(best)] = np.where(hit, best_score, 0.0)
    return idx, score


def all_matches(queries: Sequence[str], vocab: Sequence[str], score_cutoff: float, *,
                prefix_weight: float = 0.1, threads: int | None = None, impl: str | None = None,
                chunk_size: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair with score >= score_cutoff: (query_idx int64[k], vocab_idx int32[k], score float64[k]),
    sorted by (query, vocab). A cutoff <= 0 returns every pair."""
    queries, vocab = list(queries), list(vocab)
    threads = _check(score_cutoff, prefix_weight, threads)
    _require_str(queries, "queries")
    _require_str(vocab, "vocab")
    native = resolve_impl(impl) == "native"
    if not queries or not vocab:
        return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float64)
    if native:
        parts = _native("all", queries, vocab, score_cutoff, prefix_weight, threads, chunk_size)
    else:
        parts = []
        for lo, scores in _ref_scores(queries, vocab, score_cutoff, prefix_weight, threads, chunk_size):
            q, v = np.nonzero(scores >= _effective_cutoff(score_cutoff))  # row-major: already (query, vocab) order
            parts.append((q.astype(np.int64) + lo, v.astype(np.int32), scores[q, v]))
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))


def similarity(a: str, b: str, prefix_weight: float = 0.1, *, impl: str | None = None) -> float:
    """Jaro-Winkler similarity of two strings (rapidfuzz `JaroWinkler.similarity`)."""
    _check(0.0, prefix_weight, 1)
    if resolve_impl(impl) == "native":
        return float(best_match([a], [b], 0.0, prefix_weight=prefix_weight, threads=1, impl="native")[1][0])
    from rapidfuzz.distance import JaroWinkler

    return float(JaroWinkler.similarity(a, b, prefix_weight=prefix_weight))
