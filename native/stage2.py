"""Stage II's generic inner loops, each as a plain Python reference and a compiled kernel
(native/_stage2.pyx), picked by `impl` / $TAGFOLD_IMPL (see dispatch.py):

- ``segment``: split a joined token into words by minimum total cost (unigram Viterbi over
  a word -> cost table, a set of word prefixes that ends the walk early, and a cost per
  character no word covers). tagfold.pipeline.tags.normalize.Segmenter holds the tables.
- ``match_tags``: the per-tag loop of phrase matching: skip tags with no relevant token,
  read the rest as the concatenation of their tokens' reduced words, and call the rule code
  once per distinct reading (cached), so 522k tags cost ~200k rule evaluations.

What a word costs and what a reading matches stays in the rule code: the kernels only move
data between the Python containers it built, so rule changes need no kernel change. Results
are identical between the two implementations (tests/test_native_stage2.py, hypothesis).
"""
from __future__ import annotations

import math
from itertools import chain
from typing import Callable, Sequence

from tagfold.native.dispatch import resolve_impl

STAGE2_EXTENSION = "tagfold.native._stage2"


def segment_ref(token: str, cost: dict[str, float], prefixes, unknown_char_cost: float,
                max_word_len: int) -> list[str]:
    """Words of `token` in order; characters not covered by any word are left out."""
    n = len(token)
    best = [0.0] + [math.inf] * n
    back: list[tuple[int, bool]] = [(0, False)] * (n + 1)
    for start in range(n):
        here = best[start]
        if here == math.inf:
            continue
        # one uncovered character
        if here + unknown_char_cost < best[start + 1]:
            best[start + 1], back[start + 1] = here + unknown_char_cost, (start, False)
        # Walk forward only while the piece is still the prefix of some word.
        for end in range(start + 1, min(n, start + max_word_len) + 1):
            piece = token[start:end]
            if piece not in prefixes:
                break
            w = cost.get(piece)
            if w is not None and here + w < best[end]:
                best[end], back[end] = here + w, (start, True)
    words: list[str] = []
    end = n
    while end > 0:
        start, is_word = back[end]
        if is_word:
            words.append(token[start:end])
        end = start
    return words[::-1]


def segmenter(cost: dict[str, float], prefixes, unknown_char_cost: float, max_word_len: int,
              impl: str | None = None) -> Callable[[str], list[str]]:
    """token -> words with the given tables, by the implementation `impl` resolves to."""
    if resolve_impl(impl, native_module=STAGE2_EXTENSION) == "native":
        from tagfold.native._stage2 import segment
    else:
        segment = segment_ref
    return lambda token: segment(token, cost, prefixes, unknown_char_cost, max_word_len)


def match_tags_ref(token_lists: Sequence[list[str]], start: int, stop: int, relevant: set,
                   reduced: dict[str, tuple], cache: dict, match_key: Callable[[tuple], list]):
    """(tag ids, per-tag cached match lists) for token_lists[start:stop]; tags whose match list
    is empty are left out."""
    hit_ids: list[int] = []
    hit_codes: list[list] = []
    isdisjoint = relevant.isdisjoint
    for tag_id in range(start, stop):
        toks = token_lists[tag_id]
        if isdisjoint(toks):
            continue
        key = reduced[toks[0]] if len(toks) == 1 else tuple(chain.from_iterable(map(reduced.__getitem__, toks)))
        matches = cache.get(key)
        if matches is None:
            matches = cache[key] = match_key(key)
        if matches:
            hit_ids.append(tag_id)
            hit_codes.append(matches)
    return hit_ids, hit_codes


def match_tags(token_lists: list[list[str]], start: int, stop: int, relevant: set,
               reduced: dict[str, tuple], cache: dict, match_key: Callable[[tuple], list],
               impl: str | None = None):
    """match_tags_ref by the implementation `impl` resolves to (native needs `token_lists` a
    list of lists, `relevant` a set)."""
    if not 0 <= start <= stop <= len(token_lists):
        raise ValueError(f"tag range {start}..{stop} is outside 0..{len(token_lists)}")
    if resolve_impl(impl, native_module=STAGE2_EXTENSION) == "native":
        from tagfold.native._stage2 import match_tags as kernel

        return kernel(token_lists, start, stop, relevant, reduced, cache, match_key)
    return match_tags_ref(token_lists, start, stop, relevant, reduced, cache, match_key)
