"""Stage II's compiled loops (native/_stage2.pyx) against their plain references (native/stage2.py):
word segmentation and the cached per-tag matching loop, on real and generated tags (unicode,
empty, very long), and Stage II's whole output with either implementation."""
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tagfold.native import dispatch
from tagfold.native.stage2 import STAGE2_EXTENSION, match_tags, segment_ref, segmenter

pytestmark = pytest.mark.skipif(not dispatch.native_available(STAGE2_EXTENSION),
                                reason="the Stage II kernel is not built (make install)")

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
LETTERS = st.text(alphabet="abcdeiklmnoprstuyzé日本ё", max_size=30)


@pytest.fixture(scope="module")
def tables():
    """The real segmentation tables Stage II uses (English frequencies + the rule lexicon)."""
    from tagfold.pipeline.selected import load_selected
    from tagfold.pipeline.tags.collapse import CollapseConfig, _ruleset

    seg = _ruleset(load_selected(), CollapseConfig()).segmenter
    return seg.cost, seg.prefixes, seg.unknown_char_cost, seg.max_word_len


def both_segment(token, tables):
    native = segmenter(*tables, impl="native")(token)
    ref = segment_ref(token, *tables)
    return native, ref


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=st.one_of(TEXT, LETTERS, st.lists(st.sampled_from(["rock", "jazz", "favourite", "hard", "dance",
                                                                  "music", "x", "é", "日本"]), max_size=12).map("".join)))
def test_segment_equals_reference(tables, token):
    native, ref = both_segment(token, tables)
    assert native == ref


@settings(max_examples=200, deadline=None)
@given(words=st.dictionaries(st.text(alphabet="abcé", min_size=1, max_size=5),
                             st.floats(0.0, 30.0, allow_nan=False), max_size=12),
       token=st.text(alphabet="abcé", max_size=25), skip=st.floats(0.0, 30.0), max_len=st.integers(1, 6))
def test_segment_equals_reference_on_small_tables(words, token, skip, max_len):
    """Ties, zero costs and a max word length shorter than some words: still the same words."""
    prefixes = {w[:i] for w in words for i in range(1, min(len(w), max_len) + 1)}
    for prefix_kind in (set, frozenset):
        tables = (words, prefix_kind(prefixes), skip, max_len)
        assert both_segment(token, tables)[0] == both_segment(token, tables)[1]


@pytest.mark.parametrize("token", ["", "a", "harddancemusic", "favouritejazz", "x" * 5000,
                                   "rock" * 300, "日本のロック", "ёлкипалки", "rocké" * 60])
def test_segment_named_cases(tables, token):
    native, ref = both_segment(token, tables)
    assert native == ref


def test_segment_real_joined_tags(tables, real_tags):
    joined = [t.replace(" ", "") for t in real_tags[:20_000:7]]
    seg = segmenter(*tables, impl="native")
    assert [seg(t) for t in joined] == [segment_ref(t, *tables) for t in joined]


# ---------------------------------------------------------------- the matching loop

def match_key(key):
    """A rule stand-in: a deterministic result per key, empty for some keys (no match)."""
    words = [w for w, _ in key if w]
    return [] if len(words) % 3 == 0 else [len(words), len(key), sum(map(len, words))]


@st.composite
def matching_job(draw):
    vocab = draw(st.lists(TEXT, min_size=1, max_size=15, unique=True))
    reduced = {tok: tuple(draw(st.lists(st.tuples(st.sampled_from(["", "rock", "pop", "é", "日本"]),
                                                  st.sampled_from(["exact", "typo", ""])), max_size=3)))
               for tok in vocab}
    relevant = set(draw(st.lists(st.sampled_from(vocab), max_size=len(vocab))))
    token_lists = draw(st.lists(st.lists(st.sampled_from(vocab), max_size=6), max_size=40))
    return token_lists, relevant, reduced


def run_both(token_lists, relevant, reduced, start=0, stop=None):
    stop = len(token_lists) if stop is None else stop
    calls = {"native": [], "ref": []}
    out = {}
    for impl in ("native", "ref"):
        def key_fn(key, seen=calls[impl]):
            seen.append(key)
            return match_key(key)
        out[impl] = match_tags(token_lists, start, stop, relevant, reduced, {}, key_fn, impl=impl)
    # the rule code is called once per distinct reading, in the same order
    assert calls["native"] == calls["ref"] and len(set(calls["ref"])) == len(calls["ref"])
    return out["native"], out["ref"]


@settings(max_examples=300, deadline=None)
@given(job=matching_job())
def test_match_tags_equals_reference(job):
    native, ref = run_both(*job)
    assert native == ref


@settings(max_examples=100, deadline=None)
@given(job=matching_job(), cut=st.integers(0, 40))
def test_match_tags_does_not_depend_on_chunks(job, cut):
    token_lists, relevant, reduced = job
    cut = min(cut, len(token_lists))
    whole = run_both(token_lists, relevant, reduced)[0]
    a = run_both(token_lists, relevant, reduced, 0, cut)[0]
    b = run_both(token_lists, relevant, reduced, cut, len(token_lists))[0]
    assert (a[0] + b[0], a[1] + b[1]) == whole


def test_match_tags_refuses_bad_input():
    with pytest.raises(ValueError, match="outside"):
        match_tags([["rock"]], 0, 2, set(), {}, {}, match_key)
    with pytest.raises(TypeError):
        match_tags([("rock",)], 0, 1, {"rock"}, {"rock": (("rock", "exact"),)}, {}, match_key, impl="native")
    with pytest.raises(KeyError):
        match_tags([["rock", "unknown"]], 0, 1, {"rock"}, {"rock": ()}, {}, match_key, impl="native")


# ---------------------------------------------------------------- Stage II end to end

def _long_and_foreign(real, rng):
    """Generated tags the real sample has few of: long joined phrases, CJK, Cyrillic, accents."""
    extra = ["日本のロック", "русский рок", "électro-pop française", "ümlaut métal", "", " ", "x" * 255]
    for _ in range(300):
        parts = rng.sample(real, 4)
        extra.append(rng.choice([" and ", " / ", " - ", ""]).join(parts)[:255])
        extra.append("".join(rng.sample(real, 2)).replace(" ", ""))
    return extra


@pytest.mark.parametrize("workers", [1, 2])
def test_stage2_outputs_identical_native_and_reference(real_tags, monkeypatch, workers):
    from tagfold.pipeline.tags.collapse import collapse

    rng = random.Random(7)
    tags = rng.sample(real_tags, 4000) + _long_and_foreign(real_tags, rng)
    tables = {}
    for impl in ("native", "ref"):
        monkeypatch.setenv("TAGFOLD_IMPL", impl)
        tables[impl] = collapse(tags, workers=workers)
    assert tables["native"].num_rows > 1000
    assert tables["native"].equals(tables["ref"])
