"""Stage II's generic inner loops, each as a plain Python reference and a compiled kernel
(native/_stage2.pyx), picked by `impl` / $TAGFOLD_IMPL (see dispatch.py):

- ``segmenter``: split a joined token into words by minimum total cost (unigram Viterbi over
  a word -> cost table and a cost per character no word covers; the walk from a position
  ends where no word goes on). tagfold.pipeline.tags.normalize.Segmenter holds the tables.
  Native: TrieSegmenter (native/_stage2.pyx), a trie of the words built once per table, one
  hash probe per walk step. Reference: segment_ref with the set of word prefixes.
- ``match_codes``: phrase matching for a range of tags: read each tag as the concatenation
  of its tokens' words and match it against the phrase tables. Native: PhraseMatcher
  (native/_stage2.pyx), built from the tables the rule code hands over as plain data
  (tagfold.pipeline.tags.collapse._matcher_tables); it encodes each distinct token once,
  skips tags without a phrase word and matches the others on arrays of ints. Reference: the
  rule code's own reading (collapse._match_words, the documented meaning; this package cannot
  import it, imports flow from native to pipeline) on readings whose words that cannot matter
  are reduced to gaps, once per distinct reading (match_tags_ref caches them: 522k tags cost
  ~200k-290k readings).

What a word costs and which phrase means what stays in the rule code's tables, so a rule
table change needs no kernel change. Results are identical between the two implementations
(tests/test_native_stage2.py, hypothesis, real and generated tags).
"""
from __future__ import annotations

import math
from itertools import chain
from typing import Callable, Sequence

import numpy as np

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


def word_prefixes(cost: dict[str, float], max_word_len: int) -> set[str]:
    """Every piece a walk may go on from: the first 1..max_word_len characters of each word."""
    return {w[:i] for w in cost for i in range(1, min(len(w), max_word_len) + 1)}


def segmenter(cost: dict[str, float], unknown_char_cost: float, max_word_len: int,
              impl: str | None = None) -> Callable[[str], list[str]]:
    """token -> words with the given tables, by the implementation `impl` resolves to: both
    derive the prefixes from `cost` once, here (the trie ~0.03 s, the set ~0.08 s for the
    package's 83k words), so build one per table, not per call."""
    if resolve_impl(impl, native_module=STAGE2_EXTENSION) == "native":
        from tagfold.native._stage2 import TrieSegmenter

        return TrieSegmenter(cost, unknown_char_cost, max_word_len)
    prefixes = word_prefixes(cost, max_word_len)
    return lambda token: segment_ref(token, cost, prefixes, unknown_char_cost, max_word_len)


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


def match_codes(token_lists: list[list[str]], start: int, stop: int, words: dict[str, tuple], mark: str,
                tables: dict, readings: Callable[[], tuple[set, dict]], reference: Callable[[tuple], list[int]],
                impl: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(tag ids, codes), int32, one item per code of each tag of token_lists[start:stop], in
    tag order, each tag read as the concatenation of its tokens' `words` ((word, rule) pairs;
    a token ending in `mark` has its words under the token without it; every token must be in
    `words`). Native: a PhraseMatcher built from `tables` (its constructor's arguments by name)
    reads the words itself and skips tags without a phrase word (needs `token_lists` a list of
    lists, the words tuples). Reference: `readings()` gives (relevant, reduced): the tokens
    holding a phrase word, and each token's words with those that cannot matter reduced to
    gaps, so that tags differing only in them share one `reference(reading)` call, which the
    PhraseMatcher equals."""
    if not 0 <= start <= stop <= len(token_lists):
        raise ValueError(f"tag range {start}..{stop} is outside 0..{len(token_lists)}")
    if resolve_impl(impl, native_module=STAGE2_EXTENSION) == "native":
        from tagfold.native._stage2 import PhraseMatcher

        ids, codes = PhraseMatcher(**tables).match_range(token_lists, start, stop, words, mark)
        return np.frombuffer(ids, np.int32), np.frombuffer(codes, np.int32)
    relevant, reduced = readings()
    hit_ids, hit_codes = match_tags_ref(token_lists, start, stop, relevant, reduced, {}, reference)
    # Per tag its (cached, shared) list of codes, expanded with numpy rather than extending two
    # lists per tag.
    counts = np.fromiter(map(len, hit_codes), dtype=np.int64, count=len(hit_codes))
    ids = np.repeat(np.array(hit_ids, dtype=np.int32), counts)
    return ids, np.fromiter(chain.from_iterable(hit_codes), dtype=np.int32, count=int(counts.sum()))
