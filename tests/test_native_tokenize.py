"""Stage II's compiled tokenizer (native/_tokenize.pyx) against its reference
(collapse.tokens_with_separators over normalize.tokenize): the same tokens for every tag, on
text rich in what the regex passes react to, arbitrary unicode, empty and very long tags, the
real Last.fm tags and both synthetic generators."""
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tagfold.native import dispatch
from tagfold.pipeline.tags.collapse import TOKENIZE_EXTENSION, tag_tokens

pytestmark = pytest.mark.skipif(not dispatch.native_available(TOKENIZE_EXTENSION),
                                reason="the tokenizer kernel is not built (make install)")

# What the passes look at: white space as Python's \s reads it (\x1c-\x1f too), separators,
# '&'/'+', the four apostrophes and 'n', decade digits and suffixes, '_' (a \w character
# that is not a token character), punctuation, upper case and a few non-ASCII letters.
TRICKY = "abcnnserit 0123456789 ABNSE\t\x1c\x1f\n--&+'`´’_/.é日ё\xa0\u2003İΣς٣ℌﬁ\u0301"
TRICKY_TEXT = st.text(alphabet=TRICKY, max_size=40)
PIECES = st.lists(st.sampled_from(["80", "1980", "19805", "70", " ", "-", " - ", "s", "er", "ies", "ties",
                                   "'n'", "n'", "'n", "`n`", "&", " + ", "rock", "roll", "_", "x", "2000",
                                   "\t", "--", "é", "\x1c", "/", ".", "٨٠", "１９８０", "e\u0301"]),
                  max_size=14).map("".join)
ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=60)


def assert_same(tags):
    native, ref = tag_tokens(tags, "native"), tag_tokens(tags, "ref")
    assert len(native) == len(ref) == len(tags)
    for tag, a, b in zip(tags, native, ref):
        assert a == b, tag


@settings(max_examples=800, deadline=None)
@given(tags=st.lists(st.one_of(TRICKY_TEXT, PIECES), max_size=8))
def test_tricky_text_equals_reference(tags):
    assert_same(tags)


@settings(max_examples=500, deadline=None)
@given(tags=st.lists(ANY_TEXT, max_size=8))
def test_any_unicode_equals_reference(tags):
    assert_same(tags)


@pytest.mark.parametrize("tag", [
    "", " ", "-", " - ", "--", "a - b", "- a - b -", "a -b", "a- b", "a-b", "a - - b", "a -- b", "  -  ",
    "a\t-\tb", "a\x1c-\x1cb", "rock'n'roll", "rock 'n' roll", "r&b", "r & b", "drum+bass", "'n'", "n'",
    "80 's", "70-er", "90-ies", "60 - ties", "1980 s", "19805 s", "8 s", "80 s_", "_80 s", "a80 s", "80 sx",
    "é - b", "日本 - ロック", "ROCK - Pop", "80's - 90's", "'80s", "a & - & b", "x" * 255, "rock - " * 300,
    "a b" * 2500, "80 s " * 1000, "-" * 5000, "é" * 5000, "a - " + "é" * 300,
    "a - ! - b", "a - / - b - c", "! - b", "٨٠ s", "١٩٨٠-er", "８０ ｓ", "ΟΔΟΣ - ΑΣ", "İstanbul - x",
    "a\ud800b", "ǅemal", "ﷺ rock", "K\u212a - x",
    "&" * 300, "'n" * 300, "n'" * 300, "&'n" * 200, "+ 'n' " * 100,   # the passes' longest outputs
    "ro\x00ck", "x" * 100_000, "\u200b\u200d\u202e - \ufeff",   # what ingest refuses, and invisible marks
])
def test_named_cases(tag):
    assert_same([tag])


def test_each_call_returns_new_lists():
    """collapse() rewrites token lists in place: two equal tags must not share one."""
    a, b = tag_tokens(["indie rock", "indie rock"], "native")
    assert a == b and a is not b


def test_real_tags_equal_reference(real_tags):
    assert_same(real_tags)


def test_synthetic_tags_equal_reference(real_tags):
    from tagfold.pipeline.tags import synth, synth_phrases

    n = len(real_tags) + 20_000
    assert_same(synth.grow_tags(real_tags, n, seed=5, progress=False)[len(real_tags):])
    assert_same(synth_phrases.grow_phrase_tags(real_tags, n, seed=5, progress=False)[len(real_tags):])


def test_impl_names_are_checked():
    with pytest.raises(ValueError, match="expected one of"):
        tag_tokens(["rock"], "fast")
