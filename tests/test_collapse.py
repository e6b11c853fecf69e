"""Stage II rule collapse: each rule class on named examples, accidents, precedence, scale."""
import random
import shutil
from importlib import resources

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tagfold.pipeline.tags.collapse import STAGE2_SCHEMA, CollapseConfig, collapse, main
from tagfold.pipeline.tags.gold import mapping_from_table
from tagfold.pipeline.io import read_config
from tagfold.pipeline.tags.normalize import decade_of, osa_distance, split_alpha_digit, tokenize
from tagfold.pipeline.selected import SelectedTags, load_selected


def targets_of(tags, **kw):
    """tag -> ordered list of targets (order is the documented precedence)."""
    table = collapse(tags, **kw)
    out = {t: [] for t in tags}
    for tag, target in zip(table.column("tag").to_pylist(), table.column("target").to_pylist()):
        out[tag].append(target)
    return out


def rules_of(tags):
    table = collapse(tags)
    return {(r["tag"], r["target"]): r["rule"] for r in table.to_pylist()}


CASES = {
    # case, punctuation, hyphen / space / joined forms, & / and / n
    "exact": [("ROCK", ["rock"]), ("Singer-Songwriter", ["singer-songwriter"]),
              ("singer songwriter", ["singer-songwriter"]), ("singersongwriter", ["singer-songwriter"]),
              ("indie-rock", ["indie rock"]), ("indierock", ["indie rock"]), ("rock & roll", ["rock"]),
              ("rock'n'roll", ["rock"]), ("rock n roll", ["rock"]), ("chill-out", ["chillout"])],
    "decade": [("80s", ["80s"]), ("80's", ["80s"]), ("eighties", ["80s"]), ("1980s", ["80s"]),
               ("1985", ["80s"]), ("80er", ["80s"]), ("70-er", ["70s"]), ("00s", ["2000s"]),
               ("2000's", ["2000s"]), ("noughties", ["2000s"]), ("2003 pop", ["2000s", "pop"]),
               ("number 1 pop singles of 1987", ["pop", "80s"]), ("70spop", ["70s", "pop"])],
    "modifiers": [("british rock metal", ["british", "rock", "metal"]), ("80s metal", ["80s", "metal"]),
                  ("super chillout", ["chillout"]), ("aussie indie rock", ["indie rock"]),
                  ("brilliant blue folk rock", ["folk", "rock"]), ("northern irish indie", ["indie"])],
    "multi": [("sad indie rock", ["sad", "indie rock"]), ("so sad so beautiful so cool", ["sad", "beautiful", "cool"]),
              ("70s 80s 90s", ["70s", "80s", "90s"]), ("rock indie uk", ["indie rock", "british"])],
    "country": [("usa", ["american"]), ("us rock", ["american", "rock"]), ("uk pop reggae", ["british", "pop"]),
                ("english folk", ["british", "folk"]), ("england", ["british"]), ("irish folk", ["folk"]),
                ("scottish indie", ["indie"])],
    "favourite": [("favourite", ["favorite"]), ("favs", ["favorite"]), ("my favorites", ["favorite"]),
                  ("jazzy faves", ["jazz", "favorite"])],
    "chill": [("chillout", ["chillout"]), ("chill out", ["chillout"]), ("chillin", ["chill"]),
              ("chilled", ["chill"]), ("chillailua", ["chill"])],
    "love": [("love songs", ["romantic"]), ("loved", ["loved"]), ("i love jazz", ["jazz"])],
    "foreign": [("triste", ["sad"]), ("alegre", ["happy"]), ("tranquila", ["calm"]),
                ("alternatywny rock", ["alternative rock"]), ("coolste", ["cool"]),
                ("zajebisty jazz", ["awesome", "jazz"]), ("romántico", ["romantic"])],
    "typo": [("hapy", ["happy"]), ("instrumen", ["instrumental"]), ("romanitc", ["romantic"]),
             ("metul", ["metal"]), ("suol", ["soul"]), ("inbdie", ["indie"]), ("jazzzz", ["jazz"])],
    "segmented": [("favouritejazz", ["favorite", "jazz"]), ("dreamyhot", ["dreamy", "hot"]),
                  ("taiwanpop", ["pop"]), ("harddancemusic", ["dance"]), ("gothmetal", ["metal"]),
                  ("chilltronica", ["chill", "electronica"]), ("ukpunk", ["british", "punk"])],
    "synonym": [("jazzy", ["jazz"]), ("soulful", ["soul"]), ("unplugged", ["acoustic"]),
                ("feel good", ["happy"]), ("sorrow", ["sad"])],
}


@pytest.mark.parametrize("tag,expected", [c for cases in CASES.values() for c in cases],
                         ids=[f"{k}:{c[0]}" for k, cases in CASES.items() for c in cases])
def test_named_examples(tag, expected):
    assert targets_of([tag])[tag] == expected


ACCIDENTS = ["photograph", "school", "saddle creek", "dancehall", "greatest hits", "goodbye",
             "word: goodbye", "good old", "good times", "glassjaw rocks", "madonna rocks",
             "psychotic", "time to say goodbye", "hotel california", "alton ellis rocksteady",
             "non metal", "red hot chili peppers", "iggy pop", "songs for us", "holt", "shots",
             "popular", "metallic", "folklore latinoamericano",
             "pukkelpop"]   # a festival, not 'p uk kelpop' (no british from a two-letter piece)


@pytest.mark.parametrize("tag", ACCIDENTS)
def test_substring_accidents_give_no_target(tag):
    assert targets_of([tag])[tag] == []


def test_rule_names_say_which_rule_fired():
    rules = rules_of(["rock", "indie rock", "1985", "jazzy", "hapy", "favouritejazz", "triste",
                      "usa", "rock indie uk"])
    assert rules[("rock", "rock")] == "exact"
    assert rules[("indie rock", "indie rock")] == "phrase"
    assert rules[("1985", "80s")] == "decade"
    assert rules[("jazzy", "jazz")] == "synonym"
    assert rules[("hapy", "happy")] == "typo"
    assert rules[("favouritejazz", "jazz")] == "segmented"
    assert rules[("triste", "sad")] == "foreign"
    assert rules[("usa", "american")] == "country"
    assert rules[("rock indie uk", "indie rock")] == "compound"


def test_most_specific_phrase_wins_and_order_is_position():
    got = targets_of(["sad indie rock", "rock sad", "alternative rock", "alternative", "greatest hits great"])
    assert got["sad indie rock"] == ["sad", "indie rock"]       # not indie, not rock
    assert got["rock sad"] == ["rock", "sad"]                     # position, not alphabet
    assert got["alternative rock"] == ["alternative rock"]
    assert got["alternative"] == ["alternative"]
    assert got["greatest hits great"] == ["great"]                # blocker consumes only its words


def test_tag_ids_rows_and_schema(real_tags):
    tags = real_tags[:3000]
    table = collapse(tags)
    assert table.schema == STAGE2_SCHEMA
    selected = set(load_selected().tags)
    ids = table.column("tag_id").to_pylist()
    assert all(tags[i] == t for i, t in zip(ids, table.column("tag").to_pylist()))
    assert set(table.column("target").to_pylist()) <= selected
    pairs = list(zip(ids, table.column("target").to_pylist()))
    assert len(pairs) == len(set(pairs)), "one row per (raw tag, target)"
    assert ids == sorted(ids)


def test_deterministic_and_independent_of_batch(real_tags):
    rng = random.Random(7)
    sample = rng.sample(real_tags, 4000)
    whole = mapping_from_table(collapse(sample))
    again = mapping_from_table(collapse(list(reversed(sample))))
    assert whole == again
    halves = mapping_from_table(collapse(sample[:1000]))
    assert halves == {t: v for t, v in whole.items() if t in set(sample[:1000])}


def test_all_real_tags(real_tags):
    table = collapse(real_tags)
    mapped = set(table.column("tag_id").to_pylist())
    # Most real tags carry a genre / mood word; far from all (artist names, junk).
    assert 0.5 * len(real_tags) < len(mapped) < 0.98 * len(real_tags)


def test_custom_selected_list():
    selected = SelectedTags(("rock", "sad", "80s"), ("genre", "emotion", "numeric"))
    got = targets_of(["sad indie rock", "1985", "uk pop", "triste"], selected=selected)
    assert got == {"sad indie rock": ["sad", "rock"], "1985": ["80s"], "uk pop": [], "triste": ["sad"]}


def test_phrase_with_two_meanings_is_an_error(tmp_path):
    rules = tmp_path / "rules"
    shutil.copytree(resources.files("tagfold.pipeline").joinpath("data/rules"), rules)
    with open(rules / "foreign.tsv", "a", encoding="utf-8") as f:
        f.write("jazzy\tsad\n")
    with pytest.raises(ValueError, match="foreign.tsv.*jazzy.*synonyms.tsv"):
        collapse(["jazzy"], config=CollapseConfig(rules_dir=str(rules)))


def test_normalisation_helpers():
    assert tokenize("Rock'n'Roll & Blues") == ["rock", "n", "roll", "and", "blues"]
    assert tokenize("80's") == ["80s"]
    assert [decade_of(t) for t in ("1959", "1960", "1999", "2009", "2010", "80", "2000s", "2005s")] == \
        [None, "60s", "90s", "2000s", None, None, "2000s", None]
    assert split_alpha_digit("70spop") == ["70s", "pop"]
    assert split_alpha_digit("dark1") == ["dark", "1"]
    assert osa_distance("romanitc", "romantic") == 1
    assert osa_distance("metul", "metal") == 1


def test_cli_writes_stage2_atomically(tmp_path, shared):
    tags = tmp_path / "tags.txt"
    tags.write_text("sad indie rock\nphotograph\nhapy\n", encoding="utf-8")
    assert main(["--tags", str(tags), "--out", str(tmp_path / "out")]) == 0
    path = tmp_path / "out" / "stage2.parquet"
    rows = pq.read_table(path).to_pylist()
    assert [(r["tag_id"], r["target"]) for r in rows] == [(0, "sad"), (0, "indie rock"), (2, "happy")]
    assert read_config(path)["typo_cutoff"] == 0.9
    assert [p.name for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")] == []


def test_result_does_not_depend_on_worker_count(real_tags):
    sample = real_tags[::20]
    serial = collapse(sample, workers=1)
    parallel = collapse(sample, workers=2)
    assert serial.to_pylist() == parallel.to_pylist()


def test_tags_given_as_an_arrow_column_give_the_same_rows(real_tags):
    sample = real_tags[::20]
    as_list = collapse(sample, workers=1)
    for column in (pa.array(sample, pa.string()), pa.chunked_array([sample[:100], sample[100:]], pa.string())):
        assert collapse(column, workers=1).equals(as_list)


def test_cli_keeps_the_ingest_tag_ids(tmp_path):
    import pyarrow as pa

    tags = tmp_path / "tags.parquet"
    pq.write_table(pa.table({"tag_id": pa.array([7, 3, 9], pa.int32()),
                             "tag": ["usa", "photograph", "eighties"], "count": [1, 1, 1]}), tags)
    assert main(["--tags", str(tags), "--out", str(tmp_path)]) == 0
    rows = pq.read_table(tmp_path / "stage2.parquet").to_pylist()
    assert [(r["tag_id"], r["tag"], r["target"]) for r in rows] == [(7, "usa", "american"), (9, "eighties", "80s")]


def test_containment_trie_regex_equals_the_plain_alternation(real_tags):
    """The trie regex answers 'contains any stem?' exactly as the plain alternation does."""
    import re

    from tagfold.pipeline.tags.collapse import _containment_regex

    stems = sorted({w for t in real_tags[:3000] for w in tokenize(t) if len(w) >= 3 and w.isalpha()})[:600]
    trie = _containment_regex(stems)
    plain = re.compile("|".join(map(re.escape, sorted(stems, key=len, reverse=True))))
    tokens = {w for t in real_tags for w in tokenize(t)} | {"", "x", "é" * 70, "rockabilly" * 10}
    assert {bool(trie.search(t)) for t in tokens} == {True, False}
    assert all(bool(trie.search(t)) == bool(plain.search(t)) for t in tokens)


def test_rapidfuzz_osa_equals_the_reference_osa_distance(real_tags):
    """Stage II confirms typos with rapidfuzz's OSA; normalize.osa_distance is its plain reference."""
    import numpy as np
    from rapidfuzz.distance import OSA

    rng = np.random.default_rng(0)
    words = sorted({w for t in real_tags for w in tokenize(t)})
    a = [words[i] for i in rng.integers(len(words), size=3000)]
    b = [words[i] for i in rng.integers(len(words), size=3000)]
    pairs = list(zip(a, b)) + [(w, w[1:] + w[:1]) for w in a[:500]] + [("", ""), ("", "abc"), ("ab", "ba"), ("ca", "abc")]
    assert all(OSA.distance(x, y) == osa_distance(x, y) for x, y in pairs)


def test_phrase_precedence_step_by_itself_longest_first():
    """The phrase step alone (no compound merge afterwards) must pick the longest phrase at
    each position: with shortest-first 'indie rock' would read as indie + rock, which a later
    merge could rebuild and hide."""
    from tagfold.pipeline.tags.collapse import _match_words, _ruleset

    rules = _ruleset(load_selected(), CollapseConfig(merge_compounds=False))

    def phrase_step(words):
        return _match_words([(w, "exact") for w in words], rules)

    assert phrase_step(["sad", "indie", "rock"]) == [("sad", "exact"), ("indie rock", "phrase")]
    assert phrase_step(["alternative", "rock"]) == [("alternative rock", "phrase")]
    assert phrase_step(["classic", "rock", "80s"]) == [("classic rock", "phrase"), ("80s", "exact")]
    assert phrase_step(["greatest", "hits", "great"]) == [("great", "exact")]   # blocker is longer
    assert phrase_step(["love", "songs"]) == [("romantic", "synonym")]           # not 'loved'
    # and without the merge, halves found apart stay apart
    assert phrase_step(["rock", "indie"]) == [("rock", "exact"), ("indie", "exact")]


NAMES_AND_TITLES = {
    # 'artist - title', 'artist- title', 'artist -title': a part holding a non-descriptive
    # word is a name or a title; a part made of descriptors keeps its targets
    "separated": [("justin timberlake - rock your body", []), ("the smiths - last night i dreamt that somebody loved me", []),
                  ("paul baloche- how great thou art", []), ("katatonia -a darkness coming", []),
                  ("soul - ray charles", ["soul"]), ("chill - smooth jazz", ["chill", "jazz"]),
                  ("metalcore - modern metal", ["metal"]), ("post-rock - instrumental", ["rock", "instrumental"]),
                  ("hip-hop", []), ("singer-songwriter", ["singer-songwriter"])],
    # a selected word glued in front of a common non-descriptive word is a name
    "joined": [("rockclimbing", []), ("poprocket", []), ("coolbeans", []), ("soulflower", []),
               ("robotpop", ["pop"]), ("blackmetal", ["metal"]), ("jazzmusic", ["jazz"])],
    "idiom": [("looks good", []), ("it looks so cool", []), ("good looking", []), ("used to be great", []),
              ("dead can dance", []), ("music you can dance to", ["dance"]), ("good music", ["good"])],
}


@pytest.mark.parametrize("tag,expected", [c for cases in NAMES_AND_TITLES.values() for c in cases],
                         ids=[f"{k}:{c[0]}" for k, cases in NAMES_AND_TITLES.items() for c in cases])
def test_names_titles_and_idioms(tag, expected):
    assert targets_of([tag])[tag] == expected


WORD_FORMS = [("metalero", ["metal"]), ("energetyczna", ["energetic"]), ("chillig", ["chill"]),
              ("intensiivi", ["intense"]), ("instrumentista", ["instrumental"]),
              ("indiepop", ["indie", "pop"]),   # an ending that is a word: a joined word, not a form
              ("metalica", []),                  # near 'metallica', a name kept whole
              ("80musik", ["80s"]), ("70rock", ["70s", "rock"]), ("60x", []),
              ("indie ro", ["indie rock"]), ("singer songw", ["singer-songwriter"]), ("indie po", ["indie"])]


@pytest.mark.parametrize("tag,expected", WORD_FORMS, ids=[c[0] for c in WORD_FORMS])
def test_word_forms_glued_decades_and_truncations(tag, expected):
    assert targets_of([tag])[tag] == expected


def test_word_form_rule_is_reported():
    assert rules_of(["metalero"])[("metalero", "metal")] == "form"


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tagfold.pipeline.tags.collapse import SEPARATOR, tokens_with_separators  # noqa: E402

# Letters of several scripts, spaces, dashes and punctuation; no digits (digits next to a
# dash form detached decades, '70 -er', which are read before parts are split).
_TAG_TEXT = st.text(st.one_of(st.sampled_from(" -- -\t'&+.:/"), st.characters(categories=("L", "So"))), max_size=60)


@settings(max_examples=300, deadline=None)
@given(_TAG_TEXT)
def test_separators_only_add_marks_between_the_plain_tokens(tag):
    """Reading a tag part by part never loses, adds or reorders a word (unicode, empty, long)."""
    got = tokens_with_separators(tag)
    assert [t for t in got if t != SEPARATOR] == tokenize(tag)
    assert not got or (got[0] != SEPARATOR and got[-1] != SEPARATOR)
    assert all(not (a == b == SEPARATOR) for a, b in zip(got, got[1:]))


@settings(max_examples=100, deadline=None)
@given(st.lists(_TAG_TEXT, max_size=8))
def test_collapse_never_fails_and_targets_are_selected_tags(tags):
    table = collapse(tags)
    assert set(table.column("target").to_pylist()) <= set(load_selected().tags)
    assert set(table.column("tag_id").to_pylist()) <= set(range(len(tags)))


def test_very_long_separated_tag():
    tag = " - ".join(["rock"] * 2000 + ["daft punk digital love"])
    assert targets_of([tag])[tag] == ["rock"]
