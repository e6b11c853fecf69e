"""The Cython Jaro-Winkler kernel against its reference, rapidfuzz (cdist / extractOne / similarity)."""
import math
import random
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rapidfuzz import process
from rapidfuzz.distance import JaroWinkler

from tagfold.native import dispatch
from tagfold.native.jaro_winkler import all_matches, best_match, similarity


def cdist(queries, vocab, cutoff, prefix_weight=0.1):
    return process.cdist(queries, vocab, scorer=JaroWinkler.similarity, score_cutoff=cutoff,
                         scorer_kwargs={"prefix_weight": prefix_weight}, dtype=np.float64, workers=1)


def expected_all(queries, vocab, cutoff, prefix_weight=0.1):
    """Pairs rapidfuzz keeps: cdist zeroes rejected pairs, so a kept pair is score > 0, or any
    pair when the cutoff is 0 (then every score passes)."""
    m = cdist(queries, vocab, cutoff, prefix_weight)
    keep = np.ones_like(m, dtype=bool) if cutoff == 0 else m > 0
    q, v = np.nonzero(keep)
    return q, v, m[q, v]


def expected_best(queries, vocab, cutoff, prefix_weight=0.1):
    """rapidfuzz process.extractOne per query: (index, score), (-1, 0.0) when nothing passes."""
    idx, score = [], []
    for q in queries:
        hit = process.extractOne(q, vocab, scorer=JaroWinkler.similarity, score_cutoff=cutoff,
                                 scorer_kwargs={"prefix_weight": prefix_weight})
        idx.append(-1 if hit is None else hit[2])
        score.append(0.0 if hit is None else hit[1])
    return np.array(idx), np.array(score)


def assert_all_equal(queries, vocab, cutoff, prefix_weight=0.1, **kw):
    got = all_matches(queries, vocab, cutoff, prefix_weight=prefix_weight, impl="native", **kw)
    want = expected_all(queries, vocab, cutoff, prefix_weight)
    assert got[0].dtype == np.int64 and got[1].dtype == np.int32 and got[2].dtype == np.float64
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def assert_best_equal(queries, vocab, cutoff, prefix_weight=0.1):
    idx, score = best_match(queries, vocab, cutoff, prefix_weight=prefix_weight, impl="native")
    assert idx.dtype == np.int32 and score.dtype == np.float64
    want_idx, want_score = expected_best(queries, vocab, cutoff, prefix_weight)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(score, want_score)


@pytest.fixture(scope="module")
def tag_job(real_tags):
    rng = random.Random(20260)
    return rng.sample(real_tags, 1500), rng.sample(real_tags, 700)


@pytest.mark.parametrize("cutoff", [0.0, 0.7, 0.85, 0.9, 0.95])
def test_real_tags_all_matches_equal_cdist(tag_job, cutoff):
    queries, vocab = tag_job
    assert_all_equal(queries, vocab, cutoff)


@pytest.mark.parametrize("cutoff", [0.0, 0.8, 0.9])
def test_real_tags_best_match_equals_extract_one(tag_job, cutoff):
    queries, vocab = tag_job
    assert_best_equal(queries[:300], vocab, cutoff)


@pytest.mark.parametrize("cutoff", [0.0, 0.9])
def test_native_equals_reference_impl(tag_job, cutoff):
    queries, vocab = tag_job
    for got, want in zip(best_match(queries, vocab, cutoff, impl="native"),
                         best_match(queries, vocab, cutoff, impl="ref")):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(all_matches(queries, vocab, cutoff, impl="native"),
                         all_matches(queries, vocab, cutoff, impl="ref")):
        np.testing.assert_array_equal(got, want)


def test_real_tags_typo_variants_best_match(real_tags):
    """High-scoring pairs (typos of vocabulary words), where the cutoff actually decides."""
    rng = random.Random(7)
    vocab = rng.sample(real_tags, 400)
    queries = []
    for word in rng.sample(vocab, 300):
        i = rng.randrange(len(word)) if word else 0
        queries.append(rng.choice([word[:i] + word[i + 1:], word[:i] + "x" + word[i:], word + "s", word[::-1]]))
    for cutoff in (0.85, 0.9):
        assert_best_equal(queries, vocab, cutoff)
        assert_all_equal(queries, vocab, cutoff)


# Accents, combining marks, CJK, emoji (outside the BMP), and ASCII that collides mod 64.
ALPHABET = "abcdeé e\u0301ñ-' 0pP@ü日本語音楽🎸🎵𝄞ß"
words = st.text(alphabet=ALPHABET, max_size=12)
long_words = st.text(alphabet=ALPHABET, min_size=55, max_size=140)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(queries=st.lists(words, min_size=1, max_size=8), vocab=st.lists(words, min_size=1, max_size=8),
       cutoff=st.sampled_from([0.0, 0.5, 0.7, 0.8, 0.9, 1.0]), prefix_weight=st.sampled_from([0.1, 0.0, 0.25]))
def test_generated_short_strings(queries, vocab, cutoff, prefix_weight):
    assert_all_equal(queries, vocab, cutoff, prefix_weight)
    assert_best_equal(queries, vocab, cutoff, prefix_weight)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=long_words, edits=st.lists(st.tuples(st.integers(0, 200), st.sampled_from(ALPHABET)), max_size=6),
       cut=st.integers(0, 150), cutoff=st.sampled_from([0.0, 0.7, 0.9]))
def test_generated_strings_across_64(base, edits, cut, cutoff):
    """Word-sized (<= 64) and longer strings in both roles, with near-duplicates so scores are high."""
    variant = list(base)
    for pos, ch in edits:
        variant[pos % len(variant)] = ch
    variant = "".join(variant)
    strings = [base, variant, base[:cut], variant[:64], variant[:63], base[:65], base[1:], ""]
    assert_all_equal(strings, strings[::-1], cutoff)
    assert_best_equal(strings, strings[::-1], cutoff)


def test_lengths_around_64_and_far_longer(real_tags):
    rng = random.Random(3)
    text = " ".join(rng.sample(real_tags, 400))
    strings = []
    for n in (1, 2, 31, 32, 33, 63, 64, 65, 127, 128, 129, 1000, 1500):
        s = text[:n]
        strings += [s, s[::-1][:n], s[:n // 2] + "ü" + s[n // 2 + 1:], "x" + s[1:]]
    assert_all_equal(strings, strings, 0.0)
    assert_all_equal(strings, strings, 0.9)
    assert_best_equal(strings, strings[::-1], 0.8)


def test_cutoff_exactly_at_and_beside_scores(tag_job):
    """rapidfuzz rounds the cutoff to float32 before comparing; the kernel must agree on every
    score sitting at, one ulp beside, or within 1e-7 of the cutoff."""
    queries, vocab = tag_job
    queries, vocab = queries[:200], vocab[:200]
    scores = np.unique(cdist(queries, vocab, 0.0))
    rng = np.random.default_rng(11)
    for s in rng.choice(scores[scores > 0.5], 12, replace=False):
        for cutoff in (s, math.nextafter(s, 2.0), math.nextafter(s, 0.0), float(np.float32(s)), s + 3e-8, s - 3e-8):
            cutoff = min(max(cutoff, 0.0), 1.0)
            assert_all_equal(queries, vocab, cutoff)


def test_ties_keep_lowest_vocab_index():
    vocab = ["rokc", "rock", "rock", "r0ck", "rock"]
    idx, score = best_match(["rock", "rck"], vocab, 0.0, impl="native")
    assert idx.tolist() == [1, 1]
    assert score[0] == 1.0
    # 'rocky' and 'rockx' score the same against 'rock': the lower index wins.
    assert JaroWinkler.similarity("rock", "rocky") == JaroWinkler.similarity("rock", "rockx")
    idx, _ = best_match(["rock"], ["xyz", "rockx", "rocky"], 0.5, impl="native")
    assert idx.tolist() == [1]
    idx, _ = best_match(["rock"], ["xyz", "rocky", "rockx"], 0.5, impl="native")
    assert idx.tolist() == [1]


def test_empty_strings():
    assert similarity("", "", impl="native") == 1.0
    assert similarity("", "a", impl="native") == 0.0
    assert similarity("a", "", impl="native") == 0.0
    idx, score = best_match(["", "a", "b"], ["a", ""], 0.5, impl="native")
    assert idx.tolist() == [1, 0, -1]
    assert score.tolist() == [1.0, 1.0, 0.0]
    assert_all_equal(["", "a", ""], ["", "b", "a", ""], 0.0)
    # Empty inputs give empty, well-typed results.
    idx, score = best_match([], ["a"], 0.5, impl="native")
    assert idx.shape == (0,) and idx.dtype == np.int32
    idx, score = best_match(["a", "b"], [], 0.5, impl="native")
    assert idx.tolist() == [-1, -1] and score.tolist() == [0.0, 0.0]
    q, v, s = all_matches(["a"], [], 0.5, impl="native")
    assert len(q) == 0 and q.dtype == np.int64 and v.dtype == np.int32


@settings(max_examples=200, deadline=None)
@given(a=st.text(alphabet=ALPHABET, max_size=80), b=st.text(alphabet=ALPHABET, max_size=80))
def test_similarity_equals_rapidfuzz(a, b):
    assert similarity(a, b, impl="native") == JaroWinkler.similarity(a, b)
    assert similarity(a, b, impl="ref") == JaroWinkler.similarity(a, b)


def test_independent_of_threads_and_chunk_size(real_tags):
    rng = random.Random(5)
    queries, vocab = rng.sample(real_tags, 3000), rng.sample(real_tags, 300)
    runs = [best_match(queries, vocab, 0.8, impl="native", threads=t, chunk_size=c)
            for t, c in [(1, None), (2, None), (2, 7), (1, 1000)]]
    for run in runs[1:]:
        for got, want in zip(run, runs[0]):
            np.testing.assert_array_equal(got, want)
    runs = [all_matches(queries, vocab, 0.75, impl="native", threads=t, chunk_size=c)
            for t, c in [(1, None), (2, None), (2, 13)]]
    for run in runs[1:]:
        for got, want in zip(run, runs[0]):
            np.testing.assert_array_equal(got, want)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="prefix_weight"):
        best_match(["a"], ["a"], 0.5, prefix_weight=0.3)
    with pytest.raises(ValueError, match="score_cutoff"):
        best_match(["a"], ["a"], 1.5)
    with pytest.raises(ValueError, match="threads"):
        best_match(["a"], ["a"], 0.5, threads=0)
    with pytest.raises(TypeError, match=r"vocab\[1\]"):
        best_match(["a"], ["a", None], 0.5, impl="native")
    with pytest.raises(ValueError, match="TAGFOLD_IMPL|impl"):
        best_match(["a"], ["a"], 0.5, impl="fast")


def test_dispatch_native_missing_fails_loudly(monkeypatch):
    # A None entry in sys.modules makes `import tagfold.native._jaro` raise ImportError,
    # as on a machine where the extension was never built.
    monkeypatch.setitem(sys.modules, "tagfold.native._jaro", None)
    monkeypatch.setenv("TAGFOLD_IMPL", "native")
    with pytest.raises(ImportError, match="make install"):
        dispatch.resolve_impl()
    with pytest.raises(ImportError, match="TAGFOLD_IMPL=native"):
        best_match(["rock"], ["rock"], 0.9)
    monkeypatch.setenv("TAGFOLD_IMPL", "auto")
    assert dispatch.resolve_impl() == "ref"
    idx, score = best_match(["rokc"], ["pop", "rock"], 0.8)  # runs on the reference
    assert idx.tolist() == [1] and score[0] == JaroWinkler.similarity("rokc", "rock")
    with pytest.raises(ImportError, match="impl argument=native"):
        dispatch.resolve_impl("native")


def test_dispatch_choices(monkeypatch):
    monkeypatch.delenv("TAGFOLD_IMPL", raising=False)
    assert dispatch.resolve_impl() == "native"  # auto, and the extension is built
    assert dispatch.resolve_impl("ref") == "ref"
    monkeypatch.setenv("TAGFOLD_IMPL", "ref")
    assert dispatch.resolve_impl() == "ref"
    assert dispatch.resolve_impl("native") == "native"  # the argument wins over the environment
    monkeypatch.setenv("TAGFOLD_IMPL", "gpu")
    with pytest.raises(ValueError, match=r"\$TAGFOLD_IMPL='gpu'.*native, ref, auto"):
        dispatch.resolve_impl()


# ----------------------------------------------------------------------------- strict cutoff, chunk progress

@pytest.mark.parametrize("impl", ["native", "ref"])
@pytest.mark.parametrize("cutoff", [0.85, 0.9, 0.9 - 1e-9, 0.7])
def test_strict_cutoff_keeps_only_scores_above_it(tag_job, impl, cutoff):
    """strict=True is the thesis's `score > cutoff`, exact, whatever float32 rounding does."""
    queries, vocab = tag_job
    queries = queries[:3000]
    idx, score = best_match(queries, vocab, cutoff, strict=True, impl=impl)
    assert np.all(score[idx >= 0] > cutoff) and np.all(score[idx < 0] == 0.0)
    # against the scores without a cutoff: rapidfuzz's last bit of a score depends on the cutoff
    # it was given, so the two may disagree only on a score within rounding of the cutoff
    best, best_score = best_match(queries, vocab, 0.0, impl=impl)
    above = best_score > cutoff
    assert above.any() and not above.all()
    agree = (idx == np.where(above, best, -1))
    assert np.all(np.abs(best_score[~agree] - cutoff) < 1e-12), best_score[~agree]
    assert np.array_equal(score[agree & above], best_score[agree & above])
    # ... and those scores are rapidfuzz's within rounding
    assert np.allclose(best_score, cdist(queries, vocab, 0.0).max(axis=1), atol=1e-12)


def test_strict_cutoff_on_a_score_exactly_at_it():
    # 'abcdefghij' vs 'abcdefghiz': a score s; strict at s rejects it, at the next float below keeps it
    s = similarity("abcdefghij", "abcdefghiz")
    assert best_match(["abcdefghij"], ["abcdefghiz"], s, strict=True)[0][0] == -1
    assert best_match(["abcdefghij"], ["abcdefghiz"], math.nextafter(s, 0), strict=True)[0][0] == 0
    for bad in (1.5, -1.0, float("nan")):
        with pytest.raises(ValueError):
            best_match(["a"], ["a"], bad, strict=True)


@pytest.mark.parametrize("impl", ["native", "ref"])
@pytest.mark.parametrize("strict", [False, True])
def test_on_chunk_reports_every_query_once(impl, strict):
    queries = [f"tag{i}" for i in range(1001)] + ["", "ünïcödé", "x" * 500]
    done = []
    got = best_match(queries, ["tag1", "tag22", "ünicode"], 0.8, impl=impl, chunk_size=97, strict=strict,
                     on_chunk=done.append)
    assert sum(done) == len(queries) and max(done) == 97
    whole = best_match(queries, ["tag1", "tag22", "ünicode"], 0.8, impl=impl, strict=strict)
    assert all(np.array_equal(a, b) for a, b in zip(got, whole))
    assert best_match([], ["a"], 0.5, strict=strict, on_chunk=done.append)[0].size == 0
