"""Native kernels vs their references, on the same jobs in the same run.

Jaro-Winkler job: 20,000 real Last.fm tags (seeded sample of ../shared/data/lastfm/tags.txt)
against a 2,000-word vocabulary (seeded sample of the real tags of at most 20 characters, about
the size and shape of Stage I's genre + mood vocabulary), cutoff 0.9 -- Stage I's typo step.
L2 job: 522,366 x 50 float32 vectors (seeded normal: a kernel benchmark, so random is fine)
against 50 targets, then the nearest target under per-target cuts -- Stage III's step.

Stage II jobs: word segmentation of 10,000 real tags with their spaces removed (seeded sample)
and phrase matching over the 58,702 real tags, with Stage II's real tables (compiled matcher
vs the rule code's own _match_words, once per distinct reading).

Every benchmark asserts the native result equals the reference before timing it.
`test_speed_table` times both sides with perf_counter and prints the ratios; it never asserts
on speed. Run: .venv/bin/python -m pytest benchmarks/bench_native.py --benchmark-only -s
"""
import random

import numpy as np
import pytest
from rapidfuzz import process
from rapidfuzz.distance import JaroWinkler

from ratios import best_of
from tagfold.native.jaro_winkler import all_matches, best_match, default_threads
from tagfold.native.l2 import l2_distances, nearest_under_cut

N_QUERIES, N_VOCAB, CUTOFF = 20_000, 2_000, 0.9
N_VECTORS, N_TARGETS, DIM = 522_366, 50, 50
N_SEGMENT = 10_000   # joined real tags segmented by Stage II's word segmentation


@pytest.fixture(scope="module")
def jw_job(real_tags):
    rng = random.Random(2026)
    queries = rng.sample(real_tags, N_QUERIES)
    vocab = rng.sample([t for t in real_tags if len(t) <= 20], N_VOCAB)
    return queries, vocab


def rapidfuzz_cdist(queries, vocab):
    """The peer a straightforward implementation would write: cdist with the cutoff, all cores."""
    return process.cdist(queries, vocab, scorer=JaroWinkler.similarity, score_cutoff=CUTOFF, workers=-1)


@pytest.fixture(scope="module")
def jw_expected(jw_job):
    queries, vocab = jw_job
    scores = process.cdist(queries, vocab, scorer=JaroWinkler.similarity, score_cutoff=CUTOFF,
                           dtype=np.float64, workers=-1)
    idx = scores.argmax(axis=1)
    best = scores[np.arange(len(idx)), idx]
    pairs = np.nonzero(scores)           # row-major: (query, vocab) order, as all_matches returns them
    return (np.where(best > 0, idx, -1), np.where(best > 0, best, 0.0), np.count_nonzero(scores),
            (*pairs, scores[pairs]))


@pytest.fixture(scope="module")
def l2_job():
    rng = np.random.default_rng(522366)
    X = rng.standard_normal((N_VECTORS, DIM), dtype=np.float32)
    T = rng.standard_normal((N_TARGETS, DIM), dtype=np.float32)
    # Per-target cut at the 0.1th percentile of a normal fit of the distances, as Stage III does.
    D = l2_distances(X, T, impl="native")
    cuts = D.mean(axis=0, dtype=np.float64) - 3.09 * D.std(axis=0, dtype=np.float64)
    return X, T, cuts


def l2_step(X, T, cuts, impl):
    return nearest_under_cut(l2_distances(X, T, impl=impl), cuts, impl=impl)


def bench_jw_native(benchmark, jw_job, jw_expected):
    queries, vocab = jw_job
    idx, score = best_match(queries, vocab, CUTOFF, impl="native")
    np.testing.assert_array_equal(idx, jw_expected[0])
    np.testing.assert_array_equal(score, jw_expected[1])
    benchmark(best_match, queries, vocab, CUTOFF, impl="native")


def bench_jw_native_all_matches(benchmark, jw_job, jw_expected):
    queries, vocab = jw_job
    q, v, s = all_matches(queries, vocab, CUTOFF, impl="native")
    want_q, want_v, want_s = jw_expected[3]
    assert len(q) == jw_expected[2] > 0
    np.testing.assert_array_equal(q, want_q)
    np.testing.assert_array_equal(v, want_v)
    np.testing.assert_array_equal(s, want_s)
    benchmark(all_matches, queries, vocab, CUTOFF, impl="native")


def bench_jw_rapidfuzz_cdist(benchmark, jw_job, jw_expected):
    queries, vocab = jw_job
    scores = rapidfuzz_cdist(queries, vocab)
    assert np.count_nonzero(scores) == jw_expected[2]
    benchmark(rapidfuzz_cdist, queries, vocab)


def check_l2(X, T, cuts):
    """Native and NumPy agree on distances, and exactly on the nearest-under-cut step given them."""
    rows = slice(0, 50_000)
    D = l2_distances(X, T, impl="native")
    np.testing.assert_allclose(D[rows], l2_distances(X[rows], T, impl="ref"), rtol=1e-5, atol=1e-5)
    for got, want in zip(nearest_under_cut(D, cuts, impl="native"), nearest_under_cut(D, cuts, impl="ref")):
        np.testing.assert_array_equal(got, want)
    assert (nearest_under_cut(D, cuts)[0] >= 0).sum() > 0  # some tags fold: the cut is exercised


def bench_l2_native(benchmark, l2_job):
    check_l2(*l2_job)
    benchmark(l2_step, *l2_job, "native")


def bench_l2_numpy(benchmark, l2_job):
    check_l2(*l2_job)
    benchmark.pedantic(l2_step, args=(*l2_job, "ref"), rounds=3, iterations=1)


def test_speed_table(jw_job, jw_expected, l2_job, capsys):
    """Both sides of each job, measured back to back in one run; prints, never asserts speed."""
    queries, vocab = jw_job
    np.testing.assert_array_equal(best_match(queries, vocab, CUTOFF, impl="native")[0], jw_expected[0])
    check_l2(*l2_job)  # also compiles (or loads the cached) Numba code outside the timing
    pairs = len(queries) * len(vocab)
    rows = [
        ("JW best_match native", best_of(3, best_match, queries, vocab, CUTOFF, impl="native"), pairs),
        ("JW all_matches native", best_of(3, all_matches, queries, vocab, CUTOFF, impl="native"), pairs),
        ("JW rapidfuzz cdist", best_of(3, rapidfuzz_cdist, queries, vocab), pairs),
        ("L2+nearest native", best_of(3, l2_step, *l2_job, "native"), N_VECTORS * N_TARGETS),
        ("L2+nearest numpy", best_of(1, l2_step, *l2_job, "ref"), N_VECTORS * N_TARGETS),
    ]
    with capsys.disabled():
        print(f"\nnative kernels, {default_threads()} threads; JW: {N_QUERIES} real tags x {N_VOCAB} words, "
              f"cutoff {CUTOFF}; L2: {N_VECTORS} x {N_TARGETS} x {DIM}")
        print(f"{'job':26s} {'seconds':>8s} {'pairs/s':>12s}")
        for name, seconds, n in rows:
            print(f"{name:26s} {seconds:8.3f} {n / seconds:12.3e}")
        print(f"JW native best_match is {rows[2][1] / rows[0][1]:.2f}x rapidfuzz cdist "
              f"(all_matches {rows[2][1] / rows[1][1]:.2f}x); L2 native is {rows[4][1] / rows[3][1]:.1f}x numpy")


# ---------------------------------------------------------------- Stage II loops (native/_stage2.pyx)

@pytest.fixture(scope="module")
def stage2_job(real_tags):
    """Stage II's real inputs for the 58,702 real tags: the Segmenter (its tables) and the pieces
    Stage II segments (tokens of every tag with joined words added: 'harddancemusic'), and the
    token lists and analysed tokens phrase matching reads, with the phrase tables and the
    reference (reduced readings, _match_words as codes)."""
    from itertools import chain

    from tagfold.pipeline.selected import load_selected
    from tagfold.pipeline.tags import collapse as C, normalize as norm

    rules = C._ruleset(load_selected(), C.CollapseConfig())
    token_lists = [norm.tokenize(t) for t in real_tags]
    unique = set(chain.from_iterable(token_lists))
    joined = sorted({t.replace(" ", "") for t in real_tags if rules.stem_re.search(t.replace(" ", ""))})
    pieces = random.Random(2026).sample(joined, min(N_SEGMENT, len(joined)))
    analysed = C._analyse_tokens(unique, rules)
    target = {t: i * C._CODE_STRIDE for i, t in enumerate(rules.selected.tags)}
    rule = {r: i for i, r in enumerate(C.RULE_NAMES)}

    def reference(key):
        return [target[t] + rule[r] for t, r in C._match_words(key, rules)]

    return rules.segmenter, pieces, (token_lists, analysed, C._matcher_tables(rules),
                            lambda: C._readings(analysed, set(), rules), reference)


def _segment_all(seg, pieces, impl):
    """Each piece's words, as Stage II segments them: the Segmenter's segmenter for `impl`,
    built on first use and kept (timed by bench_stage2_segment_build_*)."""
    segment = seg.compiled(impl)
    return [segment(p) for p in pieces]


def _match_all(loop_job, impl):
    from tagfold.native.stage2 import match_codes

    token_lists, analysed, tables, readings, reference = loop_job
    return match_codes(token_lists, 0, len(token_lists), analysed, "", tables, readings, reference, impl=impl)


def bench_stage2_segment_native(benchmark, stage2_job):
    seg, pieces, _ = stage2_job
    assert _segment_all(seg, pieces, "native") == _segment_all(seg, pieces, "ref")
    benchmark(_segment_all, seg, pieces, "native")


def bench_stage2_segment_ref(benchmark, stage2_job):
    seg, pieces, _ = stage2_job
    benchmark(_segment_all, seg, pieces, "ref")


def _build_and_segment(seg, pieces, impl):
    from tagfold.native.stage2 import segmenter

    segment = segmenter(seg.cost, seg.unknown_char_cost, seg.max_word_len, impl)
    return [segment(p) for p in pieces]


def bench_stage2_segment_build_native(benchmark, stage2_job):
    """What a Stage II job pays once: the trie of the 83k words (and ten pieces read)."""
    seg, pieces, _ = stage2_job
    assert _build_and_segment(seg, pieces[:10], "native") == _segment_all(seg, pieces[:10], "ref")
    benchmark(_build_and_segment, seg, pieces[:10], "native")


def bench_stage2_segment_build_ref(benchmark, stage2_job):
    """The reference's once-per-job cost: the set of the words' prefixes."""
    seg, pieces, _ = stage2_job
    assert _build_and_segment(seg, pieces[:10], "ref") == _segment_all(seg, pieces[:10], "native")
    benchmark(_build_and_segment, seg, pieces[:10], "ref")


def bench_stage2_match_loop_native(benchmark, stage2_job):
    loop_job = stage2_job[2]
    native, ref = _match_all(loop_job, "native"), _match_all(loop_job, "ref")
    assert len(native[0]) > 20_000
    assert [a.tolist() for a in native] == [a.tolist() for a in ref]
    benchmark(_match_all, loop_job, "native")


def bench_stage2_match_loop_ref(benchmark, stage2_job):
    benchmark(_match_all, stage2_job[2], "ref")


def test_stage2_speed_table(stage2_job, capsys):
    """Ratios of the Stage II loops against their plain references (printed, never asserted)."""
    from ratios import record_ratio

    seg, pieces, loop_job = stage2_job
    rows = [("segmentation", best_of(3, _segment_all, seg, pieces, "native"),
             best_of(3, _segment_all, seg, pieces, "ref"), f"{len(pieces):,} real tags, spaces removed"),
            ("phrase matching", best_of(3, _match_all, loop_job, "native"),
             best_of(3, _match_all, loop_job, "ref"), f"{len(loop_job[0]):,} real tags")]
    with capsys.disabled():
        for name, ours, ref, what in rows:
            record_ratio(f"Stage II {name}, {what} (native vs Python)", ours, ref)
            print(f"\nStage II {name}, {what}: native {ours * 1e3:.0f} ms, Python {ref * 1e3:.0f} ms, {ref / ours:.1f}x")
