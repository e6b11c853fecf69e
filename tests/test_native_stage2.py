"""Stage II's compiled kernels (native/_stage2.pyx) against their plain references: word
segmentation (TrieSegmenter) against native/stage2.py's segment_ref on the real and generated
tables, and phrase matching (PhraseMatcher) against the rule code's own collapse._match_words,
on generated readings of real lexicon words (unicode, empty, very long), on generated tag
ranges, and as Stage II's whole output on every real tag, both generators' samples and a user's
rules folder."""
import math
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tagfold.native import dispatch
from tagfold.native.stage2 import STAGE2_EXTENSION, segment_ref, segmenter, word_prefixes

pytestmark = pytest.mark.skipif(not dispatch.native_available(STAGE2_EXTENSION),
                                reason="the Stage II kernel is not built (make install)")

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
LETTERS = st.text(alphabet="abcdeiklmnoprstuyzé日本ё𝄞", max_size=30)   # 𝄞: beyond the BMP


@pytest.fixture(scope="module")
def real_segmenters():
    """(compiled trie, reference) over the real tables Stage II uses (English frequencies + the
    rule lexicon), each built once as Stage II builds them."""
    from tagfold.pipeline.selected import load_selected
    from tagfold.pipeline.tags.collapse import CollapseConfig, _ruleset

    seg = _ruleset(load_selected(), CollapseConfig()).segmenter
    prefixes = word_prefixes(seg.cost, seg.max_word_len)
    return (segmenter(seg.cost, seg.unknown_char_cost, seg.max_word_len, impl="native"),
            lambda token: segment_ref(token, seg.cost, prefixes, seg.unknown_char_cost, seg.max_word_len))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=st.one_of(TEXT, LETTERS, st.lists(st.sampled_from(["rock", "jazz", "favourite", "hard", "dance",
                                                                  "music", "x", "é", "日本", "🎸"]),
                                                max_size=12).map("".join)))
def test_segment_equals_reference(real_segmenters, token):
    native, ref = real_segmenters
    assert native(token) == ref(token)


def both_on_table(cost, skip, max_len, tokens):
    """Each token's words by a trie built from `cost` and by segment_ref with its prefixes."""
    trie = segmenter(cost, skip, max_len, impl="native")
    prefixes = word_prefixes(cost, max_len)
    return [trie(t) for t in tokens], [segment_ref(t, cost, prefixes, skip, max_len) for t in tokens]


COSTS = st.one_of(st.sampled_from([0.0, 1.0, 2.0, 3.0, math.inf]), st.floats(-5.0, 30.0, allow_nan=False))
# U+1D11E and U+D11E share their low 16 bits, and U+D834 U+DD1E are U+1D11E's UTF-16 surrogates
# (lone, as a str may hold them): a trie keyed on UTF-16 units would confuse them.
SMALL = "abcé\U0001d11e\ud11e\ud834\udd1e"


@settings(max_examples=300, deadline=None)
@given(words=st.dictionaries(st.text(alphabet=SMALL, max_size=7), COSTS, max_size=12),
       tokens=st.lists(st.text(alphabet=SMALL, max_size=25), min_size=1, max_size=5),
       skip=st.one_of(st.sampled_from([0.0, 1.0, 2.0, math.inf]), st.floats(0.0, 30.0)),
       max_len=st.integers(-1, 8))
def test_segment_equals_reference_on_small_tables(words, tokens, skip, max_len):
    """Ties (few distinct costs), zero, negative and infinite costs, the empty word, words
    longer than max_word_len (their first max_word_len characters still lead the walk on),
    characters beyond the BMP: the same words."""
    native, ref = both_on_table(words, skip, max_len, tokens)
    assert native == ref


def test_segment_table_kinds():
    """Costs as any dict: a Counter's int costs add as the reference adds them."""
    from collections import Counter, OrderedDict

    tokens = ["abcab", "cabbage", "", "bacca" * 9]
    for cost in (Counter({"ab": 2, "abc": 3, "ca": 1, "b": 1}), OrderedDict(ab=2.5, abc=3.0, c=0.5)):
        native, ref = both_on_table(cost, 2, 3, tokens)
        assert native == ref
    with pytest.raises(TypeError):
        segmenter({1: 1.0}, 1.0, 3, impl="native")


def test_segment_table_that_outgrows_its_hash_table():
    """400 long words: ~10,000 trie edges where the first hash table holds 1,024, so the trie
    is rehashed several times while it is built; generated joins of the words read alike."""
    rng = random.Random(7)
    alphabet = "abcdeé日𝄞"
    words = {"".join(rng.choices(alphabet, k=rng.randint(10, 40))): rng.choice([1.0, 2.0, rng.uniform(0, 9)])
             for _ in range(400)}
    vocab = sorted(words)
    tokens = ["".join(rng.choice(vocab)[:rng.randint(1, 40)] for _ in range(rng.randint(1, 6)))
              for _ in range(300)]
    native, ref = both_on_table(words, 6.0, 30, tokens)
    assert native == ref
    assert sum(map(len, native)) > 300   # the walk found words, not only uncovered characters


@pytest.mark.parametrize("token", ["", "a", "harddancemusic", "favouritejazz", "x" * 5000,
                                   "rock" * 300, "日本のロック", "ёлкипалки", "rocké" * 60, "𝄞jazz🎸rock𝄞",
                                   "hard" * 20_000])
def test_segment_named_cases(real_segmenters, token):
    native, ref = real_segmenters
    assert native(token) == ref(token)


def test_segment_real_joined_tags(real_segmenters, real_tags):
    native, ref = real_segmenters
    joined = [t.replace(" ", "") for t in real_tags[:20_000:7]]
    assert [native(t) for t in joined] == [ref(t) for t in joined]


# ---------------------------------------------------------------- phrase matching

WORD_RULES = ["exact", "typo", "form", "segmented", "decade", "unknown", "name", ""]


def _codes_of(rules):
    """The reference: collapse._match_words as the codes the compiled matcher returns."""
    from tagfold.pipeline.tags.collapse import _CODE_STRIDE, RULE_NAMES, _match_words

    target = {t: i * _CODE_STRIDE for i, t in enumerate(rules.selected.tags)}
    rule = {r: i for i, r in enumerate(RULE_NAMES)}
    return lambda key: [target[t] + rule[r] for t, r in _match_words(key, rules)]


def _matcher(rules):
    from tagfold.native._stage2 import PhraseMatcher
    from tagfold.pipeline.tags.collapse import _matcher_tables

    return PhraseMatcher(**_matcher_tables(rules))


@pytest.fixture(scope="module")
def rules():
    from tagfold.pipeline.selected import load_selected
    from tagfold.pipeline.tags.collapse import CollapseConfig, _ruleset

    return _ruleset(load_selected(), CollapseConfig())


@pytest.fixture(scope="module")
def matching(rules):
    """(compiled matcher, reference) for the package's rule tables."""
    return _matcher(rules), _codes_of(rules)


def lexicon_words(rules):
    """Real words the phrase tables know, as runs that may read as a phrase: whole phrases
    (several words), negators, descriptors that are no phrase word, the pronoun."""
    from tagfold.pipeline.tags.collapse import _PRONOUN

    phrases = sorted(rules.phrases)
    loose = sorted(rules.descriptors - rules.lexicon)[:300]
    return phrases, sorted(rules.negators), loose, _PRONOUN


@st.composite
def phrase_key(draw, rules, max_runs=30):
    """A reading as Stage II builds them: runs of real phrase words (whole phrases, their
    prefixes, single words), negators, descriptors, 'us', the separator, gap words ('', '')
    and ('', 'name') and unknown words, each word with a drawn word rule."""
    from tagfold.pipeline.tags.collapse import SEPARATOR

    phrases, negators, loose, pronoun = lexicon_words(rules)
    # the selected tags and the halves of compounds ('indie' + 'rock' -> 'indie rock')
    selected = sorted(k for k, p in rules.phrases.items() if p.rule in ("exact", "phrase"))
    halves = sorted({(w,) for _, a, b in rules.compounds for w in (a, b)})
    run = st.one_of(
        st.sampled_from(phrases),
        st.sampled_from(phrases).map(lambda k: k[:-1] or k),
        st.sampled_from(selected),
        st.sampled_from(halves),
        st.sampled_from(negators + loose + ["日本", "ёлка"]).map(lambda w: (w,)),
        st.sampled_from([pronoun, SEPARATOR, ""]).map(lambda w: (w,)),
        TEXT.map(lambda w: (w,)),
    )
    runs = draw(st.lists(run, max_size=max_runs))
    rule = st.sampled_from(WORD_RULES)
    return tuple((w, draw(rule)) for r in runs for w in r)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_phrase_matcher_equals_match_words(rules, matching, data):
    compiled, reference = matching
    key = data.draw(phrase_key(rules))
    assert compiled(key) == reference(key)


def test_phrase_matcher_named_cases(matching):
    compiled, reference = matching
    cases = [(), (("", ""),), (("us", "exact"),), (("us", "exact"), ("rock", "exact")),
             (("rock", "exact"), ("us", "exact")), (("us", "typo"), ("rock", "exact")),
             (("non", "exact"), ("metal", "exact"), ("rock", "exact")),
             (("rock", "exact"), ("indie", "typo"), ("uk", "exact")),
             (("indie", "exact"), ("rock", "typo"), ("-", "separator"), ("iggy", "exact"), ("pop", "exact")),
             (("sad", "exact"), ("-", "separator"), ("", "name"), ("-", "separator"), ("jazz", "form")),
             (("jazz", "exact"), ("", "name"), ("-", "separator"), ("sad", "exact")),
             (("jazz", "exact"), ("", ""), ("-", "separator"), ("sad", "exact")),
             (("-", "separator"),), (("-", "separator"), ("-", "separator"), ("rock", "segmented"))]
    for key in cases:
        assert compiled(key) == reference(key), key
    assert compiled((("rock", "exact"),)) != []  # the cases are not all empty


def test_phrase_matcher_on_small_tables():
    """The constructor's contract on hand-made tables, for what the package's tables never
    hold (a phrase of several words with the rule exact_rule, reported as phrase_rule)."""
    from tagfold.native._stage2 import PhraseMatcher

    exact, phrase, typo = 0, 1, 7
    m = PhraseMatcher({("a",): ((0,), exact), ("a", "b"): ((1,), exact), ("b",): ((2,), 3), ("c", "d"): ((), -1)},
                      {"not"}, {"a", "b"}, {"typo": typo}, [], n_targets=3, code_stride=16, exact_rule=exact,
                      phrase_rule=phrase, compound_rule=2, separator="-", name_gap="name", pronoun="us",
                      exact_word="exact")
    assert m((("a", "exact"),)) == [0 * 16 + exact]
    assert m((("a", "exact"), ("b", "exact"))) == [1 * 16 + phrase]
    assert m((("a", "exact"), ("b", "typo"))) == [1 * 16 + typo]
    assert m((("c", "exact"), ("d", "exact"), ("b", "exact"))) == [2 * 16 + 3]
    assert m((("not", "exact"), ("a", "exact"), ("b", "exact"))) == []
    assert m((("b", "exact"), ("-", "separator"), ("a", "exact"), ("x", "unknown"))) == [2 * 16 + 3]


def test_phrase_matcher_long_keys(rules, matching):
    """Hundreds of words: every target found, kept once, separated parts dropped alike."""
    compiled, reference = matching
    phrases, negators, loose, pronoun = lexicon_words(rules)
    pool = [(w,) for w in negators + loose[:50] + [pronoun, "-", ""]] + phrases
    rng = random.Random(11)
    for size in (50, 200, 600):
        key = tuple((w, rng.choice(WORD_RULES)) for _ in range(size) for w in rng.choice(pool))
        assert len(key) >= size and compiled(key) == reference(key)
    # no separator: the many targets survive
    key = tuple((w, "exact") for k in phrases for w in k)
    assert len(compiled(key)) > 30 and compiled(key) == reference(key)


def test_phrase_matcher_refuses_bad_input(matching):
    compiled = matching[0]
    for key in [(("rock",),), (("rock", None),), ("rock",), ((b"rock", "exact"),)]:
        with pytest.raises(TypeError, match="pair of strings"):
            compiled(key)
    from tagfold.native._stage2 import PhraseMatcher
    from tagfold.pipeline.tags.collapse import _matcher_tables

    tables = _matcher_tables(load_rules())
    with pytest.raises(ValueError, match="target 50 is outside"):
        PhraseMatcher(**{**tables, "phrases": {("rock",): ((50,), 0)}})
    with pytest.raises(ValueError, match="rule code 16 is outside"):
        PhraseMatcher(**{**tables, "phrases": {("rock",): ((0,), 16)}})
    with pytest.raises(ValueError, match="non-empty tuple"):
        PhraseMatcher(**{**tables, "phrases": {(): ((0,), 0)}})


def load_rules(**config):
    from tagfold.pipeline.selected import load_selected
    from tagfold.pipeline.tags.collapse import CollapseConfig, _ruleset

    return _ruleset(load_selected(), CollapseConfig(**config))


ANALYSIS_RULES = ["exact", "typo", "form", "segmented", "decade", "unknown"]


@st.composite
def matching_job(draw, rules):
    """Tags as token lists over a small vocabulary of tokens, each token read as real words with
    the rules token analysis gives them (collapse._analyse_tokens), the separator among them;
    the tokens of separated tags marked as collapse() marks them."""
    from tagfold.pipeline.tags.collapse import _IN_PARTS, SEPARATOR

    vocab = draw(st.lists(TEXT.filter(lambda t: _IN_PARTS not in t and t != SEPARATOR), min_size=1, max_size=15,
                          unique=True))
    # a token's words hold no separator (tokenize yields no punctuation)
    words = {tok: tuple((w, r if r in ANALYSIS_RULES else "exact")
                        for w, r in draw(phrase_key(rules, max_runs=3)) if w != SEPARATOR)
             for tok in vocab}
    words[SEPARATOR] = ((SEPARATOR, "separator"),)
    token_lists = draw(st.lists(st.lists(st.sampled_from(vocab + [SEPARATOR]), max_size=6), max_size=40))
    in_parts = set()
    for k, toks in enumerate(token_lists):
        if SEPARATOR in toks:
            in_parts.update(t for t in toks if t != SEPARATOR)
            token_lists[k] = [t if t == SEPARATOR else t + _IN_PARTS for t in toks]
    return token_lists, words, in_parts


def codes_both(rules, token_lists, words, in_parts, start=0, stop=None):
    from tagfold.native.stage2 import match_codes
    from tagfold.pipeline.tags.collapse import _IN_PARTS, _matcher_tables, _readings

    stop = len(token_lists) if stop is None else stop
    out = [match_codes(token_lists, start, stop, words, _IN_PARTS, _matcher_tables(rules),
                       lambda: _readings(words, in_parts, rules), _codes_of(rules), impl=impl)
           for impl in ("native", "ref")]
    for ids, codes in out:
        assert ids.dtype == codes.dtype == np.int32 and len(ids) == len(codes)
    return [(ids.tolist(), codes.tolist()) for ids, codes in out]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_match_codes_equals_reference(rules, data):
    native, ref = codes_both(rules, *data.draw(matching_job(rules)))
    assert native == ref


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), cut=st.integers(0, 40))
def test_match_codes_does_not_depend_on_chunks(rules, data, cut):
    token_lists, words, in_parts = data.draw(matching_job(rules))
    cut = min(cut, len(token_lists))
    whole = codes_both(rules, token_lists, words, in_parts)[0]
    a = codes_both(rules, token_lists, words, in_parts, 0, cut)[0]
    b = codes_both(rules, token_lists, words, in_parts, cut, len(token_lists))[0]
    assert (a[0] + b[0], a[1] + b[1]) == whole


def test_match_codes_refuses_bad_input(rules):
    from tagfold.native.stage2 import match_codes
    from tagfold.pipeline.tags.collapse import _matcher_tables

    tables, ref = _matcher_tables(rules), _codes_of(rules)
    rock = {"rock": (("rock", "exact"),)}

    def native(token_lists, words, mark="\x00"):
        return match_codes(token_lists, 0, len(token_lists), words, mark, tables, None, ref, impl="native")

    with pytest.raises(ValueError, match="outside"):
        match_codes([["rock"]], 0, 2, rock, "", tables, None, ref)
    with pytest.raises(TypeError):
        native([("rock",)], rock)
    with pytest.raises(KeyError):
        native([["rock", "unknown"]], rock)
    with pytest.raises(KeyError):
        native([["rock\x00"]], {"rock\x00": (("rock", "exact"),)})
    with pytest.raises(TypeError, match="pair of strings"):
        native([["rock"]], {"rock": (("rock",),)})
    # a token ending in the mark reads as the token without it; no mark: as itself
    assert native([["rock\x00"]], rock)[1].tolist() == native([["rock"]], rock)[1].tolist() != []
    assert native([["rock\x00"]], {"rock\x00": (("rock", "exact"),)}, mark="")[0].tolist() == [0]


# ---------------------------------------------------------------- Stage II end to end

def _long_and_foreign(real, rng):
    """Generated tags the real sample has few of: long joined phrases, CJK, Cyrillic, accents."""
    extra = ["日本のロック", "русский рок", "électro-pop française", "ümlaut métal", "", " ", "x" * 255]
    for _ in range(300):
        parts = rng.sample(real, 4)
        extra.append(rng.choice([" and ", " / ", " - ", ""]).join(parts)[:255])
        extra.append("".join(rng.sample(real, 2)).replace(" ", ""))
    return extra


@pytest.fixture(scope="module")
def generated_tags(real_tags):
    """Seeded samples of both generators' variants (`tagfold synth-tags`, and --model phrases),
    without the real tags they start with."""
    from tagfold.pipeline.tags import synth, synth_phrases

    n, real = 3000, len(real_tags)
    return (synth.grow_tags(real_tags, real + n, seed=5, progress=False)[real:]
            + synth_phrases.grow_phrase_tags(real_tags, real + n, seed=5, progress=False)[real:])


def collapse_both(tags, monkeypatch, **kw):
    from tagfold.pipeline.tags.collapse import collapse

    tables = {}
    for impl in ("native", "ref"):
        monkeypatch.setenv("TAGFOLD_IMPL", impl)
        tables[impl] = collapse(tags, **kw)
    return tables["native"], tables["ref"]


def test_stage2_outputs_identical_native_and_reference(real_tags, generated_tags, monkeypatch):
    """Every real tag, both generators' samples, long / foreign ones: the same rows."""
    tags = real_tags + generated_tags + _long_and_foreign(real_tags, random.Random(7))
    native, ref = collapse_both(tags, monkeypatch, workers=2)
    assert native.num_rows > 40_000
    assert set(native.column("rule").to_pylist()) >= {"exact", "phrase", "compound", "typo", "segmented", "form"}
    assert native.equals(ref)


@pytest.mark.parametrize("merge_compounds", [True, False])
def test_stage2_identical_with_a_users_rules_dir(real_tags, generated_tags, monkeypatch, tmp_path,
                                                 merge_compounds):
    """A --rules-dir (here the package's tables plus a synonym, a blocker and a negator) is
    read alike by both paths; so is a shorter selected list and compounds left unmerged."""
    import shutil
    from importlib import resources

    from tagfold.pipeline.selected import SelectedTags, load_selected
    from tagfold.pipeline.tags.collapse import CollapseConfig

    rules = tmp_path / "rules"
    shutil.copytree(resources.files("tagfold.pipeline").joinpath("data/rules"), rules)
    with open(rules / "synonyms.tsv", "a", encoding="utf-8") as f:
        f.write("zorblax wave\tindie rock\n")
    with open(rules / "blockers.tsv", "a", encoding="utf-8") as f:
        f.write("sad rock\t\n")
    with open(rules / "negators.txt", "a", encoding="utf-8") as f:
        f.write("hardly\n")
    full = load_selected()
    selected = SelectedTags(full.tags[:30], full.categories[:30])
    config = CollapseConfig(rules_dir=str(rules), merge_compounds=merge_compounds)
    tags = (["zorblax wave", "sad rock", "hardly jazz", "jazz - zorblax wave", "rock indie"]
            + random.Random(3).sample(real_tags + generated_tags, 6000))
    for sel in (full, selected):
        native, ref = collapse_both(tags, monkeypatch, selected=sel, config=config, workers=1)
        assert native.equals(ref)
    got = {}
    for row in native.to_pylist():
        got.setdefault(row["tag"], []).append(row["target"])
    assert got["zorblax wave"] == ["indie rock"] and "sad rock" not in got and "hardly jazz" not in got
    assert got["rock indie"] == (["indie rock"] if merge_compounds else ["rock", "indie"])
